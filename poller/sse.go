package poller

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

// Server-Sent Events. A stream writes every change of one eventId as
//
//	id: <seq>
//	event: <type>
//	data: <envelope JSON>
//
// Two hostile cases shape this file:
//
//   - A newline inside the envelope (pretty-printed data is valid JSON) would
//     end the data field early: EventSource then fires a truncated event at
//     the first blank line and records its id, so the change is lost for that
//     client. Per the SSE spec the data is split at every line break into
//     several data: lines, which EventSource joins with "\n" (JSON whitespace
//     again), so what the browser parses is the same JSON.
//   - A reader that never reads. Nothing of the ring is copied per stream:
//     envelopes are written straight from the index's immutable bytes, and
//     only small pieces (field names, ids) are gathered in a buffer of at
//     most sseBufferBytes, so a stuck stream holds a few KiB, not the ring.
//     Every write has a deadline (Config.SSEWriteTimeout); a write that
//     misses it closes the stream and the browser resumes with
//     Last-Event-ID. Drain moves every stream's deadline to now, so
//     SIGTERM never waits on a writer stuck in a full socket.

// sseBufferBytes bounds the bytes gathered per stream before they are
// written; envelopes larger than it are written without a copy.
const sseBufferBytes = 8 << 10

// sseConn is one open stream, known to the registry so Drain can end a
// write stuck in a full socket.
type sseConn struct {
	rc *http.ResponseController

	mu     sync.Mutex
	kicked bool
	// armed is when the deadline was last set (zero: never).
	armed time.Time
	// rearm moves the deadline on every write (BenchmarkSSEFanout's
	// baseline).
	rearm bool
}

// errStreamKicked is returned by a write after Drain ended the stream.
var errStreamKicked = errors.New("stream ended by drain")

// arm sets the deadline of the next write, unless Drain already ended the
// stream: a deadline set after the kick would hang the write again.
func (c *sseConn) arm(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kicked {
		return errStreamKicked
	}
	// Moving the deadline costs a timer update in the runtime's poller, and
	// a fan-out does it for every stream on every change: a deadline set
	// less than a tenth of d ago still leaves the write at least 0.9 d.
	now := time.Now()
	if !c.rearm && !c.armed.IsZero() && now.Sub(c.armed) < d/10 {
		return nil
	}
	c.armed = now
	// An error means the writer has no deadline support (a test recorder);
	// the stream still works, only without the bound.
	_ = c.rc.SetWriteDeadline(now.Add(d))
	return nil
}

func (c *sseConn) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kicked = true
	// A deadline in the past fails a pending write at once.
	_ = c.rc.SetWriteDeadline(time.Unix(1, 0))
}

// streams counts open streams per token and per address and holds them for
// Drain.
type streams struct {
	maxPerToken, maxPerAddr int

	mu      sync.Mutex
	byToken map[string]int
	byAddr  map[string]int
	open    map[*sseConn]struct{}
	closed  bool
}

func newStreams(maxPerToken, maxPerAddr int) *streams {
	return &streams{
		maxPerToken: maxPerToken,
		maxPerAddr:  maxPerAddr,
		byToken:     make(map[string]int),
		byAddr:      make(map[string]int),
		open:        make(map[*sseConn]struct{}),
	}
}

// Reasons acquire refuses a stream.
var (
	errTooManyForToken = errors.New("too many open streams for this poll token")
	errTooManyForAddr  = errors.New("too many open streams from this address")
)

// acquire registers a stream for token (empty when reads are open) and
// addr, or refuses it when either is at its cap.
func (s *streams) acquire(c *sseConn, token, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Draining: the stream opens and ends at once, so EventSource
		// reconnects (to another replica) instead of failing for good as
		// it would on an error status.
		c.kicked = true
		return nil
	}
	if token != "" && s.byToken[token] >= s.maxPerToken {
		return errTooManyForToken
	}
	if s.byAddr[addr] >= s.maxPerAddr {
		return errTooManyForAddr
	}
	if token != "" {
		s.byToken[token]++
	}
	s.byAddr[addr]++
	s.open[c] = struct{}{}
	return nil
}

func (s *streams) release(c *sseConn, token, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.open[c]; !ok {
		return // opened while draining: never counted
	}
	delete(s.open, c)
	if token != "" {
		if s.byToken[token]--; s.byToken[token] <= 0 {
			delete(s.byToken, token)
		}
	}
	if s.byAddr[addr]--; s.byAddr[addr] <= 0 {
		delete(s.byAddr, addr)
	}
}

