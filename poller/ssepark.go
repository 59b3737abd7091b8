package poller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Parked SSE streams. On the goroutine path every open stream costs its
// handler goroutine, net/http's connection buffers and a heartbeat timer
// (~33 KB per client), and a change costs one write and one flush per
// stream. So once an HTTP/1.1 stream has written its headers and caught up
// (it would wait for the next change), the handler hijacks the connection
// into a small sseParked record in its eventId's sseGroup and returns.
//
//   - A change of the eventId starts a round (waiters.wake, never blocking):
//     a parking worker reads the changes after the group's cursor, encodes
//     them once into one buffer of HTTP/1.1 chunks (the response is chunked:
//     net/http wrote its headers), and every parked stream of the group gets
//     that buffer in one non-blocking write, split across the workers in
//     chunks of sseParkChunk streams. Changes that arrive while a round is
//     being written make one more round, which carries them all.
//   - A stream whose socket is full keeps the rest of the bytes (slices of
//     the shared, immutable buffers, not copies) and gets a flusher
//     goroutine that writes them with Config.SSEWriteTimeout per write; it is
//     closed when that deadline passes or when more than sseParkPendingMax
//     bytes wait behind the write in flight. The others never wait on it.
//   - Heartbeats go out from one sweep every Config.Heartbeat; the same
//     sweep goroutine finds clients that hung up (peerGone) every
//     Config.PollInterval. Write errors end a stream too.
//   - A round whose cursor fell below the ring (a burst outran the
//     rounds) pages through the stream on a goroutine of its own, as the
//     goroutine path's deep resume does; only when the stream no longer
//     holds the changes do the streams end, and EventSource resumes with
//     Last-Event-ID on the goroutine path, which answers reset.
//   - Drain (and Run's end) ends every parked stream with the chunked
//     body's last chunk, so EventSource reconnects (to another replica).
//
// HTTP/2, HTTP/1.0, TLS connections, writers without Hijack, Park=off and
// the benchmark's baseline keep the goroutine path (sse.go).

const (
	// sseParkChunk is how many parked streams one worker job writes.
	sseParkChunk = 128
	// sseParkPendingMax bounds the bytes a parked stream may hold behind
	// the write in flight before it is closed as a slow reader.
	sseParkPendingMax = 256 << 10
)

var (
	// sseLastChunk ends a chunked body.
	sseLastChunk = []byte("0\r\n\r\n")
	// sseHeartbeatChunk is the heartbeat comment as one chunk.
	sseHeartbeatChunk = appendChunk(nil, []byte(": heartbeat\n\n"))
)

// appendChunk appends data as one HTTP/1.1 chunk.
func appendChunk(b, data []byte) []byte {
	b = strconv.AppendUint(b, uint64(len(data)), 16)
	b = append(b, "\r\n"...)
	b = append(b, data...)
	return append(b, "\r\n"...)
}

// sseEnd is why a parked stream ends.
type sseEnd int

const (
	sseKeep  sseEnd = iota // not ending
	sseGone                // a write failed or the client hung up
	sseSlow                // the client stopped reading
	sseDrain               // Drain or Run's end
	sseReset               // the stream no longer holds the changes: reconnect
)

// sseParked is one hijacked SSE stream.
type sseParked struct {
	p    *Poller
	conn net.Conn
	// raw writes without blocking; nil sends every write through flush.
	raw syscall.RawConn
	c   *sseConn // the registry's record (per-token and per-address caps)
	id  string
	tok string
	adr string

	mu sync.Mutex
	// since is the seq of the last change sent.
	since uint64
	// pending are the bytes waiting behind the flusher's write (slices of
	// shared buffers), pendingBytes their sum.
	pending      [][]byte
	pendingBytes int
	flushing     bool
	ended        bool

	// Guarded by waiters.mu.
	g    *sseGroup
	slot int // index in g.streams
}

// sseGroup is the parked streams of one eventId.
type sseGroup struct {
	id string
	// Guarded by waiters.mu.
	streams []*sseParked
	// cursor is the applied seq of the last round's read: every change of
	// the eventId up to it was handed to the streams of that round.
	cursor uint64
	// dirty: a change came after the running round's read; running: a
	// round is being read or written (at most one per group, so every
	// stream gets its frames in order).
	dirty, running bool
}

// sseParkable says whether a stream may be parked once it caught up.
func (p *Poller) sseParkable(r *http.Request) bool {
	return p.cfg.Park != ParkOff && !p.sseBaseline.Load() && r.ProtoMajor == 1 && r.ProtoMinor >= 1 &&
		r.Method == http.MethodGet && r.TLS == nil
}

