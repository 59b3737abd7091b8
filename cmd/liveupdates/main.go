// Command liveupdates runs one role of the live-update pipeline per
// subcommand: dev (everything on an embedded nats-server), api, relay,
// poller, and the operator tools publish and tail.
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
		{"tail", "print envelopes of one eventId as they are stored", tailVars(), runTail},
	}
}

// run is main without the process: tests call it with their own arguments,
// environment and output.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
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
		env.stdout, env.stderr = stdout, stderr
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
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every flag has an environment variable of the same meaning; run liveupdates <command> --help to list them.")
}
