package poller

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

// The answers of GET /v1/events/{eventId}/updates. One renderer writes them
// for both paths a long-poll can end on: the handler's http.ResponseWriter,
// and a parked connection's connResponse, which frames what it is given as
// HTTP/1.1 on the hijacked connection. So the wire contract (status,
// headers, body) is written in one place whichever path answers.

// writeAnswer answers a poll that has changes for the client or has waited
// long enough: 304 when the client's copy (If-None-Match, matched) is
// current and nothing is new, else the changes. timedOut says the wait
// ended without a change (its timer, or Drain). It returns the outcome it
// counted.
func (p *Poller) writeAnswer(w http.ResponseWriter, v view, matched, timedOut bool) string {
	outcome := outOK
	if timedOut && len(v.items) == 0 {
		outcome = outTimeout
	}
	if matched && len(v.items) == 0 {
		if !timedOut {
			outcome = outNotModified
		}
		p.writeNotModified(w, v.newest, outcome)
		return outcome
	}
	p.writeUpdates(w, v, outcome)
	return outcome
}

// httpDate is the Date header's value for now, formatted once a second:
// net/http formats it for every response that has none (~5 % of the CPU
// of serving a hot event's re-polls), so the poll answers, the most
// frequent there are, bring their own.
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &dateString{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.s
}

type dateString struct {
	sec int64
	s   string
}

var lastDate atomic.Pointer[dateString]

func setReadHeaders(h http.Header, newest uint64) {
	h["Date"] = []string{httpDate(time.Now())}
	h["Content-Type"] = []string{"application/json"}
	// private: no shared proxy may store a token-gated answer; no-cache: the
	// browser may keep it but must revalidate (cheaply, with the ETag).
	h["Cache-Control"] = []string{"private, no-cache"}
	var b [24]byte
	h["Etag"] = []string{string(appendETag(b[:0], newest))}
}

func (p *Poller) writeNotModified(w http.ResponseWriter, newest uint64, outcome string) {
	h := w.Header()
	h["Date"] = []string{httpDate(time.Now())}
	h["Cache-Control"] = []string{"private, no-cache"}
	var b [24]byte
	h["Etag"] = []string{string(appendETag(b[:0], newest))}
	w.WriteHeader(http.StatusNotModified)
	p.m.count(routeUpdates, outcome)
}

func (p *Poller) writeReset(w http.ResponseWriter, applied uint64) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	b := make([]byte, 0, 64)
	b = append(b, `{"reset":true,"cursor":"`...)
	b = formatSeq(b, applied)
	b = append(b, "\"}\n"...)
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b) // a failed write means the client left
	p.m.count(routeUpdates, outReset)
}

// writeBehind answers a cursor this replica has not applied yet.
func (p *Poller) writeBehind(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	p.fail(w, routeUpdates, outUnavailable, http.StatusServiceUnavailable, wire.CodeUnavailable, "this poller replica is behind your cursor; retry shortly")
}

// writeUpdates writes {"cursor":"<seq>","events":[...]} by splicing the
// envelopes' stored JSON.
func (p *Poller) writeUpdates(w http.ResponseWriter, v view, outcome string) {
	if v.deep {
		// A page of a deep resume: the client is not caught up, so it must
		// not get the newest seq's ETag (its next conditional poll would
		// be a 304 and it would stop paging).
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store"}
	} else {
		setReadHeaders(w.Header(), v.newest)
	}
	var head [64]byte
	hb := append(head[:0], `{"cursor":"`...)
	hb = formatSeq(hb, v.applied)
	hb = append(hb, `","events":[`...)
	n := len(hb) + 3
	for i, it := range v.items {
		if i > 0 {
			n++
		}
		n += len(it.json)
	}
	w.Header()["Content-Length"] = []string{strconv.Itoa(n)}
	w.WriteHeader(http.StatusOK)
	p.m.count(routeUpdates, outcome)
	// Write errors mean the client left; there is nobody to tell.
	if _, err := w.Write(hb); err != nil {
		return
	}
	for i, it := range v.items {
		if i > 0 {
			if _, err := w.Write([]byte{','}); err != nil {
				return
			}
		}
		if _, err := w.Write(it.json); err != nil {
			return
		}
	}
	_, _ = w.Write([]byte("]}\n"))
}

