package producer

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// fixedNow is the clock of tests that compare Live-At.
var fixedNow = time.Date(2026, 11, 29, 10, 0, 0, 123_000_000, time.UTC)

// newStream runs a JetStream server with LIVE_EVENTS provisioned.
func newStream(t testing.TB) (*testutil.JetStream, jetstream.JetStream) {
	t.Helper()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	ensureStream(t, js)
	return srv, js
}

func ensureStream(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
}

// stored reads every message of LIVE_EVENTS as envelopes plus socket ids.
func stored(t testing.TB, js jetstream.JetStream) ([]wire.Envelope, []string) {
	t.Helper()
	var envs []wire.Envelope
	var sockets []string
	for _, m := range testutil.ReadAll(t, js, wire.StreamName) {
		env, sock, err := wire.DecodeMessage(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
		if err != nil {
			t.Fatalf("DecodeMessage(seq %d)=%v", m.Sequence, err)
		}
		envs = append(envs, env)
		sockets = append(sockets, sock)
	}
	return envs, sockets
}

// newMetrics builds the producer metrics on reg.
func newMetrics(t testing.TB, reg prometheus.Registerer) *Metrics {
	t.Helper()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("NewMetrics()=%v", err)
	}
	return m
}

// meteredPublisher is a Publisher on js with its metrics on reg.
func meteredPublisher(t testing.TB, js jetstream.JetStream) (p *Publisher, reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	return NewPublisher(js, Options{Metrics: newMetrics(t, reg)}), reg
}

// mustPublish publishes c with p and fails the test unless it is stored.
func mustPublish(t testing.TB, p *Publisher, c Change) Result {
	t.Helper()
	res, err := p.Publish(t.Context(), c)
	if err != nil {
		t.Fatalf("Publish(%s %s id %q)=%v", c.EventID, c.Type, c.ID, err)
	}
	return res
}
