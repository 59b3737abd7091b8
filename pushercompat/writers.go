package pushercompat

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// stuckAfter is how long a write may last before its writer counts as
// stuck and the pool grows to replace it. A write to a socket whose kernel
// buffer has room takes tens of microseconds; one that lasts this long
// waits for a client that is not reading.
const stuckAfter = 20 * time.Millisecond

// writers is the hub's pool of writer goroutines. A socket with frames
// queued and no writer waits in ready; the workers take sockets in turn and
// write what each has queued. A fan-out to 10,000 sockets therefore starts
// no goroutine: one per socket per burst (its start, its first stack
// growth, its exit) cost about 7 % of the fan-out's CPU, and an idle
// socket still has no writer of its own.
//
// A write to a client that stopped reading blocks its worker until the
// client reads, the send queue overflows (4100) or the write timeout cuts
// it. So that such a socket never holds up the others, a monitor runs
// while sockets wait and keeps base workers free of a stuck write, adding
// workers as needed; the extra ones exit when nothing waits.
type writers struct {
	h    *hub
	base int

	mu         sync.Mutex
	cond       sync.Cond
	ready      []*socket // waiting sockets, oldest first from head
	head       int
	idle       int // workers waiting for a socket and not yet woken
	all        map[*writer]struct{}
	monitoring bool
	closed     bool
}

type writer struct {
	cur atomic.Pointer[socket] // the socket being written, or nil
}

func newWriters(h *hub) *writers {
	p := &writers{h: h, base: max(8, 4*runtime.GOMAXPROCS(0)), all: make(map[*writer]struct{})}
	p.cond.L = &p.mu
	return p
}

// schedule queues s, which has frames and no writer, for a worker. The
// caller holds s.mu and a count of h.wg (a socket's reader, the sweeper,
// or the hub's lock with closed false), so starting a goroutine here never
// races with the hub's Wait.
func (p *writers) schedule(s *socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = append(p.ready, s)
	switch {
	case p.idle > 0:
		p.idle--
		p.cond.Signal()
	case len(p.all) < p.base:
		p.spawn()
	}
	// The worker woken or started may take another socket and block on
	// it: the monitor watches while anything waits.
	if !p.monitoring && !p.closed {
		p.monitoring = true
		p.h.wg.Add(1)
		go p.monitor()
	}
}

// spawn starts a worker; p.mu is held.
func (p *writers) spawn() {
	w := &writer{}
	p.all[w] = struct{}{}
	p.h.wg.Add(1)
	go p.work(w)
}

func (p *writers) work(w *writer) {
	defer p.h.wg.Done()
	p.mu.Lock()
	for {
		for p.head == len(p.ready) {
			if p.closed || len(p.all) > p.base {
				delete(p.all, w)
				p.mu.Unlock()
				return
			}
			p.idle++ // whoever wakes this worker takes it back
			p.cond.Wait()
		}
		s := p.ready[p.head]
		p.ready[p.head] = nil
		p.head++
		if p.head == len(p.ready) {
			p.ready, p.head = p.ready[:0], 0
		}
		p.mu.Unlock()
		w.cur.Store(s)
		s.writeQueued()
		w.cur.Store(nil)
		p.mu.Lock()
	}
}

// monitor runs while sockets wait for a worker: every half of stuckAfter
// it counts the workers not held by a stuck write and starts more when
// fewer than base are.
func (p *writers) monitor() {
	defer p.h.wg.Done()
	t := time.NewTicker(stuckAfter / 2)
	defer t.Stop()
	for range t.C {
		p.mu.Lock()
		if p.closed || p.head == len(p.ready) {
			p.monitoring = false
			p.mu.Unlock()
			return
		}
		if p.idle > 0 {
			// Not expected (a socket queued wakes a worker), but a
			// socket must never wait beside a sleeping worker.
			p.idle = 0
			p.cond.Broadcast()
		}
		now := time.Now().UnixNano()
		free := 0
		for w := range p.all {
			s := w.cur.Load()
			if s == nil {
				free++
				continue
			}
			if start := s.writeStart.Load(); start == 0 || now-start < int64(stuckAfter) {
				free++
			}
		}
		for ; free < p.base; free++ {
			p.spawn()
		}
		p.mu.Unlock()
	}
}

// close makes the workers exit once nothing waits; the hub's Wait waits
// for them.
func (p *writers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.idle = 0
	p.cond.Broadcast()
}
