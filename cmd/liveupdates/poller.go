package main

import (
	"context"
	"fmt"

	"github.com/nostressplanner/liveupdates/client"
	"github.com/nostressplanner/liveupdates/poller"
)

// runPoller answers polling clients from memory.
func runPoller(ctx context.Context, env *settings) error {
	cfg, cfgErr := poller.LoadConfig(env.Getenv)
	return runRole(ctx, env, "poller", cfgErr, func(r *role) (roleParts, error) {
		p, err := newPoller(r, cfg)
		if err != nil {
			return roleParts{}, err
		}
		return roleParts{run: p.Run, mount: p.Register, drain: p.Drain}, nil
	})
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
