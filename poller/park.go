package poller

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Parking. A long-poll that must wait costs, on the plain net/http path, two
// goroutines (the handler's and the connection's background reader) and
// about 10 KiB of bufio buffers: ~21 KiB per waiting client. So once an
// HTTP/1.1 long-poll must wait, the handler hijacks the connection, builds
// a small parked record and returns; net/http releases its goroutines and
// buffers. The parked record sits in the eventId's wait set with one timer.
// Whoever ends the wait (a change of the eventId, the timer, Drain, or the
// reaper finding the client gone) first takes the record out of the wait
// set under waiters.mu, so exactly one party answers it. Answers to woken
// records are written by a small on-demand worker pool, never on the
// publisher's (the index's) path. After the answer the connection is handed
// to an inner http.Server with the outer server's handler and timeouts, so
// the browser keeps its keep-alive connection (ParkKeepAlive), or it is
// answered with "Connection: close" (ParkClose, draining, or no server to
// hand it to). HTTP/2 and HTTP/1.0 requests cannot be hijacked and keep the
// plain path.

// Park modes (Config.Park, LIVE_POLLER_PARK).
const (
	ParkKeepAlive = "keepalive"
	ParkClose     = "close"
	ParkOff       = "off"
)

const (
	// parkChunk is how many records a worker takes at a time.
	parkChunk = 32
	// parkWriteTimeout bounds one answer's write to a parked connection,
	// so a client that stopped reading cannot hold a worker.
	parkWriteTimeout = 10 * time.Second
)

// parkWorkers bounds the goroutines writing answers to parked connections:
// a core's worth but one (at least 2, at most 8), so the fan-out of a wake
// of thousands leaves the rest of the process (publishes in dev, following
// the stream) a core. Read each time: the runtime may change GOMAXPROCS.
func parkWorkers() int { return min(8, max(2, runtime.GOMAXPROCS(0)-1)) }

// parked is one hijacked long-poll connection waiting for a change.
type parked struct {
	conn     net.Conn
	id       string
	since    uint64
	hasSince bool
	inm      string
	// hdr holds the header lines the request had gathered before it
	// parked (CORS, Vary), written in every answer as the plain path would.
	hdr []byte
	// close answers with Connection: close (the client asked for it, or
	// sent bytes after its request).
	close bool
	// srv takes the connection back after the answer; nil closes it.
	srv   *innerServer
	timer *time.Timer
	// lingered is set once the answer was held for the linger, so it is
	// held at most once. Owned by whoever owns the record.
	lingered bool

	// Guarded by waiters.mu.
	ws         *waitSet
	prev, next *parked
	expired    bool
}

// parking owns the answer workers and the inner servers that take
// connections back.
type parking struct {
	p *Poller
	// stopping is set by Drain and Run's end: no more parking, and
	// answers close their connection.
	stopping atomic.Bool

	mu    sync.Mutex
	queue []*parked
	// sseQueue is the parked SSE streams' work (ssepark.go), served by
	// the same workers: one cap on the goroutines fanning out.
	sseQueue []sseJob
	workers  int
	closed   bool
	servers  map[*http.Server]*innerServer
	wg       sync.WaitGroup
	// lingering holds woken records waiting out Config.Linger; they are
	// in no wait set, so Drain takes them from here.
	lingering map[*lingerBatch]struct{}
}

// lingerBatch is the parked records one change woke, answered together
// once the linger ends.
type lingerBatch struct {
	pcs []*parked
	t   *time.Timer
}

// wake takes over records whose eventId changed. With a linger, they are
// answered when it ends, so the changes that follow within it ride in the
// same answer (one timer per wake, not per record); the records are in no
// wait set meanwhile, so later changes do not wake them again. Like
// enqueue it never blocks, so the index may call it under its locks.
func (k *parking) wake(pcs []*parked) { k.hold(pcs, k.p.cfg.Linger) }

// hold hands pcs to the workers once d has passed (at once when d <= 0 or
// parking is stopping). It never blocks.
func (k *parking) hold(pcs []*parked, d time.Duration) {
	if len(pcs) == 0 {
		return
	}
	k.mu.Lock()
	// stopping is read under mu: drainParked sets it before it takes the
	// held batches under mu, so a batch is either taken by it or not held.
	if d <= 0 || k.stopping.Load() {
		k.mu.Unlock()
		k.enqueue(pcs)
		return
	}
	defer k.mu.Unlock()
	lb := &lingerBatch{pcs: pcs}
	if k.lingering == nil {
		k.lingering = make(map[*lingerBatch]struct{})
	}
	k.lingering[lb] = struct{}{}
	lb.t = time.AfterFunc(d, func() {
		k.mu.Lock()
		_, mine := k.lingering[lb]
		delete(k.lingering, lb)
		k.mu.Unlock()
		if mine { // else Drain answered them
			k.enqueue(lb.pcs)
		}
	})
}

