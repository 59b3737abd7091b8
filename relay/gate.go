package relay

import (
	"context"
	"sync"
	"time"

	"github.com/nostressplanner/liveupdates/retry"
)

// gate is the relay's one view of Pusher's health, shared by every lane, so
// an outage costs one probe per backoff step, not one per lane. While it is
// closed, the lanes hold their changes and the fetcher stops fetching.
// Its delays are retry.Backoff's; what is its own is that the lanes share
// one schedule and one probe.
type gate struct {
	authInterval time.Duration

	mu      sync.Mutex
	backoff *retry.Backoff // its Failures are the consecutive failed requests; 0 means healthy
	until   time.Time      // no request before this
	probing bool           // a lane is probing; the others wait for its result
	refusal error          // non-nil while Pusher refuses our credentials
	changed chan struct{}
}

func newGate(base, max, authInterval time.Duration) *gate {
	return &gate{
		authInterval: authInterval,
		backoff:      retry.New(base, max),
		changed:      make(chan struct{}),
	}
}

// broadcast wakes every waiter; callers hold mu.
func (g *gate) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// Wait returns when the caller may send: at once while healthy; after the
// backoff, as the one prober, while failing. It returns ctx's error when ctx
// ends first.
func (g *gate) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.backoff.Failures() == 0 {
			g.mu.Unlock()
			return nil
		}
		ch := g.changed
		var timer *time.Timer
		var fire <-chan time.Time
		if !g.probing {
			d := time.Until(g.until)
			if d <= 0 {
				g.probing = true
				g.mu.Unlock()
				return nil
			}
			timer = time.NewTimer(d)
			fire = timer.C
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-ch:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// WaitHealthy returns when Pusher is known healthy, without probing: the
// fetcher waits here so an outage does not pull more changes in.
func (g *gate) WaitHealthy(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.backoff.Failures() == 0 {
			g.mu.Unlock()
			return nil
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Success records an answer from Pusher that is not a failure of Pusher
// (2xx, or a rejection of our data). It reports whether Pusher had been
// failing.
func (g *gate) Success() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.backoff.Failures() == 0 && !g.probing {
		return false
	}
	recovered := g.backoff.Failures() > 0
	g.backoff.Reset()
	g.probing, g.refusal = false, nil
	g.broadcast()
	return recovered
}

// Abandon gives up a probe without an answer (the caller's ctx ended), so
// another lane may probe.
func (g *gate) Abandon() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.probing {
		g.probing = false
		g.broadcast()
	}
}

// Failure records a retryable failure and returns the delay before the next
// probe: the backoff's, at least its base, and never less than Retry-After;
// and the number of consecutive failures.
func (g *gate) Failure(retryAfter time.Duration) (time.Duration, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The floor of the base keeps probes at least the base apart (the
	// backoff's first step may be half of it).
	d := max(g.backoff.Next(), g.backoff.Base)
	if retryAfter > d {
		d = retryAfter
	}
	// Lanes that failed together must not shorten a Retry-After another
	// lane was given.
	if until := time.Now().Add(d); until.After(g.until) {
		g.until = until
	}
	g.probing = false
	g.broadcast()
	return d, g.backoff.Failures()
}

// Refused records that Pusher refuses our credentials: probe again only
// every authInterval (or Retry-After, when longer).
func (g *gate) Refused(err error, retryAfter time.Duration) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.backoff.Next() // counts the failure; the delay is authInterval's
	g.refusal = err
	d := max(g.authInterval, retryAfter)
	if until := time.Now().Add(d); until.After(g.until) {
		g.until = until
	}
	g.probing = false
	g.broadcast()
	return d
}

// Healthy reports whether Pusher is believed healthy.
func (g *gate) Healthy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.backoff.Failures() == 0
}

// Refusal returns why Pusher refuses us, or nil.
func (g *gate) Refusal() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refusal
}
