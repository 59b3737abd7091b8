package pushercompat

import (
	"slices"
	"sync"
)

// store keeps what the server accepted and fans it out. It knows nothing of
// HTTP: the REST handler appends to it, and the future WebSocket side will
// subscribe to it like any test does.
type store struct {
	mu     sync.Mutex
	events []Event
	limit  int // most events kept; zero means all
	subs   map[*subscription]struct{}
	closed bool
	// onAdd is the WebSocket fan-out. It is called under mu so sockets see
	// events in the order Events lists them; it must not block.
	onAdd func([]Event)
}

func newStore(limit int) *store {
	return &store{subs: make(map[*subscription]struct{}), limit: limit}
}

// add records evs and hands them to every subscriber, under one lock so
// every subscriber sees the same order as Events.
func (s *store) add(evs []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = trimOldest(append(s.events, evs...), s.limit)
	for sub := range s.subs {
		sub.push(evs)
	}
	if s.onAdd != nil {
		s.onAdd(evs)
	}
}

// trimOldest keeps the newest limit elements (all when limit is zero). The
// dropped head is freed when a later append outgrows the backing array and
// copies only what is kept.
func trimOldest[T any](xs []T, limit int) []T {
	if limit <= 0 || len(xs) <= limit {
		return xs
	}
	return xs[len(xs)-limit:]
}

func (s *store) all() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *store) on(channel string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events {
		if e.Channel == channel {
			out = append(out, e)
		}
	}
	return out
}

func (s *store) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = nil
}

// subscribe starts a subscription. After close, the channel it returns is
// closed at once.
func (s *store) subscribe() (<-chan Event, func()) {
	sub := &subscription{
		out:  make(chan Event),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.subs[sub] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		close(sub.out)
		return sub.out, func() {}
	}
	go sub.pump()
	cancel := func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
		sub.cancel()
	}
	return sub.out, cancel
}

// close ends every subscription and refuses new ones.
func (s *store) close() {
	s.mu.Lock()
	s.closed = true
	subs := s.subs
	s.subs = make(map[*subscription]struct{})
	s.mu.Unlock()
	for sub := range subs {
		sub.cancel()
	}
}

// subscription queues without bound so a slow or idle subscriber never
// blocks the HTTP handler (which would turn into latency the test did not
// ask for) and never loses an event. Its pump goroutine is owned by the
// subscription: cancel stops it and waits for it.
type subscription struct {
	mu    sync.Mutex
	queue []Event
	out   chan Event
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (sub *subscription) push(evs []Event) {
	sub.mu.Lock()
	sub.queue = append(sub.queue, evs...)
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscription) pump() {
	defer close(sub.done)
	defer close(sub.out)
	for {
		sub.mu.Lock()
		batch := sub.queue
		sub.queue = nil
		sub.mu.Unlock()
		for _, e := range batch {
			select {
			case sub.out <- e:
			case <-sub.stop:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-sub.wake:
		case <-sub.stop:
			return
		}
	}
}

func (sub *subscription) cancel() {
	sub.once.Do(func() { close(sub.stop) })
	<-sub.done
}
