// Fetching: pulling changes from the shared consumer while Pusher is
// healthy, and routing them to the lanes.

package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/retry"
)

// fetchLoop pulls changes while Pusher is healthy and the process holds
// fewer than four batches (bounded by MaxAckPending), and routes them to lanes. During an
// outage it stops pulling, so no delivery attempt is spent.
func (r *Relay) fetchLoop(ctx context.Context, cons jetstream.Consumer) {
	n := int64(r.cfg.BatchSize)
	b := retry.New(r.cfg.BackoffBase, 5*time.Second)
	var warn retry.Throttle
	for {
		if r.gate.WaitHealthy(ctx) != nil || r.hold.sem.Acquire(ctx, n) != nil {
			return
		}
		msgs, err := r.fetch(ctx, cons, r.cfg.BatchSize)
		r.hold.sem.Release(n - int64(len(msgs)))
		if len(msgs) == 0 && err == nil {
			r.backlog.Store(false) // nothing came: nothing is stored
		}
		r.dispatch(msgs)
		r.pulled()
		switch {
		case ctx.Err() != nil:
		case err != nil:
			r.move.failed()
		case len(msgs) > 0:
			r.move.succeeded()
		}
		if err == nil || ctx.Err() != nil {
			if b.Failures() > 0 {
				warn.Recovered(r.log, "fetching changes again")
			}
			b.Reset()
			continue
		}
		d := b.Next()
		warn.Failed(r.log, err, b.Failures(), d, "fetch changes")
		// No responders: nothing on this connection's side serves the
		// consumer, as after a move to a server that never had it.
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
			errors.Is(err, nats.ErrNoResponders) {
			if c, cerr := r.ensureConsumer(ctx); cerr == nil {
				cons = c
			}
		}
		if retry.Sleep(ctx, d) != nil {
			return
		}
	}
}

// fetch gathers up to n changes: it waits up to IdleWait for the first,
// then up to BatchWindow for the rest.
func (r *Relay) fetch(ctx context.Context, cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	if r.backlog.Load() {
		// More is stored: one pull for the whole batch, no round trip for
		// a first change that is known to be there.
		msgs, err := r.pull(cons, n)
		if len(msgs) > 0 || err != nil {
			return msgs, err
		}
	}
	// The pull ends on the server's expiry, never on a client-side
	// context: a context that ends first (it ended only 10% after the
	// expiry, or on cancellation) drops a change the server already sent,
	// which then waits the whole ack wait and reaches Pusher behind newer
	// changes of its channel. So cancellation waits for this pull's end
	// (IdleWait), and Run releases what it brought.
	first, err := cons.Fetch(1, jetstream.FetchMaxWait(r.cfg.IdleWait))
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", Consumer, err)
	}
	var msgs []jetstream.Msg
	for m := range first.Messages() {
		msgs = append(msgs, m)
	}
	if err := first.Error(); err != nil {
		return msgs, fmt.Errorf("fetch from %s: %w", Consumer, err)
	}
	if len(msgs) == 0 || n == 1 || ctx.Err() != nil || !r.gate.Healthy() {
		return msgs, nil
	}
	rest, err := r.pull(cons, n-1)
	return append(msgs, rest...), err
}

// pull fetches up to n changes, waiting at most BatchWindow.
func (r *Relay) pull(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(r.cfg.BatchWindow))
	if err != nil {
		return nil, fmt.Errorf("fetch from %s: %w", Consumer, err)
	}
	msgs := make([]jetstream.Msg, 0, n)
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil {
		return msgs, fmt.Errorf("fetch from %s: %w", Consumer, err)
	}
	return msgs, nil
}

// dispatch decodes fetched changes, dead-letters the invalid ones and hands
// the others to their channel's lane, in seq order.
func (r *Relay) dispatch(msgs []jetstream.Msg) { r.dispatchTo(msgs, nil) }

// dispatchTo is dispatch for the changes of partition ps (nil: the shared
// consumer's).
func (r *Relay) dispatchTo(msgs []jetstream.Msg, ps *partState) {
	if len(msgs) == 0 {
		return
	}
	r.m.received.Add(float64(len(msgs)))
	perLane := make([][]*item, len(r.lanes))
	now := time.Now()
	slab := make([]item, len(msgs)) // one allocation for the whole fetch
	held := make([]*item, len(msgs))
	stored := make([]time.Time, len(msgs))
	pending := uint64(0)
	for i, msg := range msgs {
		it := &slab[i]
		it.msg, it.touched, it.part = msg, now, ps
		if meta, err := msg.Metadata(); err == nil {
			it.seq, it.delivered, stored[i], pending = meta.Sequence.Stream, meta.NumDelivered, meta.Timestamp, meta.NumPending
		}
		held[i] = it
	}
	r.backlog.Store(pending > 0)
	r.hold.add(held...)
	for i, it := range held {
		msg := it.msg
		env, socketID, err := decode(msg, it.seq, stored[i])
		if err != nil {
			// Dead-lettered beside the fetch loop: a dead letter that
			// cannot be stored must not stop the valid changes behind it.
			r.letters.push(it, err.Error())
			continue
		}
		it.env, it.socketID, it.channel = env, socketID, r.cfg.channel(env.EventID)
		i := laneOf(it.channel, len(r.lanes))
		perLane[i] = append(perLane[i], it)
	}
	for i, items := range perLane {
		if len(items) > 0 {
			r.lanes[i].push(items)
		}
	}
}

// laneOf routes a channel to a lane; one channel always uses one lane, so
// its changes are sent in order.
func laneOf(channel string, lanes int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(channel)) // hash writes do not fail
	return int(h.Sum32() % uint32(lanes))
}

// sampleLag updates the consumer's pending gauges periodically.
func (r *Relay) sampleLag(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		r.mu.Lock()
		cons := r.cons
		r.mu.Unlock()
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.move.failed()
		}
		if err == nil {
			r.m.pending.Set(float64(info.NumPending))
			r.m.ackPending.Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
