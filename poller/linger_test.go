package poller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// A long-poll woken by a change lingers, so the changes published right
// after it arrive in the same answer instead of one answer (and one
// re-poll) each. Parked and on the plain net/http path.
func TestWokenLongPollLingersAndFoldsTheNextChangesIntoOneAnswer(t *testing.T) {
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		t.Run(park, func(t *testing.T) {
			srv := testutil.RunJetStream(t)
			js := srv.JS(t)
			ensureStream(t, js)
			// Long enough for two more acknowledged publishes on a loaded
			// machine; without the linger the answer leaves after the first.
			h := startPoller(t, srv, Config{Park: park, Linger: 5 * time.Second})
			cursor := h.p.idx.appliedSeq()
			rc := dialRaw(t, h.url)
			rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=60", cursor))
			testutil.Eventually(t, 30*time.Second, func() bool { return waiting(t, h) == 1 }, "the long-poll waits")

			want := []uint64{
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":2}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":3}`),
			}
			res, body := rc.recv(60 * time.Second)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status=%d body=%s, want 200", res.StatusCode, body)
			}
			var u updates
			if err := json.Unmarshal(body, &u); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
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
			srv := testutil.RunJetStream(t)
			js := srv.JS(t)
			ensureStream(t, js)
			h := startPoller(t, srv, Config{Park: park, Linger: 10 * time.Minute})
			cursor := h.p.idx.appliedSeq()
			rc := dialRaw(t, h.url)
			rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=60", cursor))
			testutil.Eventually(t, 30*time.Second, func() bool { return waiting(t, h) == 1 }, "the long-poll waits")
			seq := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.idx.appliedSeq() >= seq }, "change %d applied", seq)
			if park == ParkKeepAlive {
				testutil.Eventually(t, 30*time.Second, func() bool {
					h.p.pk.mu.Lock()
					defer h.p.pk.mu.Unlock()
					return len(h.p.pk.lingering) == 1
				}, "the woken long-poll lingers")
			}
			h.p.Drain()
			res, body := rc.recv(60 * time.Second)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status=%d body=%s, want 200", res.StatusCode, body)
			}
			var u updates
			if err := json.Unmarshal(body, &u); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
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
			srv := testutil.RunJetStream(t)
			js := srv.JS(t)
			ensureStream(t, js)
			h := startPoller(t, srv, Config{Park: park, Linger: 5 * time.Second})
			cursor := h.p.idx.appliedSeq()
			first := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":1}`)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.idx.appliedSeq() >= first }, "change %d applied", first)
			rc := dialRaw(t, h.url)
			rc.send(fmt.Sprintf("/v1/events/hot/updates?since=%d&wait=60", cursor))
			want := []uint64{
				first,
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":2}`),
				testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":3}`),
			}
			res, body := rc.recv(60 * time.Second)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status=%d body=%s, want 200", res.StatusCode, body)
			}
			var u updates
			if err := json.Unmarshal(body, &u); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if got := seqs(u.Events); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("one answer carried seqs %v, want all three changes %v (body %s)", got, want, body)
			}
			// A plain poll (no wait) never lingers, even on a fresh change.
			fourth := testutil.PublishChange(t, js, "hot", "vote.updated", `{"n":4}`)
			testutil.Eventually(t, 30*time.Second, func() bool { return h.p.idx.appliedSeq() >= fourth }, "change %d applied", fourth)
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
