package retry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestDelayDoublesUpToMaxWithJitterInTheUpperHalf(t *testing.T) {
	t.Parallel()
	lowest := &Backoff{Base: 100 * time.Millisecond, Max: time.Second, jitter: func(int64) int64 { return 0 }}
	highest := &Backoff{Base: 100 * time.Millisecond, Max: time.Second, jitter: func(n int64) int64 { return n }}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		if got := highest.Delay(n); got != want {
			t.Errorf("Delay(%d) with the highest jitter=%v, want %v", n, got, want)
		}
		if got := lowest.Delay(n); got != want/2 {
			t.Errorf("Delay(%d) with the lowest jitter=%v, want %v", n, got, want/2)
		}
	}
	b := New(10*time.Millisecond, 20*time.Millisecond)
	for range 1000 {
		if d := b.Next(); d < 5*time.Millisecond || d > 20*time.Millisecond {
			t.Fatalf("Next()=%v outside [5ms, 20ms]", d)
		}
	}
	if b.Failures() != 1000 {
		t.Fatalf("Failures()=%d", b.Failures())
	}
	b.Reset()
	if b.Failures() != 0 {
		t.Fatal("Reset kept the failures")
	}
}

func TestWaitStopsForContextAndDeadline(t *testing.T) {
	t.Parallel()
	b := New(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx, time.Time{}) {
		t.Fatal("Wait on a cancelled context reported true")
	}
	start := time.Now()
	if b.Wait(context.Background(), time.Now().Add(time.Minute)) {
		t.Fatal("Wait with a delay past the deadline reported true")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("Wait slept although the delay ran past the deadline")
	}
	if !New(time.Millisecond, time.Millisecond).Wait(context.Background(), time.Time{}) {
		t.Fatal("a short wait reported false")
	}
}

func TestSleepReturnsTheCause(t *testing.T) {
	t.Parallel()
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := Sleep(ctx, time.Hour); !errors.Is(err, cause) {
		t.Fatalf("Sleep=%v, want %v", err, cause)
	}
	if err := Sleep(context.Background(), time.Microsecond); err != nil {
		t.Fatalf("Sleep=%v", err)
	}
}

func TestDoRetriesUntilSuccessAndStopsOnPermanent(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	calls := 0
	err := Do(context.Background(), New(time.Millisecond, time.Millisecond), log, "op failed", func(context.Context) error {
		if calls++; calls < 4 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("Do=%v after %d calls, want nil after 4", err, calls)
	}
	// Three failures within a millisecond or so: the first is logged, the
	// others are throttled.
	if n := len(hook.AllEntries()); n != 1 {
		t.Fatalf("%d warnings logged, want 1 (throttled)", n)
	}
	e := hook.LastEntry()
	if e.Level != logrus.WarnLevel || e.Data["attempt"] != 1 || e.Data["backoff"] == nil {
		t.Fatalf("warning %v %v", e.Level, e.Data)
	}

	stop := errors.New("bad config")
	calls = 0
	err = Do(context.Background(), New(time.Millisecond, time.Millisecond), log, "op failed", func(context.Context) error {
		calls++
		return Permanent(stop)
	})
	if err != stop || calls != 1 {
		t.Fatalf("Do=%v after %d calls, want the permanent error after 1", err, calls)
	}
}

func TestDoEndsWithTheContext(t *testing.T) {
	t.Parallel()
	log, _ := logtest.NewNullLogger()
	ctx, cancel := context.WithCancel(context.Background())
	last := errors.New("unreachable")
	err := Do(ctx, New(time.Hour, time.Hour), log, "op failed", func(context.Context) error {
		cancel()
		return last
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, last) {
		t.Fatalf("Do=%v, want the cancellation and the last error", err)
	}
}

func TestThrottleLogsAgainAfterEveryAndOnRecovery(t *testing.T) {
	t.Parallel()
	log, hook := logtest.NewNullLogger()
	th := Throttle{Every: time.Minute}
	th.Failed(log, errors.New("a"), 1, time.Second, "failed")
	th.last = th.last.Add(-time.Hour) // as if Every had passed
	th.Failed(log, errors.New("b"), 2, time.Second, "failed")
	if n := len(hook.AllEntries()); n != 2 {
		t.Fatalf("%d warnings, want 2 once Every has passed", n)
	}
	th.Recovered(log, "recovered")
	if e := hook.LastEntry(); e.Level != logrus.InfoLevel || e.Message != "recovered" {
		t.Fatalf("last entry %v %q, want the recovery", e.Level, e.Message)
	}
	th.Recovered(log, "recovered")
	if n := len(hook.AllEntries()); n != 3 {
		t.Fatalf("%d entries, want no second recovery line", n)
	}
	slow := Throttle{Every: time.Hour}
	for i := range 5 {
		slow.Failed(log, errors.New("x"), i+1, time.Second, "failed")
	}
	if n := len(hook.AllEntries()); n != 4 {
		t.Fatalf("%d entries, want one more warning for five quick failures", n)
	}
}
