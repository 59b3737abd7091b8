package producer

import (
	"context"
	"fmt"
	"strconv"
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

// inflight is one publish awaiting its ack.
type inflight struct {
	i    int
	sent time.Time
}

// sendWindow publishes msgs[idx...] asynchronously, keeping at most
// MaxInFlight unacknowledged, each awaited up to limit, and fills res. It
// returns the indexes that failed transiently (their res Err holds the
// last error, causes the last informative one, see explain).
//
// Each message goes out with the reply subject <inbox>.<i> of an inbox of
// this call, and its ack is read by hand (parsePubAck): nats.go's
// PublishMsgAsync spent 7-10 µs of client CPU per change on its future,
// its map of pending replies under a shared lock and a reflection-based
// decode of every ack (issue 10). What it did besides is done here: an ack
// is awaited up to limit, and a reconnect fails what awaits an ack
// (nats.ErrDisconnected), since the new server may never answer for the
// old one.
func (p *Publisher) sendWindow(ctx context.Context, idx []int, msgs []*nats.Msg, res []BatchResult, causes []error, limit time.Duration) []int {
	var retry []int
	done := make([]bool, len(msgs))
	// sent is when msgs[i] was sent; zero when it was not.
	settle := func(i int, sent time.Time, ack *jetstream.PubAck, err error) {
		done[i] = true
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
	if !p.conn.IsConnected() {
		for _, i := range idx {
			settle(i, time.Time{}, nil, errNotConnected)
		}
		return retry
	}
	inbox := p.conn.NewInbox()
	// Every message gets one answer at most, so the channel never fills
	// up: a full one would drop an ack (a slow consumer).
	acks := make(chan *nats.Msg, len(idx))
	sub, err := p.conn.ChanSubscribe(inbox+".*", acks)
	if err != nil {
		for _, i := range idx {
			settle(i, time.Time{}, nil, fmt.Errorf("subscribe to the ack inbox: %w", err))
		}
		return retry
	}
	// A late ack of this call then goes nowhere; a retry has an inbox of
	// its own.
	defer func() { _ = sub.Unsubscribe() }()
	moved := p.conn.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	defer p.conn.RemoveStatusListener(moved)
	defer func() {
		for _, i := range idx {
			msgs[i].Reply = "" // a retry publishes them again
		}
	}()

	q := make([]inflight, 0, len(idx))
	sentAt := make([]time.Time, len(msgs))
	head, pending := 0, 0
	// take settles one answer; answers to another call or to a message
	// settled already (a late ack after its timeout) are dropped.
	take := func(r *nats.Msg) {
		if len(r.Subject) <= len(inbox)+1 || r.Subject[:len(inbox)] != inbox || r.Subject[len(inbox)] != '.' {
			return
		}
		i, err := strconv.Atoi(r.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= len(msgs) || done[i] || msgs[i].Reply == "" {
			return
		}
		pending--
		ack, err := parsePubAck(r)
		settle(i, sentAt[i], ack, err)
	}
	// drain settles the answers already there: an ack that arrived is the
	// truth about the store, whatever timed out or ended meanwhile.
	drain := func() {
		for {
			select {
			case r := <-acks:
				take(r)
			default:
				return
			}
		}
	}
	// fail settles everything awaiting an ack with err.
	fail := func(err error) {
		drain()
		for ; head < len(q); head++ {
			if fl := q[head]; !done[fl.i] {
				pending--
				settle(fl.i, fl.sent, nil, err)
			}
		}
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	timed := -1 // the q entry the timer is set for
	window := min(p.opts.MaxInFlight, len(idx))
	next := 0
	for next < len(idx) || pending > 0 {
		for ; next < len(idx) && pending < window; next++ {
			i := idx[next]
			if err := ctx.Err(); err != nil {
				settle(i, time.Time{}, nil, err)
				continue
			}
			if !p.conn.IsConnected() {
				settle(i, time.Time{}, nil, errNotConnected)
				continue
			}
			msgs[i].Reply = inbox + "." + strconv.Itoa(i)
			sent := time.Now()
			if err := p.conn.PublishMsg(msgs[i]); err != nil {
				settle(i, sent, nil, err)
				continue
			}
			q = append(q, inflight{i: i, sent: sent})
			sentAt[i] = sent
			pending++
		}
		for head < len(q) && done[q[head].i] {
			head++
		}
		if pending == 0 {
			continue
		}
		// The oldest publish awaiting its ack sets the timer: an ack is
		// awaited as long as a synchronous attempt would be, since a node
		// that takes messages but cannot store them (cut off from its
		// peers) never answers, and waiting out the whole call would leave
		// no time for a retry elsewhere.
		if timed != head {
			timed = head
			timer.Reset(limit - time.Since(q[head].sent))
		}
		select {
		case r := <-acks:
			take(r)
			continue
		default:
		}
		select {
		case r := <-acks:
			take(r)
		case <-timer.C:
			timed = -1
			drain()
			for ; head < len(q) && (done[q[head].i] || time.Since(q[head].sent) >= limit); head++ {
				if fl := q[head]; !done[fl.i] {
					pending--
					settle(fl.i, fl.sent, nil, fmt.Errorf("no ack within %v: %w", limit, jetstream.ErrAsyncPublishTimeout))
				}
			}
		case <-ctx.Done():
			fail(ctx.Err())
		case <-moved:
			fail(nats.ErrDisconnected)
		}
	}
	return retry
}
