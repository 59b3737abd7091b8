package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nostressplanner/liveupdates/retry"
)

// build compiles liveupdates, the load tool and nats-server (for the
// relay's backlog) from this module.
func (b *bench) build(ctx context.Context) error {
	b.ours = filepath.Join(b.tmp, "liveupdates")
	b.load = filepath.Join(b.tmp, "load")
	b.nats = filepath.Join(b.tmp, "nats-server")
	for _, t := range []struct{ bin, pkg string }{
		{b.ours, "./cmd/liveupdates"}, {b.load, "./bench/internal/load"}, {b.nats, "github.com/nats-io/nats-server/v2"},
	} {
		bin, pkg := t.bin, t.pkg
		b.logf("building %s", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s (run from the module root): %w", pkg, err)
		}
	}
	return nil
}

// installCentrifugo installs Centrifugo into the cache once: it checks the
// version is on the module proxy, then `go install`s it there.
func (b *bench) installCentrifugo(ctx context.Context) error {
	dir := filepath.Join(b.o.cache, "centrifugo-"+b.o.version)
	b.centrifugo = filepath.Join(dir, "centrifugo")
	if _, err := os.Stat(b.centrifugo); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Outside this module, so its go.mod neither constrains nor records it.
	env := append(os.Environ(), "GOBIN="+dir, "GOWORK=off", "GOFLAGS=-mod=mod")
	list := exec.CommandContext(ctx, "go", "list", "-m", "-versions", centrifugoModule)
	list.Dir, list.Env = dir, env
	out, err := list.Output()
	if err != nil {
		return fmt.Errorf("go list -m -versions %s: %w", centrifugoModule, err)
	}
	if !strings.Contains(" "+strings.TrimSpace(string(out))+" ", " "+b.o.version+" ") {
		return fmt.Errorf("%s %s is not on the module proxy (it lists: %s)", centrifugoModule, b.o.version, strings.TrimSpace(string(out)))
	}
	b.logf("installing %s@%s into %s (once; a few minutes)", centrifugoModule, b.o.version, dir)
	install := exec.CommandContext(ctx, "go", "install", centrifugoModule+"@"+b.o.version)
	install.Dir, install.Env = dir, env
	install.Stdout, install.Stderr = os.Stderr, os.Stderr
	if err := install.Run(); err != nil {
		return fmt.Errorf("go install %s@%s: %w", centrifugoModule, b.o.version, err)
	}
	return nil
}

