package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it returns true, and
// fails the test with msg if it has not within timeout. Use it instead of
// sleeping: it returns as soon as the condition holds.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: "+msg, append([]any{timeout}, args...)...)
		}
		<-tick.C
	}
}

// EventuallyErr is Eventually for conditions that explain themselves: it
// polls until cond returns nil and reports the last error on timeout.
func EventuallyErr(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		<-tick.C
	}
}
