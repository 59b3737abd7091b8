package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/nostressplanner/liveupdates/client"
	"github.com/nostressplanner/liveupdates/poller"
)

// runPoller answers polling clients from memory.
func runPoller(ctx context.Context, env *settings) error {
	cfg, cfgErr := poller.LoadConfig(env.Getenv)
	r, err := newRole(env, "poller", cfgErr)
	if err != nil {
		return err
	}
	defer r.close()
	p, err := newPoller(r, cfg)
	if err != nil {
		return err
	}
	srv := r.server(env, p.Register, p.Drain)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}

func newPoller(r *role, cfg poller.Config) (*poller.Poller, error) {
	r = r.forRole("poller") // its own NATS user in dev
	p, err := poller.New(cfg, poller.Deps{
		JS:         r.js,
		Stream:     r.stream,
		Log:        r.log.WithField("component", "poller"),
		Registerer: r.reg,
		Client:     client.Files,
	})
	if err != nil {
		return nil, fmt.Errorf("poller: %w", err)
	}
	r.checks.Add("poller", p.Ready)
	return p, nil
}