// connResponse is the http.ResponseWriter of a parked connection's answer:
// it gathers what the renderer writes, and frame turns it into the one
// HTTP/1.1 response net/http would have written. It knows HTTP framing,
// nothing of the answers.
type connResponse struct {
	// pre holds the header lines the request had gathered before it was
	// hijacked (CORS, Vary).
	pre    []byte
	h      http.Header
	status int
	body   []byte
}

func (c *connResponse) Header() http.Header {
	if c.h == nil {
		c.h = make(http.Header, 6)
	}
	return c.h
}

func (c *connResponse) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *connResponse) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	c.body = append(c.body, b...)
	return len(b), nil
}

// frame returns the response's bytes; closing adds Connection: close.
func (c *connResponse) frame(closing bool) []byte {
	c.WriteHeader(http.StatusOK)
	h := c.Header()
	b := make([]byte, 0, 256+len(c.pre)+len(c.body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(c.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(c.status)...)
	b = append(b, "\r\n"...)
	b = append(b, c.pre...)
	if c.status == http.StatusNotModified {
		delete(h, "Content-Length") // a 304 has no body
	} else if _, ok := h["Content-Length"]; !ok {
		h["Content-Length"] = []string{strconv.Itoa(len(c.body))}
	}
	if closing {
		h["Connection"] = []string{"close"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{httpDate(time.Now())}
	}
	bw := appendWriter{b}
	_ = h.Write(&bw) // appending to a slice does not fail
	b = append(bw.b, "\r\n"...)
	if c.status != http.StatusNotModified {
		b = append(b, c.body...)
	}
	return b
}

// sharedAnswer is the last parked answer a worker framed, kept so the
// records woken by one change, which nearly all get the same answer, share
// its bytes: one render per wake and worker instead of one per waiter (on a
// hot eventId, thousands). It is a cache of frame's output, not a second
// renderer: a record whose answer could differ in any byte (another view,
// ETag match, header lines, Connection, Date second) renders its own.
type sharedAnswer struct {
	key     answerKey
	hdr     []byte
	outcome string
	b       []byte // never written to once framed: connections share it
}

// answerKey is everything writeAnswer and frame read, beside the header
// lines gathered before parking (compared apart): the view's cursor,
// newest seq and changes (a change's JSON is immutable once indexed, so
// its eventId and seqs name its bytes), whether If-None-Match matched,
// Connection: close, and the second of the Date header.
type answerKey struct {
	id               string
	applied, newest  uint64
	first, last      uint64
	n                int
	deep             bool
	matched, closing bool
	hot              bool // the answer carries Live-Transport: sse
	dateSec          int64
}

func keyOf(id string, v view, matched, closing, hot bool, now time.Time) answerKey {
	k := answerKey{id: id, applied: v.applied, newest: v.newest, n: len(v.items), deep: v.deep,
		matched: matched, closing: closing, hot: hot, dateSec: now.Unix()}
	if k.n > 0 {
		k.first, k.last = v.items[0].seq, v.items[k.n-1].seq
	}
	return k
}

// answerBytes returns the framed answer to a parked poll of id whose read
// was v: the shared bytes in s when they are that answer, else freshly
// rendered (and kept in s when s is not nil). A parked poll is a long-poll,
// so a hot eventId's answer carries the SSE hint (see hot.go).
func (p *Poller) answerBytes(s *sharedAnswer, id string, hdr []byte, v view, matched, closing bool) []byte {
	now := time.Now()
	hot := p.hot.is(id, now)
	k := keyOf(id, v, matched, closing, hot, now)
	if s != nil && s.b != nil && s.key == k && bytes.Equal(s.hdr, hdr) {
		p.m.count(routeUpdates, s.outcome)
		return s.b
	}
	w := &connResponse{pre: hdr}
	if hot {
		w.Header()[headerTransport] = sseHint
	}
	outcome := p.writeAnswer(w, v, matched, true)
	b := w.frame(closing)
	if s != nil {
		*s = sharedAnswer{key: k, hdr: hdr, outcome: outcome, b: b}
	}
	return b
}

type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
