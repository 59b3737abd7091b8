// Command liveupdates runs one role of the live-update pipeline per
// subcommand: dev (everything on an embedded nats-server), api, relay,
// poller, and the operator tools publish, tail, dlq and status.
//
// Every setting is an environment variable with a flag of the same meaning
// (LIVE_NATS_URL and --nats-url); a flag wins over the variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "liveupdates:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks an error whose message (usage text) was already printed.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

type command struct {
	name    string
	summary string
	vars    []envVar
	run     func(ctx context.Context, env *settings) error
}

func commands() []command {
	return []command{
		{"dev", "everything in one process on an embedded nats-server (for a newcomer)", devVars(), runDev},
		{"api", "the ingest HTTP API: POST /v1/events/{eventId}/{type}, /v1/publish, /v1/tokens", apiVars(), runAPI},
		{"relay", "forward changes from JetStream to Pusher", relayVars(), runRelay},
		{"poller", "answer polling, long-polling and SSE clients from memory", pollerVars(), runPoller},
		{"publish", "publish one change (to NATS, or through the API with --api-url)", publishVars(), runPublish},
		{"tail", "print envelopes of one eventId as they are stored", natsVars(), runTail},
		{"dlq list", "list the dead letters in LIVE_DLQ, one JSON line each", natsVars(), runDLQList},
		{"dlq show", "print one dead letter with its headers and data", natsVars(), runDLQShow},
		{"dlq replay", "publish dead letters to LIVE_EVENTS again, with their original id", natsVars(), runDLQReplay},
		{"dlq purge", "delete dead letters (asks first, unless --yes)", natsVars(), runDLQPurge},
		{"status", "the stream, its consumers (lag, pending), the relay's partitions and the dead letters", natsVars(), runStatus},
	}
}

// run is main without the process: tests call it with their own arguments,
// environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runIO(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runIO is run with the standard input of its own: `dlq purge` reads its
// confirmation there.
func runIO(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// The operator commands have two words: `dlq list` is one command.
	if len(args) >= 2 && args[0] == "dlq" && !strings.HasPrefix(args[1], "-") {
		args = append([]string{"dlq " + args[1]}, args[2:]...)
	}
	if len(args) > 0 && args[0] == "dlq" && (len(args) == 1 || strings.HasPrefix(args[1], "-")) {
		fmt.Fprintln(stderr, "usage: liveupdates dlq list|show|replay|purge [flags]")
		return errUsage
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		env, err := parseSettings(c, args[1:], getenv, stderr)
		if errors.Is(err, errHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		env.stdin, env.stdout, env.stderr = stdin, stdout, stderr
		if slices.ContainsFunc(c.vars, func(v envVar) bool { return v.Name == debugAddrVar }) {
			stopDebug, err := startDebug(env, c.name)
			if err != nil {
				return err
			}
			defer stopDebug()
		}
		return c.run(ctx, env)
	}
	fmt.Fprintf(stderr, "liveupdates: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return errUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: liveupdates <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag has an environment variable of the same meaning; run liveupdates <command> --help to list them.")
}
