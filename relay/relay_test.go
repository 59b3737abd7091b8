package relay

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

func TestRelayKeepsSeqOrderPerChannelAcrossLanes(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.SetLatency(2 * time.Millisecond) // let lanes overlap
	run := rg.start(rg.config(), nil)
	var ids []string
	for round := range 10 {
		var cs []change
		for ch := range 12 {
			cs = append(cs, change{eventID: "e" + strconv.Itoa(ch), typ: wire.KnownTypes()[round%6], data: `{"round":` + strconv.Itoa(round) + `}`})
		}
		_, got := rg.publish(cs...)
		ids = append(ids, got...)
	}
	rg.waitIDs(20*time.Second, ids)
	last := map[string]uint64{}
	for _, ev := range rg.delivered() {
		if ev.Channel != "event-"+ev.env.EventID || ev.Name != ev.env.Type {
			t.Fatalf("event on %s named %s carries eventId %s type %s", ev.Channel, ev.Name, ev.env.EventID, ev.env.Type)
		}
		if ev.env.Seq <= last[ev.Channel] {
			t.Fatalf("channel %s got seq %d after %d", ev.Channel, ev.env.Seq, last[ev.Channel])
		}
		last[ev.Channel] = ev.env.Seq
	}
	if n := len(rg.delivered()); n != len(ids) {
		t.Fatalf("Pusher got %d events, want %d (no faults, so no duplicates)", n, len(ids))
	}
	rg.waitSettled(20 * time.Second)
	testutil.CollectAndLint(t, run.reg, "liveupdates_relay_")
}

func TestRelayBatchesTenEventsPerRequest(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	var cs []change
	for i := range 200 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i), typ: wire.TypeVoteUpdated, data: `{}`})
	}
	_, ids := rg.publish(cs...) // a backlog, fetched as one batch
	cfg := rg.config()
	cfg.MaxInFlight = 1
	cfg.BatchWindow = 100 * time.Millisecond // a loaded machine may hold the fetcher up past 1s
	rg.start(cfg, nil)
	rg.waitIDs(20*time.Second, ids)
	if got := rg.pusher.Requests(); got != 20 {
		t.Fatalf("Requests()=%d for 200 changes, want 20 batches of 10", got)
	}
	rg.waitSettled(20 * time.Second)
}

// TestRelaySendsFullBatchesFromABacklogAcrossLanes: with a backlog fetched
// in many small pulls and spread over four lanes, every request carries ten
// events except each lane's last one.
func TestRelaySendsFullBatchesFromABacklogAcrossLanes(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	var cs []change
	for i := range 2000 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%97), typ: wire.TypeVoteUpdated, data: `{}`})
	}
	_, ids := rg.publish(cs...)
	cfg := rg.config()
	cfg.MaxInFlight = 4
	cfg.BatchSize = 100 // twenty pulls, each leaving a partial tail in every lane
	// A lane waits for the rest of a backlog up to 50 windows; a loaded
	// machine holds the fetcher up longer than the default's 1s.
	cfg.BatchWindow = 100 * time.Millisecond
	rg.start(cfg, nil)
	rg.waitIDs(30*time.Second, ids)
	if got, most := rg.pusher.Requests(), 200+cfg.MaxInFlight-1; got > most {
		var sizes []int
		for _, x := range rg.pusher.Exchanges() {
			sizes = append(sizes, x.Events)
		}
		t.Fatalf("Requests()=%d for 2000 changes, want at most %d (full batches but each lane's last); sizes %v", got, most, sizes)
	}
	rg.waitSettled(20 * time.Second)
}

