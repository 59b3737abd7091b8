package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/nostressplanner/liveupdates/poller"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/stream"
)

// devAPIKey is the key dev mode alone accepts when LIVE_API_KEYS is unset.
const devAPIKey = "dev"

// runDev runs the whole product in one process: an embedded nats-server with
// JetStream, the ingest API, the poller, and the relay when Pusher
// credentials are set, all HTTP on one address.
func runDev(ctx context.Context, env *settings) error {
	log, logErr := newLogger(env.Getenv, env.stderr, "text")
	streamCfg, streamErr := stream.LoadConfig(env.Getenv)
	devKey := env.Getenv("LIVE_API_KEYS") == ""
	apiCfg, apiErr := producer.LoadAPIConfig(func(k string) string {
		if k == "LIVE_API_KEYS" && devKey {
			return devAPIKey
		}
		return env.Getenv(k)
	})
	relayCfg, relayErr := relay.LoadConfig(env.Getenv)
	pollCfg, pollErr := poller.LoadConfig(env.Getenv)
	dataDir := env.Getenv("LIVE_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	listen := env.Getenv("LIVE_NATS_LISTEN")
	if listen == "" {
		listen = "127.0.0.1:4222"
	}
	host, port, listenErr := splitListen(listen)
	if err := errors.Join(logErr, streamErr, apiErr, relayErr, pollErr, listenErr); err != nil {
		return fmt.Errorf("dev configuration:\n%w", err)
	}
	devLog := log.WithField("component", "dev")

	unlock, err := lockDataDir(dataDir) // one dev per data directory (datadir.go)
	if err != nil {
		return err
	}
	defer func() {
		if err := unlock(); err != nil {
			devLog.WithError(err).Warn("unlock data dir")
		}
	}()
	users := newDevUsers() // one NATS user per role (natsusers.go)
	ns, err := startEmbedded(dataDir, host, port, users.configure)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	devLog.WithFields(logrus.Fields{"nats_url": ns.ClientURL(), "data_dir": dataDir}).
		Info("embedded nats-server with jetstream is running; operator tools and other roles can join it at this url (without credentials they are its operator user; the api, relay and poller inside dev each run as their own restricted user)")

	r, err := connectRole(env, "dev", log, streamCfg, nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer r.close()
	if err := r.splitUsers(env, users, ns); err != nil { // each role its own NATS user (natsusers.go)
		return err
	}

	if devKey {
		devLog.Warn(`LIVE_API_KEYS is unset: dev mode accepts the API key "dev" (Authorization: Bearer dev); never run dev in production`)
	}
	api, err := newIngest(r, apiCfg)
	if err != nil {
		return err
	}
	p, err := newPoller(r, pollCfg)
	if err != nil {
		return err
	}
	if env.Getenv("LIVE_POLL_SECRET") == "" {
		devLog.Warn("LIVE_POLL_SECRET is unset: poller reads are open to anyone who knows an eventId")
	}
	var rl *relay.Relay
	if relayCfg.PusherEnabled() {
		if rl, err = newRelay(r, relayCfg); err != nil {
			return err
		}
	} else {
		devLog.Info("pusher is off (no PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET): the relay does not run and clients use polling at GET /v1/events/{eventId}/updates")
	}

	srv := r.server(env, "dev", true, func(mux *http.ServeMux) {
		api.Register(mux)
		p.Register(mux)
	}, p.Drain)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := r.ensure(gctx); err != nil {
			return err
		}
		if rl == nil {
			return nil
		}
		return rl.Run(gctx)
	})
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	err = g.Wait()
	devLog.Info("stopped")
	return err
}

// startEmbedded starts nats-server with JetStream storing under dataDir.
func startEmbedded(dataDir, host string, port int, configure func(*server.Options)) (*server.Server, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: %w", dataDir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("LIVE_DATA_DIR=%q: %w", dataDir, err)
	}
	// nats-server reports a busy port only by never becoming ready; probe
	// first so the newcomer gets a clear message at once.
	if port > 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server cannot listen on %s:%d (is another nats-server or dev running? give this one its own LIVE_NATS_LISTEN, and its own LIVE_DATA_DIR too: two devs must never share one): %w", host, port, err)
		}
		if err := l.Close(); err != nil {
			return nil, fmt.Errorf("probe %s:%d: %w", host, port, err)
		}
	}
	opts := &server.Options{
		ServerName: "liveupdates-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   abs,
		NoSigs:     true, // main owns the signals
		NoLog:      true,
	}
	configure(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d not ready within 10s (is the port in use? set LIVE_NATS_LISTEN, and a LIVE_DATA_DIR of its own)", host, port)
	}
	return ns, nil
}

func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("LIVE_NATS_LISTEN=%q: want host:port: %w", listen, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("LIVE_NATS_LISTEN=%q: bad port", listen)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a random port"
	}
	return host, port, nil
}
