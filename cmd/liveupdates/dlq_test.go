package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// dlqFixture is an embedded JetStream with LIVE_EVENTS and LIVE_DLQ as the
// roles create them.
type dlqFixture struct {
	js  jetstream.JetStream
	env func(string) string
}

func newDLQFixture(t *testing.T) dlqFixture {
	t.Helper()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	cfg, err := stream.LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []stream.Config{cfg, cfg.DLQ()} {
		if _, _, err := stream.Ensure(t.Context(), js, c); err != nil {
			t.Fatalf("ensure %s: %v", c.WithDefaults().Name, err)
		}
	}
	return dlqFixture{js: js, env: envOf(map[string]string{"LIVE_NATS_URL": srv.URL()})}
}

// publishChange stores an original change and returns its seq.
func (f dlqFixture) publishChange(t *testing.T, eventID, id string) uint64 {
	t.Helper()
	ack, err := f.js.PublishMsg(t.Context(), &nats.Msg{
		Subject: wire.Subject(eventID, wire.TypeVoteUpdated),
		Header:  nats.Header{wire.HeaderMsgID: {id}, wire.HeaderAt: {wire.FormatAt(time.Now())}},
		Data:    []byte(`{"v":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// deadLetter stores a dead letter shaped as the relay writes it: the
// original headers, the original id in wire.HeaderDLQID, the letter's own
// Nats-Msg-Id, and the dead-letter annotations.
func (f dlqFixture) deadLetter(t *testing.T, eventID, id string, seq uint64) {
	t.Helper()
	_, err := f.js.PublishMsg(t.Context(), &nats.Msg{
		Subject: wire.DLQSubject(eventID, wire.TypeVoteUpdated),
		Header: nats.Header{
			wire.HeaderAt:           {"2026-11-29T10:00:00.123Z"},
			wire.HeaderDLQID:        {id},
			wire.HeaderMsgID:        {"dlq-" + strconv.FormatUint(seq, 10)},
			wire.HeaderDLQStatus:    {"413"},
			wire.HeaderDLQReason:    {"pusher rejected event: payload too large"},
			wire.HeaderDLQAttempts:  {"1"},
			wire.HeaderDLQSeq:       {strconv.FormatUint(seq, 10)},
			wire.HeaderSocketID:     {"1.2"},
			"Live-Unrelated-Header": {"kept"},
		},
		Data: []byte(`{"v":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f dlqFixture) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := runIO(ctx, args, f.env, strings.NewReader(stdin), &out, io.Discard)
	return out.String(), err
}

func decodeLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var res []T
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		res = append(res, v)
	}
	return res
}

func TestDLQListShowsEveryDeadLetter(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	f.deadLetter(t, "e1", "a1", 7)
	f.deadLetter(t, "e2", "b1", 8)

	out, err := f.run(t, "", "dlq", "list")
	if err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	got := decodeLines[deadLetter](t, out)
	if len(got) != 2 || got[0].DLQSeq != 1 || got[0].EventID != "e1" || got[0].Type != wire.TypeVoteUpdated || got[0].ID != "a1" ||
		got[0].Seq != 7 || got[0].Status != 413 || got[0].Attempts != 1 || !strings.Contains(got[0].Reason, "too large") || got[1].ID != "b1" {
		t.Fatalf("dlq list = %+v, want both letters, oldest first, with their annotations", got)
	}
	out, err = f.run(t, "", "dlq", "list", "--event", "e2")
	if got := decodeLines[deadLetter](t, out); err != nil || len(got) != 1 || got[0].ID != "b1" {
		t.Fatalf("dlq list --event e2 = %+v (%v), want only b1", got, err)
	}
	out, err = f.run(t, "", "dlq", "list", "--limit", "1")
	if got := decodeLines[deadLetter](t, out); err != nil || len(got) != 1 || got[0].ID != "a1" {
		t.Fatalf("dlq list --limit 1 = %+v (%v), want only the oldest", got, err)
	}

	out, err = f.run(t, "", "dlq", "show", "--seq", "2")
	if err != nil {
		t.Fatalf("dlq show: %v", err)
	}
	var shown deadLetter
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("dlq show printed %q: %v", out, err)
	}
	var data bytes.Buffer
	if err := json.Compact(&data, shown.Data); err != nil {
		t.Fatalf("dlq show data %q: %v", shown.Data, err)
	}
	if shown.ID != "b1" || data.String() != `{"v":1}` || shown.Headers[wire.HeaderDLQReason] == nil {
		t.Fatalf("dlq show = %+v, want b1 with its data and headers", shown)
	}
	if _, err := f.run(t, "", "dlq", "show", "--seq", "9"); err == nil || !strings.Contains(err.Error(), "no dead letter with seq 9") {
		t.Fatalf("dlq show of a missing seq = %v, want it named", err)
	}
}

