package poller

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

// The index is what the poller answers from: per eventId, the newest seq and
// a bounded ring of recent envelopes, each encoded once.
//
// Cursor semantics. The cursor is the global stream seq. A client holding
// cursor C for eventId E has seen every change of E with seq <= C. The index
// keeps, per eventId, a floor: the highest seq of a change of E that it no
// longer holds (dropped from the ring by size or age, or never loaded
// because it predates the replay). Every change of E above the floor is in
// E's ring. So for since S:
//
//   - S >= floor: the answer is exactly the ring's changes above S.
//   - S < floor: a change the client has not seen may be gone: reset.
//
// An eventId that is not held (never seen, or evicted) gets its floor from a
// tombstone (its newest seq when it was evicted) or, when the tombstone was
// dropped too, from the global low-water mark gfloor: the highest seq any
// dropped tombstone or the replay start vouches for. An absent eventId with
// S >= its floor has had no change after S, so "nothing new" is true.
//
// The cursor handed out is the applied seq (not E's newest): everything up
// to it has been applied, so it is meaningful even for an eventId that never
// changes, and it is the same on every replica that has applied as much.
type index struct {
	ringSize  int
	ringAge   time.Duration
	maxEvents int
	maxBytes  int64
	maxTombs  int

	mu      sync.RWMutex
	entries map[string]*entry
	// LRU by last change: head is the most recent.
	head, tail *entry
	applied    uint64
	gfloor     uint64
	tombs      map[string]uint64
	tombQ      []tomb // eviction order, may hold stale records
	// advanced is closed (and replaced) whenever applied moves, for requests
	// whose cursor is ahead of this replica.
	advanced chan struct{}
	// changed is called with every eventId that changes or is evicted,
	// under mu held for writing (waiters.wake); nil is nobody.
	changed func(id string)

	// Sizes, readable without the lock (metrics).
	nEntries   atomic.Int64
	nEnvelopes atomic.Int64
	nBytes     atomic.Int64
	appliedA   atomic.Uint64
	evictions  [numEvictReasons]atomic.Int64
}

type evictReason int

const (
	evictRingSize evictReason = iota
	evictAge
	evictEventCap
	evictBytes
	numEvictReasons
)

var evictReasonNames = [numEvictReasons]string{"ring_size", "age", "event_cap", "bytes"}

type item struct {
	seq    uint64
	stored int64 // stream timestamp, unix nanos, for age eviction
	// applied is when this poller applied it (local clock, unix nanos),
	// for Config.Linger.
	applied int64
	typ     string
	json    []byte // the envelope's JSON, immutable once stored
}

type entry struct {
	id         string
	newest     uint64
	floor      uint64
	items      []item
	bytes      int64
	prev, next *entry
	// polls counts reads in the current interval (busiest-events gauge).
	polls atomic.Int64
}

type tomb struct {
	id  string
	seq uint64
}

// entryOverhead approximates the bytes an entry costs beyond its envelopes
// (struct, map slot, ring slots), for the bytes bound.
const entryOverhead = 160
const itemOverhead = 48

func newIndex(c Config) *index {
	return &index{
		ringSize:  c.RingSize,
		ringAge:   c.RingAge,
		maxEvents: c.MaxEvents,
		maxBytes:  c.MaxBytes,
		maxTombs:  c.MaxEvents,
		entries:   make(map[string]*entry),
		tombs:     make(map[string]uint64),
		advanced:  make(chan struct{}),
	}
}

// reset empties the index and starts it at floor: changes up to floor were
// not loaded, so any cursor below it is reset.
func (x *index) reset(floor uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries = make(map[string]*entry)
	x.head, x.tail = nil, nil
	x.tombs = make(map[string]uint64)
	x.tombQ = nil
	x.gfloor = floor
	x.applied = floor
	x.appliedA.Store(floor)
	x.nEntries.Store(0)
	x.nEnvelopes.Store(0)
	x.nBytes.Store(0)
	close(x.advanced)
	x.advanced = make(chan struct{})
}

// skip advances applied over a seq that held no valid change.
func (x *index) skip(seq uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.advance(seq)
}

func (x *index) advance(seq uint64) {
	if seq <= x.applied {
		return
	}
	x.applied = seq
	x.appliedA.Store(seq)
	close(x.advanced)
	x.advanced = make(chan struct{})
}