func TestRelayCoalescesAChannelsChangesOfOneType(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	seqs, ids := rg.publish(
		change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"v":1}`, socketID: "1.1"},
		change{eventID: "e1", typ: wire.TypePhaseChanged, data: `{"p":1}`, socketID: "1.1"},
		change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"v":2}`, socketID: "1.1"},
		change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"v":3}`, socketID: "1.1"},
		change{eventID: "e2", typ: wire.TypeVoteUpdated, data: `{"v":1}`, socketID: "1.1"},
		change{eventID: "e2", typ: wire.TypeVoteUpdated, data: `{"v":2}`, socketID: "2.2"},
		change{eventID: "e3", typ: "custom.thing", data: `{"c":1}`},
		change{eventID: "e3", typ: "custom.thing", data: `{"c":2}`},
	)
	cfg := rg.config()
	cfg.CoalesceTypes = wire.KnownTypes()
	run := rg.start(cfg, nil)
	rg.waitIDs(30*time.Second, []string{ids[1], ids[3], ids[5], ids[6], ids[7]})
	rg.waitSettled(20 * time.Second)
	type want struct {
		seq       uint64
		coalesced int
		data      string
		socketID  string
	}
	wants := map[string][]want{
		"event-e1": {{seqs[1], 0, `{"p":1}`, "1.1"}, {seqs[3], 3, `{"v":3}`, "1.1"}},
		"event-e2": {{seqs[5], 2, `{"v":2}`, ""}}, // mixed senders: exclude nobody
		"event-e3": {{seqs[6], 0, `{"c":1}`, ""}, {seqs[7], 0, `{"c":2}`, ""}},
	}
	for ch, w := range wants {
		var got []want
		for _, ev := range rg.delivered() {
			if ev.Channel == ch {
				got = append(got, want{ev.env.Seq, ev.env.Coalesced, string(ev.env.Data), ev.SocketID})
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("channel %s got %v, want %v", ch, got, w)
		}
	}
	if n := testutil.MetricSum(t, run.reg, "liveupdates_relay_coalesced_changes_total"); n != 3 {
		t.Errorf("coalesced_changes_total=%v, want 3", n)
	}
}

func TestRelayShrinksChangesOverPushersLimit(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{MaxPayloadBytes: 1024})
	compressible := `{"text":"` + strings.Repeat("all work and no play ", 200) + `"}`
	noise := make([]byte, 3000)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	incompressible := `{"noise":"` + base64.StdEncoding.EncodeToString(noise) + `"}`
	seqs, ids := rg.publish(
		change{eventID: "big", typ: wire.TypeBlocksUpdated, data: compressible},
		change{eventID: "big", typ: wire.TypeAvailabilityUpdated, data: incompressible},
		change{eventID: "big", typ: wire.TypeVoteUpdated, data: `{"small":true}`},
	)
	cfg := rg.config()
	cfg.MaxPayloadKB = 1
	rg.start(cfg, nil)
	rg.waitIDs(30*time.Second, ids)
	got := rg.delivered()
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3", len(got))
	}
	c := got[0].env
	if c.Enc != wire.EncGzipBase64 || c.Ref || c.Seq != seqs[0] {
		t.Fatalf("large compressible change arrived as enc=%q ref=%v seq=%d, want gzip+base64", c.Enc, c.Ref, c.Seq)
	}
	var b64 string
	if err := jsonUnmarshalString(c.Data, &b64); err != nil {
		t.Fatalf("compressed data is not a JSON string: %v", err)
	}
	if plain := gunzipBase64(t, b64); plain != compressible {
		t.Fatalf("decompressed data differs from the published data")
	}
	if r := got[1].env; !r.Ref || len(r.Data) != 0 || r.Enc != "" || r.Seq != seqs[1] {
		t.Fatalf("incompressible change arrived as ref=%v enc=%q data=%d bytes, want a reference without data", r.Ref, r.Enc, len(r.Data))
	}
	if p := got[2].env; p.Ref || p.Enc != "" || string(p.Data) != `{"small":true}` {
		t.Fatalf("small change arrived changed: %+v", p)
	}
}

func TestRelayHonoursRetryAfterOn429(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.FailNext(1, pushercompat.Fault{Status: 429, RetryAfter: time.Second})
	_, ids := rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{}`})
	rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, ids)
	ex := rg.pusher.Exchanges()
	if len(ex) != 2 || ex[0].Status != 429 || ex[1].Status != 200 {
		t.Fatalf("exchanges %+v, want one 429 then one 200", ex)
	}
	if gap := ex[1].At.Sub(ex[0].At); gap < time.Second {
		t.Fatalf("retried %v after a 429 with Retry-After: 1, want at least 1s", gap)
	}
}

