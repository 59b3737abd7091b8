package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/wire"
)

// maxReasonLen bounds the reason header (Pusher's answer can be long).
const maxReasonLen = 512

// errDLQRefused marks a dead letter LIVE_DLQ answered with a JetStream 4xx
// API error: the request itself is wrong, so sending it again cannot help.
var errDLQRefused = errors.New("dead-letter stream refuses the letter")

// letter is what a dead letter is made of.
type letter struct {
	subject  string
	header   nats.Header
	data     []byte
	seq      uint64
	attempts uint64
	status   int
	reason   string
}

// deadLetterEvent dead-letters every change of an event Pusher rejected.
func (r *Relay) deadLetterEvent(ctx context.Context, ev *outEvent, res result) error {
	reason := fmt.Sprintf("pusher rejected event on %s: %v", ev.channel, res.err)
	for _, it := range ev.items {
		if err := r.deadLetterItem(ctx, it, res.exchange.status, reasonRejected, reason); err != nil {
			return err
		}
	}
	return nil
}

// deadLetterItem stores a held change in LIVE_DLQ, waiting for the store's
// ack (retrying with backoff), and only then terminates the original. When
// LIVE_DLQ refuses the letter for good (a JetStream 4xx answer) the change is
// terminated all the same, so it cannot stall the relay; it stays readable in
// LIVE_EVENTS. It returns ctx's error when ctx ends first; the change then
// stays held.
func (r *Relay) deadLetterItem(ctx context.Context, it *item, status int, class, reason string) error {
	err := r.deadLetter(ctx, letter{
		subject: it.msg.Subject(), header: it.msg.Headers(), data: it.msg.Data(),
		seq: it.seq, attempts: it.delivered, status: status, reason: reason,
	}, class)
	if errors.Is(err, errDLQRefused) {
		r.m.dlqRefused.Inc()
		r.log.WithError(err).WithFields(logrus.Fields{"seq": it.seq, "subject": it.msg.Subject(), "reason": class}).
			Error("dead-letter stream refused the change; terminating it, it stays in the events stream")
	} else if err != nil {
		return err
	}
	if it.part != nil {
		it.part.settle(it.seq)
	} else if err := it.msg.TermWithReason(class); err != nil {
		r.logAck.Do(func() { r.log.WithError(err).WithField("seq", it.seq).Warn("terminate dead-lettered change") })
	}
	r.hold.done(it)
	r.progressed()
	return nil
}

// deadLetter publishes one dead letter until the store acks it. It returns
// an error wrapping errDLQRefused when the store answers with a JetStream
// 4xx API error, and ctx's error when ctx ends first.
func (r *Relay) deadLetter(ctx context.Context, l letter, class string) error {
	msg := buildLetter(l)
	log := r.log.WithField("seq", l.seq)
	err := retry.Do(ctx, retry.New(r.cfg.BackoffBase, 5*time.Second), log, "publish dead letter", func(ctx context.Context) error {
		_, err := r.js.PublishMsg(ctx, msg)
		if permanent(err) {
			return retry.Permanent(fmt.Errorf("%w: %w", errDLQRefused, err))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("dead-letter seq %d to %s: %w", l.seq, msg.Subject, err)
	}
	r.m.deadLettered.WithLabelValues(class).Inc()
	log.WithFields(logrus.Fields{
		"subject": l.subject, "http_status": l.status, "attempt": l.attempts, "reason": class,
	}).Warn("change dead-lettered")
	return nil
}

// permanent reports whether a publish error is JetStream refusing the
// request itself (an API error with a 4xx code), not a failure to reach it.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500
}

// buildLetter keeps the original body and headers and adds the DLQ headers.
// NATS control headers (Nats-*) are renamed with wire.HeaderDLQOrigPrefix: kept
// as they are, JetStream would apply the original's expectations and dedup
// id to the letter.
func buildLetter(l letter) *nats.Msg {
	subject := wire.DLQSubject("_invalid", "invalid")
	if eventID, typ, err := wire.ParseSubject(l.subject); err == nil {
		subject = wire.DLQSubject(eventID, typ)
	}
	h := nats.Header{}
	for k, v := range l.header {
		if len(k) >= 5 && strings.EqualFold(k[:5], "nats-") {
			h[wire.HeaderDLQOrigPrefix+k] = append(h[wire.HeaderDLQOrigPrefix+k], v...)
			continue
		}
		h[k] = append([]string(nil), v...)
	}
	if id := l.header.Get(wire.HeaderMsgID); id != "" {
		h.Set(wire.HeaderDLQID, id)
	} else {
		h.Set(wire.HeaderDLQID, "seq-"+strconv.FormatUint(l.seq, 10))
	}
	h.Set(wire.HeaderMsgID, dlqID(l.seq))
	h.Set(wire.HeaderDLQStatus, strconv.Itoa(l.status))
	h.Set(wire.HeaderDLQReason, headerSafe(l.reason))
	h.Set(wire.HeaderDLQAttempts, strconv.FormatUint(l.attempts, 10))
	h.Set(wire.HeaderDLQSeq, strconv.FormatUint(l.seq, 10))
	return &nats.Msg{Subject: subject, Header: h, Data: l.data}
}

// headerSafe makes a reason fit a header value: one line, bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
	}
	return strings.ToValidUTF8(s, "?")
}

