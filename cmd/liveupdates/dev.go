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

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/poller"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/stream"
)

// devAPIKey is the key dev mode alone accepts when LIVE_API_KEYS is unset.
const devAPIKey = "dev"

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

// browserPusher is what a browser needs to reach the Pusher side that
// dev's relay publishes to, for the poller's GET /v1/config. With a real
// Pusher account it is the key and cluster; with dev's own server it is
// the key, host and port, without TLS.
type browserPusher struct {
	Key     string
	Cluster string // empty for dev's own server; pusher-js still needs one, any value
	Host    string // empty for Pusher itself
	Port    int
	TLS     bool
	// Prefix and Private are the relay's channel settings, which the
	// poller drops when it has no key of its own.
	Prefix  string
	Private bool
}

// configurePollerPusher hands the browser-facing Pusher settings to the
// poller's /v1/config (and its private-channel signatures). Only dev calls
// this, and only when it serves its own server: with real credentials the
// poller reads PUSHER_KEY and PUSHER_CLUSTER itself.
func configurePollerPusher(cfg *poller.Config, bp browserPusher) {
	cfg.Pusher.Key, cfg.Pusher.Secret, cfg.Pusher.Cluster = bp.Key, devPusherSecret, bp.Cluster
	cfg.Pusher.WSHost, cfg.Pusher.WSPort, cfg.Pusher.ForceTLS = bp.Host, bp.Port, bp.TLS
	cfg.Pusher.ChannelPrefix, cfg.Pusher.Private = bp.Prefix, bp.Private
}

// devPusherHost turns a listen address into the host a local browser
// uses: an unspecified or loopback host is "localhost".
func devPusherHost(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		return "localhost", 0
	}
	if ip := net.ParseIP(host); host == "" || host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		host = "localhost"
	}
	return host, port
}

// runDev runs the whole product in one process: an embedded nats-server with
// JetStream, the ingest API, the poller, and the relay, all HTTP on one
// address. The relay forwards to Pusher when credentials are set, and
// otherwise to a Pusher-compatible server dev serves on its own address
// (LIVE_DEV_PUSHER_ADDR), so a newcomer sees live updates with nothing to
// sign up for.
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
	pusherAddr := env.Getenv("LIVE_DEV_PUSHER_ADDR")
	if pusherAddr == "" {
		pusherAddr = "127.0.0.1:8081"
	}
	var pusherAddrErr error
	if _, _, err := net.SplitHostPort(pusherAddr); err != nil {
		pusherAddrErr = fmt.Errorf("LIVE_DEV_PUSHER_ADDR=%q: want host:port: %w", pusherAddr, err)
	}
	if err := errors.Join(logErr, streamErr, apiErr, relayErr, pollErr, listenErr, pusherAddrErr); err != nil {
		return fmt.Errorf("dev configuration:\n%w", err)
	}
	devLog := log.WithField("component", "dev")

	ns, err := startEmbedded(dataDir, host, port)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	devLog.WithFields(logrus.Fields{"nats_url": ns.ClientURL(), "data_dir": dataDir}).
		Info("embedded nats-server with jetstream is running; operator tools and other roles can join it at this url")

	r, err := connectRole(env, "dev", log, streamCfg, nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	defer r.close()

	if devKey {
		devLog.Warn(`LIVE_API_KEYS is unset: dev mode accepts the API key "dev" (Authorization: Bearer dev); never run dev in production`)
	}
	api, err := newIngest(r, apiCfg)
	if err != nil {
		return err
	}
	var local *ops.Server
	if relayCfg.PusherEnabled() {
		devLog.WithFields(logrus.Fields{"pusher_cluster": relayCfg.Cluster, "pusher_host": relayCfg.Host}).
			Info("pusher credentials are set: the relay forwards to pusher")
	} else {
		var ps *pushercompat.Server
		if local, ps, err = devPusherServer(r, pusherAddr, &relayCfg, &pollCfg); err != nil {
			return err
		}
		defer ps.Close()
	}
	p, err := newPoller(r, pollCfg)
	if err != nil {
		return err
	}
	if env.Getenv("LIVE_POLL_SECRET") == "" {
		devLog.Warn("LIVE_POLL_SECRET is unset: poller reads are open to anyone who knows an eventId")
	}
	rl, err := newRelay(r, relayCfg)
	if err != nil {
		return err
	}

	srv := r.server(env, "dev", true, func(mux *http.ServeMux) {
		api.Register(mux)
		p.Register(mux)
		mountDemo(mux, producer.NewPublisher(r.js, producer.Options{PollSecret: apiCfg.PollSecret}), r.log)
	}, p.Drain)
	devLog.WithField("demo_url", demoURL(httpAddr(env.Getenv))).
		Info("open the demo in two browser tabs: a vote in one shows in the other")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := r.ensure(gctx); err != nil {
			return err
		}
		return rl.Run(gctx)
	})
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	if local != nil {
		g.Go(func() error { return local.Run(gctx) })
	}
	err = g.Wait()
	devLog.Info("stopped")
	return err
}

