package testutil

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

// PublishChange stores one change as the producer stores it (subject from
// eventID and typ, a change id, the time it happened, data as given) and
// returns its stream sequence; the scoped deduplication id is that of a
// key-less caller. It fails the test on error, so call it from
// the test's goroutine; PublishChangeErr is for other goroutines.
func PublishChange(t testing.TB, js jetstream.JetStream, eventID, typ, data string) uint64 {
	t.Helper()
	seq, err := PublishChangeErr(t.Context(), js, eventID, typ, data)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// PublishChangeErr is PublishChange returning its error.
func PublishChangeErr(ctx context.Context, js jetstream.JetStream, eventID, typ, data string) (uint64, error) {
	now := time.Now()
	id := wire.NewID(now)
	m := nats.NewMsg(wire.Subject(eventID, typ))
	m.Header.Set(wire.HeaderMsgID, wire.DedupID("", eventID, id))
	m.Header.Set(wire.HeaderID, id)
	m.Header.Set(wire.HeaderAt, wire.FormatAt(now))
	m.Data = []byte(data)
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// RunUntilCancelled runs a role's Run in a goroutine until the returned stop
// is called or the test ends (whichever is first), then waits up to 15
// seconds for Run to return and reports an error other than the
// cancellation. stop may be called more than once.
func RunUntilCancelled(t testing.TB, name string, run func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("%s.Run: %v", name, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s.Run did not return within 15s of cancellation", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
