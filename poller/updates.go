package poller

import (
	"context"
	"net/http"
	"time"
)

// handleUpdates answers a poll or a long-poll. See the index for what the
// cursor and "reset" mean.
func (p *Poller) handleUpdates(w http.ResponseWriter, r *http.Request) {
	id, q, ok := p.begin(w, r, routeUpdates)
	if !ok {
		return
	}
	inm := r.Header.Get("If-None-Match")
	waiting := q.wait > 0 && !p.draining()
	if q.wait > 0 && p.hot.on() {
		// This long-poll is about to wait too: it counts.
		if p.hot.observe(id, p.waits.count(id)+1, time.Now()) && q.sse {
			// A client that can take the stream moves now, while nothing
			// is happening: waiting for the next change would answer it
			// with that change's crowd, thousands of answers and new
			// streams at the moment the change should reach them.
			waiting = false
			w.Header()[headerTransport] = sseHint
		}
	}
	// The cheap path: the client's copy names this eventId's newest seq,
	// so nothing changed for it; no cursor arithmetic is needed.
	if inm != "" && !waiting {
		if newest := p.idx.newestOf(id); etagMatch(inm, newest) {
			p.writeNotModified(w, newest, outNotModified)
			return
		}
	}
	lp := &longPoll{p: p, w: w, r: r, id: id, q: q, inm: inm, waiting: waiting}
	defer lp.stop()
	for lp.step() {
	}
}

// longPoll is one poll on the plain net/http path, across its reads.
type longPoll struct {
	p       *Poller
	w       http.ResponseWriter
	r       *http.Request
	id      string
	q       query
	inm     string
	waiting bool // still willing to wait for a change
	// timedOut: the wait ended without a change (its timer, or Drain).
	timedOut bool
	// lingered: the answer was held for the linger once already.
	lingered bool
	timer    *time.Timer // the wait, once it started
	behindT  *time.Timer // the wait for this replica to reach the cursor
	buf      [2]item
}

func (lp *longPoll) stop() {
	if lp.timer != nil {
		lp.timer.Stop()
		lp.p.m.waiting.Dec()
	}
	if lp.behindT != nil {
		lp.behindT.Stop()
	}
}

// step reads once and then answers, or waits for a reason to read again;
// it reports whether to read again. The waiter its read registered is
// released on the way out, whichever way that is.
func (lp *longPoll) step() bool {
	p, w, r, id := lp.p, lp.w, lp.r, lp.id
	o := readSince(lp.q.since, lp.q.hasSince)
	// A long-poll that will park when it must wait registers no channel
	// waiter first: parking re-reads and joins the wait set under the
	// index's lock, so a change in between is answered, not missed. On a
	// hot eventId nearly every re-poll parks at once.
	park := lp.waiting && lp.timer == nil && p.parkable(r)
	if lp.waiting && !park {
		o.wait = p.waits.add
	}
	v := p.idx.read(id, o, lp.buf[:0])
	defer p.waits.release(id, v.wake)
	if v.behind {
		return lp.behind(v)
	}
	if v.reset {
		if !p.answerDeep(w, r, id, lp.q.since, v.floor) {
			p.writeReset(w, v.applied)
		}
		return false
	}
	matched := lp.inm != "" && etagMatch(lp.inm, v.newest)
	if !lp.waiting || len(v.items) > 0 || (lp.inm != "" && !matched) {
		if d := p.lingerFor(v); lp.waiting && !lp.lingered && d > 0 {
			// The handler waits itself: handing the connection to the
			// parking workers would cost a hijack and a hand-back per
			// answer, which on a hot eventId is nearly every answer.
			lp.lingered = true
			return p.linger(r.Context(), d)
		}
		if lp.q.wait > 0 && p.hot.is(id, time.Now()) {
			w.Header()[headerTransport] = sseHint
		}
		p.writeAnswer(w, v, matched, lp.timedOut)
		return false
	}
	if lp.timer == nil {
		if park && p.tryPark(w, r, id, lp.q, lp.inm) {
			return false // the parked connection is answered from elsewhere
		}
		lp.timer = time.NewTimer(lp.q.wait)
		p.m.waiting.Inc()
		if v.wake == nil {
			return true // not parked after all: read again, registering a waiter
		}
	}
	select {
	case <-v.wake.ch:
	case <-lp.timer.C:
		lp.waiting, lp.timedOut = false, true
	case <-p.drain:
		lp.waiting, lp.timedOut = false, true
	case <-r.Context().Done():
		return false
	}
	return true
}

// behind waits for this replica to apply the client's cursor rather than
// answer from an older state; it reports whether to read again.
func (lp *longPoll) behind(v view) bool {
	p := lp.p
	if lp.behindT == nil {
		lp.behindT = time.NewTimer(p.cfg.BehindWait)
	}
	select {
	case <-v.advanced:
		return true
	case <-lp.behindT.C:
	case <-lp.r.Context().Done():
		return false
	}
	if p.lag.Load() == 0 && p.following.Load() && p.cursorBeyondStream(lp.r.Context(), lp.q.since) {
		// Caught up with the stream and still behind the cursor, which
		// the stream's leader does not hold either: the cursor is not from
		// this stream (recreated, or made up). Only a full refetch is safe.
		p.writeReset(lp.w, p.idx.appliedSeq())
		return false
	}
	p.writeBehind(lp.w)
	return false
}

// lingerFor is how long a long-poll's answer v waits before it is sent:
// until its oldest change is Config.Linger old, so the changes that follow
// within that time ride in the same answer. A browser re-polls at once
// after each answer, so on a hot eventId this holds each browser to about
// one answer (and one request) per linger instead of one per change, and
// a woken long-poll waits the linger from its wake. Zero means answer now:
// the linger is off, nothing new is in v, or the change is old enough.
func (p *Poller) lingerFor(v view) time.Duration {
	if p.cfg.Linger <= 0 || len(v.items) == 0 || v.deep || v.reset || v.behind {
		return 0
	}
	age := time.Duration(time.Now().UnixNano() - v.items[0].applied)
	if age >= p.cfg.Linger {
		return 0
	}
	return min(p.cfg.Linger-age, p.cfg.Linger)
}

// linger waits d on the plain path; Drain cuts it short. It reports false
// when the client left.
func (p *Poller) linger(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.drain:
	case <-ctx.Done():
		return false
	}
	return true
}