// enqueue hands taken records to the workers, starting one per chunk up
// to parkWorkers(). It never blocks, so the index may call it under its
// locks.
func (k *parking) enqueue(pcs []*parked) {
	if len(pcs) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.queue = append(k.queue, pcs...)
	k.startWorkersLocked()
}

// enqueueSSE hands SSE jobs to the workers. It never blocks.
func (k *parking) enqueueSSE(jobs ...sseJob) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sseQueue = append(k.sseQueue, jobs...)
	k.startWorkersLocked()
}

// startWorkersLocked starts a worker per chunk of queued records (an SSE
// job counts as a chunk) up to parkWorkers(). The caller holds mu.
func (k *parking) startWorkersLocked() {
	for k.workers < parkWorkers() && k.workers*parkChunk < len(k.queue)+parkChunk*len(k.sseQueue) {
		k.workers++
		k.wg.Go(k.work)
	}
}

func (k *parking) work() {
	var shared sharedAnswer
	for {
		k.mu.Lock()
		if len(k.sseQueue) > 0 {
			j := k.sseQueue[0]
			k.sseQueue[0] = sseJob{}
			k.sseQueue = k.sseQueue[1:]
			if len(k.sseQueue) == 0 {
				k.sseQueue = nil // let a large backing array go
			}
			k.mu.Unlock()
			if j.g != nil {
				k.p.startRound(j.g)
			} else {
				k.p.writeRound(j.r, j.lo, j.hi)
			}
			continue
		}
		n := min(len(k.queue), parkChunk)
		if n == 0 {
			k.queue = nil // let a large backing array go
			k.workers--
			k.mu.Unlock()
			return
		}
		batch := k.queue[:n:n]
		k.queue = k.queue[n:]
		k.mu.Unlock()
		for _, pc := range batch {
			k.p.settle(pc, &shared)
		}
	}
}

// drainParked stops parking, ends every parked SSE stream and answers
// every parked connection now, with Connection: close, before it returns.
func (k *parking) drainParked() {
	k.stopping.Store(true)
	k.p.endParkedSSE()
	k.mu.Lock()
	for _, is := range k.servers {
		is.srv.SetKeepAlivesEnabled(false)
	}
	k.mu.Unlock()
	pcs := k.p.waits.closeParking()
	// Every wake that took records did so under waiters.mu before closeParking
	// and registered its batch then, so none is missed here.
	k.mu.Lock()
	for lb := range k.lingering {
		if lb.t != nil {
			lb.t.Stop()
		}
		pcs = append(pcs, lb.pcs...)
	}
	clear(k.lingering)
	k.mu.Unlock()
	var wg sync.WaitGroup
	nw := min(parkWorkers(), (len(pcs)+parkChunk-1)/parkChunk)
	for w := range nw {
		wg.Go(func() {
			var shared sharedAnswer
			for i := w; i < len(pcs); i += nw {
				k.p.settle(pcs[i], &shared)
			}
		})
	}
	wg.Wait()
}

// shutdown answers what is parked, shuts the inner servers down and waits
// for every goroutine parking started. Run calls it on its way out.
func (k *parking) shutdown() {
	k.drainParked()
	k.mu.Lock()
	k.closed = true
	var srvs []*http.Server
	for outer, is := range k.servers {
		if outer == is.srv {
			srvs = append(srvs, is.srv)
		}
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		if s.Shutdown(ctx) != nil {
			_ = s.Close() // requests still running past the bound are cut
		}
	}
	k.wg.Wait()
}

// tryPark hijacks an HTTP/1.1 long-poll that must wait and parks it. It
// reports false, with nothing changed, when the request cannot be parked
// (HTTP/2, HTTP/1.0, a writer without Hijack, parking off or stopping);
// the caller then waits on the plain path.
func (p *Poller) tryPark(w http.ResponseWriter, r *http.Request, id string, q query, inm string) bool {
	pc := p.hijack(w, r, id, q, inm)
	if pc == nil {
		return false
	}
	p.settle(pc, nil)
	return true
}

