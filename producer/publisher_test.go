package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPublishStoresTheChangeAsTheContractSays(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{Now: func() time.Time { return fixedNow }})
	data := json.RawMessage(" {\"votes\":\n [1, 2]}\r\n")
	res, err := p.Publish(t.Context(), Change{EventID: "e42", Type: wire.TypeVoteUpdated, Data: data, ID: "chg-1", SocketID: "123.456"})
	if err != nil {
		t.Fatalf("Publish()=%v", err)
	}
	if res.ID != "chg-1" || res.Seq != 1 || res.Duplicate {
		t.Fatalf("Publish()=%+v, want id chg-1 seq 1 not duplicate", res)
	}
	msgs := testutil.ReadAll(t, js, wire.StreamName)
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Subject != "live.events.e42.vote.updated" {
		t.Fatalf("subject=%q", m.Subject)
	}
	if string(m.Data) != `{"votes":[1,2]}` {
		t.Fatalf("body=%q, want the data compacted", m.Data)
	}
	if m.Header.Get(wire.HeaderBodyHash) != wire.BodyHash(wire.TypeVoteUpdated, []byte(`{"votes":[1,2]}`)) {
		t.Fatalf("header %s=%q, want the hash of type and data", wire.HeaderBodyHash, m.Header.Get(wire.HeaderBodyHash))
	}
	for h, want := range map[string]string{wire.HeaderMsgID: "e42:chg-1", wire.HeaderID: "chg-1", wire.HeaderAt: "2026-11-29T10:00:00.123Z", wire.HeaderSocketID: "123.456"} {
		if got := m.Header.Get(h); got != want {
			t.Fatalf("header %s=%q, want %q", h, got, want)
		}
	}
	envs, sockets := stored(t, js)
	if envs[0].ID != "chg-1" || envs[0].Seq != res.Seq || !envs[0].At.Equal(fixedNow) || sockets[0] != "123.456" {
		t.Fatalf("decoded %+v socket %q", envs[0], sockets[0])
	}
}

func TestPublishGeneratesAnIDWhenNoneIsGiven(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	res, err := p.Publish(t.Context(), Change{EventID: "e1", Type: wire.TypePhaseChanged, Data: json.RawMessage(`null`)})
	if err != nil {
		t.Fatalf("Publish()=%v", err)
	}
	if err := wire.ValidateID(res.ID); err != nil || len(res.ID) != 26 {
		t.Fatalf("generated id %q is not a ULID: %v", res.ID, err)
	}
	envs, sockets := stored(t, js)
	if envs[0].ID != res.ID || sockets[0] != "" {
		t.Fatalf("stored id %q socket %q, want %q and none", envs[0].ID, sockets[0], res.ID)
	}
}

