package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugAddrVar opts a server role into a second HTTP server with Go's
// profiler. It is off by default and never shares the public address:
// /debug/pprof/ can stall a process (a 30 s CPU profile, a full heap dump)
// and shows its goroutines' stacks, so it belongs on a private interface
// only.
const debugAddrVar = "LIVE_DEBUG_ADDR"

// startDebug starts the debug server when LIVE_DEBUG_ADDR is set, for any
// command that lists the variable, and returns what stops it. It listens
// before returning, so a taken or refused address fails the command at once.
func startDebug(env *settings, command string) (stop func(), err error) {
	addr := env.Getenv(debugAddrVar)
	if addr == "" {
		return func() {}, nil
	}
	public := httpAddr(env.Getenv)
	if sameListenAddr(addr, public) {
		return nil, fmt.Errorf("%s=%q is the public HTTP address (LIVE_HTTP_ADDR=%q): give the profiler its own, private address", debugAddrVar, addr, public)
	}
	format := "json"
	if command == "dev" {
		format = "text"
	}
	log, err := newLogger(env.Getenv, env.stderr, format)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", debugAddrVar, addr, err)
	}
	srv := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 10 * time.Second}
	entry := log.WithField("component", "debug").WithField("debug_addr", l.Addr().String())
	entry.Warn("debug server with pprof is listening; keep this address private")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			entry.WithError(err).Error("debug server stopped")
		}
	}()
	return func() {
		// Close, not Shutdown: a profile being taken would hold the
		// process's exit for up to its whole duration.
		if err := srv.Close(); err != nil {
			entry.WithError(err).Warn("debug server close")
		}
		<-done
	}, nil
}

// debugMux serves net/http/pprof on its own mux: importing the package
// registers it on http.DefaultServeMux too, which no server here uses.
// Not /debug/pprof/cmdline: it answers the process's arguments, and
// nothing here needs to show them to whoever reaches the debug address.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// sameListenAddr says whether two listen addresses would take the same
// port: equal ports on equal hosts, or on a wildcard host (":8080",
// "0.0.0.0:8080") that covers the other.
func sameListenAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}
