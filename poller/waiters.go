package poller

import (
	"sync"
	"sync/atomic"
)

// waiters holds the reads waiting for an eventId's next change: channel
// waiters (a long-poll on the plain net/http path, an SSE stream on its
// goroutine), parked connections (see park.go) and parked SSE streams,
// which stay across changes (see ssepark.go). The index knows nothing of them: it
// calls wake for every eventId that changes or is evicted, under its write
// lock, and a read registers its waiter through readOpts.wait under its
// read lock, so no change can slip between a read and its wait. Lock
// order: the index's lock, then mu.
type waiters struct {
	mu   sync.Mutex
	sets map[string]*waitSet
	// onWake takes over parked connections whose eventId changed (or was
	// evicted); it is called under mu (and the index's lock) and must not
	// block.
	onWake func([]*parked)
	// parkClosed refuses new parked connections (Drain, Run's end).
	parkClosed bool
	// nParked counts parked connections, readable without the lock
	// (metrics).
	nParked atomic.Int64

	// sse holds the parked SSE streams by eventId (see ssepark.go); they
	// stay across changes, unlike the one-shot waiters above.
	sse map[string]*sseGroup
	// onSSE starts a round of a group that has none running; it is called
	// under mu (and the index's lock) and must not block.
	onSSE func(*sseGroup)
	// sseClosed refuses new parked streams (Drain, Run's end).
	sseClosed bool
}

// waitSet is the waiters of one eventId until its next change.
type waitSet struct {
	// ch is closed on the eventId's next change.
	ch chan struct{}
	n  int // channel waiters (handlers and streams)
	// parked is the list of hijacked long-poll connections waiting here,
	// linked through parked.prev/next.
	parked *parked
	np     int // len(parked), for count
}

func newWaiters() *waiters {
	return &waiters{sets: make(map[string]*waitSet), sse: make(map[string]*sseGroup)}
}

// wake wakes the waiters of eventId id. The index calls it under its write
// lock, which orders it against waiters registering under the read lock.
func (w *waiters) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g := w.sse[id]; g != nil {
		g.dirty = true
		if !g.running {
			g.running = true
			w.onSSE(g)
		}
	}
	ws := w.sets[id]
	if ws == nil {
		return
	}
	close(ws.ch)
	delete(w.sets, id)
	if ws.parked != nil {
		w.onWake(w.takeParkedLocked(ws, nil))
	}
}

// setLocked returns id's wait set, creating it. The caller holds mu.
func (w *waiters) setLocked(id string) *waitSet {
	ws := w.sets[id]
	if ws == nil {
		ws = &waitSet{ch: make(chan struct{})}
		w.sets[id] = ws
	}
	return ws
}

// add registers a channel waiter on id; the caller must release it. It is
// a readOpts.wait.
func (w *waiters) add(id string, _ uint64) *waitSet {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := w.setLocked(id)
	ws.n++
	return ws
}

// release releases a channel waiter registered by add; nil is none.
func (w *waiters) release(id string, ws *waitSet) {
	if ws == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ws.n--
	w.dropIfEmptyLocked(id, ws)
}

func (w *waiters) dropIfEmptyLocked(id string, ws *waitSet) {
	if ws.n == 0 && ws.parked == nil && w.sets[id] == ws {
		delete(w.sets, id)
	}
}

// parkOn returns the readOpts.wait that parks pc: only when pc has not
// expired, parking is open and pc's If-None-Match still names the newest
// seq; pc then belongs to the wait set.
func (w *waiters) parkOn(pc *parked) func(string, uint64) *waitSet {
	return func(id string, newest uint64) *waitSet {
		w.mu.Lock()
		defer w.mu.Unlock()
		if pc.expired || w.parkClosed || (pc.inm != "" && !etagMatch(pc.inm, newest)) {
			return nil
		}
		ws := w.setLocked(id)
		w.linkLocked(ws, pc)
		return ws
	}
}

// linkLocked adds pc to ws. The caller holds mu.
func (w *waiters) linkLocked(ws *waitSet, pc *parked) {
	pc.ws, pc.prev, pc.next = ws, nil, ws.parked
	if ws.parked != nil {
		ws.parked.prev = pc
	}
	ws.parked = pc
	ws.np++
	w.nParked.Add(1)
}