func TestPublishingTheSameIDTwiceStoresOneMessageAndAnswersTheSameSeq(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":1}`), ID: "same"}
	first := mustPublish(t, p, c)
	if _, err := p.Publish(t.Context(), Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{}`), ID: "other"}); err != nil {
		t.Fatalf("other Publish()=%v", err)
	}
	again := mustPublish(t, p, c)
	if again.Seq != first.Seq || !again.Duplicate || first.Duplicate {
		t.Fatalf("second Publish()=%+v, first %+v: want the first seq, flagged duplicate", again, first)
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 2 {
		t.Fatalf("stored %d messages, want 2", n)
	}
}

func TestPublishRejectsBadInputWithTheRightKindAndCode(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{MaxDataBytes: 16})
	ok := json.RawMessage(`{}`)
	tests := []struct {
		name     string
		c        Change
		kind     error
		sentinel error
		code     string
	}{
		{"an empty eventId", Change{Type: "vote.updated", Data: ok}, ErrInvalid, wire.ErrInvalidEventID, wire.CodeInvalidEventID},
		{"an eventId with a dot", Change{EventID: "a.b", Type: "vote.updated", Data: ok}, ErrInvalid, wire.ErrInvalidEventID, wire.CodeInvalidEventID},
		{"an upper-case type", Change{EventID: "e1", Type: "Vote", Data: ok}, ErrInvalid, wire.ErrInvalidType, wire.CodeInvalidType},
		{"an id with a space", Change{EventID: "e1", Type: "vote.updated", Data: ok, ID: "a b"}, ErrInvalid, wire.ErrInvalidID, wire.CodeInvalidID},
		{"a socket id without a dot", Change{EventID: "e1", Type: "vote.updated", Data: ok, SocketID: "123"}, ErrInvalid, ErrInvalidSocketID, wire.CodeInvalidSocketID},
		{"no data", Change{EventID: "e1", Type: "vote.updated"}, ErrInvalid, ErrInvalidData, wire.CodeInvalidJSON},
		{"data that is not JSON", Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`{"a":`)}, ErrInvalid, ErrInvalidData, wire.CodeInvalidJSON},
		{"data with invalid UTF-8", Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage("\"\xff\"")}, ErrInvalid, ErrInvalidData, wire.CodeInvalidJSON},
		{"data over the limit", Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`"` + strings.Repeat("x", 20) + `"`)}, ErrTooLarge, ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := p.Publish(t.Context(), tt.c)
			if !errors.Is(err, tt.kind) || !errors.Is(err, tt.sentinel) {
				t.Fatalf("Publish()=%v, want %v and %v", err, tt.kind, tt.sentinel)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Fatalf("Publish()=%v is also unavailable", err)
			}
			var ie *wire.InputError
			if tt.code != "" && (!errors.As(err, &ie) || ie.Code != tt.code) {
				t.Fatalf("Publish()=%v, want an *wire.InputError with code %s", err, tt.code)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 0 {
			t.Errorf("bad input stored %d messages", n)
		}
	})
}

func TestPublishWithoutAStreamIsUnavailableWithinTheDeadline(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	p := NewPublisher(srv.JS(t), Options{})
	// Long enough for one attempt to be answered on a loaded machine.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	res, err := p.Publish(ctx, Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`1`), ID: "x1"})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("Publish()=%v, want ErrUnavailable wrapping no stream response", err)
	}
	if res.ID != "x1" {
		t.Fatalf("Publish() id=%q, want x1 so the caller can retry", res.ID)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Publish() returned after %v, far past its 2s deadline", d)
	}
}

func TestPublishRetriesUntilTheStreamAnswers(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	p, _ := meteredPublisher(t, js)
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, err := p.Publish(ctx, Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`1`)})
		done <- outcome{res, err}
	}()
	// No stream answers, as during a leader election; then one does.
	testutil.Eventually(t, 10*time.Second, func() bool {
		return promtest.ToFloat64(p.opts.Metrics.retries) >= 2
	}, "publish did not retry")
	ensureStream(t, js)
	got := <-done
	if got.err != nil || got.res.Seq != 1 {
		t.Fatalf("Publish()=%+v, %v; want seq 1 once the stream exists", got.res, got.err)
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
}

func TestPublishDuringAnOutageIsUnavailableAndRecovers(t *testing.T) {
	t.Parallel()
	srv, js := newStream(t)
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`1`)}
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := p.Publish(ctx, c); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish() during outage=%v, want ErrUnavailable", err)
	}
	res := p.PublishBatch(ctx, []Change{c, c})
	for i, r := range res {
		if !errors.Is(r.Err, ErrUnavailable) {
			t.Fatalf("PublishBatch()[%d] during outage=%v, want ErrUnavailable", i, r.Err)
		}
	}
	srv.Start()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel2()
	if _, err := p.Publish(ctx2, c); err != nil {
		t.Fatalf("Publish() after restart=%v", err)
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
}

func TestPublishIntoAForeignStreamIsReported(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"live.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`1`)}
	if _, err := p.Publish(t.Context(), c); !errors.Is(err, ErrWrongStream) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish()=%v, want ErrWrongStream", err)
	}
	if r := p.PublishBatch(t.Context(), []Change{c}); !errors.Is(r[0].Err, ErrWrongStream) {
		t.Fatalf("PublishBatch()=%v, want ErrWrongStream", r[0].Err)
	}
}

func TestPublishBatchAnswersEveryChangeInOrder(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{MaxInFlight: 4})
	var cs []Change
	for i := range 40 {
		cs = append(cs, Change{EventID: fmt.Sprintf("e%d", i%3), Type: wire.TypeVoteUpdated, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
	}
	cs[5].EventID = "bad id"
	cs[6].Data = json.RawMessage(`nope`)
	cs[7].ID = "dup-1"
	cs[8].ID = "dup-1"
	cs[8].EventID, cs[8].Data = cs[7].EventID, cs[7].Data
	res := p.PublishBatch(t.Context(), cs)
	if len(res) != len(cs) {
		t.Fatalf("PublishBatch() gave %d results for %d changes", len(res), len(cs))
	}
	if !errors.Is(res[5].Err, wire.ErrInvalidEventID) || !errors.Is(res[6].Err, ErrInvalidData) {
		t.Fatalf("invalid changes got %v and %v", res[5].Err, res[6].Err)
	}
	if res[7].Err != nil || res[8].Err != nil || res[8].Seq != res[7].Seq || !res[8].Duplicate {
		t.Fatalf("duplicate ids in one batch: %+v %+v", res[7], res[8])
	}
	envs, _ := stored(t, js)
	if len(envs) != len(cs)-3 {
		t.Fatalf("stored %d changes, want %d", len(envs), len(cs)-3)
	}
	bySeq := map[uint64]wire.Envelope{}
	for _, e := range envs {
		bySeq[e.Seq] = e
	}
	for i, r := range res {
		if i == 5 || i == 6 || i == 8 {
			continue
		}
		if r.Err != nil {
			t.Fatalf("change %d: %v", i, r.Err)
		}
		e, ok := bySeq[r.Seq]
		if !ok || e.ID != r.ID || string(e.Data) != string(cs[i].Data) || e.EventID != cs[i].EventID {
			t.Fatalf("change %d: result %+v, stored %+v", i, r, e)
		}
	}
}

func TestMintPollTokenSignsATokenThePollerAccepts(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123")
	p := NewPublisher(testutil.RunJetStream(t).JS(t), Options{PollSecret: secret, Now: func() time.Time { return fixedNow }})
	tok, exp, err := p.MintPollToken("e42", 0)
	if err != nil {
		t.Fatalf("MintPollToken()=%v", err)
	}
	if want := time.Unix(fixedNow.Add(time.Hour).Unix(), 0).UTC(); !exp.Equal(want) {
		t.Fatalf("expiresAt=%v, want %v", exp, want)
	}
	if err := polltoken.Verify(secret, tok, "e42", fixedNow.Add(59*time.Minute)); err != nil {
		t.Fatalf("Verify()=%v", err)
	}
	for _, tc := range []struct {
		name string
		id   string
		ttl  time.Duration
		want error
	}{
		{"a ttl over 24h", "e42", 25 * time.Hour, ErrInvalidTTL},
		{"a negative ttl", "e42", -time.Second, ErrInvalidTTL},
		{"a bad eventId", "e/42", time.Hour, wire.ErrInvalidEventID},
	} {
		if _, _, err := p.MintPollToken(tc.id, tc.ttl); !errors.Is(err, ErrInvalid) || !errors.Is(err, tc.want) {
			t.Fatalf("%s: MintPollToken()=%v, want %v", tc.name, err, tc.want)
		}
	}
	noSecret := NewPublisher(p.js, Options{})
	if _, _, err := noSecret.MintPollToken("e42", 0); !errors.Is(err, ErrNoPollSecret) {
		t.Fatalf("MintPollToken() without secret=%v, want ErrNoPollSecret", err)
	}
}

func TestMetricsCountByTypeAndResultAndPassLint(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p, reg := meteredPublisher(t, js)
	c := Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`1`), ID: "m1"}
	for range 2 {
		if _, err := p.Publish(t.Context(), c); err != nil {
			t.Fatalf("Publish()=%v", err)
		}
	}
	p.PublishBatch(t.Context(), []Change{{EventID: "e1", Type: "custom.thing", Data: json.RawMessage(`1`)}, {EventID: "e1", Type: "BAD"}})
	for _, tc := range []struct {
		typ, result string
		want        float64
	}{
		{wire.TypeVoteUpdated, resultStored, 1},
		{wire.TypeVoteUpdated, resultDuplicate, 1},
		{typeOther, resultStored, 1},
		{typeOther, resultInvalid, 1},
	} {
		if got := promtest.ToFloat64(p.opts.Metrics.changes.WithLabelValues(tc.typ, tc.result)); got != tc.want {
			t.Errorf("changes_total{type=%s,result=%s}=%v, want %v", tc.typ, tc.result, got, tc.want)
		}
	}
	testutil.CollectAndLint(t, reg, "liveupdates_producer_")
}

// Registering the metrics twice on one registry is an error to return, not
// a panic that takes a process down over its wiring.
func TestNewMetricsTwiceOnOneRegistryIsAnError(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatalf("NewMetrics()=%v", err)
	}
	if m, err := NewMetrics(reg); err == nil || m != nil {
		t.Fatalf("NewMetrics() again on the same registry=(%v, %v), want an error", m, err)
	}
	if _, err := NewMetrics(nil); err != nil {
		t.Fatalf("NewMetrics(nil)=%v, want nil (registers nothing)", err)
	}
}

func TestPublishRidesOutAShortOutageWithinItsDeadline(t *testing.T) {
	t.Parallel()
	srv, js := newStream(t)
	p, _ := meteredPublisher(t, js)
	srv.Stop()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := p.Publish(ctx, Change{EventID: "e1", Type: "vote.updated", Data: json.RawMessage(`1`), ID: "ride-out"})
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return promtest.ToFloat64(p.opts.Metrics.retries) >= 1
	}, "publish did not retry during the outage")
	srv.Start()
	if err := <-done; err != nil {
		t.Fatalf("Publish() across a restart=%v", err)
	}
	envs, _ := stored(t, js)
	if len(envs) != 1 || envs[0].ID != "ride-out" {
		t.Fatalf("stored %+v, want exactly the one change", envs)
	}
}

func TestReadyFollowsTheConnectionAndTheStream(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	p := NewPublisher(js, Options{})
	if err := p.Ready(t.Context()); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Ready() without the stream=%v, want ErrStreamNotFound", err)
	}
	ensureStream(t, js)
	if err := p.Ready(t.Context()); err != nil {
		t.Fatalf("Ready()=%v", err)
	}
	srv.Stop()
	if err := p.Ready(t.Context()); err == nil {
		t.Fatalf("Ready() with the server down=nil")
	}
	srv.Start()
	testutil.EventuallyErr(t, 10*time.Second, func() error { return p.Ready(t.Context()) })
}

// Issue 8 item 7: the same id on two eventIds names two changes.
func TestPublishScopesIDsPerEventID(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	a, err := p.Publish(t.Context(), Change{EventID: "ea", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`1`), ID: "order-42"})
	if err != nil {
		t.Fatalf("Publish(ea)=%v", err)
	}
	b, err := p.Publish(t.Context(), Change{EventID: "eb", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`1`), ID: "order-42"})
	if err != nil {
		t.Fatalf("Publish(eb)=%v", err)
	}
	if b.Duplicate || b.Seq == a.Seq {
		t.Fatalf("Publish(eb)=%+v after Publish(ea)=%+v: want a second change, not a duplicate", b, a)
	}
	envs, _ := stored(t, js)
	if len(envs) != 2 || envs[0].ID != "order-42" || envs[1].ID != "order-42" || envs[1].EventID != "eb" {
		t.Fatalf("stored %+v, want order-42 on ea and on eb", envs)
	}
}

// Issue 8 item 7: an id reused with other content is refused, not answered
// as a duplicate; a retry of the same content still is a duplicate.
func TestPublishTheSameIDWithOtherContentIsAConflict(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":1}`), ID: "same"}
	first := mustPublish(t, p, c)
	for _, other := range []Change{
		{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":2}`), ID: "same"},
		{EventID: "e1", Type: wire.TypePhaseChanged, Data: json.RawMessage(`{"n":1}`), ID: "same"},
	} {
		_, err := p.Publish(t.Context(), other)
		var ie *wire.InputError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &ie) || ie.Code != wire.CodeIdempotencyConflict {
			t.Fatalf("Publish(%s %s)=%v, want ErrConflict with code %s", other.Type, other.Data, err, wire.CodeIdempotencyConflict)
		}
		r := p.PublishBatch(t.Context(), []Change{other})
		if !errors.Is(r[0].Err, ErrConflict) {
			t.Fatalf("PublishBatch(%s %s)=%v, want ErrConflict", other.Type, other.Data, r[0].Err)
		}
	}
	// The same content, with other whitespace, is a retry.
	again, err := p.Publish(t.Context(), Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{ "n": 1 }`), ID: "same"})
	if err != nil || !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("retry Publish()=%+v, %v, want a duplicate of seq %d", again, err, first.Seq)
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
}

// A change stored without a body hash (by hand, or before hashes) is
// compared by subject and data.
func TestPublishComparesAChangeStoredWithoutAHashByItsData(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	m := nats.NewMsg(wire.Subject("e1", wire.TypeVoteUpdated))
	m.Header.Set(wire.HeaderMsgID, wire.DedupID("", "e1", "legacy"))
	m.Data = []byte(`{"n":1}`)
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatalf("raw publish: %v", err)
	}
	p := NewPublisher(js, Options{})
	if _, err := p.Publish(t.Context(), Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":2}`), ID: "legacy"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Publish(other data)=%v, want ErrConflict", err)
	}
	if r, err := p.Publish(t.Context(), Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":1}`), ID: "legacy"}); err != nil || !r.Duplicate {
		t.Fatalf("Publish(same data)=%+v, %v, want a duplicate", r, err)
	}
}

