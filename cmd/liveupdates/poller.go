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
	return runRole(ctx, env, "poller", cfgErr, func(r *role) (roleParts, error) { return newPoller(r, cfg) })
}

// newPoller wires the poller on a role: its routes, its work (Run follows
// the stream) and, before the HTTP server drains, answering its parked
// long-polls.
func newPoller(r *role, cfg poller.Config) (roleParts, error) {
	r = r.forRole("poller") // its own NATS user in dev
	p, err := poller.New(cfg, poller.Deps{
		JS:         r.js,
		Stream:     r.stream,
		Log:        r.log.WithField("component", "poller"),
		Registerer: r.reg,
		Client:     client.Files,
	})
	if err != nil {
		return roleParts{}, fmt.Errorf("poller: %w", err)
	}
	r.checks.Add("poller", p.Ready)
	return roleParts{run: p.Run, mount: p.Register, drain: p.Drain}, nil
}