// TestDLQReplayStoresEachChangeOnce: a replay publishes the change to
// LIVE_EVENTS with its original id and without the dead letter's control
// and annotation headers, and deletes the letter; replaying the same letter
// again (kept with --keep) stores nothing new; a letter whose original is
// still within the duplicate window is reported and kept, not lost.
func TestDLQReplayStoresEachChangeOnce(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	origSeq := f.publishChange(t, "e1", "a1") // recent: inside the dedup window
	f.deadLetter(t, "e1", "a1", origSeq)      // dlq seq 1
	f.deadLetter(t, "e3", "c1", 99)           // dlq seq 2: original long gone

	out, err := f.run(t, "", "dlq", "replay", "--seq", "2", "--keep")
	res := decodeLines[replayResult](t, out)
	if err != nil || len(res) != 1 || res[0].Result != replayStored || res[0].ID != "c1" || res[0].Seq != origSeq+1 {
		t.Fatalf("dlq replay --seq 2 --keep = %+v (%v), want c1 stored at seq %d", res, err, origSeq+1)
	}
	out, err = f.run(t, "", "dlq", "replay", "--seq", "2")
	res = decodeLines[replayResult](t, out)
	if err != nil || len(res) != 1 || res[0].Result != replayAlreadyStored || res[0].Seq != origSeq+1 {
		t.Fatalf("second replay of c1 = %+v (%v), want a duplicate of seq %d", res, err, origSeq+1)
	}
	out, err = f.run(t, "", "dlq", "replay", "--event", "e1")
	res = decodeLines[replayResult](t, out)
	if err != nil || len(res) != 1 || res[0].Result != replayOriginalInDup || !strings.Contains(res[0].Detail, "LIVE_STREAM_DUPLICATES") {
		t.Fatalf("replay of a1 = %+v (%v), want it reported as inside the duplicate window", res, err)
	}

	stored := testutil.ReadAll(t, f.js, wire.StreamName)
	if len(stored) != 2 {
		t.Fatalf("LIVE_EVENTS holds %d messages, want the original a1 and one c1", len(stored))
	}
	c1 := stored[1]
	if c1.Subject != wire.Subject("e3", wire.TypeVoteUpdated) || c1.Header.Get(wire.HeaderMsgID) != "c1" || string(c1.Data) != `{"v":1}` ||
		c1.Header.Get(wire.HeaderAt) != "2026-11-29T10:00:00.123Z" || c1.Header.Get(wire.HeaderSocketID) != "1.2" || c1.Header.Get("Live-Unrelated-Header") != "kept" {
		t.Fatalf("replayed c1 = %s %v %s, want the original subject, id, headers and data", c1.Subject, c1.Header, c1.Data)
	}
	for k := range c1.Header {
		if strings.HasPrefix(k, "Live-Dlq-") {
			t.Errorf("replayed c1 carries the dead-letter header %s", k)
		}
	}
	out, err = f.run(t, "", "dlq", "list")
	if left := decodeLines[deadLetter](t, out); err != nil || len(left) != 1 || left[0].ID != "a1" {
		t.Fatalf("after the replays LIVE_DLQ = %+v (%v), want only a1 (not replayed, kept)", left, err)
	}
}

