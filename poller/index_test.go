package poller

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

func change(seq uint64, id string) wire.Envelope {
	return wire.Envelope{ID: fmt.Sprint("c", seq), Seq: seq, EventID: id, Type: "vote.updated", At: time.Unix(0, 0), Data: []byte(`{"v":1}`)}
}

func itemSeqs(items []item) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = it.seq
	}
	return out
}

func TestIndexReadsAgainstFloors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	// Changes 11..16 after a replay that started at 11: seqs up to 10 were
	// never loaded. e1 gets 11,12,13,15 with a ring of 3 (11 dropped), e2 gets 14.
	newIdx := func() *index {
		x := newIndex(Config{RingSize: 3, RingAge: time.Hour, MaxEvents: 10, MaxBytes: 1 << 20}.withDefaults())
		x.reset(10)
		for _, c := range []struct {
			seq uint64
			id  string
		}{{11, "e1"}, {12, "e1"}, {13, "e1"}, {14, "e2"}, {15, "e1"}} {
			x.apply(change(c.seq, c.id), now)
		}
		x.skip(16) // an invalid message still advances the cursor
		return x
	}
	for _, tc := range []struct {
		name     string
		id       string
		since    uint64
		hasSince bool
		reset    bool
		behind   bool
		want     []uint64
	}{
		{"no since returns the ring", "e1", 0, false, false, false, []uint64{12, 13, 15}},
		{"since the dropped change's seq is fine", "e1", 11, true, false, false, []uint64{12, 13, 15}},
		{"since before the dropped change is reset", "e1", 10, true, true, false, nil},
		{"since in the middle returns the rest", "e1", 13, true, false, false, []uint64{15}},
		{"since at the cursor returns nothing", "e1", 16, true, false, false, nil},
		{"since ahead of the applied seq is behind", "e1", 17, true, false, true, nil},
		{"an unseen eventId since the replay start has nothing new", "e9", 10, true, false, false, nil},
		{"an unseen eventId since before the replay start is reset", "e9", 9, true, true, false, nil},
		{"another eventId keeps its own floor", "e2", 10, true, false, false, []uint64{14}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x := newIdx()
			v := x.read(tc.id, readSince(tc.since, tc.hasSince), nil)
			if v.reset != tc.reset || v.behind != tc.behind || !slices.Equal(itemSeqs(v.items), tc.want) && len(tc.want)+len(v.items) > 0 {
				t.Fatalf("read(%s, %d)=reset %v behind %v items %v, want reset %v behind %v items %v", tc.id, tc.since, v.reset, v.behind, itemSeqs(v.items), tc.reset, tc.behind, tc.want)
			}
			if v.applied != 16 {
				t.Fatalf("cursor=%d, want the applied seq 16", v.applied)
			}
		})
	}
}

func TestEvictedEventIdsKeepTheirCursorsThroughTombstones(t *testing.T) {
	t.Parallel()
	now := time.Now()
	x := newIndex(Config{RingSize: 2, RingAge: time.Hour, MaxEvents: 2, MaxBytes: 1 << 20}.withDefaults())
	x.reset(0)
	x.apply(change(1, "a"), now)
	x.apply(change(2, "b"), now)
	x.apply(change(3, "c"), now) // evicts a (least recently changed)
	if _, held := x.entries["a"]; held {
		t.Fatal("a still held over MaxEvents=2")
	}
	if v := x.read("a", readSince(1, true), nil); v.reset {
		t.Fatal("a client that saw a's newest change is reset after a's eviction")
	}
	if v := x.read("a", readSince(0, true), nil); !v.reset {
		t.Fatal("a client that missed a's evicted change is not reset")
	}
	// a comes back: its floor is its tombstone, so the new change is served.
	x.apply(change(4, "a"), now)
	if v := x.read("a", readSince(1, true), nil); v.reset || !slices.Equal(itemSeqs(v.items), []uint64{4}) {
		t.Fatalf("a since 1 after it came back=%+v, want [4]", v)
	}
}

