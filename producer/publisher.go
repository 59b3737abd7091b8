package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
)

// Errors a caller branches on with errors.Is. Every error Publish and
// PublishBatch return wraps exactly one of ErrInvalid, ErrTooLarge,
// ErrUnavailable, ErrWrongStream and ErrConflict.
var (
	// ErrInvalid: the change itself is wrong (eventId, type, id, socket id or
	// data). The error also wraps the *wire.InputError with the wire code, so
	// errors.As(err, new(*wire.InputError)) works. Retrying cannot help.
	ErrInvalid = errors.New("invalid change")
	// ErrTooLarge: the data is over Options.MaxDataBytes, or over what the
	// stream or the server accepts. Retrying cannot help.
	ErrTooLarge = errors.New("change too large")
	// ErrUnavailable: JetStream did not confirm the store before the
	// context ended (no responders during a leader election, a timeout, a
	// disconnected client, or a refusal such as a full store). The change
	// may or may not be stored; publishing it again with the same ID is safe.
	// Also a duplicate whose stored copy could not be read back to compare
	// with it: it may be a conflict, so it is not answered as stored.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrWrongStream: JetStream stored the change, but in a stream other
	// than wire.StreamName, so no relay or poller will see it. It means
	// another stream captures live.events.> : a deployment mistake.
	ErrWrongStream = errors.New("change stored in an unexpected stream")
	// ErrConflict: the change's ID was stored before, within the stream's
	// duplicate window, with another type or data, so this change was not
	// stored. The error also wraps a *wire.InputError with the code
	// wire.CodeIdempotencyConflict. Use a new ID for a new change.
	ErrConflict = errors.New("idempotency conflict")
	// ErrNoPollSecret is returned by MintPollToken when no secret is set.
	ErrNoPollSecret = errors.New("no poll secret configured (LIVE_POLL_SECRET)")
)

// Sentinels inside the *wire.InputError of an ErrInvalid, for the checks
// package wire has no sentinel for.
var (
	// ErrInvalidData and ErrInvalidSocketID are package wire's, which
	// every reader of the stream checks too.
	ErrInvalidData     = wire.ErrInvalidData
	ErrInvalidSocketID = wire.ErrInvalidSocketID
	ErrInvalidTTL      = errors.New("invalid ttl")
)

// errNotConnected is what an attempt fails with while the NATS client is
// reconnecting: we do not hand the message to the client's reconnect
// buffer, because nobody could wait for its ack after the context ends.
var errNotConnected = errors.New("nats client not connected")

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

const maxBackoff = 500 * time.Millisecond

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