// devPusherServer listens on addr with dev's own Pusher-compatible server
// and points the relay (and the browsers, through the poller) at it. The
// returned ops.Server serves it; its BeforeDrain closes every WebSocket
// with 4200, which http.Server.Shutdown would not (they are hijacked).
func devPusherServer(r *role, addr string, relayCfg *relay.Config, pollCfg *poller.Config) (*ops.Server, *pushercompat.Server, error) {
	// Listen now, so a busy port is a clear error at start and the relay
	// knows the real address when the port is 0.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dev's pusher-compatible server cannot listen on %s (is another dev running? set LIVE_DEV_PUSHER_ADDR): %w", addr, err)
	}
	log := r.log.WithField("component", "pushercompat")
	ps := pushercompat.New(pushercompat.Options{
		AppID: devPusherAppID, Key: devPusherKey, Secret: devPusherSecret,
		RecordLimit: devPusherRecord,
		Log:         log,
		Registerer:  r.reg,
	})
	bound := ln.Addr().String()
	relayCfg.AppID, relayCfg.Key, relayCfg.Secret = devPusherAppID, devPusherKey, devPusherSecret
	relayCfg.Host, relayCfg.Cluster, relayCfg.Secure = bound, "", false
	host, port := devPusherHost(bound)
	configurePollerPusher(pollCfg, browserPusher{Key: devPusherKey, Cluster: "dev", Host: host, Port: port,
		Prefix: relayCfg.ChannelPrefix, Private: relayCfg.PrivateChannels})
	log.WithFields(logrus.Fields{
		"websocket_url": fmt.Sprintf("ws://%s:%d/app/%s", host, port, devPusherKey),
		"rest_url":      fmt.Sprintf("http://%s/apps/%s/events", bound, devPusherAppID),
		"key":           devPusherKey,
	}).Info("no pusher credentials (PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET): dev serves its own pusher-compatible server and the relay forwards to it; set them to use pusher")
	srv := &ops.Server{
		Addr:        bound,
		Listener:    ln,
		Handler:     ps.Handler(),
		Log:         log,
		BeforeDrain: ps.Close,
	}
	return srv, ps, nil
}

// demoURL is the demo page on the dev HTTP address, as a local browser
// opens it.
func demoURL(addr string) string {
	host, port := devPusherHost(addr)
	if port == 0 {
		return "http://localhost:8080/demo/e42"
	}
	return fmt.Sprintf("http://%s:%d/demo/e42", host, port)
}

// startEmbedded starts nats-server with JetStream storing under dataDir.
func startEmbedded(dataDir, host string, port int) (*server.Server, error) {
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
			return nil, fmt.Errorf("embedded nats-server cannot listen on %s:%d (is another nats-server or dev running? set LIVE_NATS_LISTEN): %w", host, port, err)
		}
		if err := l.Close(); err != nil {
			return nil, fmt.Errorf("probe %s:%d: %w", host, port, err)
		}
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "liveupdates-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   abs,
		NoSigs:     true, // main owns the signals
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d not ready within 10s (is the port in use? set LIVE_NATS_LISTEN)", host, port)
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
