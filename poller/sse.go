package poller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
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
//
// That is the goroutine path, which every stream starts on: once an
// HTTP/1.1 stream has caught up it is parked (ssepark.go) and its handler
// returns.

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
	// parked: the stream was handed to its eventId's group (ssepark.go),
	// which releases it when it ends.
	parked := false
	defer func() {
		if !parked {
			p.sse.release(c, token, addr)
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	p.m.count(routeStream, outOK)
	p.m.streams.Inc()
	defer func() {
		if !parked {
			p.m.streams.Dec()
		}
	}()
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
	st := &sseStream{p: p, ctx: r.Context(), sw: sw, id: id, since: q.since, hasSince: q.hasSince, hb: hb, park: p.sseParkable(r)}
	for st.step() {
		if st.wantPark {
			// Caught up, everything flushed: hand the connection over,
			// or keep it here when it cannot be hijacked.
			st.wantPark, st.park = false, false
			if parked = p.parkStream(w, st, c, token, addr); parked {
				return
			}
		}
	}
}

// sseStream is one open stream across its reads.
type sseStream struct {
	p   *Poller
	ctx context.Context // the request's
	sw  *sseWriter
	id  string
	// since is the seq of the last change sent (when hasSince).
	since    uint64
	hasSince bool
	hb       *time.Ticker
	buf      [16]item
	// park: once caught up, the stream may be parked (sseParkable);
	// step sets wantPark instead of waiting.
	park, wantPark bool
}

// step reads once and sends what there is, or waits for a change; it
// reports whether to go on. The waiter its read registered is released on
// the way out, whichever way that is.
func (st *sseStream) step() bool {
	p, sw, id := st.p, st.sw, st.id
	o := readSince(st.since, st.hasSince)
	o.wait = p.waits.add
	v := p.idx.read(id, o, st.buf[:0])
	defer p.waits.release(id, v.wake)
	switch {
	case v.behind:
	case v.reset:
		// Below the ring: page through the stream while it holds the
		// changes; reset only when it no longer does.
		items, cursor, err := p.deepPage(st.ctx, id, st.since, v.floor)
		if err == nil {
			for _, it := range items {
				sw.addEvent(it.seq, it.typ, it.json)
			}
			st.since, st.hasSince = cursor, true
			return sw.flush() == nil && !p.draining()
		}
		if !errors.Is(err, errStreamGone) {
			if st.ctx.Err() == nil {
				p.log.WithError(err).WithField("event_id", id).Warn("deep resume failed")
			}
			return false // the browser reconnects with Last-Event-ID
		}
		var b [96]byte
		d := append(b[:0], `{"reset":true,"cursor":"`...)
		d = formatSeq(d, v.applied)
		d = append(d, `"}`...)
		sw.addEvent(v.applied, "reset", d)
		st.since, st.hasSince = v.applied, true
		return sw.flush() == nil && !p.draining()
	default:
		for _, it := range v.items {
			p.addFrame(sw, it)
			if sw.err != nil || p.draining() {
				break
			}
		}
		// Every change of this eventId up to applied was just sent.
		st.since, st.hasSince = v.applied, true
		if len(v.items) > 0 {
			return sw.flush() == nil && !p.draining()
		}
	}
	if st.park && !v.behind {
		st.wantPark = true
		return true
	}
	var wake, advanced <-chan struct{}
	if v.wake != nil {
		wake = v.wake.ch
	}
	if v.behind {
		advanced = v.advanced
	}
	for {
		select {
		case <-wake:
			return true
		case <-advanced:
			return true
		case <-st.hb.C:
			sw.add([]byte(": heartbeat\n\n"))
			if sw.flush() != nil {
				return false
			}
		case <-p.drain:
			return false
		case <-st.ctx.Done():
			return false
		}
	}
}