func TestRelayHoldsChangesThroughAnOutageAndDeliversAllAfter(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	cfg := rg.config()
	cfg.AckWait = 1500 * time.Millisecond // short, so the outage soon outlasts it: held changes must be kept alive
	run := rg.start(cfg, nil)
	_, ids := rg.publish(change{eventID: "warm", typ: wire.TypeVoteUpdated, data: `{}`})
	rg.waitIDs(30*time.Second, ids)

	start := time.Now()
	rg.pusher.FailFor(time.Minute, pushercompat.Fault{Status: 503})
	var cs []change
	for i := range 60 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%7), typ: wire.TypeVoteUpdated, data: `{"i":` + strconv.Itoa(i) + `}`})
	}
	_, first := rg.publish(cs[:30]...)
	// Up to MaxInFlight lanes fail at once; then one probe per step.
	testutil.Eventually(t, 15*time.Second, func() bool { return rg.pusher.Requests() >= 1+cfg.MaxInFlight+3 }, "relay never probed")
	_, second := rg.publish(cs[30:]...) // published during the outage: must stay unfetched
	probes := func(n int) {
		want := rg.pusher.Requests() + n
		testutil.Eventually(t, 15*time.Second, func() bool { return rg.pusher.Requests() >= want }, "relay stopped probing")
	}
	probes(2) // a pull already in flight when the gate closed has ended by now
	before := rg.consumerInfo().NumPending
	probes(3)
	after := rg.consumerInfo().NumPending
	if before < 20 || after != before {
		t.Fatalf("consumer pending went %d -> %d during the outage, want the changes published during it left unfetched", before, after)
	}
	// Outlast the ack wait, then end the outage.
	testutil.Eventually(t, 20*time.Second, func() bool { return time.Since(start) > 3*cfg.AckWait/2 }, "clock stopped")
	rg.pusher.FailFor(0, pushercompat.Fault{})
	rg.waitIDs(20*time.Second, append(first, second...))
	rg.waitSettled(20 * time.Second)

	if info := rg.consumerInfo(); info.NumRedelivered != 0 {
		t.Errorf("%d changes were redelivered: the outage burnt delivery attempts", info.NumRedelivered)
	}
	var failed []pushercompat.Exchange
	for _, ex := range rg.pusher.Exchanges() {
		if ex.Status == 503 {
			failed = append(failed, ex)
		}
	}
	for i := cfg.MaxInFlight + 1; i < len(failed); i++ {
		if gap := failed[i].At.Sub(failed[i-1].At); gap < cfg.BackoffBase*9/10 {
			t.Fatalf("probes %d and %d were %v apart, want at least the backoff base %v (one probe per step)", i-1, i, gap, cfg.BackoffBase)
		}
	}
	// Nothing was accepted during the outage, so nothing is duplicated.
	if got, want := len(rg.delivered()), 61; got != want {
		t.Errorf("Pusher got %d events, want %d", got, want)
	}
	if n := testutil.MetricSum(t, run.reg, "liveupdates_relay_retries_total"); n < 2 {
		t.Errorf("retries_total=%v, want the outage's retries counted", n)
	}
}