func TestDLQPurgeAsksFirst(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	for i := range 3 {
		f.deadLetter(t, fmt.Sprintf("e%d", i), fmt.Sprintf("id%d", i), uint64(i+1))
	}
	count := func() int {
		out, err := f.run(t, "", "dlq", "list", "--limit", "0")
		if err != nil {
			t.Fatalf("dlq list: %v", err)
		}
		return len(decodeLines[deadLetter](t, out))
	}
	if _, err := f.run(t, "no\n", "dlq", "purge", "--all"); err == nil || count() != 3 {
		t.Fatalf("purge answered no = %v with %d letters left, want a refusal and all 3 kept", err, count())
	}
	if _, err := f.run(t, "", "dlq", "purge", "--all"); err == nil || count() != 3 {
		t.Fatalf("purge with no answer = %v with %d letters left, want a refusal and all 3 kept", err, count())
	}
	if _, err := f.run(t, "", "dlq", "purge", "--event", "e1", "--yes"); err != nil || count() != 2 {
		t.Fatalf("purge --event e1 --yes = %v with %d letters left, want 2", err, count())
	}
	if _, err := f.run(t, "yes\n", "dlq", "purge", "--all"); err != nil || count() != 0 {
		t.Fatalf("purge --all confirmed = %v with %d letters left, want none", err, count())
	}
	for _, args := range [][]string{{"dlq", "purge"}, {"dlq", "replay"}, {"dlq", "purge", "--all", "--seq", "1"}} {
		if _, err := f.run(t, "yes\n", args...); err == nil || !strings.Contains(err.Error(), "one of --seq, --event or --all") {
			t.Errorf("%v = %v, want a request to choose which dead letters", args, err)
		}
	}
}

func TestStatusShowsStreamConsumersAndDeadLetters(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	for i := range 5 {
		f.publishChange(t, "e1", fmt.Sprintf("s%d", i))
	}
	f.deadLetter(t, "e1", "s0", 1)
	if _, err := f.js.CreateOrUpdateConsumer(t.Context(), wire.StreamName, jetstream.ConsumerConfig{Durable: relay.Consumer, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	out, err := f.run(t, "", "status", "--json")
	if err != nil {
		t.Fatalf("status --json: %v", err)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	if rep.Stream.Name != wire.StreamName || rep.Stream.Messages != 5 || rep.Stream.LastSeq != 5 ||
		len(rep.Consumers) != 1 || rep.Consumers[0].Name != relay.Consumer || rep.Consumers[0].Pending != 5 ||
		rep.DeadLetters == nil || rep.DeadLetters.Messages != 1 || len(rep.Partitions) != 0 {
		t.Fatalf("status = %+v, want 5 changes, the relay consumer 5 behind, 1 dead letter and no partitions", rep)
	}
	out, err = f.run(t, "", "status")
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, want := range []string{"LIVE_EVENTS: 5 changes", "relay: lag 5", "1 in LIVE_DLQ", "dlq list"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}
}

// TestDLQReplayReusesTheScopedDedupID: when the ingest API scopes
// Nats-Msg-Id (per API key and eventId) and keeps the change's own id in
// Live-Id, list shows both and replay publishes with the scoped one, so it
// is deduplicated exactly like the original publish.
func TestDLQReplayReusesTheScopedDedupID(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	_, err := f.js.PublishMsg(t.Context(), &nats.Msg{
		Subject: wire.DLQSubject("e9", wire.TypePhaseChanged),
		Header: nats.Header{
			wire.HeaderID:                        {"env-9"},
			wire.HeaderDLQID:                     {"scope-k1-e9-env-9"},
			wire.HeaderMsgID:                     {"dlq-42"},
			wire.HeaderDLQSeq:                    {"42"},
			"Live-Dlq-Orig-Nats-Expected-Stream": {"LIVE_EVENTS"},
			wire.HeaderDLQReason:                 {"invalid"},
		},
		Data: []byte(`{"phase":"vote"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.run(t, "", "dlq", "list")
	got := decodeLines[deadLetter](t, out)
	if err != nil || len(got) != 1 || got[0].ID != "env-9" || got[0].DedupID != "scope-k1-e9-env-9" {
		t.Fatalf("dlq list = %+v (%v), want id env-9 and dedup id scope-k1-e9-env-9", got, err)
	}
	out, err = f.run(t, "", "dlq", "replay", "--all")
	res := decodeLines[replayResult](t, out)
	if err != nil || len(res) != 1 || res[0].Result != replayStored {
		t.Fatalf("dlq replay --all = %+v (%v), want it stored", res, err)
	}
	stored := testutil.ReadAll(t, f.js, wire.StreamName)
	if len(stored) != 1 || stored[0].Header.Get(wire.HeaderMsgID) != "scope-k1-e9-env-9" || stored[0].Header.Get(wire.HeaderID) != "env-9" ||
		stored[0].Header.Get("Live-Dlq-Orig-Nats-Expected-Stream") != "" {
		t.Fatalf("replayed = %+v, want Nats-Msg-Id scope-k1-e9-env-9, Live-Id env-9 and no dead-letter headers", stored)
	}
}