// parkable says whether a long-poll request r that must wait may be
// parked. A HEAD answer has no body and a request body would be read as
// the next request after the hand-back: both keep the plain path, as do
// HTTP/2 and HTTP/1.0.
func (p *Poller) parkable(r *http.Request) bool {
	return p.cfg.Park != ParkOff && r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.Method == http.MethodGet &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0 && !p.pk.stopping.Load()
}

// hijack takes the connection of a long-poll that can be parked and
// returns its record, counted as waiting and with its wait's timer
// running; nil means it cannot be parked and nothing changed.
func (p *Poller) hijack(w http.ResponseWriter, r *http.Request, id string, q query, inm string) *parked {
	if !p.parkable(r) {
		return nil
	}
	var srv *innerServer
	if outer, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && p.cfg.Park == ParkKeepAlive {
		srv = p.pk.serverFor(outer)
	}
	var hb bytes.Buffer
	_ = w.Header().Write(&hb) // a bytes.Buffer does not fail
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	pc := &parked{
		conn: conn, id: id, since: q.since, hasSince: q.hasSince, inm: inm, hdr: hb.Bytes(), srv: srv,
		// Bytes after the request (pipelining) are in brw, which is
		// dropped: closing tells the client to resend them.
		close: r.Close || srv == nil || brw.Reader.Buffered() > 0,
	}
	p.m.waiting.Inc()
	pc.timer = time.AfterFunc(q.wait, func() {
		if p.waits.expire(pc) {
			p.pk.enqueue([]*parked{pc})
		}
	})
	return pc
}

// settle re-reads pc's eventId: it parks pc (again) when there is still
// nothing to say, holds it once while its oldest change is younger than
// the linger, else answers it. The caller owns pc (it is not parked).
//
// shared is the calling worker's last answer (nil: none), see sharedAnswer.
func (p *Poller) settle(pc *parked, shared *sharedAnswer) {
	var buf [8]item
	o := readSince(pc.since, pc.hasSince)
	o.wait = p.waits.parkOn(pc)
	v := p.idx.read(pc.id, o, buf[:0])
	if v.wake != nil {
		return // parked; pc now belongs to the wait set
	}
	if !pc.lingered && !p.pk.stopping.Load() {
		if d := p.lingerFor(v); d > 0 {
			pc.lingered = true
			p.pk.hold([]*parked{pc}, d)
			return
		}
	}
	pc.timer.Stop()
	p.m.waiting.Dec()
	p.answerParked(pc, v, shared)
}

// reapParked closes parked connections whose client has gone, so they stop
// counting as waiting long-polls before their timer ends.
func (p *Poller) reapParked() {
	for _, pc := range p.waits.parkedSnapshot(nil) {
		if !peerGone(pc.conn) || !p.waits.take(pc) {
			continue
		}
		pc.timer.Stop()
		p.m.waiting.Dec()
		_ = pc.conn.Close() // the client is gone; nothing to tell it
	}
}

// answerParked writes the answer the plain path would have written after
// the wait, then hands the connection back or closes it. shared, when not
// nil, is the calling worker's last answer, reused when it is this one.
func (p *Poller) answerParked(pc *parked, v view, shared *sharedAnswer) {
	closing := pc.close || p.pk.stopping.Load()
	var b []byte
	switch {
	case v.behind:
		// Not reachable while the index only moves forward; answered as
		// the plain path answers a cursor this replica cannot serve.
		w := &connResponse{pre: pc.hdr}
		p.writeBehind(w)
		b = w.frame(closing)
	case v.reset:
		// A burst pushed the cursor below the ring while the client
		// waited. The stream still holds the changes, but a worker must
		// not wait on JetStream: answer "nothing yet" at the client's own
		// cursor, without an ETag (as a deep page), and its next poll
		// pages through the stream on the plain path (which answers reset
		// if it must).
		w := &connResponse{pre: pc.hdr}
		p.writeUpdates(w, view{applied: pc.since, deep: true}, outTimeout)
		b = w.frame(closing)
	default:
		// Woken by a change, an eviction, its timer or Drain: what has no
		// change for the client counts as a timeout.
		b = p.answerBytes(shared, pc.id, pc.hdr, v, pc.inm != "" && etagMatch(pc.inm, v.newest), closing)
	}
	_ = pc.conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
	_, err := pc.conn.Write(b)
	if err != nil || closing || pc.conn.SetWriteDeadline(time.Time{}) != nil || !pc.srv.l.give(pc.conn) {
		// A failed write means the client left; closing is the answer's
		// promise; a stopped inner server cannot take the connection.
		_ = pc.conn.Close()
	}
}
