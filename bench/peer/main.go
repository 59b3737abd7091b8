// Command peer measures liveupdates beside Centrifugo, the nearest
// open-source peer, on this machine and prints one table of ratios
// (`make bench-peer`). Run it from the module root.
//
// It builds `liveupdates` and the load tool from this module, installs
// Centrifugo from the Go module proxy into a cache folder once, and then,
// round after round, starts each server fresh on 127.0.0.1 and runs the same
// load tool (its own process) against it, alternating which server goes
// first. Figures are medians over the rounds. Measures:
//
//   - ingest: batches of 100 over 200 channels from 8 clients (ours
//     POST /v1/publish with file storage, theirs /api/batch): events/s and
//     request p50/p99;
//   - SSE fan-out: one publish to 5,000 SSE subscribers of one channel,
//     until the last has it (p50 over the publishes), and resident memory
//     per connection;
//   - a hot event (ours; Centrifugo has no long-poll): 5,000 long-polls on
//     one eventId and 10 changes/s for 20 s;
//   - unit costs (ours): CPU per 304 poll and per relayed change.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

const (
	centrifugoModule = "github.com/centrifugal/centrifugo/v6"
	apiKey           = "bench-api-key"
	tokenSecret      = "bench-token-secret-0123456789abcdef"
)

type options struct {
	rounds       int
	subs         int
	hotSubs      int
	version      string
	cache        string
	out          string
	profile      string
	only         string
	ingestFor    time.Duration
	hotFor       time.Duration
	relayChanges int
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-peer:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	cacheDir, _ := os.UserCacheDir()
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per measure; figures are medians")
	flag.IntVar(&o.subs, "subs", 5000, "SSE subscribers of one channel")
	flag.IntVar(&o.hotSubs, "hot-subs", 5000, "long-polls on the hot event")
	flag.StringVar(&o.version, "centrifugo", "v6.9.1", "Centrifugo version to install from the Go module proxy")
	flag.StringVar(&o.cache, "cache", filepath.Join(cacheDir, "liveupdates-bench"), "where Centrifugo is installed")
	flag.StringVar(&o.out, "out", "", "also write every raw result here, as JSON")
	flag.StringVar(&o.profile, "profile", "", "a directory: also take CPU profiles of ours under ingest and SSE (through LIVE_DEBUG_ADDR) into it")
	flag.StringVar(&o.only, "only", "ingest,sse,hot,unit", "which measures to run")
	flag.DurationVar(&o.ingestFor, "ingest-duration", 5*time.Second, "measured ingest time per run")
	flag.DurationVar(&o.hotFor, "hot-duration", 20*time.Second, "the hot event's storm")
	flag.IntVar(&o.relayChanges, "relay-changes", 20000, "changes the relay forwards for its unit cost")
	flag.Parse()
	// An interrupted run still stops the servers it started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tmp, err := os.MkdirTemp("", "bench-peer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{o: o, tmp: tmp, results: map[string][]json.RawMessage{}}
	if err := b.build(ctx); err != nil {
		return err
	}
	only := map[string]bool{}
	for _, m := range strings.Split(o.only, ",") {
		only[strings.TrimSpace(m)] = true
	}
	if only["ingest"] || only["sse"] {
		if err := b.installCentrifugo(ctx); err != nil {
			return err
		}
	}
	started := time.Now()
	b.logf("load average at the start: %s", loadAvg())
	for r := range o.rounds {
		// Alternate which server goes first, so neither always meets the
		// machine right after the other's load.
		targets := []string{"ours", "centrifugo"}
		if r%2 == 1 {
			targets[0], targets[1] = targets[1], targets[0]
		}
		for _, t := range targets {
			if only["ingest"] {
				if err := b.measure(ctx, "ingest", t, r, ""); err != nil {
					return err
				}
			}
		}
		for _, t := range targets {
			if only["sse"] {
				if err := b.measure(ctx, "sse", t, r, ""); err != nil {
					return err
				}
			}
		}
		if only["hot"] {
			if err := b.measure(ctx, "hot", "ours", r, ""); err != nil {
				return err
			}
		}
		if only["unit"] {
			if err := b.measure(ctx, "poll304", "ours", r, ""); err != nil {
				return err
			}
			if err := b.relay(ctx, r); err != nil {
				return err
			}
		}
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		for _, m := range []string{"ingest", "sse", "hot"} {
			if only[m] {
				if err := b.measure(ctx, m, "ours", -1, filepath.Join(o.profile, m+".pprof")); err != nil {
					return err
				}
			}
		}
	}
	b.logf("all runs took %s; load average at the end: %s", time.Since(started).Round(time.Second), loadAvg())
	if o.out != "" {
		raw, err := json.MarshalIndent(b.results, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.out, raw, 0o644); err != nil {
			return err
		}
	}
	return b.report(os.Stdout)
}

