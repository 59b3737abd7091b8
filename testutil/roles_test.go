package testutil

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

func TestPublishChangeStoresTheProducersHeaders(t *testing.T) {
	t.Parallel()
	srv := RunJetStream(t)
	js := srv.JS(t)
	if _, err := js.CreateStream(t.Context(), jetstreamConfig()); err != nil {
		t.Fatal(err)
	}
	seq := PublishChange(t, js, "e1", "vote.updated", `{"a":1}`)
	msgs := ReadAll(t, js, "LIVE_TEST")
	if seq != 1 || len(msgs) != 1 || msgs[0].Header.Get("Live-Id") == "" || msgs[0].Header.Get("Live-At") == "" {
		t.Fatalf("seq=%d msgs=%v", seq, msgs)
	}
}

func TestRunUntilCancelledStopsTheRole(t *testing.T) {
	t.Parallel()
	ended := make(chan struct{})
	stop := RunUntilCancelled(t, "role", func(ctx context.Context) error {
		<-ctx.Done()
		close(ended)
		return ctx.Err()
	})
	stop()
	stop()
	select {
	case <-ended:
	default:
		t.Fatal("stop returned before Run ended")
	}
}

func jetstreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: "LIVE_TEST", Subjects: []string{wire.SubjectPrefix + ">"}, Storage: jetstream.MemoryStorage}
}
