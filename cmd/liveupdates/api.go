package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/nostressplanner/liveupdates/producer"
)

// runAPI serves the ingest API. It needs at least one API key.
func runAPI(ctx context.Context, env *settings) error {
	cfg, cfgErr := producer.LoadAPIConfig(env.Getenv)
	r, err := newRole(env, "api", cfgErr)
	if err != nil {
		return err
	}
	defer r.close()
	api, err := newIngest(r, cfg)
	if err != nil {
		return err
	}
	srv := r.server(env, "api", false, api.Register, nil)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.ensure(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}

// newIngest wires the producer library and its HTTP API on a role.
func newIngest(r *role, cfg producer.APIConfig) (*producer.API, error) {
	r = r.forRole("api") // its own NATS user in dev
	metrics, err := producer.NewMetrics(r.reg)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	pub := producer.NewPublisher(r.js, producer.Options{
		MaxDataBytes: cfg.MaxEventBytes,
		Metrics:      metrics,
	})
	api, err := producer.NewAPI(cfg, producer.APIDeps{
		Publisher:  pub,
		Log:        r.log.WithField("component", "api"),
		Registerer: r.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return api, nil
}
