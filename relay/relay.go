// Package relay forwards changes from the LIVE_EVENTS stream to Pusher: a
// durable pull consumer shared by every replica, batching within a short
// window, coalescing per (channel, type), shrinking envelopes over Pusher's
// limit, sequential lanes so a channel's changes keep their seq order, and
// backoff that holds changes unacked while Pusher fails. A change is acked
// only after Pusher accepted it, or after it was stored in LIVE_DLQ.
package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/stream"
)

// pusherMaxBatch is Pusher's limit on events per batch request.
const pusherMaxBatch = 10

// Sentinel errors.
var (
	// ErrPusherDisabled is returned by New when the configuration has no
	// Pusher credentials: there is nothing to relay to, and clients poll.
	ErrPusherDisabled = errors.New("pusher is not configured (set PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET); clients will use polling")
	// ErrPusherRefused is wrapped by Ready while Pusher answers 401, 403 or
	// 404: a configuration error (credentials, app id, quota) that
	// retrying does not fix; the relay keeps every change meanwhile.
	ErrPusherRefused = errors.New("pusher refuses the relay's requests")
	// ErrNotRunning is returned by Ready before Run has set up the consumer.
	ErrNotRunning = errors.New("relay consumer is not set up yet")
	// ErrStalled is wrapped by Ready while changes are pending and none has
	// been acked or terminated for Config.StallAfter although Pusher is
	// healthy: something (a dead letter that cannot be stored, a stuck
	// lane) keeps the relay from its work, and restarting may help.
	ErrStalled = errors.New("relay makes no progress while changes are pending")
)

// Deps are the relay's collaborators.
type Deps struct {
	// JS is the JetStream handle; required.
	JS jetstream.JetStream
	// Stream is the LIVE_EVENTS configuration; its DLQ() is LIVE_DLQ.
	Stream stream.Config
	// Log is the parent logger; nil means discard.
	Log logrus.FieldLogger
	// Registerer takes the relay's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	// HTTPClient is the base for Pusher requests; nil means a new client.
	// Its Transport is wrapped to classify answers by status.
	HTTPClient *http.Client
	// Now is the clock for the publish-to-Pusher latency; nil means time.Now.
	Now func() time.Time
}

// Relay forwards changes to Pusher. Create it with New; Run it once.
type Relay struct {
	cfg      Config
	js       jetstream.JetStream
	streams  stream.Config
	log      logrus.FieldLogger
	m        *metrics
	now      func() time.Time
	gate     *gate
	coalesce map[string]bool
	lanes    []*lane
	hold     *holder
	letters  *letters
	reqLim   *rate.Limiter
	msgLim   *rate.Limiter
	// Throttled logs: a Pusher outage, partitions failing to read, a
	// refusal and failed acks are logged once per interval, not once per
	// attempt.
	outage     retry.Throttle
	warnRead   retry.Throttle
	logRefusal rate.Sometimes
	logAck     rate.Sometimes

	// backlog is true while the last fetched change said more are pending
	// in the stream: lanes then wait for full batches instead of sending
	// partial ones, and the fetcher skips its wait for a first change.
	backlog atomic.Bool
	// lastProgress is when a held change was last acked or terminated
	// (UnixNano); Ready reports a stall from it.
	lastProgress atomic.Int64

	mu    sync.Mutex
	cons  jetstream.Consumer // set by Run with the shared consumer
	parts *partitions        // set by Run in partitioned mode
}

// New checks cfg and builds a relay; it does no I/O. It returns
// ErrPusherDisabled when cfg has no Pusher credentials.
func New(cfg Config, deps Deps) (*Relay, error) {
	if !cfg.PusherEnabled() {
		return nil, ErrPusherDisabled
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new relay: %w", err)
	}
	if deps.JS == nil {
		return nil, errors.New("new relay: Deps.JS is required")
	}
	cfg = cfg.withDefaults()
	log := deps.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("new relay: %w", err)
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	base := deps.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	transport := base.Transport
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 2 * cfg.MaxInFlight
		transport = t
	}
	r := &Relay{
		cfg:        cfg,
		js:         deps.JS,
		streams:    deps.Stream.WithDefaults(),
		log:        log.WithField("component", "relay"),
		m:          m,
		now:        now,
		gate:       newGate(cfg.BackoffBase, cfg.BackoffMax, cfg.AuthRetryInterval),
		coalesce:   make(map[string]bool, len(cfg.CoalesceTypes)),
		hold:       newHolder(int64(min(4*cfg.BatchSize, cfg.MaxAckPending)), m.held),
		letters:    newLetters(),
		reqLim:     limiter(cfg.RequestsPerSecond, cfg.MaxInFlight),
		msgLim:     limiter(cfg.MessagesPerSecond, pusherMaxBatch),
		logRefusal: rate.Sometimes{First: 1, Interval: cfg.AuthRetryInterval},
		logAck:     rate.Sometimes{First: 1, Interval: 10 * time.Second},
	}
	for _, t := range cfg.CoalesceTypes {
		r.coalesce[t] = true
	}
	for range cfg.MaxInFlight {
		r.lanes = append(r.lanes, &lane{wake: make(chan struct{}, 1), lc: newLaneClient(cfg, base, transport, time.Now)})
	}
	return r, nil
}

// limiter returns a token bucket of perSec with at least burst tokens, or an
// unlimited one for perSec 0.
func limiter(perSec float64, burst int) *rate.Limiter {
	if perSec <= 0 {
		return rate.NewLimiter(rate.Inf, burst)
	}
	return rate.NewLimiter(rate.Limit(perSec), max(burst, int(math.Ceil(perSec))))
}