// handleAdvisories dead-letters changes the server gave up on after max
// deliveries without any relay acking (a relay crashed while holding them).
func (r *Relay) handleAdvisories(ctx context.Context, st jetstream.Stream, adv <-chan *nats.Msg) {
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return
		case m = <-adv:
		}
		var a struct {
			StreamSeq  uint64 `json:"stream_seq"`
			Deliveries uint64 `json:"deliveries"`
		}
		if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
			r.log.WithError(err).Warn("unreadable max-deliveries advisory")
			continue
		}
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		raw, err := st.GetMsg(gctx, a.StreamSeq)
		cancel()
		if err != nil {
			r.log.WithError(err).WithField("seq", a.StreamSeq).Warn("read change after max deliveries")
			continue
		}
		if err := r.deadLetter(ctx, letter{
			subject: raw.Subject, header: raw.Header, data: raw.Data, seq: a.StreamSeq, attempts: a.Deliveries,
			reason: fmt.Sprintf("not acked after %d deliveries", a.Deliveries),
		}, reasonMaxDeliver); err != nil {
			return
		}
	}
}

// letters queues the invalid changes the fetcher found, so dead-lettering
// them (which waits for LIVE_DLQ's ack and retries while it is unreachable)
// never blocks fetching. The queue is bounded by the holder: every change in
// it is held.
type letters struct {
	mu    sync.Mutex
	queue []pendingLetter
	wake  chan struct{} // capacity 1
}

type pendingLetter struct {
	it     *item
	reason string
}

func newLetters() *letters { return &letters{wake: make(chan struct{}, 1)} }

func (q *letters) push(it *item, reason string) {
	q.mu.Lock()
	q.queue = append(q.queue, pendingLetter{it: it, reason: reason})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// runDeadLetters dead-letters queued invalid changes, oldest first, until
// ctx ends; what it leaves stays held and Run releases it.
func (r *Relay) runDeadLetters(ctx context.Context) {
	for {
		r.letters.mu.Lock()
		q := r.letters.queue
		r.letters.queue = nil
		r.letters.mu.Unlock()
		for i, pl := range q {
			if err := r.deadLetterItem(ctx, pl.it, 0, reasonInvalid, pl.reason); err != nil {
				// Only ctx ends it: put the rest back for releaseAll's
				// bookkeeping (they are still held).
				r.letters.mu.Lock()
				r.letters.queue = append(q[i:], r.letters.queue...)
				r.letters.mu.Unlock()
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.letters.wake:
		}
	}
}