// A duplicate ack whose stored copy cannot be read back (here: deleted from
// the stream after the publish, while its id is still in the duplicate
// window) is not a duplicate: nothing says the change is the stored one,
// so the answer is ErrUnavailable (a retry with the same id), never
// success. Before, a failed read answered a duplicate, which also hid an
// idempotency conflict whenever a lagging replica answered "not found".
func TestPublishADuplicateWhoseStoredCopyCannotBeReadIsUnavailable(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":1}`), ID: "gone"}
	first := mustPublish(t, p, c)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := st.DeleteMsg(ctx, first.Seq); err != nil {
		t.Fatalf("DeleteMsg(%d)=%v", first.Seq, err)
	}
	other := c
	other.Data = json.RawMessage(`{"n":2}`)
	for _, ch := range []Change{c, other} {
		r, err := p.Publish(t.Context(), ch)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrConflict) {
			t.Fatalf("Publish(%s) after the stored copy was deleted=%+v, %v, want ErrUnavailable", ch.Data, r, err)
		}
		if r.Seq != 0 || r.Duplicate {
			t.Fatalf("Publish(%s)=%+v, want no seq and no duplicate with the error", ch.Data, r)
		}
		br := p.PublishBatch(t.Context(), []Change{ch})
		if !errors.Is(br[0].Err, ErrUnavailable) || br[0].Seq != 0 || br[0].Duplicate {
			t.Fatalf("PublishBatch(%s)=%+v, want ErrUnavailable", ch.Data, br[0])
		}
	}
	if n := len(testutil.ReadAll(t, js, wire.StreamName)); n != 0 {
		t.Fatalf("stored %d messages, want 0", n)
	}
}