// Run ensures LIVE_EVENTS, LIVE_DLQ and the durable consumer, then forwards
// changes until ctx is done. On cancellation it lets requests in flight
// finish, releases (Naks) every change it still holds, and returns nil. It
// returns an error only when the streams or the consumer cannot be set up.
func (r *Relay) Run(ctx context.Context) error {
	var (
		st   jetstream.Stream
		cons jetstream.Consumer
		pt   *partitions
	)
	err := r.retrySetup(ctx, func(ctx context.Context) error {
		var err error
		if st, _, err = stream.Ensure(ctx, r.js, r.streams); err != nil {
			return err
		}
		if _, _, err = stream.Ensure(ctx, r.js, r.streams.DLQ()); err != nil {
			return err
		}
		if r.cfg.Partitions > 0 {
			pt, err = r.setUpPartitions(ctx)
			return err
		}
		cons, err = r.ensureConsumer(ctx)
		return err
	})
	if ctx.Err() != nil {
		return nil // cancelled while setting up: nothing held yet
	}
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if pt != nil {
		return r.runPartitioned(ctx, pt)
	}
	adv := make(chan *nats.Msg, 64)
	sub, err := r.js.Conn().ChanSubscribe(advisorySubject(r.streams.Name), adv)
	if err != nil {
		return fmt.Errorf("relay: subscribe to max-deliveries advisories: %w", err)
	}
	r.log.WithFields(logrus.Fields{"stream": r.streams.Name, "consumer": Consumer, "lanes": len(r.lanes)}).Info("relay started")
	r.progressed()

	var wg sync.WaitGroup
	wg.Go(func() { r.fetchLoop(ctx, cons) })
	for _, l := range r.lanes {
		wg.Go(func() { r.runLane(ctx, l) })
	}
	wg.Go(func() { r.runDeadLetters(ctx) })
	wg.Go(func() { r.keepAlive(ctx) })
	wg.Go(func() { r.sampleLag(ctx) })
	wg.Go(func() { r.handleAdvisories(ctx, st, adv) })
	wg.Wait()
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		r.log.WithError(err).Warn("unsubscribe advisories")
	}
	r.releaseAll(ctx)
	r.log.Info("relay stopped")
	return nil
}

// retrySetup runs setup until it succeeds, ctx ends, or it fails for a
// reason retrying cannot fix (the stream conflicts with the configuration).
// A cluster that is still electing its leaders (a fresh or recovering
// three-node cluster takes seconds) answers with timeouts meanwhile: a relay
// that gave up then would leave its changes unsent until restarted.
func (r *Relay) retrySetup(ctx context.Context, setup func(context.Context) error) error {
	return retry.Do(ctx, retry.New(100*time.Millisecond, 5*time.Second), r.log, "relay setup failed, retrying",
		func(ctx context.Context) error {
			err := setup(ctx)
			if errors.Is(err, stream.ErrConflict) {
				return retry.Permanent(err)
			}
			return err
		})
}

// runPartitioned is Run in partitioned mode, after the streams and the
// buckets were set up.
func (r *Relay) runPartitioned(ctx context.Context, pt *partitions) error {
	r.mu.Lock()
	r.parts = pt
	r.mu.Unlock()
	r.log.WithFields(logrus.Fields{"stream": r.streams.Name, "partitions": r.cfg.Partitions, "replica": pt.id, "lanes": len(r.lanes)}).Info("relay started")
	r.progressed()
	var wg, readers sync.WaitGroup
	for _, l := range r.lanes {
		wg.Go(func() { r.runLane(ctx, l) })
	}
	wg.Go(func() { r.runDeadLetters(ctx) })
	wg.Go(func() { pt.run(ctx, &readers) })
	wg.Wait()
	readers.Wait()
	r.releaseAll(ctx)
	r.log.Info("relay stopped")
	return nil
}

func advisorySubject(streamName string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + streamName + "." + Consumer
}

func (r *Relay) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := r.js.CreateOrUpdateConsumer(ctx, r.streams.Name, r.cfg.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", Consumer, r.streams.Name, err)
	}
	r.mu.Lock()
	r.cons = cons
	r.mu.Unlock()
	return cons, nil
}

// consumerConfig is the durable consumer every replica shares.
func (c Config) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       Consumer,
		Description:   "liveupdates relay: forwards changes to Pusher",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		MaxWaiting:    512,
	}
}

// Ready reports nil while the relay can do its work: the consumer is
// reachable, Pusher does not refuse its credentials, and the relay is not
// stalled (see ErrStalled). A Pusher outage is not a stall: the relay holds
// changes on purpose then.
func (r *Relay) Ready(ctx context.Context) error {
	if err := r.gate.Refusal(); err != nil {
		return err
	}
	r.mu.Lock()
	cons, parts := r.cons, r.parts
	r.mu.Unlock()
	var pending uint64
	switch {
	case parts != nil:
		// Partitioned: reachable leases; a replica that owns nothing is
		// a ready standby.
		if _, err := parts.leases.Status(ctx); err != nil {
			return fmt.Errorf("relay lease bucket: %w", err)
		}
	case cons != nil:
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("relay consumer info: %w", err)
		}
		pending = info.NumPending
	default:
		return ErrNotRunning
	}
	idle := time.Since(time.Unix(0, r.lastProgress.Load()))
	if held := r.hold.count(); (held > 0 || pending > 0) && idle > r.cfg.StallAfter && r.gate.Healthy() {
		return fmt.Errorf("%w: nothing acked for %v with %d changes held and %d pending", ErrStalled, idle.Round(time.Second), held, pending)
	}
	return nil
}

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
		if err == nil || ctx.Err() != nil {
			if b.Failures() > 0 {
				warn.Recovered(r.log, "fetching changes again")
			}
			b.Reset()
			continue
		}
		d := b.Next()
		warn.Failed(r.log, err, b.Failures(), d, "fetch changes")
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
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