// apply adds one change. Changes must come in seq order; an older or equal
// seq (a redelivery) is ignored.
func (x *index) apply(env wire.Envelope, stored time.Time) {
	js := env.AppendJSON(make([]byte, 0, 112+len(env.Data)))
	x.mu.Lock()
	defer x.mu.Unlock()
	if env.Seq <= x.applied {
		return
	}
	e := x.entries[env.EventID]
	if e == nil {
		e = &entry{id: env.EventID, floor: x.floorOfAbsent(env.EventID)}
		delete(x.tombs, env.EventID)
		x.entries[env.EventID] = e
		x.nEntries.Add(1)
		x.nBytes.Add(entryOverhead + int64(len(e.id)))
	} else {
		x.unlink(e)
	}
	x.pushFront(e)
	if len(e.items) >= x.ringSize {
		x.dropOldest(e, evictRingSize)
	}
	it := item{seq: env.Seq, stored: stored.UnixNano(), applied: time.Now().UnixNano(), typ: env.Type, json: js}
	e.items = append(e.items, it)
	sz := int64(len(js) + itemOverhead)
	e.bytes += sz
	e.newest = env.Seq
	x.nEnvelopes.Add(1)
	x.nBytes.Add(sz)
	x.advance(env.Seq)
	x.changedLocked(env.EventID)
	x.trimAge(e, stored.Add(-x.ringAge).UnixNano())
	for len(x.entries) > x.maxEvents && x.tail != nil && x.tail != e {
		x.evict(x.tail, evictEventCap)
	}
	for x.nBytes.Load() > x.maxBytes && x.tail != nil && x.tail != e {
		x.evict(x.tail, evictBytes)
	}
}

func (x *index) floorOfAbsent(id string) uint64 {
	if s, ok := x.tombs[id]; ok {
		return max(s, x.gfloor)
	}
	return x.gfloor
}

func (x *index) dropOldest(e *entry, why evictReason) {
	old := e.items[0]
	e.floor = max(e.floor, old.seq)
	sz := int64(len(old.json) + itemOverhead)
	e.bytes -= sz
	x.nBytes.Add(-sz)
	x.nEnvelopes.Add(-1)
	e.items[0] = item{}
	e.items = e.items[1:]
	if cap(e.items) > 2*x.ringSize {
		// The slice creeps forward as it drops from the front; compact it
		// now and then so the backing array stays bounded.
		e.items = slices.Clone(e.items)
	}
	x.evictions[why].Add(1)
}

func (x *index) trimAge(e *entry, cutoff int64) {
	for len(e.items) > 0 && e.items[0].stored < cutoff {
		x.dropOldest(e, evictAge)
	}
}

// evict forgets an eventId, leaving a tombstone with its newest seq so a
// client of it is reset only if it missed a change.
func (x *index) evict(e *entry, why evictReason) {
	x.unlink(e)
	delete(x.entries, e.id)
	x.nEntries.Add(-1)
	x.nEnvelopes.Add(-int64(len(e.items)))
	x.nBytes.Add(-(e.bytes + entryOverhead + int64(len(e.id))))
	x.evictions[why].Add(1)
	x.tombs[e.id] = e.newest
	x.tombQ = append(x.tombQ, tomb{e.id, e.newest})
	for len(x.tombs) > x.maxTombs && len(x.tombQ) > 0 {
		t := x.tombQ[0]
		x.tombQ = x.tombQ[1:]
		if s, ok := x.tombs[t.id]; ok && s == t.seq {
			delete(x.tombs, t.id)
			x.gfloor = max(x.gfloor, t.seq)
		}
	}
	if len(x.tombQ) > 2*len(x.tombs)+1024 {
		// Drop stale records (eventIds that came back) so the queue stays
		// bounded by the tombstones it describes.
		q := x.tombQ[:0:0]
		for _, t := range x.tombQ {
			if s, ok := x.tombs[t.id]; ok && s == t.seq {
				q = append(q, t)
			}
		}
		x.tombQ = q
	}
	// Waiters of an evicted eventId re-read and see its floor.
	x.changedLocked(e.id)
}

func (x *index) pushFront(e *entry) {
	e.prev, e.next = nil, x.head
	if x.head != nil {
		x.head.prev = e
	}
	x.head = e
	if x.tail == nil {
		x.tail = e
	}
}

