// Holding and releasing: the changes this process holds unacked, kept
// alive within the ack wait, settled once Pusher has them, and given back
// when Run ends.

package relay

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"
)

// settle acks a change Pusher accepted; in partitioned mode it marks it
// settled for the checkpoint instead.
func (r *Relay) settle(it *item) {
	if it.part != nil {
		it.part.settle(it.seq)
		return
	}
	if err := it.msg.Ack(); err != nil {
		r.logAck.Do(func() { r.log.WithError(err).WithField("seq", it.seq).Warn("ack change") })
	}
}

// progressed records that a held change was acked or terminated.
func (r *Relay) progressed() { r.lastProgress.Store(time.Now().UnixNano()) }

// keepAlive resets the ack wait of every change held longer than a third of
// it, so changes held through an outage or a slow request are not
// redelivered elsewhere. Checking every sixth of it, a change goes at most
// half the ack wait without a reset: margin for a loaded machine.
func (r *Relay) keepAlive(ctx context.Context) {
	every := max(r.cfg.AckWait/3, 10*time.Millisecond)
	t := time.NewTicker(max(every/2, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, it := range r.hold.stale(time.Now(), every) {
			if it.part != nil {
				continue // an ordered consumer has no ack wait
			}
			if err := it.msg.InProgress(); err != nil {
				r.logAck.Do(func() { r.log.WithError(err).WithField("seq", it.seq).Warn("extend ack wait") })
			}
		}
	}
}

// releaseAll gives back every change still held when Run ends: Nak, so
// another replica sends it at once; a change on its last delivery attempt is
// dead-lettered instead, as the server would not deliver it again.
func (r *Relay) releaseAll(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	items := r.hold.all()
	// nats-server redelivers Naks in the order it got them: Nak in seq
	// order so the next relay sends each channel's changes in seq order.
	slices.SortFunc(items, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
	for _, it := range items {
		if it.part != nil {
			// The next owner of the partition reads it again from the
			// checkpoint.
			r.hold.done(it)
			continue
		}
		if it.delivered >= uint64(r.cfg.MaxDeliver) {
			if err := r.deadLetterItem(dctx, it, 0, reasonMaxDeliver, "relay stopped during the last delivery attempt"); err != nil {
				r.log.WithError(err).WithField("seq", it.seq).Error("dead-letter change on its last attempt")
			}
			continue
		}
		if err := it.msg.Nak(); err != nil {
			r.logAck.Do(func() { r.log.WithError(err).WithField("seq", it.seq).Warn("release change") })
		}
		r.hold.done(it)
	}
	if len(items) > 0 {
		// Naks are fire-and-forget: flush so they leave before the caller
		// closes the connection.
		if err := r.js.Conn().FlushWithContext(dctx); err != nil {
			r.log.WithError(err).Warn("flush released changes")
		}
		r.log.WithField("changes", len(items)).Info("released held changes")
	}
}

// holder tracks the changes this process holds unacked, and bounds them.
type holder struct {
	sem   *semaphore.Weighted
	gauge prometheus.Gauge
	mu    sync.Mutex
	items map[*item]struct{}
}

func newHolder(capacity int64, gauge prometheus.Gauge) *holder {
	return &holder{sem: semaphore.NewWeighted(capacity), gauge: gauge, items: make(map[*item]struct{})}
}

// add records changes fetched under semaphore units already acquired.
func (h *holder) add(items ...*item) {
	h.mu.Lock()
	for _, it := range items {
		h.items[it] = struct{}{}
	}
	h.gauge.Set(float64(len(h.items)))
	h.mu.Unlock()
}

// done forgets changes that were acked, termed or released, under one lock
// and one semaphore release for the lot.
func (h *holder) done(items ...*item) {
	h.mu.Lock()
	released := 0
	for _, it := range items {
		if _, ok := h.items[it]; ok {
			delete(h.items, it)
			released++
		}
	}
	h.gauge.Set(float64(len(h.items)))
	h.mu.Unlock()
	if released > 0 {
		h.sem.Release(int64(released))
	}
}

// stale returns the changes not touched for at least d and marks them touched.
func (h *holder) stale(now time.Time, d time.Duration) []*item {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*item
	for it := range h.items {
		if now.Sub(it.touched) >= d {
			it.touched = now
			out = append(out, it)
		}
	}
	return out
}

// dropRevoked forgets the changes of partitions handed over.
func (h *holder) dropRevoked() {
	h.mu.Lock()
	var gone []*item
	for it := range h.items {
		if it.revoked() {
			gone = append(gone, it)
		}
	}
	h.mu.Unlock()
	h.done(gone...)
}

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.items)
}

func (h *holder) all() []*item {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*item, 0, len(h.items))
	for it := range h.items {
		out = append(out, it)
	}
	return out
}
