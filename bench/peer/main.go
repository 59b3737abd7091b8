// Command peer measures liveupdates beside Centrifugo, the nearest
// open-source peer, on this machine and prints one table of ratios
// (`make bench-peer`). Run it from the module root.
//
// It builds `liveupdates`, the load tool and nats-server from this module,
// installs Centrifugo from the Go module proxy into a cache folder once, and
// then, round after round, starts each server fresh on 127.0.0.1 and runs
// the same load tool (its own process) against it, alternating which server
// goes first. Figures are medians over the rounds. Measures:
//
//   - ingest: batches of 100 over 200 channels from 8 clients (ours
//     POST /v1/publish with file storage, theirs /api/batch): events/s and
//     request p50/p99;
//   - SSE fan-out: one publish to 5,000 SSE subscribers of one channel,
//     until the last has it (p50 over the publishes), and resident memory
//     per connection;
//   - a hot event (ours; Centrifugo has no long-poll): 5,000 long-polls on
//     one eventId and 10 changes/s for 20 s;
//   - unit costs (ours): CPU per 304 poll and per relayed change (a
//     `liveupdates relay` process draining a backlog that `liveupdates api`
//     stored on a standalone nats-server).
//
// Files: servers.go starts and stops the servers, relay.go is the relay's
// unit cost, report.go prints the tables; the load itself is
// bench/internal/load.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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
	hotBaseline  bool
	roles        bool
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
	flag.BoolVar(&o.hotBaseline, "hot-baseline", false, "also run the hot event with LIVE_POLLER_HOT_LONGPOLLS=off (long-poll only: no move to SSE) in every round, interleaved, and report both")
	flag.BoolVar(&o.roles, "roles", false, "ingest and SSE: also run ours as a standalone nats-server + `liveupdates api` + `liveupdates poller` (the production shape: no relay forwarding to dev's own Pusher-compatible server, which Centrifugo does not do), reported beside dev")
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
		targets := []string{"ours", "centrifugo"}
		if o.roles {
			targets = append(targets, "roles")
		}
		// Rotate which server goes first, so none always meets the machine
		// right after another's load.
		targets = append(targets[r%len(targets):], targets[:r%len(targets)]...)
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
			// With the baseline, which goes first alternates too.
			runs := []string{"hot"}
			if o.hotBaseline {
				runs = append(runs, "hot-off")
				if r%2 == 1 {
					runs[0], runs[1] = runs[1], runs[0]
				}
			}
			for _, key := range runs {
				var env []string
				if key == "hot-off" {
					env = append(env, "LIVE_POLLER_HOT_LONGPOLLS=off")
				}
				if err := b.measureAs(ctx, key, "hot", "ours", r, "", env...); err != nil {
					return err
				}
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
	o                options
	tmp              string
	ours, load, nats string
	centrifugo       string
	mu               sync.Mutex
	results          map[string][]json.RawMessage // "ingest/ours" → one per round
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench-peer: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// loadArgs are the load tool's flags for one measure.
func (b *bench) loadArgs(mode, target string, p *proc) []string {
	lt := target
	if target == "roles" {
		lt = "ours" // the same API and routes, on two addresses
	}
	args := []string{"-mode", mode, "-target", lt, "-base", p.base, "-pid", p.pids()}
	if p.publishBase != "" {
		args = append(args, "-publish-base", p.publishBase)
	}
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
	return b.measureAs(ctx, mode, mode, target, round, profileOut)
}

// measureAs runs mode against a fresh server started with env added, and
// keeps its result under key.
func (b *bench) measureAs(ctx context.Context, key, mode, target string, round int, profileOut string, env ...string) error {
	p, err := b.start(ctx, target, profileOut != "", env...)
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
	b.logf("%s: %s against %s (load average %s)", label, key, target, loadAvg())
	res, err := b.runLoad(ctx, args...)
	if err != nil {
		return fmt.Errorf("%w\nserver logs:\n%s", err, tail(p.logText(), 2000))
	}
	b.logf("  %s", res)
	if round >= 0 {
		b.keep(key+"/"+target, res)
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