// The stream allows direct gets, which any replica may answer, a lagging
// one with "not found". The read-back of a duplicate asks the stream leader
// (STREAM.MSG.GET) and never sends a direct get; the conflict is still seen.
func TestPublishReadsADuplicateBackFromTheLeaderNotByDirectGet(t *testing.T) {
	t.Parallel()
	srv, js := newStream(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if !st.CachedInfo().Config.AllowDirect {
		t.Fatalf("the stream does not allow direct gets: this test would prove nothing")
	}
	// A plain subscriber sees every request sent on these subjects.
	watch := srv.Conn(t)
	direct, err := watch.SubscribeSync("$JS.API.DIRECT.GET.>")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	leader, err := watch.SubscribeSync("$JS.API.STREAM.MSG.GET.>")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	p := NewPublisher(js, Options{})
	c := Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`{"n":1}`), ID: "k"}
	if _, err := p.Publish(t.Context(), c); err != nil {
		t.Fatalf("Publish()=%v", err)
	}
	c.Data = json.RawMessage(`{"n":2}`)
	if _, err := p.Publish(t.Context(), c); !errors.Is(err, ErrConflict) {
		t.Fatalf("Publish(other data)=%v, want ErrConflict", err)
	}
	// The server routed the requests before it answered them; a flush
	// after that delivers whatever it routed to watch.
	if err := watch.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if n, _, _ := direct.Pending(); n != 0 {
		m, _ := direct.NextMsg(time.Second)
		t.Fatalf("%d direct get requests (first on %s), want the read-back to ask the leader", n, m.Subject)
	}
	// At least one: on a loaded machine an attempt that timed out after
	// the store is retried into a duplicate, and a slow read is retried.
	if n, _, _ := leader.Pending(); n < 1 {
		t.Fatalf("%d STREAM.MSG.GET requests, want the read-back to ask the leader", n)
	}
}