// closeAll refuses new streams and fails every pending write now.
func (s *streams) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.open {
		c.kick()
	}
}

// sseWriter writes one stream's bytes with a deadline on every write and at
// most sseBufferBytes gathered.
type sseWriter struct {
	w       http.ResponseWriter
	c       *sseConn
	timeout time.Duration
	buf     []byte
	err     error
}

func (s *sseWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	if s.err = s.c.arm(s.timeout); s.err != nil {
		return
	}
	_, s.err = s.w.Write(b)
}

// add gathers b, writing what is gathered first when b would overflow it;
// a large b is written as is, without a copy.
func (s *sseWriter) add(b []byte) {
	if len(s.buf)+len(b) > sseBufferBytes {
		s.flushBuf()
		if len(b) > sseBufferBytes/2 {
			s.write(b)
			return
		}
	}
	s.buf = append(s.buf, b...)
}

func (s *sseWriter) flushBuf() {
	if len(s.buf) > 0 {
		s.write(s.buf)
		s.buf = s.buf[:0]
	}
}

// flush writes what is gathered and pushes it to the client.
func (s *sseWriter) flush() error {
	s.flushBuf()
	if s.err == nil {
		if s.err = s.c.arm(s.timeout); s.err == nil {
			s.err = s.c.rc.Flush()
		}
	}
	return s.err
}

// addData adds "data: " lines for one value, split at every line break
// (CRLF, CR or LF, as the SSE spec reads them) so no field ends early.
func (s *sseWriter) addData(v []byte) {
	for {
		s.add([]byte("data: "))
		i := bytes.IndexAny(v, "\r\n")
		if i < 0 {
			s.add(v)
			s.add([]byte{'\n'})
			return
		}
		s.add(v[:i])
		s.add([]byte{'\n'})
		if v[i] == '\r' && i+1 < len(v) && v[i+1] == '\n' {
			i++
		}
		v = v[i+1:]
	}
}

func (s *sseWriter) addEvent(seq uint64, typ string, data []byte) {
	var head [64]byte
	h := append(head[:0], "id: "...)
	h = formatSeq(h, seq)
	h = append(h, "\nevent: "...)
	s.add(h)
	s.add([]byte(typ))
	s.add([]byte{'\n'})
	s.addData(data)
	s.add([]byte{'\n'})
}

// sseFrames caches each recent change's encoded frame, so a change sent to
// thousands of streams of one eventId is encoded (and scanned for line
// breaks) once, not once per stream. A slot holds the frame of one seq;
// a miss, or a slot taken by a later seq, encodes again, so its size only
// bounds how far behind a stream may be and still share.
const sseFrameSlots = 1024

type sseFrame struct {
	seq uint64
	b   []byte
}

type frameCache struct {
	slots [sseFrameSlots]atomic.Pointer[sseFrame]
}

// frame returns it's encoded SSE frame ("id:", "event:", "data:" lines and
// the blank line), shared by every stream; callers must not modify it.
// Two streams missing at once both encode: the frames are equal bytes.
func (fc *frameCache) frame(it item) []byte {
	slot := &fc.slots[it.seq%sseFrameSlots]
	if f := slot.Load(); f != nil && f.seq == it.seq {
		return f.b
	}
	b := appendEvent(make([]byte, 0, len(it.json)+len(it.typ)+40), it.seq, it.typ, it.json)
	slot.Store(&sseFrame{seq: it.seq, b: b})
	return b
}

