// Package relay forwards changes from the LIVE_EVENTS stream to Pusher: a
// durable pull consumer shared by every replica, batching within a short
// window, coalescing per (channel, type), shrinking envelopes over Pusher's
// limit, sequential lanes so a channel's changes keep their seq order, and
// backoff that holds changes unacked while Pusher fails. A change is acked
// only after Pusher accepted it, or after it was stored in LIVE_DLQ.
//
// The files follow the way a change goes: setup.go (Run, the streams and
// the consumer), fetch.go (pulling and routing), lane.go and gate.go
// (sending in order, backing off together), pusher.go and prepare.go (the
// request), hold.go (what is held, kept alive and released), dlq.go (dead
// letters), and partition.go, reader.go and leases.go for partitioned mode.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
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
	// move leaves a NATS server that fails the relay's requests.
	move *mover

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
	// A fetch ends within IdleWait and a lease renewal within LeaseTTL:
	// the longer of the two is one round of either failing.
	r.move = newMover(deps.JS.Conn(), r.log, max(cfg.IdleWait, cfg.LeaseTTL))
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

// Ready reports nil while the relay can do its work: the consumer (or the
// lease bucket) is reachable, Pusher does not refuse its credentials, the
// relay is not stalled (see ErrStalled) and, in partitioned mode, no
// partition has been without an owner for longer than twice LeaseTTL (see
// ErrPartitionOrphaned: every replica reports it, as any of them could take
// the partition). A Pusher outage is not a stall: the relay holds changes
// on purpose then.
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
		// Partitioned: reachable leases, and no partition left without
		// an owner for longer than a hand-over takes; a replica that owns
		// nothing is a ready standby.
		if _, err := parts.leases.Status(ctx); err != nil {
			return fmt.Errorf("relay lease bucket: %w", err)
		}
		if err := parts.orphans.check(2*r.cfg.LeaseTTL, time.Now()); err != nil {
			return err
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