// parkStream hijacks a caught-up stream and hands it to its eventId's
// group. It reports false, with nothing changed, when the connection
// cannot be hijacked; the handler then keeps it. The caller has flushed
// everything it wrote.
func (p *Poller) parkStream(w http.ResponseWriter, st *sseStream, c *sseConn, token, addr string) bool {
	if p.draining() {
		return false
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// Bytes the client sent after its request (net/http's buffered reader,
	// dropped here) are never read: a stream has no next request.
	s := &sseParked{
		p: p, conn: conn, raw: nonBlocking(conn), c: c,
		// Copies: the request's strings would keep it alive.
		id: strings.Clone(st.id), tok: strings.Clone(token), adr: strings.Clone(addr),
		since: st.since,
	}
	c.park()
	p.m.parkedStreams.Inc()
	// The handler owns s until it joins its group: changes that came since
	// its last read are written here, then it reads again.
	for {
		var ib [16]item
		o := readSince(s.since, true)
		o.wait = p.waits.joinSSE(s)
		v := p.idx.read(s.id, o, ib[:0])
		switch {
		case v.wake != nil:
			return true // joined: the workers write to it now
		case v.reset || v.behind:
			s.end(sseReset)
			return true
		case len(v.items) == 0:
			s.end(sseDrain) // refused: draining
			return true
		}
		r := p.encodeRound(v.items)
		s.mu.Lock()
		s.since = v.applied
		why := s.sendLocked(r.buf)
		s.mu.Unlock()
		if why != sseKeep {
			s.end(why)
			return true
		}
	}
}

// sendLocked writes b (immutable) now, or queues it behind a write in
// flight; it reports why the stream must end, if it must. The caller holds
// s.mu and calls end after unlocking.
func (s *sseParked) sendLocked(b []byte) sseEnd {
	if s.ended {
		return sseKeep
	}
	if s.flushing {
		s.pending = append(s.pending, b)
		s.pendingBytes += len(b)
		if s.pendingBytes > sseParkPendingMax && len(s.pending) > 1 {
			return sseSlow
		}
		return sseKeep
	}
	n := 0
	if s.raw != nil {
		var err error
		if n, err = writeNonBlocking(s.raw, b); err != nil {
			return sseGone
		}
	}
	if n < len(b) {
		s.pending = append(s.pending[:0], b[n:])
		s.pendingBytes = len(b) - n
		s.flushing = true
		go s.flush()
	}
	return sseKeep
}

// flush writes the pending bytes with a deadline per write, until none
// are left or the stream ends.
func (s *sseParked) flush() {
	timeout := s.p.cfg.SSEWriteTimeout
	for {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return
		}
		if len(s.pending) == 0 {
			s.flushing = false
			s.pending = nil
			// The next writes are non-blocking again; a deadline left
			// here would fail them once it passed.
			_ = s.conn.SetWriteDeadline(time.Time{})
			s.mu.Unlock()
			return
		}
		b := s.pending[0]
		s.pending[0] = nil
		s.pending = s.pending[1:]
		s.pendingBytes -= len(b)
		s.mu.Unlock()
		_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := s.conn.Write(b); err != nil {
			why := sseGone
			if errors.Is(err, os.ErrDeadlineExceeded) {
				why = sseSlow
			}
			s.end(why)
			return
		}
	}
}

// send writes b and ends the stream when it must.
func (s *sseParked) send(b []byte) {
	s.mu.Lock()
	why := s.sendLocked(b)
	s.mu.Unlock()
	if why != sseKeep {
		s.end(why)
	}
}

// end closes the stream once, whoever finds it must end, and releases what
// it held: its place in the group, in the registry and in the gauges.
func (s *sseParked) end(why sseEnd) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	if why == sseDrain && !s.flushing && s.raw != nil {
		// Best effort: a full socket is closed without it.
		_, _ = writeNonBlocking(s.raw, sseLastChunk)
	}
	s.pending, s.pendingBytes = nil, 0
	s.mu.Unlock()
	p := s.p
	p.waits.leaveSSE(s)
	_ = s.conn.Close()
	p.sse.release(s.c, s.tok, s.adr)
	p.m.streams.Dec()
	p.m.parkedStreams.Dec()
	if why == sseSlow && !p.draining() {
		p.m.sseSlowClosed.Inc()
		p.log.WithField("event_id", s.id).Debug("sse stream closed: the client stopped reading")
	}
}

// endParkedSSE refuses further parking and ends every parked stream.
func (p *Poller) endParkedSSE() {
	for _, s := range p.waits.closeSSE() {
		s.end(sseDrain)
	}
}

// sweepSSE sends the heartbeats of parked streams every Heartbeat and ends
// those whose client hung up every PollInterval, until ctx ends.
func (p *Poller) sweepSSE(ctx context.Context) {
	hb := time.NewTicker(p.cfg.Heartbeat)
	defer hb.Stop()
	reap := time.NewTicker(p.cfg.PollInterval)
	defer reap.Stop()
	var ss []*sseParked
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			ss = p.waits.sseSnapshot(ss[:0])
			for _, s := range ss {
				s.send(sseHeartbeatChunk)
			}
		case <-reap.C:
			ss = p.waits.sseSnapshot(ss[:0])
			for _, s := range ss {
				if peerGone(s.conn) {
					s.end(sseGone)
				}
			}
		}
		clear(ss) // let ended streams go
	}
}