// proc is a started server: one process, or (parts) several that serve
// as one.
type proc struct {
	cmd     *exec.Cmd
	base    string
	debug   string
	natsURL string
	// publishBase is where changes are published when not base (ours as
	// separate roles: the API's address).
	publishBase string
	logs        *bytes.Buffer
	// exited is closed once the process has ended, with err its end.
	exited chan struct{}
	err    error
	// parts are the processes of a server that runs as several, stopped
	// in reverse order.
	parts []*proc
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// pids are the server's process ids, comma-separated (the load tool adds
// up their CPU time and memory).
func (p *proc) pids() string {
	if len(p.parts) == 0 {
		return strconv.Itoa(p.cmd.Process.Pid)
	}
	ids := make([]string, len(p.parts))
	for i, q := range p.parts {
		ids[i] = strconv.Itoa(q.cmd.Process.Pid)
	}
	return strings.Join(ids, ",")
}

// logText is what the server's processes wrote.
func (p *proc) logText() string {
	if len(p.parts) == 0 {
		return p.logs.String()
	}
	var b strings.Builder
	for _, q := range p.parts {
		b.WriteString(q.logs.String())
	}
	return b.String()
}

// begin starts p's command with its output in p.logs.
func (p *proc) begin(name string) error {
	p.logs, p.exited = &bytes.Buffer{}, make(chan struct{})
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// stop ends the server with SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	if len(p.parts) > 0 {
		for i := len(p.parts) - 1; i >= 0; i-- {
			p.parts[i].stop()
		}
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// freeAddrs are n loopback addresses that were free a moment ago, for
// servers in other processes to listen on.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	return addrs, nil
}

// oursEnv is what every process of ours here runs with: the API on addr,
// file storage, and the API rate limit lifted (every request comes from
// one client and one key here).
func oursEnv(addr string, more ...string) []string {
	return append(append(os.Environ(),
		"LIVE_HTTP_ADDR="+addr,
		"LIVE_STREAM_STORAGE=file",
		"LIVE_API_KEYS="+apiKey,
		"LIVE_API_RATE=1000000000",
		"LIVE_API_BURST=1000000000",
		"LIVE_LOG_LEVEL=warn",
	), more...)
}

// start runs a server until ready: ours is `liveupdates dev` with file
// storage in a fresh directory, theirs Centrifugo with a fresh config, and
// roles is ours in the production shape (see startRoles).
func (b *bench) start(ctx context.Context, target string, debug bool, extraEnv ...string) (*proc, error) {
	if target == "roles" {
		return b.startRoles(ctx, extraEnv...)
	}
	addrs, err := freeAddrs(4) // HTTP, NATS, debug, dev's Pusher-compatible server
	if err != nil {
		return nil, err
	}
	p := &proc{base: "http://" + addrs[0]}
	var ready string
	switch target {
	case "ours":
		data, err := os.MkdirTemp(b.tmp, "data-")
		if err != nil {
			return nil, err
		}
		p.natsURL = "nats://" + addrs[1]
		p.cmd = exec.Command(b.ours, "dev")
		// All load comes from one address: lift the poller's limits on it.
		// Its own Pusher-compatible server's address too: the default
		// (8081) is taken whenever another dev runs on the machine.
		p.cmd.Env = oursEnv(addrs[0], "LIVE_NATS_LISTEN="+addrs[1], "LIVE_DATA_DIR="+data, "LIVE_DEV_PUSHER_ADDR="+addrs[3],
			"LIVE_POLLER_RATE=off", "LIVE_POLLER_SSE_MAX_PER_ADDR=1048576")
		if debug {
			p.debug = "http://" + addrs[2]
			p.cmd.Env = append(p.cmd.Env, "LIVE_DEBUG_ADDR="+addrs[2])
		}
		ready = p.base + "/readyz"
	case "centrifugo":
		cfg, err := b.centrifugoConfig(addrs[0])
		if err != nil {
			return nil, err
		}
		p.cmd = exec.Command(b.centrifugo, "--config", cfg)
		p.cmd.Env = os.Environ()
		ready = p.base + "/health"
	default:
		return nil, fmt.Errorf("start %q: want ours or centrifugo", target)
	}
	p.cmd.Env = append(p.cmd.Env, extraEnv...)
	return p, p.launch(ctx, target, ready)
}

// startNATS runs a standalone nats-server with JetStream on file storage
// in a fresh directory.
func (b *bench) startNATS(ctx context.Context) (*proc, error) {
	addrs, err := freeAddrs(2) // clients, monitoring
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp(b.tmp, "nats-")
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	_, monPort, _ := net.SplitHostPort(addrs[1])
	p := &proc{natsURL: "nats://" + addrs[0], cmd: exec.Command(b.nats, "-a", host, "-p", port, "-m", monPort, "-js", "-sd", data)}
	return p, p.launch(ctx, "nats-server", "http://"+addrs[1]+"/healthz")
}

// startAPI runs `liveupdates api` alone on the NATS at natsURL.
func (b *bench) startAPI(ctx context.Context, natsURL string, extraEnv ...string) (*proc, error) {
	return b.startRole(ctx, "api", natsURL, extraEnv...)
}

// startRole runs `liveupdates <role>` alone on the NATS at natsURL.
func (b *bench) startRole(ctx context.Context, role, natsURL string, extraEnv ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &proc{base: "http://" + addr, natsURL: natsURL, cmd: exec.Command(b.ours, role)}
	p.cmd.Env = append(oursEnv(addr, "LIVE_NATS_URL="+natsURL), extraEnv...)
	return p, p.launch(ctx, role, p.base+"/readyz")
}

// startRoles runs ours in the production shape: a standalone nats-server
// (file storage), `liveupdates api` and `liveupdates poller`, no relay.
// Centrifugo forwards nowhere; dev's relay forwards every change to dev's
// own Pusher-compatible server on the same cores, so this is the shape to
// compare ingest and SSE with. Its CPU and memory are the three processes'.
func (b *bench) startRoles(ctx context.Context, extraEnv ...string) (*proc, error) {
	ns, err := b.startNATS(ctx)
	if err != nil {
		return nil, err
	}
	api, err := b.startAPI(ctx, ns.natsURL, extraEnv...)
	if err != nil {
		ns.stop()
		return nil, err
	}
	pl, err := b.startRole(ctx, "poller", ns.natsURL, append([]string{"LIVE_POLLER_RATE=off", "LIVE_POLLER_SSE_MAX_PER_ADDR=1048576"}, extraEnv...)...)
	if err != nil {
		api.stop()
		ns.stop()
		return nil, err
	}
	return &proc{base: pl.base, publishBase: api.base, natsURL: ns.natsURL, parts: []*proc{ns, api, pl}}, nil
}

// launch starts p and waits until ready answers 200, for up to 60 s. On
// failure p is stopped and the error holds its output.
func (p *proc) launch(ctx context.Context, name, ready string) error {
	if err := p.begin(name); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	backoff := retry.New(50*time.Millisecond, 500*time.Millisecond)
	for {
		res, err := http.Get(ready)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", name, p.err, p.logs)
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		case <-time.After(backoff.Next()):
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("%s not ready at %s within 60s:\n%s", name, ready, p.logs)
		}
	}
}

// centrifugoConfig is as close to liveupdates' semantics as Centrifugo
// goes: per-channel history (100 publications, 10 minutes) in memory with
// recovery forced on, the unidirectional SSE and HTTP-streaming transports
// a browser without a client library would use, and an HTTP API key.
func (b *bench) centrifugoConfig(addr string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	portN, _ := strconv.Atoi(port)
	cfg := map[string]any{
		"http_server": map[string]any{"address": host, "port": portN},
		"log":         map[string]any{"level": "error"},
		"http_api":    map[string]any{"key": apiKey},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": tokenSecret},
			"allowed_origins": []string{"*"},
		},
		"channel": map[string]any{
			"without_namespace": map[string]any{
				"history_size":   100,
				"history_ttl":    "600s",
				"force_recovery": true,
			},
		},
		"uni_sse":         map[string]any{"enabled": true},
		"uni_http_stream": map[string]any{"enabled": true},
		"health":          map[string]any{"enabled": true},
		"usage_stats":     map[string]any{"disabled": true},
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	f := filepath.Join(b.tmp, "centrifugo-"+port+".json")
	return f, os.WriteFile(f, raw, 0o644)
}
