package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nostressplanner/liveupdates/relay"
)

// runRelay forwards changes to Pusher. Without Pusher credentials it fails:
// a relay that cannot send would only hold changes back.
func runRelay(ctx context.Context, env *settings) error {
	cfg, cfgErr := relay.LoadConfig(env.Getenv)
	if cfgErr == nil && !cfg.PusherEnabled() {
		cfgErr = errors.New("pusher credentials are not set (PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, and PUSHER_CLUSTER or PUSHER_HOST): the relay has nothing to send to; clients keep working through the poller")
	}
	return runRole(ctx, env, "relay", cfgErr, func(r *role) (roleParts, error) { return newRelay(r, cfg) })
}

// newRelay wires the relay on a role: it has no routes, only its work
// (Run ensures its streams, retrying, then forwards).
func newRelay(r *role, cfg relay.Config) (roleParts, error) {
	r = r.forRole("relay") // its own NATS user in dev
	log := r.log.WithField("component", "relay")
	log.WithFields(cfg.Redacted()).Info("relay configuration")
	rl, err := relay.New(cfg, relay.Deps{
		JS:         r.js,
		Stream:     r.stream,
		Log:        log,
		Registerer: r.reg,
	})
	if err != nil {
		return roleParts{}, fmt.Errorf("relay: %w", err)
	}
	r.checks.Add("relay", rl.Ready)
	return roleParts{run: rl.Run}, nil
}
