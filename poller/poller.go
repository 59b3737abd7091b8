// Package poller is the service browsers poll when Pusher is off or
// unreachable, and where clients fetch changes the relay sent by reference.
// It follows LIVE_EVENTS with an ordered consumer into an in-memory index and
// answers every read from it: replicas are stateless and interchangeable, and
// the stream seq is the cursor.
package poller

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Deps are the poller's collaborators.
type Deps struct {
	// JS reaches LIVE_EVENTS. Required.
	JS jetstream.JetStream
	// Stream is LIVE_EVENTS's configuration, for stream.Ensure.
	Stream stream.Config
	// Log receives the poller's logs. Zero means logs are discarded.
	Log logrus.FieldLogger
	// Registerer receives the poller's metrics. Zero means a private
	// registry nobody scrapes.
	Registerer prometheus.Registerer
	// Now is the clock. Zero means time.Now.
	Now func() time.Time
	// Client holds the browser client's files (client.js, react.js,
	// client.d.ts, react.d.ts at its root), served at /v1/client.js and
	// /v1/client/…. Zero means those routes answer 404.
	Client fs.FS
}

// ErrNotReady is returned by Ready until the poller has replayed the stream.
var ErrNotReady = errors.New("poller not ready")

// Poller follows LIVE_EVENTS and serves the polling API.
type Poller struct {
	cfg  Config
	js   jetstream.JetStream
	scfg stream.Config
	log  logrus.FieldLogger
	now  func() time.Time
	m    *metrics
	idx  *index
	// waits holds the reads waiting for a change, woken by idx.
	waits *waiters
	lim   *limiter
	pk    *parking
	hot   *hotEvents
	sse   *streams

	frames frameCache // SSE frames of recent changes, shared by streams
	// sseBaseline keeps SSE streams on their goroutines, encodes every
	// frame per stream and moves the write deadline on every write, as
	// before: BenchmarkSSEFanout's baseline.
	sseBaseline atomic.Bool
	deepSem     chan struct{}    // bounds deep resumes in flight
	configJSON  []byte           // GET /v1/config, built once
	assets      map[string]asset // the client's files by URL path

	// ready is closed once the replay is done.
	ready     chan struct{}
	readyOnce sync.Once
	// following is false while the consumer is being re-created.
	following atomic.Bool
	// drain is closed by Drain.
	drain     chan struct{}
	drainOnce sync.Once
	// st is the stream handle for by-seq reads, set by Run.
	st atomic.Pointer[jetstream.Stream]
	// replayTarget is the stream's last seq when the replay started.
	replayTarget atomic.Uint64
	// lag is the stream's messages after the last applied one.
	lag atomic.Uint64
}

