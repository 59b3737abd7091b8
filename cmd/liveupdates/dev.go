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
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/poller"
	"github.com/nostressplanner/liveupdates/producer"
	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/stream"
)

// devAPIKey is the key dev mode alone accepts when LIVE_API_KEYS is unset.
const devAPIKey = "dev"

// devConfig is what dev reads besides the roles' settings.
type devConfig struct {
	dataDir string
	// natsHost and natsPort are where the embedded nats-server listens
	// (port -1: one it picks).
	natsHost string
	natsPort int
	// ownPusher: no PUSHER_APP_ID, PUSHER_KEY or PUSHER_SECRET, so dev
	// serves its own Pusher-compatible server on pusherAddr, which the
	// relay and browsers reach at pusherHost.
	ownPusher              bool
	pusherAddr, pusherHost string
	// devKey: LIVE_API_KEYS is unset, so dev accepts the key "dev".
	devKey bool
}

func loadDevConfig(r *env.Reader) devConfig {
	c := devConfig{dataDir: "./data", natsHost: "127.0.0.1", natsPort: 4222, pusherAddr: "127.0.0.1:8081"}
	r.String("LIVE_DATA_DIR", &c.dataDir)
	if v, ok := r.Lookup("LIVE_NATS_LISTEN"); ok {
		host, port, err := splitListen(v)
		if err != nil {
			r.Fail("LIVE_NATS_LISTEN", v, "host:port, port 0 to 65535 (0: any free port)")
		}
		c.natsHost, c.natsPort = host, port
	}
	_, appID := r.Lookup("PUSHER_APP_ID")
	_, key := r.Lookup("PUSHER_KEY")
	_, secret := r.Lookup("PUSHER_SECRET")
	c.ownPusher = !appID && !key && !secret
	r.String("LIVE_DEV_PUSHER_ADDR", &c.pusherAddr)
	if c.ownPusher {
		host, err := devPusherAddr(c.pusherAddr)
		if err != nil {
			r.Fail("LIVE_DEV_PUSHER_ADDR", c.pusherAddr, "host:port with a fixed port, 1 to 65535 (browsers are told it)")
		}
		c.pusherHost = host
	}
	_, keys := r.Lookup("LIVE_API_KEYS")
	c.devKey = !keys
	return c
}

// localHost turns a listen address into the host and port a local browser
// uses: an unspecified or loopback host is "localhost".
func localHost(addr string) (string, int) {
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
	rd := env.reader()
	dc := loadDevConfig(rd)
	apiCfg, apiErr := producer.LoadAPIConfig(func(k string) string {
		if k == "LIVE_API_KEYS" && dc.devKey {
			return devAPIKey
		}
		return env.Getenv(k)
	})
	// Without any Pusher credential dev serves its own Pusher-compatible
	// server, and the relay and the poller read it as their Pusher.
	getenv := env.Getenv
	if dc.ownPusher {
		getenv = devPusherGetenv(env.Getenv, dc.pusherHost)
	}
	relayCfg, relayErr := relay.LoadConfig(getenv)
	pollCfg, pollErr := poller.LoadConfig(getenv)
	if err := errors.Join(logErr, streamErr, apiErr, relayErr, pollErr, rd.Err()); err != nil {
		return fmt.Errorf("dev configuration:\n%w", err)
	}
	dataDir := dc.dataDir
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
	ns, err := startEmbedded(dataDir, dc.natsHost, dc.natsPort, users.configure)
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

	if dc.devKey {
		devLog.Warn(`LIVE_API_KEYS is unset: dev mode accepts the API key "dev" (Authorization: Bearer dev); never run dev in production`)
	}
	api, err := newIngest(r, apiCfg)
	if err != nil {
		return err
	}
	var local *ops.Server
	if !dc.ownPusher {
		devLog.WithFields(logrus.Fields{"pusher_cluster": relayCfg.Cluster, "pusher_host": relayCfg.Host}).
			Info("pusher credentials are set: the relay forwards to pusher")
	} else {
		// Listen now, so a busy port is a clear error at start.
		ln, err := net.Listen("tcp", dc.pusherAddr)
		if err != nil {
			return fmt.Errorf("dev's pusher-compatible server cannot listen on LIVE_DEV_PUSHER_ADDR=%q (is another dev running? set LIVE_DEV_PUSHER_ADDR, or PUSHER_* to use pusher): %w", dc.pusherAddr, err)
		}
		var ps *pushercompat.Server
		local, ps, err = devPusherServer(r, ln, dc.pusherHost)
		if err != nil {
			ln.Close()
			return err
		}
		defer ps.Close()
	}
	p, err := newPoller(r, pollCfg)
	if err != nil {
		return err
	}
	if _, ok := rd.Lookup("LIVE_POLL_SECRET"); !ok {
		devLog.Warn("LIVE_POLL_SECRET is unset: poller reads are open to anyone who knows an eventId")
	}
	rl, err := newRelay(r, relayCfg)
	if err != nil {
		return err
	}

	srv := r.server(env, func(mux *http.ServeMux) {
		api.mount(mux)
		p.mount(mux)
		mountDemo(mux, producer.NewPublisher(r.forRole("api").js, producer.Options{PollSecret: apiCfg.PollSecret}), r.log)
	}, p.drain)
	devLog.WithField("demo_url", demoURL(httpAddr(env.Getenv))).
		Info("open the demo in two browser tabs: a vote in one shows in the other")
	// The operator user creates LIVE_EVENTS before the roles start, so the
	// poller, whose own NATS user may only read, finds it at once rather
	// than retrying until the api or the relay has created it. The
	// embedded server is up: nothing to retry.
	if err := ensureStream(ctx, r.js, streamCfg, devLog); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, parts := range []roleParts{api, rl, p} {
		g.Go(func() error { return parts.run(gctx) })
	}
	g.Go(func() error { return srv.Run(gctx) })
	if local != nil {
		g.Go(func() error { return local.Run(gctx) })
	}
	err = g.Wait()
	devLog.Info("stopped")
	return err
}

// demoURL is the demo page on the dev HTTP address, as a local browser
// opens it.
func demoURL(addr string) string {
	host, port := localHost(addr)
	if port == 0 {
		return "http://localhost:8080/demo/e42"
	}
	return fmt.Sprintf("http://%s:%d/demo/e42", host, port)
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
		return "", 0, fmt.Errorf("want host:port: %w", err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0 to 65535", p)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a random port"
	}
	return host, port, nil
}

// ensureStream creates or checks LIVE_EVENTS once, logging each limit it
// brought back to the configuration. The roles ensure their streams in
// their Run, retrying; dev's embedded server is up, so once is enough.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg stream.Config, log logrus.FieldLogger) error {
	name := cfg.WithDefaults().Name
	_, changes, err := stream.Ensure(ctx, js, cfg)
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", name, err)
	}
	stream.LogChanges(log, name, changes)
	return nil
}
