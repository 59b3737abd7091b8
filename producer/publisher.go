package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/wire"
)

// Change is one change to publish.
type Change struct {
	// EventID names the planned event (wire.ValidateEventID).
	EventID string
	// Type is the change type, such as wire.TypeVoteUpdated (wire.ValidateType).
	Type string
	// Data is the JSON clients receive: one JSON value in valid UTF-8,
	// stored compacted (insignificant whitespace removed).
	Data json.RawMessage
	// ID is the change id. Empty means a new wire.NewID; give one to make
	// retries across processes idempotent. It is scoped by EventID: the
	// dedup key (Nats-Msg-Id) is wire.DedupID("", EventID, ID), so the
	// same ID on two eventIds names two changes. Idempotency holds only
	// within the stream's duplicate window (LIVE_STREAM_DUPLICATES).
	ID string
	// SocketID is the publisher's Pusher socket id ("123.456"), which the
	// relay excludes from delivery. Empty means none.
	SocketID string

	// scope further scopes the dedup key: the ingest API's key id, so two
	// API keys never share ids.
	scope string
}

// Result is a stored change.
type Result struct {
	// ID is the change id (given or generated).
	ID string
	// Seq is the change's JetStream stream sequence.
	Seq uint64
	// Duplicate is true when the ID was stored before, within the stream's
	// duplicate window; Seq is then the first store's.
	Duplicate bool
}

// BatchResult is one change's outcome in PublishBatch. When Err is not nil,
// ID is still set if the change got that far (a valid caller id, or the
// generated id of a valid change that JetStream did not store), so a caller
// can retry with the same ID.
type BatchResult struct {
	Result
	Err error
}

// Options tune a Publisher. The zero value is usable.
type Options struct {
	// MaxDataBytes bounds one change's data. Zero means 64 KiB.
	MaxDataBytes int
	// MaxInFlight bounds the asynchronous publishes one PublishBatch call
	// keeps waiting for an ack. Zero means 256.
	MaxInFlight int
	// AttemptTimeout bounds one attempt (send and ack). Zero means 2s. It
	// is short so a lost request is retried within the caller's deadline
	// instead of consuming it. Retries get half of it: a retry follows a
	// failure, and what was lost to a node that stopped answering (a stream
	// leader gone during an election) is found again sooner once another
	// node leads.
	AttemptTimeout time.Duration
	// MaxWait bounds all attempts when the caller's context has no
	// deadline. Zero means 10s.
	MaxWait time.Duration
	// RetryBackoff is the first wait between attempts; it doubles up to
	// 500ms, with jitter. Zero means 20ms.
	RetryBackoff time.Duration
	// Now is the clock for Live-At and generated ids. Zero means time.Now.
	Now func() time.Time
	// Metrics records publishes. Nil means none.
	Metrics *Metrics
	// PollSecret signs poll tokens (MintPollToken). Empty means
	// MintPollToken returns ErrNoPollSecret.
	PollSecret []byte
}

// withDefaults is the one source of the defaults documented on Options.
// Every value is usable, so Options has nothing to validate: a zero or
// negative field means its default.
func (o Options) withDefaults() Options {
	if o.MaxDataBytes <= 0 {
		o.MaxDataBytes = 64 << 10
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * time.Second
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 20 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// maxBackoff is the longest wait between two attempts of one call.
const maxBackoff = 500 * time.Millisecond

// newBackoff is one call's retry schedule; it is never shared.
func (p *Publisher) newBackoff() *retry.Backoff { return retry.New(p.opts.RetryBackoff, maxBackoff) }

// Publisher publishes changes to wire.StreamName. It is safe for concurrent
// use; it owns no goroutines.
type Publisher struct {
	js   jetstream.JetStream
	conn *nats.Conn
	opts Options
	// msgGetSubject is the JetStream API subject that reads a message of
	// wire.StreamName from its leader (leaderGet).
	msgGetSubject string
	// pubOpts turns off the client's own no-responders retry (250ms, twice):
	// ours backs off shorter and honours the caller's deadline.
	pubOpts []jetstream.PublishOpt
	// failingSince is when the oldest attempt failing since the last
	// success was sent, zero after a success; moved is when the connection
	// was last moved to another server (unix nanoseconds both, see
	// failed).
	failingSince, moved atomic.Int64
}

// succeeded notes a change newly stored: the connection's server reaches
// a quorum. Not a duplicate ack: a leader cut off from its peers answers
// those from memory, and counting them kept an api on it.
func (p *Publisher) succeeded() {
	if p.failingSince.Load() != 0 {
		p.failingSince.Store(0)
	}
}

// failed notes an attempt sent at sent that failed transiently, and moves
// the NATS connection to the next server of its pool when nothing has been
// stored through it for two attempt timeouts, and it was not moved within
// the last attempt timeout. A node cut off from its peers keeps its client
// connections up while nothing sent to it can be stored (its stream leader
// cannot commit; once it steps down nothing on its side answers), and the
// client never leaves it by itself: in the cluster suite an api on the
// cut-off leader answered 503 for the whole 15 s partition while the two
// other nodes elected a leader within 6 s. The healthy nodes fail too until
// that election ends, and the client cannot tell the two apart, so the
// first move waits part of an election out; a move that lands on the cut
// node moves on an attempt timeout later, and a success anywhere stops the
// moves. Never with a single server, where it would only reconnect to the
// same node.
func (p *Publisher) failed(sent time.Time) {
	since := sent.UnixNano()
	if !p.failingSince.CompareAndSwap(0, since) {
		since = p.failingSince.Load()
	}
	now := time.Now().UnixNano()
	at := int64(p.opts.AttemptTimeout)
	last := p.moved.Load()
	if since == 0 || now-since < 2*at || now-last < at {
		return
	}
	if p.conn == nil || !p.conn.IsConnected() || len(p.conn.Servers()) < 2 {
		return // a reconnect is under way, or there is nowhere else to go
	}
	if !p.moved.CompareAndSwap(last, now) {
		return // another call moves it
	}
	// An error means the connection closed or began reconnecting
	// meanwhile: either way the next attempt finds out.
	_ = p.conn.ForceReconnect()
}

// NewPublisher returns a Publisher on js. It does no I/O.
func NewPublisher(js jetstream.JetStream, opts Options) *Publisher {
	opts = opts.withDefaults()
	// js's prefix already holds a domain, when one is set.
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	return &Publisher{
		js:            js,
		conn:          js.Conn(),
		opts:          opts,
		msgGetSubject: prefix + "STREAM.MSG.GET." + wire.StreamName,
		pubOpts:       []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)},
	}
}