type bench struct {
	o          options
	tmp        string
	ours, load string
	centrifugo string
	mu         sync.Mutex
	results    map[string][]json.RawMessage // "ingest/ours" → one per round
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench-peer: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// build compiles liveupdates and the load tool from this module.
func (b *bench) build(ctx context.Context) error {
	b.ours = filepath.Join(b.tmp, "liveupdates")
	b.load = filepath.Join(b.tmp, "load")
	for bin, pkg := range map[string]string{b.ours: "./cmd/liveupdates", b.load: "./bench/internal/load"} {
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

// proc is a started server.
type proc struct {
	cmd      *exec.Cmd
	base     string
	debug    string
	natsURL  string
	logs     *bytes.Buffer
	waitDone chan error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the server with SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waitDone:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.waitDone
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

// start runs a server until ready: ours is `liveupdates dev` with file
// storage in a fresh directory, theirs Centrifugo with a fresh config.
func (b *bench) start(ctx context.Context, target string, debug bool, extraEnv ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &proc{base: "http://" + addr, logs: &bytes.Buffer{}, waitDone: make(chan error, 1)}
	var ready string
	switch target {
	case "ours":
		natsAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		data, err := os.MkdirTemp(b.tmp, "data-")
		if err != nil {
			return nil, err
		}
		p.natsURL = "nats://" + natsAddr
		p.cmd = exec.Command(b.ours, "dev")
		p.cmd.Env = append(os.Environ(),
			"LIVE_HTTP_ADDR="+addr,
			"LIVE_NATS_LISTEN="+natsAddr,
			"LIVE_DATA_DIR="+data,
			"LIVE_STREAM_STORAGE=file",
			"LIVE_API_KEYS="+apiKey,
			// Every request comes from one client and one key here.
			"LIVE_API_RATE=1000000000",
			"LIVE_API_BURST=1000000000",
			"LIVE_POLLER_RATE=off",
			"LIVE_LOG_LEVEL=warn",
		)
		if debug {
			d, err := freeAddr()
			if err != nil {
				return nil, err
			}
			p.debug = "http://" + d
			p.cmd.Env = append(p.cmd.Env, "LIVE_DEBUG_ADDR="+d)
		}
		ready = p.base + "/readyz"
	case "centrifugo":
		cfg, err := b.centrifugoConfig(addr)
		if err != nil {
			return nil, err
		}
		p.cmd = exec.Command(b.centrifugo, "--config", cfg)
		p.cmd.Env = os.Environ()
		ready = p.base + "/health"
	}
	p.cmd.Env = append(p.cmd.Env, extraEnv...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", target, err)
	}
	go func() { p.waitDone <- p.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(ready)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.waitDone:
			return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", target, err, p.logs)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready at %s within 60s:\n%s", target, ready, p.logs)
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

// loadArgs are the load tool's flags for one measure.
func (b *bench) loadArgs(mode, target string, p *proc) []string {
	args := []string{"-mode", mode, "-target", target, "-base", p.base, "-pid", strconv.Itoa(p.pid())}
	if target == "centrifugo" {
		args = append(args, "-api-key", apiKey, "-token-secret", tokenSecret)
	} else {
		args = append(args, "-api-key", apiKey)
	}
	switch mode {
	case "ingest":
		args = append(args, "-clients", "8", "-batch", "100", "-channels", "200", "-duration", b.o.ingestFor.String())
	case "sse":
		args = append(args, "-subs", strconv.Itoa(b.o.subs), "-rounds", "8")
	case "hot":
		args = append(args, "-subs", strconv.Itoa(b.o.hotSubs), "-rate", "10", "-duration", b.o.hotFor.String(), "-idle", "4s")
	case "poll304":
		args = append(args, "-ids", "1000", "-conns", "32", "-duration", "4s")
	}
	return args
}

// runLoad runs the load tool and returns its JSON result.
func (b *bench) runLoad(ctx context.Context, args ...string) (json.RawMessage, error) {
	cmd := exec.CommandContext(ctx, b.load, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return json.RawMessage(bytes.TrimSpace(out)), nil
}

// measure runs one measure against a fresh server. round -1 is a profiling
// run: its figures are not kept (the profiler costs CPU), its profile is.
func (b *bench) measure(ctx context.Context, mode, target string, round int, profileOut string) error {
	p, err := b.start(ctx, target, profileOut != "")
	if err != nil {
		return err
	}
	defer p.stop()
	args := b.loadArgs(mode, target, p)
	if profileOut != "" {
		args = append(args, "-profile-url", p.debug+"/debug/pprof/profile", "-profile-out", profileOut)
		if mode == "sse" {
			args = append(args, "-rounds", "30") // about 8 s of fan-out to profile
		}
	}
	label := "round " + strconv.Itoa(round+1)
	if round < 0 {
		label = "profile"
	}
	b.logf("%s: %s against %s (load average %s)", label, mode, target, loadAvg())
	res, err := b.runLoad(ctx, args...)
	if err != nil {
		return fmt.Errorf("%w\nserver logs:\n%s", err, tail(p.logs.String(), 2000))
	}
	b.logf("  %s", res)
	if round >= 0 {
		b.keep(mode+"/"+target, res)
	}
	return nil
}

// loadAvg is the one-minute load average: on a shared machine it says how
// much of the two cores anybody got.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func (b *bench) keep(key string, res json.RawMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.results[key] = append(b.results[key], res)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// relay measures CPU per relayed change: dev stores a backlog with Pusher
// off, then a separate `liveupdates relay` process forwards it to a sink
// that answers like Pusher's HTTP API; its CPU time over the drain, divided
// by the changes, is the figure (the nats-server side is in dev, not here).
func (b *bench) relay(ctx context.Context, round int) error {
	p, err := b.start(ctx, "ours", false)
	if err != nil {
		return err
	}
	defer p.stop()
	if _, err := b.runLoad(ctx, "-mode", "seed", "-base", p.base, "-api-key", apiKey, "-count", strconv.Itoa(b.o.relayChanges)); err != nil {
		return err
	}
	var got atomic.Int64
	sink := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got.Add(int64(len(body.Batch)))
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = sink.Serve(l) }()
	defer sink.Close()
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	relay := exec.Command(b.ours, "relay")
	relay.Env = append(os.Environ(),
		"LIVE_NATS_URL="+p.natsURL,
		"LIVE_HTTP_ADDR="+httpAddr,
		"LIVE_LOG_LEVEL=warn",
		"LIVE_RELAY_COALESCE=off", // one change in, one Pusher event out
		"PUSHER_APP_ID=1", "PUSHER_KEY=key", "PUSHER_SECRET=secret",
		"PUSHER_HOST="+l.Addr().String(), "PUSHER_SECURE=false",
	)
	var logs bytes.Buffer
	relay.Stdout, relay.Stderr = &logs, &logs
	b.logf("round %d: relay drains %d changes", round+1, b.o.relayChanges)
	t0 := time.Now()
	if err := relay.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- relay.Wait() }()
	defer func() {
		_ = relay.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = relay.Process.Kill()
			<-done
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for got.Load() < int64(b.o.relayChanges) {
		select {
		case err := <-done:
			return fmt.Errorf("relay exited (%v):\n%s", err, tail(logs.String(), 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relay forwarded %d of %d changes in 2 minutes:\n%s", got.Load(), b.o.relayChanges, tail(logs.String(), 2000))
		}
	}
	el := time.Since(t0)
	cpu, err := measure.ProcCPU(relay.Process.Pid)
	if err != nil {
		return err
	}
	res, _ := json.Marshal(map[string]any{
		"changes": got.Load(), "seconds": el.Seconds(), "cpu_s": cpu.Seconds(),
		"cpu_us_per_change": cpu.Seconds() * 1e6 / float64(got.Load()),
	})
	b.logf("  %s", res)
	b.keep("relay/ours", res)
	return nil
}

// field returns one number of every kept result under key.
func (b *bench) field(key, name string) []float64 {
	var xs []float64
	for _, raw := range b.results[key] {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		if v, ok := m[name].(float64); ok {
			xs = append(xs, v)
		}
	}
	return xs
}

func (b *bench) med(key, name string) float64 { return measure.Median(b.field(key, name)) }

func runs(xs []float64, format string) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, ", ")
}

// report prints the peer table and the unit costs, as Markdown.
func (b *bench) report(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "\n## Peer table: medians of %d rounds (each round's figures in brackets)\n\n", b.o.rounds)
	fmt.Fprintln(bw, "| measure | ours | Centrifugo "+b.o.version+" | ours ÷ theirs |")
	fmt.Fprintln(bw, "|---|---|---|---|")
	row := func(label, key, name, format string, scale float64, ratio string) {
		o, t := b.field(key+"/ours", name), b.field(key+"/centrifugo", name)
		if len(o) == 0 && len(t) == 0 {
			return
		}
		mo, mt := measure.Median(o)*scale, measure.Median(t)*scale
		r := "—"
		if mt != 0 && mo != 0 {
			switch ratio {
			case "more": // bigger is better: ours/theirs
				r = fmt.Sprintf("%.2fx", mo/mt)
			case "less": // smaller is better: how many times theirs
				r = fmt.Sprintf("%.2fx (%s)", mo/mt, map[bool]string{true: "better", false: "worse"}[mo <= mt])
			}
		}
		scaled := func(xs []float64) []float64 {
			out := make([]float64, len(xs))
			for i, x := range xs {
				out[i] = x * scale
			}
			return out
		}
		fmt.Fprintf(bw, "| %s | "+format+" [%s] | "+format+" [%s] | %s |\n", label,
			mo, runs(scaled(o), format), mt, runs(scaled(t), format), r)
	}
	row("ingest over HTTP, batches of 100 over 200 channels, 8 clients: events/s", "ingest", "events_per_s", "%.0f", 1, "more")
	row("ingest request p50, ms", "ingest", "p50_ms", "%.1f", 1, "less")
	row("ingest request p99, ms", "ingest", "p99_ms", "%.1f", 1, "less")
	row(fmt.Sprintf("publish → last of %d SSE subscribers of one channel, p50 of 8, ms", b.o.subs), "sse", "last_p50_ms", "%.0f", 1, "less")
	row("SSE: publish → each subscriber, p50, ms", "sse", "delivery_p50_ms", "%.0f", 1, "less")
	row("memory per SSE connection, KB (RSS delta / connections)", "sse", "bytes_per_conn", "%.1f", 1.0/1000, "less")
	if len(b.results["hot/ours"]) > 0 {
		fmt.Fprintf(bw, "\n## Hot event (ours): %d long-polls on one eventId, 10 changes/s for %s\n\n", b.o.hotSubs, b.o.hotFor)
		fmt.Fprintln(bw, "| measure | median | rounds |")
		fmt.Fprintln(bw, "|---|---|---|")
		hot := func(label, name, format string) {
			xs := b.field("hot/ours", name)
			fmt.Fprintf(bw, "| %s | "+format+" | %s |\n", label, measure.Median(xs), runs(xs, format))
		}
		hot("publish → last subscriber, p99 over changes, ms", "last_p99_ms", "%.0f")
		hot("publish → last subscriber, p50 over changes, ms", "last_p50_ms", "%.0f")
		hot("publish → each subscriber, p99, ms", "delivery_p99_ms", "%.0f")
		hot("publish ack p50 idle, ms", "ack_idle_p50_ms", "%.1f")
		hot("publish ack p50 during the storm, ms", "ack_storm_p50_ms", "%.1f")
		hot("changes stored (10/s over the storm)", "changes", "%.0f")
		hot("publishes failed (503 after the 5 s publish timeout)", "publish_failed", "%.0f")
		hot("stored changes delivered to every long-poll", "fully_delivered", "%.0f")
		idle, storm := b.med("hot/ours", "ack_idle_p50_ms"), b.med("hot/ours", "ack_storm_p50_ms")
		if idle > 0 {
			fmt.Fprintf(bw, "| publish ack p50, storm ÷ idle | %.1fx | |\n", storm/idle)
		}
	}
	fmt.Fprintf(bw, "\n## Unit costs: server process CPU time ÷ count, medians\n\n")
	fmt.Fprintln(bw, "| cost | ours | Centrifugo |")
	fmt.Fprintln(bw, "|---|---|---|")
	unit := func(label, key, name, format string, scale float64) {
		o, t := b.field(key+"/ours", name), b.field(key+"/centrifugo", name)
		if len(o) == 0 {
			return
		}
		ts := "—"
		if len(t) > 0 {
			ts = fmt.Sprintf(format, measure.Median(t)*scale)
		}
		fmt.Fprintf(bw, "| %s | "+format+" | %s |\n", label, measure.Median(o)*scale, ts)
	}
	unit("CPU µs per ingested change (dev: API + embedded JetStream, file + poller following)", "ingest", "cpu_us_per_event", "%.1f", 1)
	unit("CPU µs per relayed change (relay process, coalescing off)", "relay", "cpu_us_per_change", "%.1f", 1)
	unit("CPU µs per 304 poll (If-None-Match, 32 keep-alive connections)", "poll304", "cpu_us_per_poll", "%.1f", 1)
	unit("CPU µs per SSE delivery (one change to one subscriber)", "sse", "cpu_us_per_delivery", "%.1f", 1)
	unit("CPU µs per long-poll answer on the hot event", "hot", "cpu_us_per_answer", "%.1f", 1)
	unit("memory per waiting long-poll, bytes (RSS delta)", "hot", "bytes_per_waiting", "%.0f", 1)
	unit("memory per SSE client, bytes (RSS delta)", "sse", "bytes_per_conn", "%.0f", 1)
	return errors.Join(bw.Flush())
}
