package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
)

// This file publishes many changes at once: asynchronously, at most
// Options.MaxInFlight awaiting an ack, the transient failures retried as a
// round.

// PublishBatch stores cs and returns a result per change, in the order of
// cs. Invalid changes get their error without holding up the others. Valid
// ones are published asynchronously with at most Options.MaxInFlight
// awaiting an ack; transient failures are retried with the same ids until
// ctx ends. Changes stored on a retry may get a seq after later changes of
// the same batch.
func (p *Publisher) PublishBatch(ctx context.Context, cs []Change) []BatchResult {
	return p.publishBatch(ctx, cs, false)
}

// publishChecked is PublishBatch for changes that already passed check,
// with their data as check returned it: the ingest API checks a whole batch
// before it publishes any of it, and does not pay for the checks twice.
func (p *Publisher) publishChecked(ctx context.Context, cs []Change) []BatchResult {
	return p.publishBatch(ctx, cs, true)
}

// publishBatch builds the messages of cs, checking each unless checked, and
// sends those that are valid.
func (p *Publisher) publishBatch(ctx context.Context, cs []Change, checked bool) []BatchResult {
	start := time.Now()
	now := p.opts.Now()
	at := wire.FormatAt(now)
	res := make([]BatchResult, len(cs))
	msgs := make([]*nats.Msg, len(cs))
	for i, c := range cs {
		data := []byte(c.Data)
		if !checked {
			var id string
			var err error
			if data, id, err = p.check(c); err != nil {
				res[i].ID, res[i].Err = id, err
				continue
			}
		}
		msgs[i] = buildMsg(c, data, now, at)
		res[i].ID = msgs[i].Header[wire.HeaderID][0]
	}
	return p.sendBatch(ctx, start, cs, msgs, res)
}

// sendBatch publishes the messages that are not nil, fills res and counts
// every change.
func (p *Publisher) sendBatch(ctx context.Context, start time.Time, cs []Change, msgs []*nats.Msg, res []BatchResult) []BatchResult {
	pending := make([]int, 0, len(msgs))
	for i, m := range msgs {
		if m != nil {
			pending = append(pending, i)
		}
	}
	if len(pending) > 0 {
		ctx, cancel := context.WithDeadline(ctx, p.deadline(ctx))
		defer cancel()
		b := p.newBackoff()
		causes := make([]error, len(msgs))
		for limit := p.opts.AttemptTimeout; ; limit = p.opts.AttemptTimeout / 2 {
			pending = p.sendWindow(ctx, pending, msgs, res, causes, limit)
			if len(pending) == 0 || !b.Wait(ctx, time.Time{}) {
				break
			}
			p.opts.Metrics.retried(len(pending))
		}
		for _, i := range pending {
			res[i].Err = p.classify(msgs[i].Subject, explain(res[i].Err, causes[i]))
		}
	}
	for i := range res {
		p.opts.Metrics.count(cs[i].Type, resultOf(res[i].Err, res[i].Duplicate), 1)
	}
	p.opts.Metrics.observe(opBatch, time.Since(start))
	return res
}

// inflight is one asynchronous publish awaiting its ack.
type inflight struct {
	i    int
	f    jetstream.PubAckFuture
	sent time.Time
}

// sendWindow publishes msgs[idx...] asynchronously, keeping at most
// MaxInFlight unacknowledged, each awaited up to limit, and fills res. It
// returns the indexes that failed transiently (their res Err holds the
// last error, causes the last informative one, see explain).
func (p *Publisher) sendWindow(ctx context.Context, idx []int, msgs []*nats.Msg, res []BatchResult, causes []error, limit time.Duration) []int {
	var retry []int
	// sent is when msgs[i] was sent; zero when it was not.
	settle := func(i int, sent time.Time, ack *jetstream.PubAck, err error) {
		if err == nil {
			err = checkStream(ack)
		}
		if err == nil && ack.Duplicate {
			if err = p.checkDuplicate(ctx, msgs[i], ack.Sequence, time.Time{}); err != nil {
				res[i].Err = err
				return
			}
		}
		switch {
		case err == nil:
			if !ack.Duplicate {
				p.succeeded()
			}
			res[i].Err = nil
			res[i].Seq, res[i].Duplicate = ack.Sequence, ack.Duplicate
		case isTransient(err):
			res[i].Err = err
			if !uninformative(err) {
				causes[i] = err
			}
			if !sent.IsZero() {
				p.failed(sent)
			}
			retry = append(retry, i)
		default:
			res[i].Err = p.classify(msgs[i].Subject, err)
		}
	}
	await := func(fl inflight) {
		// Prefer an ack that is already there over a context that ended
		// at the same moment: it is the truth about the store.
		select {
		case ack := <-fl.f.Ok():
			settle(fl.i, fl.sent, ack, nil)
			return
		default:
		}
		// An ack is awaited as long as a synchronous attempt would be:
		// a node that takes messages but cannot store them (cut off from
		// its peers) never answers, and waiting out the whole call would
		// leave no time for a retry elsewhere.
		t := time.NewTimer(limit - time.Since(fl.sent))
		defer t.Stop()
		select {
		case ack := <-fl.f.Ok():
			settle(fl.i, fl.sent, ack, nil)
		case err := <-fl.f.Err():
			settle(fl.i, fl.sent, nil, err)
		case <-t.C:
			settle(fl.i, fl.sent, nil, fmt.Errorf("no ack within %v: %w", limit, jetstream.ErrAsyncPublishTimeout))
		case <-ctx.Done():
			settle(fl.i, fl.sent, nil, ctx.Err())
		}
	}
	window := min(p.opts.MaxInFlight, len(idx))
	q := make([]inflight, 0, len(idx))
	head := 0
	for _, i := range idx {
		if err := ctx.Err(); err != nil {
			settle(i, time.Time{}, nil, err)
			continue
		}
		if !p.conn.IsConnected() {
			settle(i, time.Time{}, nil, errNotConnected)
			continue
		}
		sent := time.Now()
		f, err := p.js.PublishMsgAsync(msgs[i], p.pubOpts...)
		if err != nil {
			settle(i, sent, nil, err)
			continue
		}
		q = append(q, inflight{i: i, f: f, sent: sent})
		if len(q)-head >= window {
			await(q[head])
			head++
		}
	}
	for ; head < len(q); head++ {
		await(q[head])
	}
	return retry
}
