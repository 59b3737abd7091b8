// Package ops gives every long-running role the same operational surface:
// /healthz (the process is alive), /readyz (its dependencies answer),
// /metrics (Prometheus, from the role's own registry), and an HTTP server
// whose Run drains in-flight requests on shutdown.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/wire"
)

// ReadyCheck reports nil when a dependency is usable, or why it is not.
type ReadyCheck func(ctx context.Context) error

// Checks is a named set of readiness checks, safe for concurrent use. Roles
// add theirs as they are wired, so `dev` reports every role's readiness.
type Checks struct {
	mu     sync.Mutex
	names  []string
	checks map[string]ReadyCheck
}

// Add registers a check under name; a later Add with the same name replaces it.
func (c *Checks) Add(name string, check ReadyCheck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]ReadyCheck{}
	}
	if _, ok := c.checks[name]; !ok {
		c.names = append(c.names, name)
	}
	c.checks[name] = check
}

// Run runs every check and returns the failures by name.
func (c *Checks) Run(ctx context.Context) map[string]string {
	c.mu.Lock()
	names := append([]string(nil), c.names...)
	checks := make([]ReadyCheck, len(names))
	for i, n := range names {
		checks[i] = c.checks[n]
	}
	c.mu.Unlock()
	failed := map[string]string{}
	for i, check := range checks {
		if err := check(ctx); err != nil {
			failed[names[i]] = err.Error()
		}
	}
	return failed
}

// NewRegistry returns a registry with the Go runtime and process collectors,
// for one process. Roles register their metrics on it; it is never the
// global default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Mux returns a mux serving /healthz, /readyz and /metrics, and a JSON 404
// for every path no route claims. Callers mount their own routes on it.
func Mux(reg prometheus.Gatherer, checks *Checks) *http.ServeMux {
	mux := PublicMux(checks)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// PublicMux is Mux without /metrics, for a role whose metrics are served on
// an address of their own (Server.AdminAddr), away from the public port.
func PublicMux(checks *Checks) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := checks.Run(ctx)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "not ready", "failed": failed})
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	// Every answer is JSON, a miss too: the mux's own 404 is plain text.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "no route for "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// Server is an HTTP server with a graceful Run, bounded against clients that
// send slowly: headers within ReadHeaderTimeout, the whole request (headers
// and body) within ReadTimeout, and idle keep-alive connections closed after
// IdleTimeout. Nothing bounds how late a handler writes, so long-polls and
// SSE streams (which read nothing and write late) are unaffected.
type Server struct {
	// Addr to listen on, such as ":8080".
	Addr string
	// Handler serves every request. Run wraps it with Harden.
	Handler http.Handler
	// Log receives start and stop messages.
	Log logrus.FieldLogger
	// DrainTimeout bounds how long Run waits for in-flight requests after
	// ctx is done. Zero means 10s.
	DrainTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Zero means 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, so a client
	// that sends headers and part of a body (Content-Length: 100, one byte)
	// cannot hold a connection forever. It does not bound the handler:
	// net/http lifts the read deadline once the body is read to its end (or
	// at once when there is none) to watch for the client going away, so a
	// long-poll or an SSE stream is not cut, nor is its context cancelled
	// (TestLateWritersOutliveTheReadTimeout holds net/http to that). Zero
	// means 15s.
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request.
	// Zero means 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers. Zero means 64 KiB.
	MaxHeaderBytes int
	// BeforeDrain, when set, runs when ctx is done and before the server
	// stops accepting: a role uses it to end long-polls with a normal answer.
	BeforeDrain func()
	// Listener, when set, is used instead of listening on Addr (tests).
	Listener net.Listener
	// AdminAddr, when set, is a second address served by AdminHandler
	// (/metrics, /healthz, /readyz) with the same bounds, started and
	// stopped with the first: metrics stay off the public port.
	AdminAddr string
	// AdminHandler serves AdminAddr (a 404 when nil); Run wraps it with
	// Harden.
	AdminHandler http.Handler

	addrMu sync.Mutex
	addr   net.Addr
	ready  chan struct{}
}

// BoundAddr returns the address the server listens on once Run has bound it,
// waiting up to the context's deadline.
func (s *Server) BoundAddr(ctx context.Context) (net.Addr, error) {
	s.addrMu.Lock()
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
	ready := s.ready
	s.addrMu.Unlock()
	select {
	case <-ready:
		s.addrMu.Lock()
		defer s.addrMu.Unlock()
		return s.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves until ctx is done, then stops accepting, waits for in-flight
// requests up to DrainTimeout and returns nil. It returns an error when an
// address cannot be bound.
func (s *Server) Run(ctx context.Context) error {
	l := s.Listener
	if l == nil {
		var err error
		l, err = net.Listen("tcp", s.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.Addr, err)
		}
	}
	var admin net.Listener
	if s.AdminAddr != "" {
		var err error
		admin, err = net.Listen("tcp", s.AdminAddr)
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				s.Log.WithError(cerr).Warn("close listener")
			}
			return fmt.Errorf("listen %s (metrics): %w", s.AdminAddr, err)
		}
	}
	s.addrMu.Lock()
	s.addr = l.Addr()
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
	close(s.ready)
	s.addrMu.Unlock()

	servers := []*http.Server{s.httpServer(s.Handler)}
	listeners := []net.Listener{l}
	if admin != nil {
		h := s.AdminHandler
		if h == nil {
			h = http.NotFoundHandler()
		}
		servers = append(servers, s.httpServer(h))
		listeners = append(listeners, admin)
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		s.Log.WithField("addr", listeners[i].Addr().String()).Info("http server listening")
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	select {
	case err := <-errc:
		for _, srv := range servers {
			if cerr := srv.Close(); cerr != nil {
				s.Log.WithError(cerr).Warn("close http server")
			}
		}
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	if s.BeforeDrain != nil {
		s.BeforeDrain()
	}
	sctx, cancel := context.WithTimeout(context.Background(), orDefault(s.DrainTimeout, 10*time.Second))
	defer cancel()
	var errs []error
	for i, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("drain http server %s: %w", listeners[i].Addr(), err))
		}
	}
	for range servers {
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			errs = append(errs, serr)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.Log.Info("http server stopped")
	return nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           Harden(h),
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(s.ReadTimeout, 15*time.Second),
		IdleTimeout:       orDefault(s.IdleTimeout, 60*time.Second),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, 64<<10),
	}
}
