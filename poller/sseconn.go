package poller

import (
	"bytes"
	"errors"
	"net/http"
	"sync"
	"time"
)

// sseBufferBytes bounds the bytes gathered per stream before they are
// written; envelopes larger than it are written without a copy.
const sseBufferBytes = 8 << 10

// sseConn is one open stream, known to the registry so Drain can end a
// write stuck in a full socket.
type sseConn struct {
	// rc is the handler's writer; nil once the stream is parked (Drain
	// ends parked streams itself).
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
	if c.rc != nil {
		// A deadline in the past fails a pending write at once.
		_ = c.rc.SetWriteDeadline(time.Unix(1, 0))
	}
}

// park drops the handler's writer: the stream is parked, and the writer
// would keep net/http's connection and its buffers alive.
func (c *sseConn) park() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rc = nil
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