// A connection can stay up to a server that stores nothing: a NATS node cut
// off from its peers (its stream leader cannot commit; after it steps down
// nothing on its side answers), which the client never leaves by itself.
// The publisher moves to the next server of its pool and stores the change
// there, within the call. Two unclustered servers stand for the two sides:
// "stuck" has no stream (no responders) or takes every message without an
// ack (a leader that cannot commit); "healthy" has the stream.
func TestPublishLeavesAServerThatCannotStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		silent bool
	}{
		{"no stream answers", false},
		{"messages are taken but never acknowledged", true},
	} {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%v", tc.name, batch), func(t *testing.T) {
				t.Parallel()
				stuck := testutil.RunJetStream(t)
				if tc.silent {
					if _, err := stuck.Conn(t).Subscribe(wire.SubjectPrefix+">", func(*nats.Msg) {}); err != nil {
						t.Fatal(err)
					}
				}
				healthy, hjs := newStream(t)
				p := NewPublisher(twoServerJS(t, stuck, healthy), Options{AttemptTimeout: time.Second})
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				cs := []Change{{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`1`), ID: "a"}}
				if batch {
					cs = append(cs, Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`2`), ID: "b"})
					for i, r := range p.PublishBatch(ctx, cs) {
						if r.Err != nil {
							t.Fatalf("PublishBatch()[%d]=%v, want stored on the healthy server", i, r.Err)
						}
					}
				} else if _, err := p.Publish(ctx, cs[0]); err != nil {
					t.Fatalf("Publish()=%v, want stored on the healthy server", err)
				}
				if got := len(testutil.ReadAll(t, hjs, wire.StreamName)); got != len(cs) {
					t.Fatalf("the healthy server stored %d changes, want %d", got, len(cs))
				}
			})
		}
	}
}

