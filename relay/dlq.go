package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/wire"
)

// HeaderDLQID carries, on a dead letter, the change id the original message
// had in Nats-Msg-Id; the dead letter's own Nats-Msg-Id is "dlq-<seq>", so
// replicas dead-lettering the same change store it once.
const HeaderDLQID = "Live-Dlq-Id"

// maxReasonLen bounds the reason header (Pusher's answer can be long).
const maxReasonLen = 512

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
// ack (retrying with backoff), and only then terminates the original. It
// returns ctx's error when ctx ends first; the change then stays held.
func (r *Relay) deadLetterItem(ctx context.Context, it *item, status int, class, reason string) error {
	err := r.deadLetter(ctx, letter{
		subject: it.msg.Subject(), header: it.msg.Headers(), data: it.msg.Data(),
		seq: it.seq, attempts: it.delivered, status: status, reason: reason,
	}, class)
	if err != nil {
		return err
	}
	if err := it.msg.TermWithReason(class); err != nil {
		r.logAck.Do(func() { r.log.WithError(err).WithField("seq", it.seq).Warn("terminate dead-lettered change") })
	}
	r.hold.done(it)
	return nil
}

// deadLetter publishes one dead letter until the store acks it.
func (r *Relay) deadLetter(ctx context.Context, l letter, class string) error {
	msg := buildLetter(l)
	for attempt := 1; ; attempt++ {
		_, err := r.js.PublishMsg(ctx, msg)
		if err == nil {
			r.m.deadLettered.WithLabelValues(class).Inc()
			r.log.WithFields(logrus.Fields{
				"seq": l.seq, "subject": l.subject, "http_status": l.status, "attempt": l.attempts, "reason": class,
			}).Warn("change dead-lettered")
			return nil
		}
		d := min(r.cfg.BackoffBase<<min(attempt, 8), 5*time.Second)
		r.log.WithError(err).WithFields(logrus.Fields{"seq": l.seq, "backoff": d.String()}).Warn("publish dead letter")
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("dead-letter seq %d: %w", l.seq, ctx.Err())
		case <-t.C:
		}
	}
}

// buildLetter keeps the original body and headers and adds the DLQ headers.
func buildLetter(l letter) *nats.Msg {
	subject := wire.DLQSubject("_invalid", "invalid")
	if eventID, typ, err := wire.ParseSubject(l.subject); err == nil {
		subject = wire.DLQSubject(eventID, typ)
	}
	h := nats.Header{}
	for k, v := range l.header {
		h[k] = append([]string(nil), v...)
	}
	if id := h.Get(wire.HeaderMsgID); id != "" {
		h.Set(HeaderDLQID, id)
	} else {
		h.Set(HeaderDLQID, "seq-"+strconv.FormatUint(l.seq, 10))
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
