package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/stream"
)

// role is what every long-running role shares: a logger, a registry, the
// readiness checks, and a NATS connection with its JetStream handle.
type role struct {
	log    *logrus.Logger
	reg    *prometheus.Registry
	checks *ops.Checks
	stream stream.Config
	natsConn
	extra  []*nats.Conn     // dev's per-role connections (role.as), drained by close
	byRole map[string]*role // dev's per-role views (splitUsers); nil in a one-role process
}

// newRole reads the common settings, reporting every problem at once
// together with the role's own (cfgErr), and connects to NATS.
func newRole(env *settings, name string, cfgErr error, natsOpts ...nats.Option) (*role, error) {
	log, logErr := newLogger(env.Getenv, env.stderr, "json")
	streamCfg, streamErr := stream.LoadConfig(env.Getenv)
	if err := errors.Join(logErr, streamErr, cfgErr); err != nil {
		return nil, fmt.Errorf("%s configuration:\n%w", name, err)
	}
	return connectRole(env, name, log, streamCfg, natsOpts...)
}

func connectRole(env *settings, name string, log *logrus.Logger, streamCfg stream.Config, natsOpts ...nats.Option) (*role, error) {
	c, err := dialNATS(env.Getenv, name, log.WithField("component", name), keepTrying, natsOpts...)
	if err != nil {
		return nil, err
	}
	r := &role{log: log, reg: ops.NewRegistry(), checks: &ops.Checks{}, stream: streamCfg, natsConn: c}
	r.checks.Add("nats", natsReady(c, streamCfg.WithDefaults().Name))
	return r, nil
}

// close drains the NATS connection so in-flight publishes and acks finish.
func (r *role) close() {
	for _, nc := range append(r.extra, r.nc) {
		if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			r.log.WithError(err).Warn("nats drain")
		}
	}
}

// server is the role's HTTP server on LIVE_HTTP_ADDR: its routes plus
// /healthz, /readyz and /metrics (on LIVE_METRICS_ADDR when set). The roles'
// packages count and time their own routes (ops.HTTPMetrics, named for the
// role, so dev exports the same series as the separate roles); the ops
// endpoints are not counted.
func (r *role) server(env *settings, mount func(mux *http.ServeMux), beforeDrain func()) *ops.Server {
	// With LIVE_METRICS_ADDR, /metrics leaves the public port for an
	// address of its own (with /healthz and /readyz for the probes).
	metricsAddr := env.Getenv("LIVE_METRICS_ADDR")
	mux := ops.Mux(r.reg, r.checks)
	if metricsAddr != "" {
		mux = ops.PublicMux(r.checks)
	}
	if mount != nil {
		mount(mux)
	}
	return &ops.Server{
		Addr:         httpAddr(env.Getenv),
		Handler:      mux,
		Log:          r.log.WithField("component", "http"),
		BeforeDrain:  beforeDrain,
		AdminAddr:    metricsAddr,
		AdminHandler: ops.Mux(r.reg, r.checks),
	}
}

// roleParts are what a role adds to the process: its work (run until ctx
// ends), its routes (mount) and what to do before the HTTP server drains
// (drain); each may be nil.
type roleParts struct {
	run   func(ctx context.Context) error
	mount func(mux *http.ServeMux)
	drain func()
}

// runRole runs one role in its own process: its settings checked together
// with the common ones (cfgErr is the role's own configuration error), its
// NATS connection, its parts built by build, and its HTTP server, until ctx
// ends or one of them fails.
func runRole(ctx context.Context, env *settings, name string, cfgErr error, build func(r *role) (roleParts, error)) error {
	r, err := newRole(env, name, cfgErr)
	if err != nil {
		return err
	}
	defer r.close()
	parts, err := build(r)
	if err != nil {
		return err
	}
	srv := r.server(env, parts.mount, parts.drain)
	g, gctx := errgroup.WithContext(ctx)
	if parts.run != nil {
		g.Go(func() error { return parts.run(gctx) })
	}
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}