func TestLongPollWaiterIsWokenByItsEventOnly(t *testing.T) {
	t.Parallel()
	x, ws := newWaitingIndex()
	v := x.read("e1", readOpts{hasSince: true, wait: ws.add}, nil)
	if v.wake == nil {
		t.Fatal("no waiter registered for an empty read")
	}
	x.apply(change(1, "other"), time.Now())
	select {
	case <-v.wake.ch:
		t.Fatal("woken by another eventId's change")
	default:
	}
	x.apply(change(2, "e1"), time.Now())
	select {
	case <-v.wake.ch:
	default:
		t.Fatal("not woken by its eventId's change")
	}
	ws.release("e1", v.wake)
	w := x.read("e2", readOpts{since: 2, hasSince: true, wait: ws.add}, nil)
	ws.release("e2", w.wake)
	if len(ws.sets) != 0 {
		t.Fatalf("wait sets=%d after every waiter left, want 0", len(ws.sets))
	}
}

func TestAgeSweepDropsOldChanges(t *testing.T) {
	t.Parallel()
	x := newIndex(Config{RingAge: time.Minute}.withDefaults())
	x.reset(0)
	t0 := time.Now()
	x.apply(change(1, "e1"), t0)
	x.apply(change(2, "e1"), t0.Add(30*time.Second))
	x.sweepAge(t0.Add(70 * time.Second))
	v := x.read("e1", readSince(0, true), nil)
	if !v.reset {
		t.Fatal("since 0 after change 1 aged out is not reset")
	}
	if v := x.read("e1", readSince(1, true), nil); v.reset || !slices.Equal(itemSeqs(v.items), []uint64{2}) {
		t.Fatalf("since 1=%+v, want [2]", itemSeqs(v.items))
	}
}

func TestEvictionKeepsMemoryBoundedWith100000EventIds(t *testing.T) {
	const n, maxEvents = 100_000, 1_000
	x := newIndex(Config{RingSize: 8, MaxEvents: maxEvents, MaxBytes: 64 << 20}.withDefaults())
	x.reset(0)
	now := time.Now()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		x.apply(change(uint64(i+1), fmt.Sprintf("event-%d", i)), now)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if got := x.nEntries.Load(); got > maxEvents || len(x.entries) > maxEvents {
		t.Fatalf("entries=%d (map %d), want at most %d", got, len(x.entries), maxEvents)
	}
	if got := len(x.tombs); got > maxEvents {
		t.Fatalf("tombstones=%d, want at most %d", got, maxEvents)
	}
	if got := len(x.tombQ); got > 2*maxEvents+1024 {
		t.Fatalf("tombstone queue=%d, want bounded", got)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// 1,000 entries plus 1,000 tombstones: well under 2 MiB; 100,000 would
	// be over 20 MiB.
	if grown > 4<<20 {
		t.Fatalf("heap grew by %d bytes for %d eventIds, want bounded by the cap (< 4 MiB)", grown, n)
	}
	// The oldest eventIds are gone for good: their clients are reset only
	// if they missed the evicted change.
	if v := x.read("event-0", readSince(0, true), nil); !v.reset {
		t.Fatal("client of a long-evicted eventId that missed its change is not reset")
	}
	// A client of the newest eventId whose cursor is recent gets its change.
	if v := x.read("event-99999", readSince(n-100, true), nil); v.reset || len(v.items) != 1 {
		t.Fatalf("newest eventId=%+v, want its change", v)
	}
	if ev := x.evictions[evictEventCap].Load(); ev != n-maxEvents {
		t.Fatalf("evictions=%d, want %d", ev, n-maxEvents)
	}
}

func TestByteCapEvictsLeastRecentlyChanged(t *testing.T) {
	t.Parallel()
	x := newIndex(Config{MaxBytes: 2048}.withDefaults())
	x.reset(0)
	for i := range 100 {
		x.apply(change(uint64(i+1), fmt.Sprint("e", i)), time.Now())
	}
	if b := x.nBytes.Load(); b > 2048 {
		t.Fatalf("bytes=%d, want at most 2048", b)
	}
	if _, ok := x.entries["e99"]; !ok {
		t.Fatal("the newest eventId was evicted")
	}
}

// newWaitingIndex returns an empty index whose changes wake the waiters,
// as New wires them.
func newWaitingIndex() (*index, *waiters) {
	x := newIndex(Config{}.withDefaults())
	x.reset(0)
	w := newWaiters()
	x.changed = w.wake
	return x, w
}
