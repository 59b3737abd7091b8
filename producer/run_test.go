package producer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// newRunAPI builds an API on js whose Run ensures cfg's stream.
func newRunAPI(t *testing.T, js jetstream.JetStream, cfg stream.Config) (*API, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	api, err := NewAPI(APIConfig{Keys: []string{testKey}}, APIDeps{Publisher: NewPublisher(js, Options{}), Log: log, Stream: cfg})
	if err != nil {
		t.Fatalf("NewAPI()=%v", err)
	}
	return api, hook
}

func hasStream(js jetstream.JetStream, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := js.Stream(ctx, name)
	return err == nil
}

func TestAPIRunCreatesTheStreamOnceJetStreamIsThere(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	srv.Stop()
	api, hook := newRunAPI(t, js, stream.Config{})
	stop := testutil.RunUntilCancelled(t, "api", api.Run)
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "stream not ready, retrying" && e.Data["stream"] == wire.StreamName {
				return true
			}
		}
		return false
	}, "Run did not log that it retries while NATS is down")
	srv.Start()
	testutil.Eventually(t, 30*time.Second, func() bool { return hasStream(js, wire.StreamName) },
		"Run did not create the stream once NATS was back")
	stop()
}

func TestAPIRunBringsTheLimitsBackToTheConfiguration(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	cfg := stream.Config{MaxAge: 2 * time.Hour}
	api, hook := newRunAPI(t, js, cfg)
	stop := testutil.RunUntilCancelled(t, "api", api.Run)
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "stream limit updated to match configuration" && e.Level == logrus.WarnLevel {
				return true
			}
		}
		return false
	}, "Run did not log the limit it updated")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Fatalf("max age=%v, want 2h", got)
	}
	stop()
}

func TestAPIRunReturnsAConflictingStreamAtOnce(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: wire.StreamName, Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatalf("create a conflicting stream: %v", err)
	}
	api, _ := newRunAPI(t, js, stream.Config{})
	err := api.Run(ctx)
	if !errors.Is(err, stream.ErrConflict) {
		t.Fatalf("Run()=%v, want an error wrapping stream.ErrConflict", err)
	}
}
