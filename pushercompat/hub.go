package pushercompat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/sirupsen/logrus"
)

type hubConfig struct {
	creds                                      credentials
	activityTimeout, pongTimeout, writeTimeout time.Duration
	sendQueue                                  int
	originPatterns                             []string
}

// hub is the WebSocket side: the sockets, the channel index and the
// fan-out. Each socket costs one goroutine (its reader) while idle; a pool
// of writers shared by all sockets writes queued frames, and one sweeper
// goroutine per hub does pings, pong timeouts and write timeouts, so idle
// sockets carry no timers.
type hub struct {
	cfg    hubConfig
	pool   *writers
	met    *metrics
	log    logrus.FieldLogger
	prefix uint32 // socket ids are prefix.counter: unique across restarts
	nextID atomic.Uint64
	// written counts frames written, for the benchmark's "last frame
	// written" time without gathering the registry.
	written atomic.Int64

	mu       sync.RWMutex
	sockets  map[*socket]struct{}
	channels map[string]map[*socket]struct{}
	closed   bool
	outage   bool
	sweeping bool
	stop     chan struct{}
	// wg counts every goroutine the hub owns or waits for: socket handlers,
	// writers, closers and the sweeper. An Add happens either under mu
	// with closed false, or on behalf of a registered socket whose handler
	// still holds its count, so it never races with Wait from zero.
	wg sync.WaitGroup
}

func newHub(cfg hubConfig, met *metrics, log logrus.FieldLogger) *hub {
	h := &hub{
		cfg: cfg, met: met, log: log,
		prefix:   rand.Uint32N(1_000_000_000),
		sockets:  make(map[*socket]struct{}),
		channels: make(map[string]map[*socket]struct{}),
		stop:     make(chan struct{}),
	}
	h.pool = newWriters(h)
	return h
}

// register adds s to the hub unless the hub is closed, starting the
// sweeper with the first socket.
func (h *hub) register(s *socket) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.sockets[s] = struct{}{}
	if !h.sweeping {
		h.sweeping = true
		h.wg.Add(1)
		go h.sweep()
	}
	h.met.sockets.Inc()
	h.met.opened.Inc()
	return true
}

func (h *hub) remove(s *socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sockets[s]; !ok {
		return
	}
	delete(h.sockets, s)
	for ch := range s.channels {
		h.leave(s, ch)
	}
	h.met.sockets.Dec()
}

// leave removes s from channel; h.mu must be held.
func (h *hub) leave(s *socket, channel string) {
	subs := h.channels[channel]
	delete(subs, s)
	if len(subs) == 0 {
		delete(h.channels, channel)
	}
	delete(s.channels, channel)
}

// subscribe adds s to channel and queues subscription_succeeded under the
// same lock as the fan-out, so the client hears of its subscription before
// any event on it.
func (h *hub) subscribe(s *socket, channel string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sockets[s]; !ok {
		return errors.New("socket closed")
	}
	if _, ok := s.channels[channel]; !ok {
		if len(s.channels) >= maxChannelsPerSocket {
			return fmt.Errorf("at most %d channels per connection", maxChannelsPerSocket)
		}
		if s.channels == nil {
			s.channels = make(map[string]struct{})
		}
		s.channels[channel] = struct{}{}
		subs := h.channels[channel]
		if subs == nil {
			subs = make(map[*socket]struct{})
			h.channels[channel] = subs
		}
		subs[s] = struct{}{}
	}
	s.enqueue(frame("pusher_internal:subscription_succeeded", channel, "{}"))
	return nil
}

func (h *hub) unsubscribe(s *socket, channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := s.channels[channel]; ok {
		h.leave(s, channel)
	}
}

// publish fans accepted events out to their channels' sockets, skipping
// the excluded socket_id. It never blocks on a socket: each has its own
// bounded queue. The store calls it under its lock, in acceptance order.
func (h *hub) publish(evs []Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return
	}
	for _, e := range evs {
		subs := h.channels[e.Channel]
		if len(subs) == 0 {
			continue
		}
		f := frame(e.Name, e.Channel, e.Data)
		for s := range subs {
			if e.SocketID != "" && s.id == e.SocketID {
				continue
			}
			s.enqueue(f)
		}
	}
}

// sweep pings sockets that have been silent for the activity timeout,
// closes with 4201 those that did not answer within the pong timeout, and
// cuts those whose current write has taken longer than the write timeout.
// A timeout therefore fires up to a quarter of itself (at most 1 s) late.
func (h *hub) sweep() {
	defer h.wg.Done()
	tick := min(h.cfg.activityTimeout, h.cfg.pongTimeout, h.cfg.writeTimeout) / 4
	tick = min(max(tick, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.check(now.UnixNano())
		}
	}
}

func (h *hub) check(now int64) {
	activity, pong, write := int64(h.cfg.activityTimeout), int64(h.cfg.pongTimeout), int64(h.cfg.writeTimeout)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.sockets {
		if start := s.writeStart.Load(); start != 0 && now-start > write {
			s.cut()
			continue
		}
		if sent := s.pingSent.Load(); sent != 0 {
			if now-sent > pong {
				s.close(CodePongTimeout, "Pong reply not received", reasonPongTimeout)
			}
			continue
		}
		if now-s.lastSeen.Load() > activity && s.pingSent.CompareAndSwap(0, now) {
			s.enqueue(framePing)
		}
	}
}

// closeAll closes every socket with code; it returns how many.
func (h *hub) closeAll(code websocket.StatusCode, text, reason string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.sockets {
		s.close(code, text, reason)
	}
	return len(h.sockets)
}

// close closes every socket with 4200 and waits for every goroutine the
// hub owns. New upgrades are answered 503.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.stop)
	for s := range h.sockets {
		s.close(CodeReconnect, "Server is shutting down", reasonShutdown)
	}
	h.pool.close()
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hub) setOutage(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outage = on
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sockets)
}

func (h *hub) subscribers(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.channels[channel])
}
