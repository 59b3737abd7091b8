// Package retry is the one way liveupdates waits before trying again: a
// jittered exponential backoff, a sleep that ends with its context, and
// warnings throttled so an outage logs a line now and then rather than one
// per attempt.
//
// Durations in log fields are written as Go duration strings ("250ms",
// "1.5s") under names without a unit suffix, here and in every role.
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Backoff is a retry schedule: after n consecutive failures the delay is
// uniform in [d/2, d] with d = min(Base·2ⁿ, Max). The jitter keeps the
// replicas of a role from retrying in step after a shared outage. A Backoff
// belongs to one loop; it is not safe for concurrent use.
type Backoff struct {
	Base time.Duration
	Max  time.Duration

	failures int
	// jitter returns a number in [0, n]; rand by default, fixed in tests.
	jitter func(n int64) int64
}

// New returns a Backoff from base up to max.
func New(base, max time.Duration) *Backoff {
	return &Backoff{Base: base, Max: max}
}

// Delay is the delay after n consecutive failures (n >= 1), without
// changing the schedule.
func (b *Backoff) Delay(n int) time.Duration {
	base, top := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if top < base {
		top = base
	}
	d := base
	for i := 1; i < n && d < top; i++ {
		d *= 2
	}
	d = min(d, top)
	j := b.jitter
	if j == nil {
		j = func(n int64) int64 { return rand.Int64N(n + 1) }
	}
	return d/2 + time.Duration(j(int64(d/2)))
}

// Next counts one more failure and returns the delay to wait before the
// next attempt.
func (b *Backoff) Next() time.Duration {
	b.failures++
	return b.Delay(b.failures)
}

// Failures is the number of consecutive failures counted since the last
// Reset.
func (b *Backoff) Failures() int { return b.failures }

// Reset starts the schedule again after a success.
func (b *Backoff) Reset() { b.failures = 0 }

// Wait counts a failure and sleeps its delay. It reports false at once when
// ctx ends first, or when the delay would run past deadline or ctx's
// deadline (the earlier; a zero deadline is none), since another attempt
// would not be worth starting.
func (b *Backoff) Wait(ctx context.Context, deadline time.Time) bool {
	d := b.Next()
	if dl, ok := ctx.Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	if !deadline.IsZero() && time.Until(deadline) < d {
		return false
	}
	return Sleep(ctx, d) == nil
}

// Sleep waits d, or returns the cause of ctx's end when it ends first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Throttle logs the failures of one retry loop: the first at once, then at
// most one per Every (with how many were not logged), and a line when the
// loop recovers. The zero value logs at most one warning every 10 seconds.
// It is safe for concurrent use, so loops doing the same work (lanes,
// partitions) can share one.
type Throttle struct {
	Every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
	failing    bool
}

// Failed logs err at warning level with the attempt number and the delay
// before the next attempt, unless a warning was logged less than Every ago.
func (t *Throttle) Failed(log logrus.FieldLogger, err error, attempt int, delay time.Duration, msg string) {
	every := t.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	t.mu.Lock()
	now := time.Now()
	t.failing = true
	if !t.last.IsZero() && now.Sub(t.last) < every {
		t.suppressed++
		t.mu.Unlock()
		return
	}
	suppressed := t.suppressed
	t.last, t.suppressed = now, 0
	t.mu.Unlock()
	f := logrus.Fields{"attempt": attempt, "backoff": delay.String()}
	if suppressed > 0 {
		f["not_logged"] = suppressed
	}
	log.WithError(err).WithFields(f).Warn(msg)
}

// Recovered logs msg at info level when failures were logged since the last
// recovery, and starts the throttle afresh.
func (t *Throttle) Recovered(log logrus.FieldLogger, msg string) {
	t.mu.Lock()
	was := t.failing
	t.failing, t.last, t.suppressed = false, time.Time{}, 0
	t.mu.Unlock()
	if was {
		log.Info(msg)
	}
}

// permanent marks an error Do must not retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so Do returns it at once instead of retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Do calls op until it returns nil or a Permanent error (returned
// unwrapped), or ctx ends (its cause is returned, joined with op's last
// error). Failures are logged through a Throttle with msg.
func Do(ctx context.Context, b *Backoff, log logrus.FieldLogger, msg string, op func(context.Context) error) error {
	var t Throttle
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			b.Reset()
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		d := b.Next()
		t.Failed(log, err, attempt, d, msg)
		if serr := Sleep(ctx, d); serr != nil {
			return errors.Join(serr, err)
		}
	}
}