func (x *index) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if x.head == e {
		x.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if x.tail == e {
		x.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// sweepAge drops held changes older than the ring age from every eventId.
func (x *index) sweepAge(now time.Time) {
	cutoff := now.Add(-x.ringAge).UnixNano()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, e := range x.entries {
		x.trimAge(e, cutoff)
	}
}

// changedLocked tells the waiters of eventId id. The caller holds x.mu for
// writing, which orders it against waiters registering under the read lock.
func (x *index) changedLocked(id string) {
	if x.changed != nil {
		x.changed(id)
	}
}

// view is one read of an eventId.
type view struct {
	applied uint64 // the cursor to hand out
	newest  uint64 // the eventId's newest seq, 0 when not held
	reset   bool   // since is below what the index can vouch for
	floor   uint64 // with reset: the index holds every change above it
	deep    bool   // read from the stream below the floor: no ETag
	behind  bool   // since is ahead of what this replica applied
	items   []item // changes after since, in order
	// wake, when readOpts.wait registered a waiter, is closed on the
	// eventId's next change.
	wake *waitSet
	// advanced is closed when applied next moves.
	advanced <-chan struct{}
}

// readOpts is what a read asks for.
type readOpts struct {
	// since is the client's cursor when hasSince; without one a read
	// returns the held changes.
	since    uint64
	hasSince bool
	// wait, when set, is called when the read has nothing to answer (no
	// change after since, no reset, not behind) with the eventId and its
	// newest seq, under the read lock: changes are applied under the write
	// lock, so the waiter it registers cannot miss one. What it returns
	// (nil: not waiting) is the view's wake. See waiters.add and
	// waiters.parkOn.
	wait func(id string, newest uint64) *waitSet
}

// readSince reads the changes after since: the readOpts of a plain read.
func readSince(since uint64, hasSince bool) readOpts {
	return readOpts{since: since, hasSince: hasSince}
}

// read answers "what changed for id after o.since", appending the changes
// to buf.
func (x *index) read(id string, o readOpts, buf []item) view {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v := view{applied: x.applied, advanced: x.advanced, items: buf[:0]}
	e := x.entries[id]
	if e != nil {
		v.newest = e.newest
		e.polls.Add(1)
	}
	switch {
	case o.hasSince && o.since > x.applied:
		v.behind = true
	case e == nil:
		v.floor = x.floorOfAbsent(id)
		v.reset = o.hasSince && o.since < v.floor
	case o.hasSince && o.since < e.floor:
		v.reset, v.floor = true, e.floor
	default:
		i := 0
		if o.hasSince {
			i, _ = slices.BinarySearchFunc(e.items, o.since+1, cmpSeq)
		}
		v.items = append(v.items, e.items[i:]...)
	}
	if o.wait != nil && !v.reset && !v.behind && len(v.items) == 0 {
		v.wake = o.wait(id, v.newest)
	}
	return v
}

func cmpSeq(it item, s uint64) int {
	switch {
	case it.seq < s:
		return -1
	case it.seq > s:
		return 1
	}
	return 0
}

// newestOf returns the eventId's newest seq, for the cheap 304 path.
func (x *index) newestOf(id string) uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if e := x.entries[id]; e != nil {
		e.polls.Add(1)
		return e.newest
	}
	return 0
}

// get returns the held change seq of eventId id.
func (x *index) get(id string, seq uint64) ([]byte, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := x.entries[id]
	if e == nil {
		return nil, false
	}
	i, ok := slices.BinarySearchFunc(e.items, seq, cmpSeq)
	if !ok {
		return nil, false
	}
	return e.items[i].json, true
}

// appliedSeq is the last applied seq.
func (x *index) appliedSeq() uint64 { return x.appliedA.Load() }

// busiest returns the poll counts of the n most read eventIds since the
// last call and resets the counts.
func (x *index) busiest(n int) []busy {
	x.mu.RLock()
	defer x.mu.RUnlock()
	top := make([]busy, 0, n+1)
	for _, e := range x.entries {
		p := e.polls.Swap(0)
		if p == 0 || (len(top) == n && p <= top[n-1].polls) {
			continue
		}
		i, _ := slices.BinarySearchFunc(top, p, func(b busy, p int64) int {
			if b.polls > p {
				return -1
			}
			if b.polls < p {
				return 1
			}
			return 0
		})
		top = slices.Insert(top, i, busy{id: e.id, polls: p})
		if len(top) > n {
			top = top[:n]
		}
	}
	return top
}

type busy struct {
	id    string
	polls int64
}