// unlinkLocked takes pc out of its wait set. The caller holds mu.
func (w *waiters) unlinkLocked(pc *parked) {
	ws := pc.ws
	if pc.prev != nil {
		pc.prev.next = pc.next
	} else {
		ws.parked = pc.next
	}
	if pc.next != nil {
		pc.next.prev = pc.prev
	}
	pc.ws, pc.prev, pc.next = nil, nil, nil
	ws.np--
	w.nParked.Add(-1)
	w.dropIfEmptyLocked(pc.id, ws)
}

// takeParkedLocked empties ws's parked list into dst.
func (w *waiters) takeParkedLocked(ws *waitSet, dst []*parked) []*parked {
	for pc := ws.parked; pc != nil; {
		next := pc.next
		pc.ws, pc.prev, pc.next = nil, nil, nil
		w.nParked.Add(-1)
		dst = append(dst, pc)
		pc = next
	}
	ws.parked, ws.np = nil, 0
	return dst
}

// count is how many reads wait for id's next change: long-polls and SSE
// streams (what makes an eventId hot, see Config.HotLongPolls).
func (w *waiters) count(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	if ws := w.sets[id]; ws != nil {
		n = ws.n + ws.np
	}
	// Parked SSE streams keep an event hot too: they no longer wait as
	// long-polls, and without them the hint would stop once most moved.
	if g := w.sse[id]; g != nil {
		n += len(g.streams)
	}
	return n
}

// expire marks pc as past its wait and takes it when it is parked. Marking
// under mu keeps a record being answered concurrently from parking again.
func (w *waiters) expire(pc *parked) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	pc.expired = true
	if pc.ws == nil {
		return false
	}
	w.unlinkLocked(pc)
	return true
}

// take takes pc when it is still parked.
func (w *waiters) take(pc *parked) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pc.ws == nil {
		return false
	}
	w.unlinkLocked(pc)
	return true
}

// closeParking refuses further parking and takes every parked record.
func (w *waiters) closeParking() []*parked {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.parkClosed = true
	var out []*parked
	for id, ws := range w.sets {
		if ws.parked != nil {
			out = w.takeParkedLocked(ws, out)
			if ws.n == 0 {
				delete(w.sets, id)
			}
		}
	}
	return out
}

// parkedSnapshot lists the parked records (for the reaper).
func (w *waiters) parkedSnapshot(dst []*parked) []*parked {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ws := range w.sets {
		for pc := ws.parked; pc != nil; pc = pc.next {
			dst = append(dst, pc)
		}
	}
	return dst
}

// sseJoined is the view's wake of a read that parked an SSE stream: not a
// channel anyone waits on, only "joined".
var sseJoined = &waitSet{}

// joinSSE returns the readOpts.wait that adds s to its eventId's group,
// unless parking is closed; s then belongs to the group.
func (w *waiters) joinSSE(s *sseParked) func(string, uint64) *waitSet {
	return func(id string, _ uint64) *waitSet {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.sseClosed {
			return nil
		}
		g := w.sse[id]
		if g == nil {
			// The read holds the index's lock: no change of id since s's
			// cursor, so it is the group's cursor too.
			g = &sseGroup{id: id, cursor: s.since}
			w.sse[id] = g
		}
		s.g, s.slot = g, len(g.streams)
		g.streams = append(g.streams, s)
		return sseJoined
	}
}

// leaveSSE takes s out of its group, if it is in one.
func (w *waiters) leaveSSE(s *sseParked) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := s.g
	if g == nil {
		return
	}
	last := len(g.streams) - 1
	g.streams[s.slot] = g.streams[last]
	g.streams[s.slot].slot = s.slot
	g.streams[last] = nil
	g.streams = g.streams[:last]
	s.g = nil
	w.dropGroupLocked(g)
}

// dropGroupLocked forgets g once it has no stream and no round running.
// The caller holds mu.
func (w *waiters) dropGroupLocked(g *sseGroup) {
	if len(g.streams) == 0 && !g.running && w.sse[g.id] == g {
		delete(w.sse, g.id)
	}
}

// closeSSE refuses further parked streams and takes every parked one.
func (w *waiters) closeSSE() []*sseParked {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sseClosed = true
	var out []*sseParked
	for _, g := range w.sse {
		for _, s := range g.streams {
			s.g = nil
			out = append(out, s)
		}
		g.streams = nil
		w.dropGroupLocked(g)
	}
	return out
}

// sseSnapshot lists the parked streams (for the sweep).
func (w *waiters) sseSnapshot(dst []*sseParked) []*sseParked {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.sse {
		dst = append(dst, g.streams...)
	}
	return dst
}
