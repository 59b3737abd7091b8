package poller

import (
	"context"
	"errors"
	"sync/atomic"
)

// Rounds of parked SSE streams (see ssepark.go): a change of an eventId
// with parked streams starts a round, at most one per group at a time, so
// every stream gets its frames in order; changes during a round make one
// more, which carries them all.

// sseRound is one round's frames, written to a snapshot of the group.
type sseRound struct {
	g   *sseGroup
	buf []byte   // the frames as chunks, shared by every stream; immutable
	seq []uint64 // each frame's seq
	off []int    // where each frame starts in buf
	// streams is the group when the round read; later joiners read after
	// it and have what it carries.
	streams []*sseParked
	reset   bool
	left    atomic.Int32 // jobs not yet written
}

// sseJob is a parking worker's SSE work: start g's round (g set) or write
// streams [lo,hi) of round r.
type sseJob struct {
	g      *sseGroup
	r      *sseRound
	lo, hi int
}

// encodeRound encodes items' shared frames as chunks into one buffer.
func (p *Poller) encodeRound(items []item) *sseRound {
	r := &sseRound{seq: make([]uint64, 0, len(items)), off: make([]int, 0, len(items))}
	for _, it := range items {
		r.seq = append(r.seq, it.seq)
		r.off = append(r.off, len(r.buf))
		r.buf = appendChunk(r.buf, p.frames.frame(it))
	}
	return r
}

// startRound reads g's changes after its cursor and hands the writes to
// the workers. The caller runs g's round (g.running).
func (p *Poller) startRound(g *sseGroup) {
	w := p.waits
	w.mu.Lock()
	g.dirty = false
	since := g.cursor
	w.mu.Unlock()
	var ib [16]item
	v := p.idx.read(g.id, readSince(since, true), ib[:0])
	if v.reset {
		// The ring dropped changes the streams were not sent (a burst
		// outran the rounds): page through the stream as the goroutine
		// path does, off the workers, which must not wait on JetStream.
		go p.deepRound(g, since, v.floor)
		return
	}
	r := &sseRound{reset: v.behind}
	if !r.reset {
		r = p.encodeRound(v.items)
	}
	r.g = g
	w.mu.Lock()
	if !r.reset {
		g.cursor = max(g.cursor, v.applied)
	}
	if r.reset || len(r.seq) > 0 {
		r.streams = append([]*sseParked(nil), g.streams...)
	}
	w.mu.Unlock()
	p.writeJobs(r)
}

// deepRound sends g's streams the changes after since up to floor, a page
// of them, from the stream; the next round goes on from the page's end.
// When the stream no longer holds them (or cannot be read) the streams
// end, and EventSource resumes with Last-Event-ID on the goroutine path,
// which answers reset if it must.
func (p *Poller) deepRound(g *sseGroup, since, floor uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.drain:
			cancel()
		case <-ctx.Done():
		}
	}()
	items, cursor, err := p.deepPage(ctx, g.id, since, floor)
	r := &sseRound{reset: true}
	if err == nil {
		r = p.encodeRound(items)
	} else if !errors.Is(err, errStreamGone) && ctx.Err() == nil {
		p.log.WithError(err).WithField("event_id", g.id).Warn("deep resume of parked streams failed")
	}
	r.g = g
	w := p.waits
	w.mu.Lock()
	if !r.reset {
		g.cursor = max(g.cursor, cursor)
		g.dirty = true // the ring's changes above the page come next
	}
	r.streams = append([]*sseParked(nil), g.streams...)
	w.mu.Unlock()
	p.writeJobs(r)
}

// writeJobs hands round r's writes to the workers, a chunk of streams per
// job; the last job to finish ends the round.
func (p *Poller) writeJobs(r *sseRound) {
	if len(r.streams) == 0 || (!r.reset && len(r.seq) == 0) {
		p.roundDone(r.g)
		return
	}
	var jobs []sseJob
	for lo := 0; lo < len(r.streams); lo += sseParkChunk {
		jobs = append(jobs, sseJob{r: r, lo: lo, hi: min(lo+sseParkChunk, len(r.streams))})
	}
	r.left.Store(int32(len(jobs)))
	p.pk.enqueueSSE(jobs...)
}

// writeRound writes round r to streams [lo,hi) of its snapshot.
func (p *Poller) writeRound(r *sseRound, lo, hi int) {
	for _, s := range r.streams[lo:hi] {
		if r.reset {
			s.end(sseReset) // see deepRound
			continue
		}
		s.mu.Lock()
		i := 0
		for i < len(r.seq) && r.seq[i] <= s.since {
			i++ // sent before it joined
		}
		why := sseKeep
		if i < len(r.seq) {
			s.since = r.seq[len(r.seq)-1]
			why = s.sendLocked(r.buf[r.off[i]:])
		}
		s.mu.Unlock()
		if why != sseKeep {
			s.end(why)
		}
	}
	if r.left.Add(-1) == 0 {
		p.roundDone(r.g)
	}
}

// roundDone starts g's next round when changes came during this one.
func (p *Poller) roundDone(g *sseGroup) {
	w := p.waits
	w.mu.Lock()
	if g.dirty {
		w.mu.Unlock()
		p.pk.enqueueSSE(sseJob{g: g})
		return
	}
	g.running = false
	w.dropGroupLocked(g)
	w.mu.Unlock()
}