func TestRelayHoldsEverythingWhilePusherRefusesCredentials(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	// Refused until the test has seen the relay hold everything: a fixed
	// window may end before a loaded machine sends its first request.
	rg.pusher.FailFor(time.Hour, pushercompat.Fault{Status: 401, Body: "Invalid signature"})
	_, ids := rg.publish(
		change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{}`},
		change{eventID: "e2", typ: wire.TypeVoteUpdated, data: `{}`},
	)
	run := rg.start(rg.config(), nil)
	testutil.EventuallyErr(t, 15*time.Second, func() error {
		err := run.relay.Ready(t.Context())
		if !errors.Is(err, ErrPusherRefused) {
			return fmt.Errorf("Ready()=%v, want ErrPusherRefused", err)
		}
		return nil
	})
	// Held, or left in the stream: the gate may close between two pulls.
	if info := rg.consumerInfo(); info.NumAckPending == 0 || uint64(info.NumAckPending)+info.NumPending != 2 {
		t.Fatalf("consumer has %d unacked and %d pending, want both changes kept, some held", info.NumAckPending, info.NumPending)
	}
	if n := rg.pusher.Accepted(); n != 0 {
		t.Fatalf("Accepted()=%d while refusing", n)
	}
	rg.pusher.FailFor(0, pushercompat.Fault{})
	rg.waitIDs(30*time.Second, ids)
	testutil.EventuallyErr(t, 15*time.Second, func() error { return run.relay.Ready(t.Context()) })
	rg.waitSettled(20 * time.Second)
	if n := len(rg.dlq()); n != 0 {
		t.Fatalf("%d dead letters after a 401, want none", n)
	}
}

func TestRelayDeadLettersExactlyTheEventPusherRejects(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.RejectWhen(func(ev pushercompat.Event) (int, string) {
		if strings.Contains(ev.Data, "poison") {
			return 400, "poisoned"
		}
		return 0, ""
	})
	var cs []change
	for i := range 10 {
		data := `{"i":` + strconv.Itoa(i) + `}`
		if i == 6 {
			data = `{"poison":true}`
		}
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i), typ: wire.TypeVoteUpdated, data: data})
	}
	seqs, ids := rg.publish(cs...)
	cfg := rg.config()
	cfg.MaxInFlight = 1
	run := rg.start(cfg, nil)
	rg.waitIDs(30*time.Second, append(append([]string{}, ids[:6]...), ids[7:]...))
	rg.waitSettled(20 * time.Second)
	for _, ev := range rg.delivered() {
		if ev.env.ID == ids[6] {
			t.Fatalf("the rejected change reached Pusher")
		}
	}
	dl := rg.dlq()
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d := dl[0]
	checks := map[string]string{
		wire.HeaderDLQStatus:   "400",
		wire.HeaderDLQAttempts: "1",
		wire.HeaderDLQSeq:      strconv.FormatUint(seqs[6], 10),
		wire.HeaderDLQID:       ids[6],
	}
	for h, want := range checks {
		if got := d.Header.Get(h); got != want {
			t.Errorf("dead letter header %s=%q, want %q", h, got, want)
		}
	}
	if r := d.Header.Get(wire.HeaderDLQReason); !strings.Contains(r, "poisoned") {
		t.Errorf("dead letter reason %q does not carry Pusher's answer", r)
	}
	if d.Subject != wire.DLQSubject("e6", wire.TypeVoteUpdated) || string(d.Data) != `{"poison":true}` {
		t.Errorf("dead letter %s %s, want the original body on live.dlq.e6.vote.updated", d.Subject, d.Data)
	}
	if n := testutil.MetricSum(t, run.reg, "liveupdates_relay_dead_lettered_total", "reason", reasonRejected); n != 1 {
		t.Errorf("dead_lettered_total{reason=rejected}=%v, want 1", n)
	}
}

func TestRelayDeadLettersInvalidChanges(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	bad := []*nats.Msg{
		{Subject: "live.events.e1.Not-A-Type", Data: []byte(`{}`)},
		{Subject: "live.events.e1.vote.updated", Data: []byte(`not json`)},
		{Subject: "live.events.e1.vote.updated", Data: []byte("\"\xff\xfe\"")},
	}
	for _, m := range bad {
		rg.publishRaw(m)
	}
	_, ids := rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"ok":true}`})
	rg.start(rg.config(), nil)
	rg.waitIDs(30*time.Second, ids)
	rg.waitSettled(20 * time.Second)
	if n := len(rg.delivered()); n != 1 {
		t.Fatalf("Pusher got %d events, want only the valid change", n)
	}
	dl := rg.dlq()
	if len(dl) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(bad))
	}
	for i, d := range dl {
		if d.Header.Get(wire.HeaderDLQReason) == "" || d.Header.Get(wire.HeaderDLQStatus) != "0" {
			t.Errorf("dead letter %d has reason %q status %q", i, d.Header.Get(wire.HeaderDLQReason), d.Header.Get(wire.HeaderDLQStatus))
		}
		if !bytes.Equal(d.Data, bad[i].Data) {
			t.Errorf("dead letter %d body %q, want %q", i, d.Data, bad[i].Data)
		}
	}
}