// When the connection goes away after attempts failed for a reason (no
// stream), the error still carries that reason, not only "not connected":
// the publisher's own move (failed) must not hide why nothing was stored.
func TestPublishKeepsTheReasonAcrossADisconnect(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	p := NewPublisher(srv.JS(t), Options{Metrics: newMetrics(t, prometheus.NewRegistry())})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := p.Publish(ctx, Change{EventID: "e1", Type: wire.TypeVoteUpdated, Data: json.RawMessage(`1`), ID: "x1"})
		done <- err
	}()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return promtest.ToFloat64(p.opts.Metrics.retries) >= 2
	}, "publish did not retry")
	srv.Stop()
	err := <-done
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("Publish()=%v, want ErrUnavailable wrapping no stream response", err)
	}
}

// twoServerJS connects to first, then (when it moves) second, in that order.
func twoServerJS(t *testing.T, first, second *testutil.JetStream) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(first.URL()+","+second.URL(), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	if got := nc.ConnectedUrl(); got != first.URL() {
		t.Fatalf("connected to %s, want %s first", got, first.URL())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// A clustered leader answers a retry whose first copy it is still storing
// with 409 "duplicate message id is in process" (seen in the cluster
// suite's leader partition: an attempt timed out while the new leader
// committed, and the retry got a 503 at once). Only a cluster produces it,
// so the suite is the end-to-end test; this pins the classification.
func TestIsTransientRetriesAMessageIDInProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"}, true},
		{fmt.Errorf("publish: %w", &jetstream.APIError{Code: 409, ErrorCode: 10158}), true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "jetstream system temporarily unavailable"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence"}, false},
	} {
		if got := isTransient(tc.err); got != tc.want {
			t.Errorf("isTransient(%v)=%v, want %v", tc.err, got, tc.want)
		}
	}
}
