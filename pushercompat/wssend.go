package pushercompat

import (
	"context"
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// enqueue queues f for the socket, handing the socket to the writer pool
// when it was not waiting already. A socket with SendQueue frames pending
// is closed with 4100 instead: it cannot keep up, and pusher-js reconnects
// after a second.
func (s *socket) enqueue(f []byte) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if s.pending >= s.h.cfg.sendQueue {
		s.mu.Unlock()
		s.close(CodeOverCapacity, "Too many messages waiting: the connection cannot keep up", reasonSlowConsumer)
		return
	}
	s.queue = append(s.queue, f)
	s.pending++
	if !s.writing {
		s.writing = true
		s.h.pool.schedule(s)
	}
	s.mu.Unlock()
}

// writeQueued writes the frames queued when it starts (a pool worker calls
// it), then hands the socket back to the pool if more came meanwhile, so a
// socket that keeps receiving takes turns with the others.
func (s *socket) writeQueued() {
	s.mu.Lock()
	batch := s.queue
	s.queue, s.spare = s.spare, nil
	if len(batch) == 0 || s.closing {
		s.writing = false
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	for _, f := range batch {
		if err := s.writeNow(f); err != nil {
			s.close(CodeReconnect, "write failed", reasonWriteError)
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}
	clear(batch)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Keep a small batch's array for the next frames: a fan-out then
	// allocates nothing per socket. A long one is let go.
	if cap(batch) <= 16 && !s.closing {
		s.spare = batch[:0]
	}
	if len(s.queue) > 0 && !s.closing {
		s.h.pool.schedule(s)
		return
	}
	s.writing = false
}

// writeNow writes one frame. It sets no timer: the sweeper cuts the
// connection when a write has lasted longer than the write timeout (a
// context deadline per write cost a timer and an allocation per frame per
// socket, about a tenth of the fan-out's CPU).
func (s *socket) writeNow(f []byte) error {
	s.writeStart.Store(time.Now().UnixNano())
	err := s.ws.Write(context.Background(), websocket.MessageText, f)
	s.writeStart.Store(0)
	if err != nil {
		return fmt.Errorf("write to socket %s: %w", s.id, err)
	}
	s.h.met.sent.Inc()
	s.h.written.Add(1)
	return nil
}

// writeHandshake writes the first frame, before the socket is registered
// with the sweeper, so it bounds the write with a context instead.
func (s *socket) writeHandshake(f []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.writeTimeout)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, f); err != nil {
		return fmt.Errorf("write to socket %s: %w", s.id, err)
	}
	s.h.met.sent.Inc()
	s.h.written.Add(1)
	return nil
}