func TestRelayStoppedWhileHoldingReleasesEverythingForTheNext(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.SetOutage(true)
	var cs []change
	for i := range 40 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%5), typ: wire.TypeVoteUpdated, data: `{}`})
	}
	_, ids := rg.publish(cs...)
	cfg := rg.config()
	cfg.AckWait = time.Minute // only a release can hand them over within the test
	rg.handOverHeld(cfg, ids)
}

func TestRelayThatDiesWithoutAckingLosesNothing(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.pusher.SetOutage(true)
	var cs []change
	for i := range 20 {
		cs = append(cs, change{eventID: "e" + strconv.Itoa(i%3), typ: wire.TypeVoteUpdated, data: `{}`})
	}
	_, ids := rg.publish(cs...)
	cfg := rg.config()
	cfg.AckWait = time.Second
	nc := rg.nats.Conn(t)
	js := mustJS(t, nc)
	dead := rg.start(cfg, js)
	testutil.Eventually(t, 15*time.Second, func() bool { return rg.consumerInfo().NumAckPending == 20 }, "relay never held the changes")
	nc.Close() // the process dies: no ack, no nak
	dead.stop()
	rg.pusher.SetOutage(false)
	rg.start(cfg, nil)
	rg.waitIDs(30*time.Second, ids)
	rg.waitSettled(20 * time.Second)
}

func TestTwoReplicasDeliverEachChangeOnce(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	rg.start(rg.config(), nil)
	rg.start(rg.config(), nil)
	var ids []string
	for round := range 6 {
		var cs []change
		for i := range 50 {
			cs = append(cs, change{eventID: "e" + strconv.Itoa(i), typ: wire.TypeVoteUpdated, data: `{"r":` + strconv.Itoa(round) + `}`})
		}
		_, got := rg.publish(cs...)
		ids = append(ids, got...)
	}
	rg.waitIDs(20*time.Second, ids)
	rg.waitSettled(20 * time.Second)
	count := map[string]int{}
	for _, ev := range rg.delivered() {
		count[ev.env.ID]++
	}
	for id, n := range count {
		if n != 1 {
			t.Fatalf("change %s delivered %d times, want once", id, n)
		}
	}
}

func TestRelayDeadLettersChangesThatRanOutOfDeliveries(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	cfg := rg.config()
	cfg.AckWait = time.Second
	cfg.MaxDeliver = 2
	cfg = cfg.withDefaults()
	seqs, _ := rg.publish(change{eventID: "e1", typ: wire.TypeVoteUpdated, data: `{"stuck":true}`})
	cons, err := rg.js.CreateOrUpdateConsumer(t.Context(), wire.StreamName, cfg.consumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	// Two deliveries nobody acks, as if two relays crashed holding it.
	for range cfg.MaxDeliver {
		var got int
		testutil.Eventually(t, 15*time.Second, func() bool {
			b, err := cons.Fetch(1, jetstreamMaxWait(100*time.Millisecond))
			if err != nil {
				return false
			}
			for range b.Messages() {
				got++
			}
			return got == 1
		}, "no delivery")
	}
	rg.start(cfg, nil)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		if n := len(rg.dlq()); n != 1 {
			return fmt.Errorf("%d dead letters, want 1", n)
		}
		return nil
	})
	d := rg.dlq()[0]
	if d.Header.Get(wire.HeaderDLQSeq) != strconv.FormatUint(seqs[0], 10) || d.Header.Get(wire.HeaderDLQAttempts) != "2" {
		t.Fatalf("dead letter headers %v", d.Header)
	}
	if n := rg.pusher.Accepted(); n != 0 {
		t.Fatalf("a change past max deliver reached Pusher")
	}
}

func TestNewWithoutCredentialsIsErrPusherDisabled(t *testing.T) {
	t.Parallel()
	_, err := New(Config{}, Deps{})
	if !errors.Is(err, ErrPusherDisabled) {
		t.Fatalf("New()=%v, want ErrPusherDisabled", err)
	}
}

func TestReadyBeforeRunIsErrNotRunning(t *testing.T) {
	t.Parallel()
	rg := newRig(t, pushercompat.Options{})
	r, err := New(rg.config(), Deps{JS: rg.js})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Ready()=%v, want ErrNotRunning", err)
	}
}

func gunzipBase64(t *testing.T, s string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return string(b)
}
