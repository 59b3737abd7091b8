package poller

import (
	"sync"
	"sync/atomic"
)

// waiters holds the reads waiting for an eventId's next change: channel
// waiters (a long-poll on the plain net/http path, an SSE stream) and
// parked connections (see park.go). The index knows nothing of them: it
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
	return &waiters{sets: make(map[string]*waitSet)}
}

// wake wakes the waiters of eventId id. The index calls it under its write
// lock, which orders it against waiters registering under the read lock.
func (w *waiters) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
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
	if ws := w.sets[id]; ws != nil {
		return ws.n + ws.np
	}
	return 0
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
