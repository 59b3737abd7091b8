package relay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// lane sends the changes of its channels one request at a time, so a
// channel's changes reach Pusher in seq order while lanes run in parallel.
type lane struct {
	lc    *laneClient
	wake  chan struct{} // capacity 1
	mu    sync.Mutex
	queue []*item
}

func (l *lane) push(items []*item) {
	l.mu.Lock()
	l.queue = append(l.queue, items...)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// requeue puts a partial tail back in front of the queue when more changes
// are already waiting, so a backlog goes out in full batches at no latency
// cost. It reports whether it did.
func (l *lane) requeue(tail []*outEvent) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return false
	}
	var items []*item
	for _, ev := range tail {
		items = append(items, ev.items...)
	}
	// Groups hold their changes oldest first and the tail is in seq order
	// of each group's newest, so sorting by seq restores the fetch order.
	slices.SortFunc(items, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
	l.queue = append(items, l.queue...)
	return true
}

// awaitMore waits up to d for more changes to be queued, and no longer
// than until done reports that the fetcher finished a pull that brought
// this lane nothing. A wake-up left over from changes an earlier take
// already got is not more: it waits on.
func (l *lane) awaitMore(ctx context.Context, d time.Duration, done func() bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := len(l.queue)
		l.mu.Unlock()
		if n > 0 {
			return true
		}
		if done() {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case <-l.wake:
		}
	}
}

// take returns everything queued, waiting for something to be queued.
func (l *lane) take(ctx context.Context) ([]*item, error) {
	for {
		l.mu.Lock()
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		if len(q) > 0 {
			return q, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.wake:
		}
	}
}

// runLane sends what its lane holds until ctx ends. Changes it leaves behind
// stay held and are released by Run.
func (r *Relay) runLane(ctx context.Context, l *lane) {
	enc := newEncoder(r.cfg.MaxPayloadKB)
	for {
		items, err := l.take(ctx)
		if err != nil {
			return
		}
		items = slices.DeleteFunc(items, (*item).revoked)
		if len(items) == 0 {
			continue
		}
		// Fetches come in seq order, but redeliveries need not: after a
		// relay released its changes, nats-server was seen to hand one
		// back behind fifty newer ones. Whatever is queued goes out in
		// seq order (already sorted in the usual case, so cheap).
		slices.SortStableFunc(items, func(a, b *item) int { return cmp.Compare(a.seq, b.seq) })
		groups := coalesce(items, r.coalesce)
		events := make([]*outEvent, len(groups))
		for i, g := range groups {
			events[i] = enc.event(g)
		}
		for i := 0; i < len(events); i += pusherMaxBatch {
			chunk := events[i:min(i+pusherMaxBatch, len(events))]
			// A partial batch rides with changes already queued behind it
			// (the fetcher may have pushed the stream's last ones while this
			// lane was sending); it waits for more only while the stream
			// has a backlog. Steady traffic sends at once.
			if len(chunk) < pusherMaxBatch && (l.requeue(chunk) ||
				r.backlog.Load() && l.awaitMore(ctx, r.moreWait(), r.backlogGone) && l.requeue(chunk)) {
				break // the tail goes out with what follows, in a full batch
			}
			if err := r.deliver(ctx, l, chunk); err != nil {
				return
			}
		}
	}
}

// moreWait bounds how long a lane waits for the rest of a backlog. The
// wait normally ends when a pull brings the lane more, or finds the
// backlog gone; the bound only matters while the fetcher is held up (a
// loaded machine, a full holder), and costs latency only to changes that
// are already behind a backlog.
func (r *Relay) moreWait() time.Duration { return max(50*r.cfg.BatchWindow, time.Second) }

// backlogGone reports that the last pull found nothing more stored.
func (r *Relay) backlogGone() bool { return !r.backlog.Load() }

// pulled wakes every lane after a pull, so lanes waiting for more see
// whether the backlog is gone.
func (r *Relay) pulled() {
	for _, l := range r.lanes {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// deliver sends events until Pusher accepts them or each one Pusher rejects
// is dead-lettered. It backs off through the shared gate on retryable
// failures and returns only ctx's error, leaving the changes held.
func (r *Relay) deliver(ctx context.Context, l *lane, events []*outEvent) error {
	for {
		// A partition handed over while its changes waited here: the
		// next owner sends them.
		if events = slices.DeleteFunc(events, func(ev *outEvent) bool { return ev.newest().revoked() }); len(events) == 0 {
			return nil
		}
		if err := r.gate.Wait(ctx); err != nil {
			return err
		}
		if err := r.wait(ctx, len(events)); err != nil {
			r.gate.Abandon()
			return err
		}
		res := l.lc.send(events, r.now)
		class := statusClass(res.exchange.status, res.exchange.err != nil)
		r.m.requestSeconds.WithLabelValues(class).Observe(res.duration.Seconds())
		switch res.outcome {
		case accepted:
			if r.gate.Success() {
				r.outage.Recovered(r.log, "pusher recovered")
			}
			r.accept(events)
			return nil
		case retryable:
			d, attempt := r.gate.Failure(res.exchange.retryAfter)
			r.m.retries.WithLabelValues(class).Inc()
			r.outage.Failed(r.log.WithFields(logrus.Fields{"http_status": res.exchange.status, "batch_size": len(events)}),
				res.err, attempt, d, "pusher unavailable, holding changes")
		case refused:
			err := fmt.Errorf("%w: http status %d", ErrPusherRefused, res.exchange.status)
			d := r.gate.Refused(err, res.exchange.retryAfter)
			r.m.retries.WithLabelValues(class).Inc()
			r.logRefusal.Do(func() {
				r.log.WithError(res.err).WithFields(logrus.Fields{
					"http_status": res.exchange.status, "retry_in": d.String(),
				}).Error("pusher refuses the relay's credentials, holding every change")
			})
		case rejected:
			if res.exchange.called {
				r.gate.Success()
			} else {
				r.gate.Abandon()
			}
			if len(events) == 1 {
				return r.deadLetterEvent(ctx, events[0], res)
			}
			// One status answers the whole request: split it to find the
			// event Pusher refuses, keeping seq order.
			mid := len(events) / 2
			if err := r.deliver(ctx, l, events[:mid]); err != nil {
				return err
			}
			return r.deliver(ctx, l, events[mid:])
		}
	}
}

// wait takes one request and len(events) messages from the rate limits.
func (r *Relay) wait(ctx context.Context, events int) error {
	if err := r.reqLim.Wait(ctx); err != nil {
		return err
	}
	return r.msgLim.WaitN(ctx, events)
}

// accept acks every change of events after Pusher accepted them.
func (r *Relay) accept(events []*outEvent) {
	now := r.now()
	changes := 0
	for _, ev := range events {
		for _, it := range ev.items {
			r.settle(it)
		}
		r.hold.done(ev.items...)
		changes += len(ev.items)
		r.m.coalesced.Add(float64(len(ev.items) - 1))
		switch ev.shape {
		case shapeCompressed:
			r.m.compressed.Inc()
		case shapeReference:
			r.m.referenced.Inc()
		}
		r.m.latency.Observe(now.Sub(ev.newest().env.At).Seconds())
	}
	r.progressed()
	r.m.delivered.Add(float64(changes))
	r.m.pusherEvents.Add(float64(len(events)))
	r.m.batchSize.Observe(float64(len(events)))
}
