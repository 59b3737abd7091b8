package pushercompat

import (
	"sync"
	"time"
)

// Fault is how the server misbehaves for a request instead of handling it.
type Fault struct {
	// Status is the HTTP status to answer. Zero with Drop false means 500.
	Status int
	// RetryAfter, when positive, sets the Retry-After header in whole
	// seconds, rounded up (a 1.2 s RetryAfter is sent as "2").
	RetryAfter time.Duration
	// Body is the plain-text answer. Empty means the status text ("Service
	// Unavailable").
	Body string
	// Drop closes the connection without answering; Status, RetryAfter and
	// Body are then ignored. The client sees a *url.Error.
	Drop bool
}

// faults is the fault-injection state, separate from what is recorded.
type faults struct {
	mu        sync.Mutex
	nextN     int
	next      Fault
	until     time.Time
	period    Fault
	latency   time.Duration
	outage    bool
	rejectFor func(Event) (int, string)
}

// take returns the fault for a request arriving at now, consuming one of
// FailNext's count first; FailNext wins over FailFor when both apply.
func (f *faults) take(now time.Time) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nextN > 0 {
		f.nextN--
		return f.next, true
	}
	if now.Before(f.until) {
		return f.period, true
	}
	return Fault{}, false
}

func (f *faults) failNext(n int, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextN, f.next = max(n, 0), fault
}

func (f *faults) failUntil(until time.Time, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until, f.period = until, fault
}

func (f *faults) setLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = max(d, 0)
}

func (f *faults) setOutage(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outage = on
}

func (f *faults) setRule(fn func(Event) (int, string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejectFor = fn
}

func (f *faults) latencyNow() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latency
}

func (f *faults) outageNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outage
}

func (f *faults) rule() func(Event) (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejectFor
}

func (f *faults) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextN, f.next = 0, Fault{}
	f.until, f.period = time.Time{}, Fault{}
	f.latency, f.outage, f.rejectFor = 0, false, nil
}
