package main

import (
	"context"
	"fmt"

	"github.com/nostressplanner/liveupdates/producer"
)

// runAPI serves the ingest API. It needs at least one API key.
func runAPI(ctx context.Context, env *settings) error {
	cfg, cfgErr := producer.LoadAPIConfig(env.Getenv)
	return runRole(ctx, env, "api", cfgErr, func(r *role) (roleParts, error) { return newIngest(r, cfg) })
}

// newIngest wires the producer library and its HTTP API on a role: its
// routes, and its work: Run ensures the stream in the background, so the
// HTTP server (and /healthz) is up at once and /readyz waits for the stream.
func newIngest(r *role, cfg producer.APIConfig) (roleParts, error) {
	r = r.forRole("api") // its own NATS user in dev
	metrics, err := producer.NewMetrics(r.reg)
	if err != nil {
		return roleParts{}, fmt.Errorf("api: %w", err)
	}
	pub := producer.NewPublisher(r.js, producer.Options{
		MaxDataBytes: cfg.MaxEventBytes,
		Metrics:      metrics,
	})
	api, err := producer.NewAPI(cfg, producer.APIDeps{
		Publisher:  pub,
		Log:        r.log.WithField("component", "api"),
		Registerer: r.reg,
		Stream:     r.stream,
	})
	if err != nil {
		return roleParts{}, fmt.Errorf("api: %w", err)
	}
	return roleParts{run: api.Run, mount: api.Register}, nil
}
