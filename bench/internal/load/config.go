package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is every flag; each mode reads the ones it needs.
type config struct {
	mode, target, base string
	// publishBase is where changes are published (ours: the API, when it
	// runs apart from the poller); base when unset.
	publishBase         string
	apiKey, tokenSecret string
	// pids are the server's processes: their CPU time and resident memory
	// add up (ours as a standalone nats-server, api and poller).
	pids                 []int
	clients, batch, chs  int
	subs, rounds, ids    int
	conns, count         int
	rate                 float64
	duration, idle, warm time.Duration
	profileURL, profOut  string
	// The poller benchmarks' modes.
	kind         string
	since, until uint64
	wait         int
	event        string
	// spread is the client's re-poll pacing (client.js repollDelay).
	spread time.Duration
}

// needsPID are the modes that read the server's CPU time or memory.
var needsPID = []string{"ingest", "sse", "hot", "poll304"}

// needsEvent are the modes whose clients all poll or stream one eventId.
var needsEvent = []string{"repoll", "sse-arrivals"}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	names := make([]string, 0, len(modes))
	for m := range modes {
		names = append(names, m)
	}
	slices.Sort(names)
	fs.StringVar(&c.mode, "mode", "", strings.Join(names, ", "))
	fs.StringVar(&c.target, "target", "ours", "ours or centrifugo")
	fs.StringVar(&c.base, "base", "", "server base URL, such as http://127.0.0.1:8080")
	fs.StringVar(&c.apiKey, "api-key", "dev", "ours: the ingest API key; centrifugo: http_api.key")
	fs.StringVar(&c.tokenSecret, "token-secret", "", "centrifugo: client.token.hmac_secret_key, to sign connection tokens")
	fs.StringVar(&c.publishBase, "publish-base", "", "ours: where changes are published, when the API runs apart from the poller (default -base)")
	fs.Func("pid", "the server's process id, for CPU time and resident memory ("+strings.Join(needsPID, ", ")+"); several comma-separated add up", func(v string) error {
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("want process ids, comma-separated: %q", f)
			}
			c.pids = append(c.pids, n)
		}
		return nil
	})
	fs.IntVar(&c.clients, "clients", 8, "ingest, seed: concurrent clients")
	fs.IntVar(&c.batch, "batch", 100, "ingest, seed: changes per request")
	fs.IntVar(&c.chs, "channels", 200, "ingest, seed: distinct eventIds (channels)")
	fs.IntVar(&c.subs, "subs", 5000, "sse, hot: subscribers of one eventId (channel)")
	fs.IntVar(&c.rounds, "rounds", 8, "sse: measured publishes, one at a time")
	fs.IntVar(&c.ids, "ids", 1000, "poll304, rps, hold: distinct eventIds e0..e<ids-1>; hold -event, repoll, sse-arrivals: clients of that one eventId")
	fs.IntVar(&c.conns, "conns", 32, "poll304, rps: concurrent connections")
	fs.IntVar(&c.count, "count", 20000, "seed: changes to publish")
	fs.Float64Var(&c.rate, "rate", 10, "hot: changes per second")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "ingest, poll304, rps: measured time; hot: the storm; repoll, sse-arrivals: the longest run")
	fs.DurationVar(&c.idle, "idle", 4*time.Second, "hot: publishing with no long-polls, for the idle ack latency")
	fs.DurationVar(&c.warm, "warmup", time.Second, "ingest, poll304: unmeasured time first")
	fs.StringVar(&c.profileURL, "profile-url", "", "pprof CPU profile URL of the server, fetched during the measured phase")
	fs.StringVar(&c.profOut, "profile-out", "", "where to write that profile")
	fs.StringVar(&c.kind, "kind", "304", "rps: 304 (If-None-Match with the learnt ETag) or 200 (one new change per answer)")
	fs.Uint64Var(&c.since, "since", 0, "hold, repoll, sse-arrivals: the cursor to start from")
	fs.Uint64Var(&c.until, "until", 0, "sse-arrivals: end once every stream has received this seq")
	fs.IntVar(&c.wait, "wait", 30, "hold, repoll: long-poll seconds")
	fs.DurationVar(&c.spread, "repoll-spread", -1, "hot, repoll: after an answer with changes, wait uniform in [0, this) before re-polling; 0 re-polls at once; unset: /v1/config's repollSpreadMs (the poller's linger), else 250ms, as client.js does")
	fs.StringVar(&c.event, "event", "", "hold: every long-poll on this one eventId instead of one per eventId; repoll, sse-arrivals: the eventId")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.publishBase == "" {
		c.publishBase = c.base
	}
	return c, c.validate()
}

// validate reports every flag problem at once.
func (c config) validate() error {
	var errs []error
	if _, ok := modes[c.mode]; !ok {
		errs = append(errs, fmt.Errorf("-mode %q: want one of ingest, sse, hot, poll304, seed, rps, hold, repoll, sse-arrivals", c.mode))
	}
	if c.base == "" {
		errs = append(errs, errors.New("-base is required"))
	}
	if c.target != "ours" && c.target != "centrifugo" {
		errs = append(errs, fmt.Errorf("-target %q: want ours or centrifugo", c.target))
	}
	if slices.Contains(needsPID, c.mode) && len(c.pids) == 0 {
		errs = append(errs, fmt.Errorf("-mode %s needs -pid, the server's process id", c.mode))
	}
	if slices.Contains(needsEvent, c.mode) && c.event == "" {
		errs = append(errs, fmt.Errorf("-mode %s needs -event", c.mode))
	}
	if c.kind != "304" && c.kind != "200" {
		errs = append(errs, fmt.Errorf("-kind %q: want 304 or 200", c.kind))
	}
	if c.spread < -1 || c.spread > 2*time.Second {
		errs = append(errs, fmt.Errorf("-repoll-spread %v: want 0 to 2s (client.js caps it there)", c.spread))
	}
	if c.rate <= 0 {
		errs = append(errs, fmt.Errorf("-rate %v: want more than 0", c.rate))
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"-clients", c.clients}, {"-batch", c.batch}, {"-channels", c.chs}, {"-subs", c.subs}, {"-ids", c.ids}, {"-conns", c.conns}} {
		if f.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: want at least 1", f.name, f.n))
		}
	}
	return errors.Join(errs...)
}
