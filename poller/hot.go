package poller

import (
	"sync"
	"time"
)

// Hot eventIds. When thousands of long-polls wait on one eventId, every
// change costs each of them an answer and a new request, and serving those
// re-polls starves the rest of the process (publish acks in dev). A stream
// costs one write per change instead. So the long-poll answers of a hot
// eventId carry "Live-Transport: sse", and a client that understands it
// moves to GET /v1/events/{eventId}/stream from the same cursor. The
// answers are otherwise what they were: an old client ignores the header.

// headerTransport names the transport the poller asks a long-poller to
// move to; its one value is "sse".
const headerTransport = "Live-Transport"

// hotHold is how long an eventId stays hot after it was last seen with
// Config.HotLongPolls waiting clients. A wake empties the wait set at once
// and the re-polls fill it again over the next moments, so the count at any
// one instant is no measure: an eventId seen hot once stays hot for a while,
// and one whose crowd left stops sending clients to SSE soon after.
const hotHold = 10 * time.Second

// sseHint is the header's value, shared by every answer (never written to).
var sseHint = []string{"sse"}

// hotEvents remembers which eventIds were lately seen hot.
type hotEvents struct {
	threshold int // <= 0: off

	mu sync.RWMutex
	// until holds, per eventId, when it stops being hot (UnixNano).
	until map[string]int64
}

func newHotEvents(threshold int) *hotEvents {
	return &hotEvents{threshold: threshold, until: make(map[string]int64)}
}

func (h *hotEvents) on() bool { return h.threshold > 0 }

// observe records that waiting clients wait on id at now, and reports
// whether id is hot then.
func (h *hotEvents) observe(id string, waiting int, now time.Time) bool {
	if !h.on() {
		return false
	}
	if waiting < h.threshold {
		return h.is(id, now)
	}
	t := now.UnixNano()
	// Every long-poll of a hot eventId observes it, thousands a second: a
	// hold with more than half left is not renewed, so they share the read
	// lock and only one in a while takes the write lock.
	h.mu.RLock()
	u, ok := h.until[id]
	h.mu.RUnlock()
	if ok && u-t > int64(hotHold/2) {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.until) >= 1024 {
		// Few eventIds are ever hot; those that cooled go, so the map
		// stays small whatever the traffic.
		for k, u := range h.until {
			if u <= t {
				delete(h.until, k)
			}
		}
	}
	h.until[id] = t + int64(hotHold)
	return true
}

// is reports whether id is hot at now.
func (h *hotEvents) is(id string, now time.Time) bool {
	if !h.on() {
		return false
	}
	h.mu.RLock()
	u, ok := h.until[id]
	h.mu.RUnlock()
	return ok && now.UnixNano() < u
}
