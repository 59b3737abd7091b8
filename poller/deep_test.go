package poller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// publishMany stores n changes on eventID (and, every tenth, one on other,
// so the subject filter has something to leave out) and returns eventID's
// seqs in order.
func publishMany(t testing.TB, js jetstream.JetStream, eventID, other string, n int) []uint64 {
	t.Helper()
	var futures []jetstream.PubAckFuture
	var mine []bool
	flush := func() []uint64 {
		var out []uint64
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(60 * time.Second):
			t.Fatal("async publishes not acknowledged within 60s")
		}
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if mine[i] {
					out = append(out, ack.Sequence)
				}
			case err := <-f.Err():
				t.Fatalf("publish: %v", err)
			}
		}
		futures, mine = futures[:0], mine[:0]
		return out
	}
	var seqs []uint64
	add := func(id string, i int) {
		m := nats.NewMsg(wire.Subject(id, "vote.updated"))
		m.Header.Set(wire.HeaderMsgID, wire.NewID(time.Now()))
		m.Header.Set(wire.HeaderAt, wire.FormatAt(time.Now()))
		m.Data = []byte(fmt.Sprintf(`{"i":%d}`, i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatalf("PublishMsgAsync: %v", err)
		}
		futures = append(futures, f)
		mine = append(mine, id == eventID)
	}
	for i := range n {
		add(eventID, i)
		if i%10 == 0 {
			add(other, i)
		}
		if len(futures) >= 500 {
			seqs = append(seqs, flush()...)
		}
	}
	return append(seqs, flush()...)
}

// followUpdates polls from since until the answer has no events, as a
// client does, and returns every change it received.
func followUpdates(t testing.TB, url string, since uint64) (got []wire.Envelope, pages int) {
	t.Helper()
	for {
		r := mustGet(t, fmt.Sprintf("%s?since=%d", url, since))
		if r.status != http.StatusOK {
			t.Fatalf("poll since %d=%d %s", since, r.status, r.body)
		}
		var u updates
		if err := json.Unmarshal(r.body, &u); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if u.Reset {
			t.Fatalf("poll since %d answered reset, want the changes from the stream", since)
		}
		pages++
		got = append(got, u.Events...)
		next, err := strconv.ParseUint(u.Cursor, 10, 64)
		if err != nil || next < since {
			t.Fatalf("cursor %q after %d", u.Cursor, since)
		}
		if len(u.Events) == 0 && next == since {
			return got, pages
		}
		if len(u.Events) == 0 && pages > 10_000 {
			t.Fatal("no progress")
		}
		since = next
	}
}

func TestDeepResumeDeliversEveryChangeInOrder(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	want := publishMany(t, js, "e1", "e2", 10_000)
	h := startPoller(t, srv, Config{RingSize: 64, Rate: -1})
	h.waitApplied(want[len(want)-1])

	got, pages := followUpdates(t, h.url+"/v1/events/e1/updates", 0)
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("polled %d changes (first %v), want the %d published in order", len(got), seqs(got)[:min(5, len(got))], len(want))
	}
	if pages < 10 {
		t.Fatalf("%d pages, want the changes paged (at most %d a page)", pages, deepPageChanges)
	}
	if n := testutil.MetricSum(t, h.reg, "liveupdates_poller_answers_total", "route", "updates", "outcome", "reset"); n != 0 {
		t.Fatalf("reset answers=%v, want 0", n)
	}

	// The same over SSE, from Last-Event-ID 0.
	res, events := openSSE(t, h.url+"/v1/events/e1/stream", "Last-Event-ID", "0")
	if res.StatusCode != 200 {
		t.Fatalf("stream=%d", res.StatusCode)
	}
	var sse []uint64
	for len(sse) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %d changes", len(sse))
			}
			if ev.event == "reset" {
				t.Fatalf("SSE reset after %d changes, want every change", len(sse))
			}
			s, _ := strconv.ParseUint(ev.id, 10, 64)
			sse = append(sse, s)
		case <-time.After(30 * time.Second):
			t.Fatalf("SSE stalled after %d changes", len(sse))
		}
	}
	if !slices.Equal(sse, want) {
		t.Fatalf("SSE gave %d changes not in the published order", len(sse))
	}
}

