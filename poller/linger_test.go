package poller

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/testutil"
)

// A long-poll woken by a change lingers, so the changes published right
// after it arrive in the same answer instead of one answer (and one
// re-poll) each. Parked and on the plain net/http path.
func TestWokenLongPollLingersAndFoldsTheNextChangesIntoOneAnswer(t *testing.T) {
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		t.Run(park, func(t *testing.T) {
			// Long enough for two more acknowledged publishes on a loaded
			// machine; without the linger the answer leaves after the first.
			_, js, rc := waitingLongPoll(t, Config{Park: park, Linger: 5 * time.Second})

			want := []uint64{
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":2}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":3}`),
			}
			u, body := rc.recvUpdates(60 * time.Second)
			if got := seqs(u.Events); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("one answer carried seqs %v, want all three changes %v (body %s)", got, want, body)
			}
			if u.Cursor != fmt.Sprint(want[2]) {
				t.Fatalf("cursor=%s, want %d", u.Cursor, want[2])
			}
		})
	}
}

// A long-poll lingering after its wake is answered by Drain at once, with
// its change, not after the linger.
func TestDrainAnswersALingeringLongPoll(t *testing.T) {
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		t.Run(park, func(t *testing.T) {
			h, js, rc := waitingLongPoll(t, Config{Park: park, Linger: 10 * time.Minute})
			seq := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			h.waitApplied(seq)
			if park == ParkKeepAlive {
				testutil.Eventually(t, 30*time.Second, func() bool {
					h.p.pk.mu.Lock()
					defer h.p.pk.mu.Unlock()
					return len(h.p.pk.lingering) == 1
				}, "the woken long-poll lingers")
			}
			h.p.Drain()
			u, _ := rc.recvUpdates(60 * time.Second)
			if got := seqs(u.Events); len(got) != 1 || got[0] != seq {
				t.Fatalf("drained answer carried seqs %v, want [%d]", got, seq)
			}
		})
	}
}

// A long-poll that arrives when a change younger than the linger is already
// there (a browser re-polling right after an answer, on a hot eventId)
// lingers too, until that change is the linger old, so each browser gets
// about one answer per linger instead of one per change.
func TestLongPollFindingAFreshChangeLingersUntilItIsTheLingerOld(t *testing.T) {
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		t.Run(park, func(t *testing.T) {
			srv, js := runStream(t)
			h := startPoller(t, srv, Config{Park: park, Linger: 5 * time.Second})
			cursor := h.p.idx.appliedSeq()
			first := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			h.waitApplied(first)
			rc := dialRaw(t, h.url)
			rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=60", cursor))
			want := []uint64{
				first,
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":2}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":3}`),
			}
			u, body := rc.recvUpdates(60 * time.Second)
			if got := seqs(u.Events); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("one answer carried seqs %v, want all three changes %v (body %s)", got, want, body)
			}
			// A plain poll (no wait) never lingers, even on a fresh change.
			fourth := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":4}`)
			h.waitApplied(fourth)
			start := time.Now()
			r := h.get(fmt.Sprintf("/v1/events/hot/updates?since=%d", want[2]))
			if got := seqs(decodeUpdates(t, r).Events); len(got) != 1 || got[0] != fourth {
				t.Fatalf("plain poll got seqs %v, want [%d]", got, fourth)
			}
			if el := time.Since(start); el >= 5*time.Second {
				t.Fatalf("plain poll took %s: it lingered", el)
			}
		})
	}
}

// waitingLongPoll starts a poller with cfg and, on a raw connection, a
// long-poll of eventId hot from the applied seq, and waits until it waits.
func waitingLongPoll(t *testing.T, cfg Config) (*harness, jetstream.JetStream, *rawConn) {
	t.Helper()
	srv, js := runStream(t)
	h := startPoller(t, srv, cfg)
	rc := dialRaw(t, h.url)
	rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=60", h.p.idx.appliedSeq()))
	testutil.Eventually(t, 30*time.Second, func() bool { return waiting(t, h) == 1 }, "the long-poll waits")
	return h, js, rc
}
