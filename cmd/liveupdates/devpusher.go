package main

// dev's own Pusher-compatible server: what it is called, where the relay
// and browsers reach it, and serving it.

import (
	"fmt"
	"net"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/pushercompat"
)

// The credentials of dev's own Pusher-compatible server. They are not
// secret: the server listens on LIVE_DEV_PUSHER_ADDR, loopback by default,
// and exists only in dev.
const (
	devPusherAppID  = "dev"
	devPusherKey    = "dev-key"
	devPusherSecret = "dev-secret"
	// devPusherRecord bounds what the server remembers of accepted events
	// (it keeps them for tests); dev runs for days.
	devPusherRecord = 1000
)

// devPusherGetenv is getenv with dev's own Pusher-compatible server at
// hostport as the Pusher of every role that reads PUSHER_*: the relay
// publishes to it, and the poller's GET /v1/config tells browsers to
// connect there (its WebSocket address defaults to PUSHER_HOST without
// TLS) and signs private channels with its secret.
func devPusherGetenv(getenv func(string) string, hostport string) func(string) string {
	dev := map[string]string{
		"PUSHER_APP_ID":  devPusherAppID,
		"PUSHER_KEY":     devPusherKey,
		"PUSHER_SECRET":  devPusherSecret,
		"PUSHER_CLUSTER": "dev", // pusher-js requires one even with a host of its own
		"PUSHER_HOST":    hostport,
		"PUSHER_SECURE":  "false",
	}
	return func(k string) string {
		if v, ok := dev[k]; ok {
			return v
		}
		return getenv(k)
	}
}

// devPusherAddr is the host:port the relay and browsers use to reach dev's
// own server listening on addr: an unspecified host becomes 127.0.0.1. The
// port must be fixed, since browsers are told it before dev listens.
func devPusherAddr(addr string) (string, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("want host:port: %w", err)
	}
	if port, err := strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
		return "", fmt.Errorf("port %q: want 1 to 65535", p)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, p), nil
}

// devPusherServer serves dev's own Pusher-compatible server on ln. The
// returned ops.Server's BeforeDrain closes every WebSocket with 4200
// (pusher-js reconnects at once), which http.Server.Shutdown would not do:
// they are hijacked.
func devPusherServer(r *role, ln net.Listener, hostport string) (*ops.Server, *pushercompat.Server, error) {
	log := r.log.WithField("component", "pushercompat")
	ps, err := pushercompat.New(pushercompat.Options{
		AppID: devPusherAppID, Key: devPusherKey, Secret: devPusherSecret,
		RecordLimit: devPusherRecord,
		Log:         log,
		Registerer:  r.reg,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dev's pusher-compatible server: %w", err)
	}
	log.WithFields(logrus.Fields{
		"websocket_url": fmt.Sprintf("ws://%s/app/%s", hostport, devPusherKey),
		"rest_url":      fmt.Sprintf("http://%s/apps/%s/events", hostport, devPusherAppID),
		"app_id":        devPusherAppID,
		"key":           devPusherKey,
	}).Info("no pusher credentials (PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET): dev serves its own pusher-compatible server and the relay forwards to it; set them to use pusher")
	return &ops.Server{
		Addr:        ln.Addr().String(),
		Listener:    ln,
		Handler:     ps.Handler(),
		Log:         log,
		BeforeDrain: ps.Close,
	}, ps, nil
}