func TestDeepResumeResetsWhenTheStreamNoLongerHoldsTheChanges(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	want := publishMany(t, js, "e1", "e2", 100)
	h := startPoller(t, srv, Config{RingSize: 8, Rate: -1})
	h.waitApplied(want[len(want)-1])
	st, err := js.Stream(t.Context(), testStream().WithDefaults().Name)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the front of the stream, as its age or size limit would.
	cut := want[50]
	if err := st.Purge(t.Context(), jetstream.WithPurgeSequence(cut)); err != nil {
		t.Fatalf("Purge()=%v", err)
	}
	r := decodeUpdates(t, h.get(fmt.Sprintf("/v1/events/e1/updates?since=%d", want[10])))
	if !r.Reset {
		t.Fatalf("cursor %d before the stream's first seq %d: %+v, want reset", want[10], cut, r)
	}
	// A cursor the stream still covers pages on.
	got, _ := followUpdates(t, h.url+"/v1/events/e1/updates", cut-1)
	if !slices.Equal(seqs(got), want[50:]) {
		t.Fatalf("since %d got %v, want %v", cut-1, seqs(got), want[50:])
	}
	// SSE says reset too.
	_, events := openSSE(t, fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, want[10]))
	select {
	case ev := <-events:
		if ev.event != "reset" {
			t.Fatalf("first SSE event=%v, want reset", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no SSE reset")
	}
}

// BenchmarkDeepResume measures how fast a client 10,000 changes behind on
// one eventId catches up through the deep-resume pages:
//
//	go test -run '^$' -bench DeepResume -benchtime 20x ./poller/
func BenchmarkDeepResume(b *testing.B) {
	srv := testutil.RunJetStream(b)
	js := srv.JS(b)
	ensureStream(b, js)
	want := publishMany(b, js, "e1", "e2", 10_000)
	h := startPoller(b, srv, Config{RingSize: 64, Rate: -1})
	h.waitApplied(want[len(want)-1])
	url := h.url + "/v1/events/e1/updates"
	b.ResetTimer()
	start := time.Now()
	total := 0
	for b.Loop() {
		got, _ := followUpdates(b, url, 0)
		if len(got) != len(want) {
			b.Fatalf("got %d changes, want %d", len(got), len(want))
		}
		total += len(got)
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "changes/s")
}

// An eventId the replay never loaded (it changed only before the replay
// window) is answered from the stream too; its page ends before the floor,
// which the leader confirms holds nothing more of it.
func TestDeepResumeAnswersAnEventIDOutsideTheReplay(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	var want []uint64
	for i := range 5 {
		want = append(want, testutil.PublishChange(t, js, "old", "vote.updated", fmt.Sprintf(`{"i":%d}`, i)))
	}
	var last uint64
	for i := range 15 {
		last = testutil.PublishChange(t, js, "busy", "vote.updated", fmt.Sprintf(`{"i":%d}`, i))
	}
	h := startPoller(t, srv, Config{ReplayDepth: 10, Rate: -1})
	h.waitApplied(last)
	r := decodeUpdates(t, h.get("/v1/events/old/updates?since=0"))
	if r.Reset || !slices.Equal(seqs(r.Events), want) || r.Cursor != strconv.FormatUint(last, 10) {
		t.Fatalf("since 0 on an eventId outside the replay=%+v, want %v and cursor %d", r, want, last)
	}
	// The leader's answer that proved it.
	for _, tc := range []struct {
		from  uint64
		next  uint64
		found bool
	}{{1, want[0], true}, {want[2] + 1, want[3], true}, {want[4] + 1, 0, false}} {
		next, found, err := h.p.leaderNext(t.Context(), "old", tc.from)
		if err != nil || next != tc.next || found != tc.found {
			t.Fatalf("leaderNext(old, %d)=%d, %v, %v, want %d, %v", tc.from, next, found, err, tc.next, tc.found)
		}
	}
}