// New builds a poller. It does no I/O.
func New(cfg Config, deps Deps) (*Poller, error) {
	if deps.JS == nil {
		return nil, errors.New("poller: Deps.JS is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("poller: %w", err)
	}
	cfg = cfg.withDefaults()
	log := deps.Log
	if log == nil {
		l := logrus.New()
		l.Out = discard{}
		log = l
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	p := &Poller{
		cfg:     cfg,
		js:      deps.JS,
		scfg:    deps.Stream.WithDefaults(),
		log:     log.WithField("component", "poller"),
		now:     now,
		idx:     newIndex(cfg),
		waits:   newWaiters(),
		hot:     newHotEvents(cfg.HotLongPolls),
		lim:     newLimiter(cfg.Rate, cfg.Burst, cfg.MaxClients),
		sse:     newStreams(cfg.SSEMaxPerToken, cfg.SSEMaxPerAddr),
		deepSem: make(chan struct{}, deepConcurrency),
		ready:   make(chan struct{}),
		drain:   make(chan struct{}),
	}
	assets, err := loadAssets(deps.Client)
	if err != nil {
		return nil, fmt.Errorf("poller: client files: %w", err)
	}
	p.assets = assets
	if p.configJSON, err = p.buildConfigAnswer(); err != nil {
		return nil, fmt.Errorf("poller: %w", err)
	}
	m, err := newMetrics(reg, p)
	if err != nil {
		return nil, fmt.Errorf("poller metrics: %w", err)
	}
	p.m = m
	p.pk = &parking{p: p}
	p.waits.onWake = p.pk.wake
	p.waits.onSSE = func(g *sseGroup) { p.pk.enqueueSSE(sseJob{g: g}) }
	p.idx.changed = p.waits.wake
	return p, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// Ready reports nil once the stream has been replayed into memory and the
// consumer is following; until then it wraps ErrNotReady.
func (p *Poller) Ready(context.Context) error {
	select {
	case <-p.ready:
	default:
		return fmt.Errorf("%w: replaying %s (applied seq %d)", ErrNotReady, p.scfg.Name, p.idx.appliedSeq())
	}
	if !p.following.Load() {
		return fmt.Errorf("%w: reconnecting to %s (applied seq %d)", ErrNotReady, p.scfg.Name, p.idx.appliedSeq())
	}
	return nil
}

// Drain ends every long-poll and SSE stream with a normal answer and makes
// later long-polls answer at once. Call it on SIGTERM before the HTTP server
// drains. Parked long-polls are answered (with Connection: close) before it
// returns, and an SSE write stuck on a client that stopped reading fails at
// once, so the server's drain never waits on one. It is safe to call more
// than once.
func (p *Poller) Drain() {
	p.drainOnce.Do(func() {
		close(p.drain)
		p.sse.closeAll()
		p.pk.drainParked()
	})
}

func (p *Poller) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

// Run ensures the stream, replays what it retains (up to ReplayDepth), and
// follows it until ctx is done. A broken consumer is re-created from the
// last applied seq, so nothing is skipped. It returns nil on cancellation
// and an error only when the stream conflicts with the configuration.
func (p *Poller) Run(ctx context.Context) error {
	b := retry.New(retryBase, retryMax)
	var st jetstream.Stream
	err := retry.Do(ctx, b, p.log, "ensure stream failed", func(ctx context.Context) error {
		s, changes, err := stream.Ensure(ctx, p.js, p.scfg)
		if errors.Is(err, stream.ErrConflict) {
			return retry.Permanent(err)
		}
		if err != nil {
			return err
		}
		stream.LogChanges(p.log, p.scfg.WithDefaults().Name, changes)
		st = s
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("poller: %w", err)
	}
	p.st.Store(&st)
	// Last out: nothing wakes parked long-polls once the index stops
	// following, so they are answered, and the inner servers stopped.
	defer p.pk.shutdown()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { p.housekeep(ctx) })
	wg.Go(func() { p.sweepSSE(ctx) })

	var thr retry.Throttle
	wait := func(err error, msg string) bool {
		d := b.Next()
		thr.Failed(p.log, err, b.Failures(), d, msg)
		return retry.Sleep(ctx, d) == nil
	}
	start := true
	for ctx.Err() == nil {
		if start {
			ok, err := p.replayStart(ctx, st)
			if err != nil {
				if !wait(err, "stream info failed") {
					return nil
				}
				continue
			}
			start = !ok
		}
		err := p.follow(ctx, st)
		p.following.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		p.m.consumerRestarts.Inc()
		if p.idx.appliedSeq() > 0 {
			// Once it has changes to serve, a poller not following answers
			// from a state that ages: it retries often rather than spare
			// NATS.
			b.Max = resumeRetryMax
		}
		if !wait(err, "consumer failed, resuming from applied seq") {
			return nil
		}
	}
	return nil
}

// The retry schedule of Run: from retryBase doubling to retryMax, or to
// resumeRetryMax once the index holds changes.
const (
	retryBase      = 50 * time.Millisecond
	retryMax       = 3 * time.Second
	resumeRetryMax = 400 * time.Millisecond
)

// housekeep ages out held changes and refreshes the busiest-events gauge.
func (p *Poller) housekeep(ctx context.Context) {
	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()
	sweepEvery := max(p.cfg.RingAge/4, p.cfg.PollInterval)
	lastSweep := p.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := p.now()
		if now.Sub(lastSweep) >= sweepEvery {
			p.idx.sweepAge(now)
			lastSweep = now
		}
		p.reapParked()
		top := p.idx.busiest(busiestRanks)
		p.m.setBusiest(top)
		if len(top) > 0 {
			p.log.WithFields(logrus.Fields{"event_id": top[0].id, "polls": top[0].polls}).Debug("busiest event")
		}
	}
}

func formatSeq(b []byte, s uint64) []byte { return strconv.AppendUint(b, s, 10) }
