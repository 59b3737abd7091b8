package testutil

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream is an embedded nats-server with JetStream, on a random loopback
// port, storing under a temporary directory. It is shut down when the test
// ends. Stop and Start simulate an outage: Start brings the server back on
// the same port with the same store, so clients reconnect and data survives.
type JetStream struct {
	t     testing.TB
	mu    sync.Mutex
	srv   *server.Server
	opts  server.Options
	url   string
	store string
}

// RunJetStream starts an embedded JetStream server for t.
func RunJetStream(t testing.TB) *JetStream {
	t.Helper()
	return RunJetStreamWith(t, nil)
}

// RunJetStreamWith is RunJetStream with options of the test's own, set by
// configure before the server starts (users and permissions, say). Conn
// connects without credentials; pass nats.UserInfo for a user.
func RunJetStreamWith(t testing.TB, configure func(*server.Options)) *JetStream {
	t.Helper()
	port := FreePort(t)
	s := &JetStream{t: t, store: t.TempDir()}
	s.opts = server.Options{
		ServerName: "test-" + strconv.Itoa(port),
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   s.store,
		NoLog:      true,
		NoSigs:     true,
		// Generous so benchmarks and large-message tests are not cut short.
		MaxPayload: 8 << 20,
	}
	if configure != nil {
		configure(&s.opts)
	}
	s.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL of the server.
func (s *JetStream) URL() string { return s.url }

// StoreDir is where the server keeps its data.
func (s *JetStream) StoreDir() string { return s.store }

// Server returns the running server, or nil while it is stopped.
func (s *JetStream) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Start (re)starts the server on its port and store. It is a no-op while the
// server runs.
func (s *JetStream) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return
	}
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		s.t.Fatalf("new nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("nats-server on %s not ready within 10s", s.url)
	}
	s.srv = srv
}

// Stop shuts the server down and waits for it. It is a no-op while stopped.
func (s *JetStream) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Conn connects a client that keeps reconnecting forever (so an outage test
// sees it come back); it is closed when the test ends.
func (s *JetStream) Conn(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}, opts...)
	nc, err := nats.Connect(s.url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", s.url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JS returns a jetstream handle on a new connection.
func (s *JetStream) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Conn(t))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// ReadAll returns every message currently in stream, in seq order, by
// direct get. Tests use it to compare what was stored with what was sent.
func ReadAll(t testing.TB, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted or expired
		}
		out = append(out, m)
	}
	return out
}

// FreeAddr returns a loopback address no one listens on right now, for a
// server that must be told its address before it starts (nats-server's
// cluster routes, dev's LIVE_NATS_LISTEN).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// FreePort returns a loopback port no one listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Fatalf("close probe listener: %v", err)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}