// succeeded notes a stored change: the connection's server works.
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
	if opts.MaxDataBytes <= 0 {
		opts.MaxDataBytes = 64 << 10
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 10 * time.Second
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 20 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
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

// PublishBatch stores cs and returns a result per change, in the order of
// cs. Invalid changes get their error without holding up the others. Valid
// ones are published asynchronously with at most Options.MaxInFlight
// awaiting an ack; transient failures are retried with the same ids until
// ctx ends. Changes stored on a retry may get a seq after later changes of
// the same batch.
func (p *Publisher) PublishBatch(ctx context.Context, cs []Change) []BatchResult {
	start := time.Now()
	now := p.opts.Now()
	at := wire.FormatAt(now)
	res := make([]BatchResult, len(cs))
	msgs := make([]*nats.Msg, len(cs))
	for i, c := range cs {
		data, id, err := p.check(c)
		if err != nil {
			res[i].ID, res[i].Err = id, err
			continue
		}
		msgs[i] = buildMsg(c, data, now, at)
		res[i].ID = msgs[i].Header[wire.HeaderID][0]
	}
	return p.sendBatch(ctx, start, cs, msgs, res)
}

// publishChecked is PublishBatch for changes that already passed check,
// with their data as check returned it: the ingest API checks a whole batch
// before it publishes any of it, and does not pay for the checks twice.
func (p *Publisher) publishChecked(ctx context.Context, cs []Change) []BatchResult {
	start := time.Now()
	now := p.opts.Now()
	at := wire.FormatAt(now)
	res := make([]BatchResult, len(cs))
	msgs := make([]*nats.Msg, len(cs))
	for i, c := range cs {
		msgs[i] = buildMsg(c, c.Data, now, at)
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
			if len(pending) == 0 || !b.wait(ctx, time.Time{}) {
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
// MaxInFlight unacknowledged, each awaited up to limit, and fills res. It returns the indexes that
// failed transiently (their res Err holds the last error, causes the last
// informative one, see explain).
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
			p.succeeded()
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
			p.succeeded()
			return ack, nil
		}
		if !uninformative(err) {
			cause = err
		}
		if isTransient(err) {
			p.failed(sent)
		}
		if !isTransient(err) || !b.wait(ctx, deadline) {
			return nil, explain(err, cause)
		}
		p.opts.Metrics.retried(1)
	}
}

// uninformative reports whether err says only that an attempt was cut
// short (the deadline) or found the connection moving (a reconnect,
// unstick's own included), not why JetStream did not store the change.
func uninformative(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errNotConnected) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// explain is a call's last error, also wrapping cause (the last error that
// said why an attempt failed, such as no stream or no quorum) when the last
// error alone does not say it: that is the reason a caller should see.
func explain(err, cause error) error {
	if cause == nil || !uninformative(err) {
		return err
	}
	return fmt.Errorf("%w; before that: %w", err, cause)
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

func checkStream(ack *jetstream.PubAck) error {
	if ack.Stream != wire.StreamName {
		return fmt.Errorf("%w: %s (seq %d), want %s", ErrWrongStream, ack.Stream, ack.Sequence, wire.StreamName)
	}
	return nil
}

// deadline is ctx's deadline, or Options.MaxWait from now when it has none,
// so retries end.
func (p *Publisher) deadline(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(p.opts.MaxWait)
}

// prepare validates c and builds its message. On error it returns the
// caller's id when that id is valid, else "".
func (p *Publisher) prepare(c Change, now time.Time) (*nats.Msg, string, error) {
	data, id, err := p.check(c)
	if err != nil {
		return nil, id, err
	}
	m := buildMsg(c, data, now, wire.FormatAt(now))
	return m, m.Header[wire.HeaderID][0], nil
}

// buildMsg builds the message of a checked change; c.ID empty means a new
// wire.NewID. at is now formatted (wire.FormatAt), once per batch.
func buildMsg(c Change, data []byte, now time.Time, at string) *nats.Msg {
	id := c.ID
	// One backing array for every header value: a message costs a few
	// allocations less, which a batch of 500 feels.
	vals := make([]string, 5)
	h := make(nats.Header, 5)
	if id == "" {
		id = wire.NewID(now)
	} else {
		// Only a caller's id can come back with other content; a
		// generated one is unique.
		vals[4] = wire.BodyHash(c.Type, data)
		h[wire.HeaderBodyHash] = vals[4:5:5]
	}
	vals[0], vals[1], vals[2] = wire.DedupID(c.scope, c.EventID, id), id, at
	h[wire.HeaderMsgID] = vals[0:1:1]
	h[wire.HeaderID] = vals[1:2:2]
	h[wire.HeaderAt] = vals[2:3:3]
	if c.SocketID != "" {
		vals[3] = c.SocketID
		h[wire.HeaderSocketID] = vals[3:4:4]
	}
	return &nats.Msg{Subject: wire.Subject(c.EventID, c.Type), Header: h, Data: data}
}

// Validate checks c as Publish would, without publishing: an error wraps
// ErrInvalid (with a *wire.InputError) or ErrTooLarge. On error it returns
// the caller's id when that id is valid, else "", so a caller may echo it.
func (p *Publisher) Validate(c Change) (string, error) {
	_, id, err := p.check(c)
	return id, err
}

// check is Validate that also returns the data compacted
// (wire.CompactData): what is stored, and what the size limit applies to.
func (p *Publisher) check(c Change) ([]byte, string, error) {
	// The id is checked first so every error below can carry it.
	if c.ID != "" {
		if err := wire.ValidateID(c.ID); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if err := wire.ValidateEventID(c.EventID); err != nil {
		return nil, c.ID, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := wire.ValidateType(c.Type); err != nil {
		return nil, c.ID, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.SocketID != "" {
		if err := wire.ValidateSocketID(c.SocketID); err != nil {
			return nil, c.ID, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	data, err := wire.CompactData(c.Data)
	if err != nil {
		return nil, c.ID, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(data) > p.opts.MaxDataBytes {
		return nil, c.ID, fmt.Errorf("%w: data of %s %s is %d bytes, the limit is %d", ErrTooLarge, c.EventID, c.Type, len(data), p.opts.MaxDataBytes)
	}
	return data, "", nil
}

// checkDuplicate reads back the change JetStream already stored under m's
// dedup id (seq) and reports ErrConflict when it is not the same change: a
// different type or data under the same id is a client bug, never a retry,
// and answering it as a duplicate would drop the new change silently. A
// change stored without a body hash is compared by subject and data.
// When the stored change cannot be read (gone from the stream, or JetStream
// busy until deadline or ctx ends) it reports ErrUnavailable: nothing says
// the change is the stored one, and a 2xx would drop it silently if it is
// not; the caller retries with the same id.
func (p *Publisher) checkDuplicate(ctx context.Context, m *nats.Msg, seq uint64, deadline time.Time) error {
	hash := m.Header.Get(wire.HeaderBodyHash)
	if hash == "" {
		return nil
	}
	// Read like a publish is sent: a busy leader (a timeout, no responders
	// during an election) is retried until the call's deadline, so a
	// loaded cluster does not turn a plain retry into a 503.
	var got *nats.Msg
	var err error
	for b := p.newBackoff(); ; {
		actx, cancel := context.WithTimeout(ctx, p.opts.AttemptTimeout)
		got, err = p.leaderGet(actx, seq)
		cancel()
		if err == nil || !isTransient(err) || !b.wait(ctx, deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w: id %s was stored before (seq %d), but reading it back to compare failed: %w",
			ErrUnavailable, m.Header.Get(wire.HeaderID), seq, err)
	}
	same := got.Header.Get(wire.HeaderBodyHash) == hash
	if got.Header.Get(wire.HeaderBodyHash) == "" {
		same = got.Subject == m.Subject && bytes.Equal(got.Data, m.Data)
	}
	if same {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConflict, &wire.InputError{Code: wire.CodeIdempotencyConflict, Err: ErrConflict,
		Msg: fmt.Sprintf("id %s was stored before (seq %d) with another type or data, so this change was not stored; give a new change a new id",
			m.Header.Get(wire.HeaderID), seq)})
}

// leaderGet reads the message at seq of wire.StreamName from the stream
// leader with the JetStream API. Not a direct get (jetstream's GetMsg on a
// stream that allows direct reads): any replica may answer one, and a
// lagging follower's "not found" would pass for the stored change.
func (p *Publisher) leaderGet(ctx context.Context, seq uint64) (*nats.Msg, error) {
	req, err := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	if err != nil {
		return nil, fmt.Errorf("encode msg get of seq %d: %w", seq, err)
	}
	msg, err := p.conn.RequestWithContext(ctx, p.msgGetSubject, req)
	if err != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: %w", seq, wire.StreamName, err)
	}
	var resp struct {
		Message *struct {
			Subject string `json:"subject"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: decode the answer: %w", seq, wire.StreamName, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("msg get seq %d of %s: %w", seq, wire.StreamName, resp.Error)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("msg get seq %d of %s: no message and no error in the answer", seq, wire.StreamName)
	}
	got := &nats.Msg{Subject: resp.Message.Subject, Data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		if got.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("msg get seq %d of %s: decode headers: %w", seq, wire.StreamName, err)
		}
	}
	return got, nil
}

// MaxSocketIDLen bounds a socket id; Pusher's are two integers.
const MaxSocketIDLen = wire.MaxSocketIDLen

// ValidateSocketID checks a Pusher socket id the way Pusher's libraries do:
// ^\d+\.\d+$ (wire.ValidateSocketID).
func ValidateSocketID(s string) error { return wire.ValidateSocketID(s) }

// isTransient reports whether another attempt with the same id may succeed.
func isTransient(err error) bool {
	switch {
	case errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, errNotConnected):
		return true
	}
	// JetStream answers 503 while it has no quorum or is starting up, and
	// 409 "in process" to a retry whose earlier copy the leader is still
	// storing (an attempt that timed out while a new leader commits): the
	// next retry is answered as a duplicate with its seq, or stores it.
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.Code >= 500 || apiErr.ErrorCode == errCodeMsgIDInProcess)
}

// errCodeMsgIDInProcess is JetStream's JSStreamDuplicateMessageConflict
// ("duplicate message id is in process"), which nats.go has no sentinel
// for.
const errCodeMsgIDInProcess jetstream.ErrorCode = 10158

// classify wraps a publish error in the kind a caller branches on.
func (p *Publisher) classify(subject string, err error) error {
	switch {
	case errors.Is(err, ErrWrongStream), errors.Is(err, ErrConflict):
		return fmt.Errorf("publish %s: %w", subject, err)
	case errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum), errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: publish %s: %w", ErrTooLarge, subject, err)
	default:
		return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, subject, err)
	}
}

// backoff is one call's retry schedule; it is never shared.
type backoff struct{ next time.Duration }

func (p *Publisher) newBackoff() backoff { return backoff{next: p.opts.RetryBackoff} }

// wait sleeps the next delay (with jitter) and reports true, or reports
// false at once when ctx ends first, or when ctx's deadline or deadline (if
// not zero) is too close for another attempt to be worth it.
func (b *backoff) wait(ctx context.Context, deadline time.Time) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, maxBackoff)
	if dl, ok := ctx.Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	if !deadline.IsZero() && time.Until(deadline) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
