// Command load is the one load generator of this module: it drives
// liveupdates (or, for the peer benchmark, Centrifugo) over HTTP from its own
// process, so a benchmark measures the server and never the client inside
// it. Each mode prints one JSON result on stdout; bench/peer and the
// poller's benchmarks (poller/bench_test.go) build it and read that.
//
// The peer benchmark's modes (bench/peer), which read the server's CPU time
// and resident memory from /proc around the measured phase (-pid; several
// comma-separated add up, e.g. ours as nats-server, api and poller, which
// then also takes -publish-base, the API's URL, beside -base, the poller's):
//
//	load -mode ingest  -target ours|centrifugo -base URL [-publish-base URL] -pid N[,N…] [-clients 8 -batch 100 -channels 200 -duration 5s]
//	load -mode sse     -target ours|centrifugo -base URL [-publish-base URL] -pid N[,N…] [-subs 5000 -rounds 8]
//	load -mode hot     -base URL -pid N [-subs 5000 -rate 10 -duration 20s -idle 4s]
//	load -mode poll304 -base URL -pid N [-ids 1000 -conns 32 -duration 4s]
//	load -mode seed    -base URL -count N
//
// The poller benchmarks' modes, which leave the timing of publishes to the
// benchmark and report what arrived when (unix nanoseconds):
//
//	load -mode rps          -base URL -ids 10000 -conns 32 -duration 2s -kind 304|200
//	load -mode hold         -base URL -ids 10000 -since N -wait 110 [-event ID]
//	load -mode repoll       -base URL -ids 2000 -since N -wait 30 -event ID -duration 10s
//	load -mode sse-arrivals -base URL -ids 2000 -since N -event ID -duration 60s [-until SEQ]
//
// -profile-url, when set, is fetched (a pprof CPU profile of the measured
// phase) into -profile-out. Each mode's file says what it measures.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the flags are printed
		}
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// modes maps each -mode to what runs it.
var modes = map[string]func(context.Context, config) (any, error){
	"ingest":       func(ctx context.Context, c config) (any, error) { return ingest(ctx, c) },
	"sse":          func(ctx context.Context, c config) (any, error) { return sse(ctx, c) },
	"hot":          func(ctx context.Context, c config) (any, error) { return hot(ctx, c) },
	"poll304":      func(ctx context.Context, c config) (any, error) { return poll304(ctx, c) },
	"seed":         func(ctx context.Context, c config) (any, error) { return seed(ctx, c) },
	"rps":          func(ctx context.Context, c config) (any, error) { return rps(ctx, c) },
	"hold":         func(ctx context.Context, c config) (any, error) { return hold(ctx, c) },
	"repoll":       func(ctx context.Context, c config) (any, error) { return repoll(ctx, c) },
	"sse-arrivals": func(ctx context.Context, c config) (any, error) { return sseArrivals(ctx, c) },
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	if err := raiseFileLimit(); err != nil {
		return err
	}
	// SIGINT ends repoll and sse-arrivals early with their result: the
	// poller's benchmarks stop them once every client has the last change.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := modes[c.mode](ctx, c)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
