package poller

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// On an eventId with at least HotLongPolls waiting clients, every long-poll
// answer (the changes, and a 304) says Live-Transport: sse, readable
// cross-origin; below the threshold, with the hint off, and on a plain poll
// it is absent. Parked and on the plain net/http path.
func TestLongPollAnswersOfAHotEventCarryTheSSEHint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		park      string
		threshold int
		want      string
	}{
		{"parked, at the threshold", ParkKeepAlive, 4, "sse"},
		{"plain path, at the threshold", ParkOff, 4, "sse"},
		{"parked, below the threshold", ParkKeepAlive, 5, ""},
		{"plain path, below the threshold", ParkOff, 5, ""},
		{"off", ParkKeepAlive, -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, js := runStream(t)
			h := startPoller(t, srv, Config{Park: tc.park, HotLongPolls: tc.threshold, Linger: -1, CORSOrigins: []string{"*"}})
			url := fmt.Sprintf("%s/v1/events/hot/updates?since=%d&wait=60", h.url, h.p.idx.appliedSeq())
			origin := []string{"Origin", "https://app.example"}
			// Four long-polls: the fourth arrives while three wait, which
			// makes four, the eventId hot at a threshold of 4.
			var rcs []<-chan asyncReply
			for i := range 4 {
				rcs = append(rcs, getAsync(t.Context(), url, origin...))
				testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == i+1 }, "%d long-polls wait", i+1)
			}
			seq := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			var etag string
			for i, rc := range rcs {
				r := (<-rc).done(t)
				if got := seqs(decodeUpdates(t, r).Events); len(got) != 1 || got[0] != seq {
					t.Fatalf("long-poll %d got seqs %v, want [%d]", i, got, seq)
				}
				if got := r.header.Get(headerTransport); got != tc.want {
					t.Fatalf("long-poll %d: %s=%q, want %q", i, headerTransport, got, tc.want)
				}
				if got := r.header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, headerTransport) {
					t.Fatalf("Access-Control-Expose-Headers=%q, want it to name %s", got, headerTransport)
				}
				etag = r.header.Get("ETag")
			}
			// A long-poll that ends without a change: 304, with the hint too.
			r := mustGet(t, fmt.Sprintf("%s/v1/events/hot/updates?since=%d&wait=1", h.url, seq), "If-None-Match", etag)
			if r.status != http.StatusNotModified {
				t.Fatalf("conditional long-poll: status=%d body=%s, want 304", r.status, r.body)
			}
			if got := r.header.Get(headerTransport); got != tc.want {
				t.Fatalf("304: %s=%q, want %q", headerTransport, got, tc.want)
			}
			// A plain poll is no long-poll: it is never told to move.
			r = h.get(fmt.Sprintf("/v1/events/hot/updates?since=%d", seq-1))
			if got := r.header.Get(headerTransport); got != "" {
				t.Fatalf("plain poll: %s=%q, want none", headerTransport, got)
			}
		})
	}
}

// Clients on the SSE stream count as waiting: an eventId whose crowd moved
// to the stream stays hot, so its remaining long-pollers are moved too.
func TestSSEStreamsKeepAnEventHot(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{HotLongPolls: 3, Linger: -1})
	for range 2 {
		openSSE(t, h.url+"/v1/events/hot/stream")
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == 2 }, "two streams wait")
	rc := getAsync(t.Context(), fmt.Sprintf("%s/v1/events/hot/updates?since=%d&wait=60", h.url, h.p.idx.appliedSeq()))
	testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == 3 }, "the long-poll waits")
	testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
	r := (<-rc).done(t)
	if got := r.header.Get(headerTransport); got != "sse" {
		t.Fatalf("%s=%q, want sse", headerTransport, got)
	}
}

// A long-poll from a client that can take the stream (transport=sse) on a
// hot eventId is answered at once, with the hint and nothing new, so the
// crowd moves while nothing happens rather than with the next change's
// answers; a 304 when its copy is current. Below the threshold, or without
// transport=sse, it waits for the change as before. Parked and plain path.
func TestALongPollThatCanStreamMovesAtOnceOnAHotEvent(t *testing.T) {
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		t.Run(park, func(t *testing.T) {
			t.Parallel()
			srv, js := runStream(t)
			h := startPoller(t, srv, Config{Park: park, HotLongPolls: 3, Linger: -1})
			ctx := t.Context()
			seq0 := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":0}`)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.idx.appliedSeq() >= seq0 }, "the poller applied seq %d", seq0)
			lp := func(sse bool) <-chan asyncReply {
				u := fmt.Sprintf("%s/v1/events/hot/updates?since=%d&wait=60", h.url, seq0)
				if sse {
					u += "&transport=sse"
				}
				return getAsync(ctx, u)
			}
			// One waiting client: not hot, so a client that can stream
			// waits like any other.
			first := lp(true)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == 1 }, "the first long-poll waits")
			for range 2 {
				openSSE(t, h.url+"/v1/events/hot/stream")
			}
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == 3 }, "two streams and the long-poll wait")
			// Now hot (3 waiting and one more): moved at once, long before
			// its 60 s wait.
			var r reply
			select {
			case a := <-lp(true):
				r = a.done(t)
			case <-time.After(30 * time.Second):
				t.Fatal("a long-poll with transport=sse on a hot eventId waited")
			}
			if r.status != http.StatusOK || r.header.Get(headerTransport) != "sse" {
				t.Fatalf("status=%d %s=%q body=%s, want 200 with the hint", r.status, headerTransport, r.header.Get(headerTransport), r.body)
			}
			u := decodeUpdates(t, r)
			if len(u.Events) != 0 || u.Cursor != strconv.FormatUint(seq0, 10) {
				t.Fatalf("moved at once: events %v cursor %s, want none at cursor %d", seqs(u.Events), u.Cursor, seq0)
			}
			// Its copy current: a 304, still with the hint.
			r = mustGet(t, fmt.Sprintf("%s/v1/events/hot/updates?since=%d&wait=60&transport=sse", h.url, seq0), "If-None-Match", r.header.Get("ETag"))
			if r.status != http.StatusNotModified || r.header.Get(headerTransport) != "sse" {
				t.Fatalf("conditional: status=%d %s=%q, want 304 with the hint", r.status, headerTransport, r.header.Get(headerTransport))
			}
			// Without transport=sse it waits for the change, which it gets
			// with the hint (as the first one does).
			plain := lp(false)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.waits.count("hot") == 4 }, "the plain long-poll waits")
			seq := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			for name, rc := range map[string]<-chan asyncReply{"first": first, "plain": plain} {
				r := (<-rc).done(t)
				if got := seqs(decodeUpdates(t, r).Events); len(got) != 1 || got[0] != seq || r.header.Get(headerTransport) != "sse" {
					t.Fatalf("%s long-poll: seqs %v %s=%q, want [%d] with the hint", name, got, headerTransport, r.header.Get(headerTransport), seq)
				}
			}
		})
	}
}