// appendEvent appends one event's frame, with the data split at every line
// break (CRLF, CR or LF, as the SSE spec reads them) so no field ends early.
func appendEvent(b []byte, seq uint64, typ string, data []byte) []byte {
	b = append(b, "id: "...)
	b = formatSeq(b, seq)
	b = append(b, "\nevent: "...)
	b = append(b, typ...)
	b = append(b, '\n')
	for {
		b = append(b, "data: "...)
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

// addFrame adds a held change's shared frame.
func (p *Poller) addFrame(sw *sseWriter, it item) {
	if p.sseBaseline.Load() {
		sw.addEvent(it.seq, it.typ, it.json)
		return
	}
	sw.add(p.frames.frame(it))
}

// handleStream serves Server-Sent Events: id = seq, event = type, data =
// envelope; a reset is an event named "reset". It resumes from
// Last-Event-ID (or since=), and ends on Drain or when the client stops
// reading (see the top of this file).
func (p *Poller) handleStream(w http.ResponseWriter, r *http.Request) {
	id, q, ok := p.begin(w, r, routeStream)
	if !ok {
		return
	}
	if le := r.Header.Get("Last-Event-ID"); le != "" {
		s, err := parseSeq(le, "Last-Event-ID")
		if err != nil {
			p.fail(w, routeStream, outBadRequest, http.StatusBadRequest, wire.CodeInvalidCursor, err.Error())
			return
		}
		q.since, q.hasSince = s, true
	}
	token := ""
	if !p.cfg.Open() {
		token = q.token // verified by begin
	}
	addr := r.RemoteAddr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		addr = h
	}
	c := &sseConn{rc: http.NewResponseController(w), rearm: p.sseBaseline.Load()}
	if err := p.sse.acquire(c, token, addr); err != nil {
		w.Header().Set("Retry-After", "10")
		p.fail(w, routeStream, outRateLimited, http.StatusTooManyRequests, wire.CodeRateLimited, err.Error()+"; close one or use long-poll (GET /v1/events/{eventId}/updates?wait=)")
		return
	}
	defer p.sse.release(c, token, addr)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	p.m.count(routeStream, outOK)
	p.m.streams.Inc()
	defer p.m.streams.Dec()
	sw := &sseWriter{w: w, c: c, timeout: p.cfg.SSEWriteTimeout, buf: make([]byte, 0, 512)}
	defer func() {
		if errors.Is(sw.err, os.ErrDeadlineExceeded) && !p.draining() {
			p.m.sseSlowClosed.Inc()
			p.log.WithField("event_id", id).Debug("sse stream closed: the client stopped reading")
		}
	}()
	sw.add([]byte("retry: 2000\n\n"))
	if sw.flush() != nil {
		return
	}
	hb := time.NewTicker(p.cfg.Heartbeat)
	defer hb.Stop()
	var buf [16]item
	for {
		v := p.idx.read(id, q.since, q.hasSince, true, buf[:0], nil)
		wrote := false
		switch {
		case v.behind:
		case v.reset:
			// Below the ring: page through the stream while it holds
			// the changes; reset only when it no longer does.
			items, cursor, err := p.deepPage(r.Context(), id, q.since, v.floor)
			if err == nil {
				if v.wake != nil {
					p.idx.unwait(id, v.wake)
				}
				for _, it := range items {
					sw.addEvent(it.seq, it.typ, it.json)
				}
				q.since, q.hasSince = cursor, true
				if sw.flush() != nil || p.draining() {
					return
				}
				continue
			}
			if !errors.Is(err, errStreamGone) {
				if r.Context().Err() == nil {
					p.log.WithError(err).WithField("event_id", id).Warn("deep resume failed")
				}
				return // the browser reconnects with Last-Event-ID
			}
			var b [96]byte
			d := append(b[:0], `{"reset":true,"cursor":"`...)
			d = formatSeq(d, v.applied)
			d = append(d, `"}`...)
			sw.addEvent(v.applied, "reset", d)
			q.since, q.hasSince = v.applied, true
			wrote = true
		default:
			for _, it := range v.items {
				p.addFrame(sw, it)
				if sw.err != nil || p.draining() {
					break
				}
			}
			// Every change of this eventId up to applied was just sent.
			q.since, q.hasSince = v.applied, true
			wrote = len(v.items) > 0
		}
		if wrote {
			if v.wake != nil {
				p.idx.unwait(id, v.wake)
			}
			if sw.flush() != nil || p.draining() {
				return
			}
			continue
		}
		var wake <-chan struct{}
		if v.wake != nil {
			wake = v.wake.ch
		}
		var advanced <-chan struct{}
		if v.behind {
			advanced = v.advanced
		}
		stop := false
		for !stop {
			select {
			case <-wake:
				stop = true
			case <-advanced:
				stop = true
			case <-hb.C:
				sw.add([]byte(": heartbeat\n\n"))
				if sw.flush() != nil {
					if v.wake != nil {
						p.idx.unwait(id, v.wake)
					}
					return
				}
			case <-p.drain:
				if v.wake != nil {
					p.idx.unwait(id, v.wake)
				}
				return
			case <-r.Context().Done():
				if v.wake != nil {
					p.idx.unwait(id, v.wake)
				}
				return
			}
		}
		if v.wake != nil {
			p.idx.unwait(id, v.wake)
		}
	}
}