// Ready reports nil when the NATS client is connected and JetStream answers
// for wire.StreamName: a check for ops.Checks (/readyz).
func (p *Publisher) Ready(ctx context.Context) error {
	if !p.conn.IsConnected() {
		return fmt.Errorf("%w: %s", errNotConnected, p.conn.Status())
	}
	if _, err := p.js.Stream(ctx, wire.StreamName); err != nil {
		return fmt.Errorf("look up stream %s: %w", wire.StreamName, err)
	}
	return nil
}

// MaxDataBytes is the largest data a change may carry.
func (p *Publisher) MaxDataBytes() int { return p.opts.MaxDataBytes }

// Publish stores c and returns its id and seq once JetStream has stored it.
// Transient failures are retried with the same id until ctx ends (or
// Options.MaxWait when ctx has no deadline); see the Err* variables for
// what an error means.
func (p *Publisher) Publish(ctx context.Context, c Change) (Result, error) {
	start := time.Now()
	m, id, err := p.prepare(c, p.opts.Now())
	if err != nil {
		p.opts.Metrics.count(c.Type, resultOf(err, false), 1)
		return Result{ID: id}, err
	}
	deadline := p.deadline(ctx)
	ack, err := p.publishSync(ctx, m, deadline)
	if err != nil {
		err = p.classify(m.Subject, err)
	} else if ack.Duplicate {
		err = p.checkDuplicate(ctx, m, ack.Sequence, deadline)
	}
	dup := ack != nil && ack.Duplicate
	p.opts.Metrics.count(c.Type, resultOf(err, dup), 1)
	p.opts.Metrics.observe(opSingle, time.Since(start))
	if err != nil {
		return Result{ID: id}, err
	}
	return Result{ID: id, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// publishSync sends m until JetStream acks it, a permanent error occurs,
// ctx ends or deadline passes. Every attempt carries the same Nats-Msg-Id.
// The deadline is a value, not a derived context, so the happy path costs
// one timer (the attempt's), as a raw jetstream publish does.
func (p *Publisher) publishSync(ctx context.Context, m *nats.Msg, deadline time.Time) (*jetstream.PubAck, error) {
	b := p.newBackoff()
	var cause error
	for limit := p.opts.AttemptTimeout; ; limit = p.opts.AttemptTimeout / 2 {
		sent := time.Now()
		ack, err := p.attempt(ctx, m, deadline, limit)
		if err == nil {
			if !ack.Duplicate {
				p.succeeded()
			}
			return ack, nil
		}
		if !uninformative(err) {
			cause = err
		}
		if isTransient(err) {
			p.failed(sent)
		}
		if !isTransient(err) || !b.Wait(ctx, deadline) {
			return nil, explain(err, cause)
		}
		p.opts.Metrics.retried(1)
	}
}

func (p *Publisher) attempt(ctx context.Context, m *nats.Msg, deadline time.Time, limit time.Duration) (*jetstream.PubAck, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !p.conn.IsConnected() {
		return nil, errNotConnected
	}
	timeout := min(limit, time.Until(deadline))
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ack, err := p.js.PublishMsg(actx, m, p.pubOpts...)
	if err != nil {
		return nil, err
	}
	if err := checkStream(ack); err != nil {
		return nil, err
	}
	return ack, nil
}

// deadline is ctx's deadline, or Options.MaxWait from now when it has none,
// so retries end.
func (p *Publisher) deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(p.opts.MaxWait)
}
