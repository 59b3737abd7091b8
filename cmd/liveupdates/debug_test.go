package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// get returns the status and body of a GET, or an error when nothing
// answers.
func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

// TestDebugAddrServesPprofOnlyWhenSet runs dev twice: with LIVE_DEBUG_ADDR
// the profiler answers there and not on the public address; without it
// nothing listens there and the public address still has no profiler.
func TestDebugAddrServesPprofOnlyWhenSet(t *testing.T) {
	debugAddr := testutil.FreeAddr(t)
	on := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": testutil.FreeAddr(t),
		"LIVE_DATA_DIR":    t.TempDir(),
		"LIVE_DEBUG_ADDR":  debugAddr,
	})
	code, body, err := get("http://" + debugAddr + "/debug/pprof/")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("GET debug /debug/pprof/ = %d %v, want 200 with the profile index; body:\n%.300s", code, err, body)
	}
	code, body, err = get("http://" + debugAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil || code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("GET debug goroutine profile = %d %v, want 200; body:\n%.300s", code, err, body)
	}
	if code, _, err := get(on.base + "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("GET public /debug/pprof/ = %d %v, want 404: the profiler is never on the public port", code, err)
	}
	// The process's arguments are not served: they may hold what an
	// operator typed (and before secrets were environment-only, secrets).
	code, body, err = get("http://" + debugAddr + "/debug/pprof/cmdline")
	if err != nil || code == http.StatusOK || strings.Contains(body, os.Args[0]) {
		t.Fatalf("GET debug /debug/pprof/cmdline = %d %v, want no command line; body:\n%.300s", code, err, body)
	}
	if !strings.Contains(on.logs.String(), "debug server with pprof is listening") {
		t.Errorf("dev logs do not say the debug server is on; logs:\n%s", on.logs)
	}
	if err := on.stop(); err != nil {
		t.Fatalf("dev stopped with %v", err)
	}
	if c, err := net.DialTimeout("tcp", debugAddr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("something still listens on %s after dev stopped", debugAddr)
	}

	off := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": testutil.FreeAddr(t),
		"LIVE_DATA_DIR":    t.TempDir(),
	})
	if c, err := net.DialTimeout("tcp", debugAddr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("with LIVE_DEBUG_ADDR unset something listens on %s", debugAddr)
	}
	if code, _, err := get(off.base + "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Fatalf("GET public /debug/pprof/ = %d %v, want 404", code, err)
	}
	if strings.Contains(off.logs.String(), "debug server") {
		t.Errorf("dev logs mention a debug server with LIVE_DEBUG_ADDR unset; logs:\n%s", off.logs)
	}
}

func TestDebugAddrRefusesThePublicAddress(t *testing.T) {
	t.Parallel()
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	for _, debug := range []string{addr, ":" + port} {
		var stderr syncBuffer
		// Refused before anything starts; the deadline only ends an api
		// that wrongly started.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err := run(ctx, []string{"api", "--debug-addr", debug}, envOf(map[string]string{
			"LIVE_API_KEYS": "k", "LIVE_HTTP_ADDR": addr, "LIVE_NATS_URL": "nats://127.0.0.1:1",
		}), io.Discard, &stderr)
		cancel()
		if err == nil || !strings.Contains(err.Error(), debugAddrVar) || !strings.Contains(err.Error(), "public") {
			t.Fatalf("api with --debug-addr %s and LIVE_HTTP_ADDR %s = %v, want a refusal naming %s", debug, addr, err, debugAddrVar)
		}
	}
}

func TestSameListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:6060", "127.0.0.1:6060", true},
		{":8080", "127.0.0.1:8080", true},
		{"0.0.0.0:8080", ":8080", true},
		{"127.0.0.1:6060", ":8080", false},
		{"127.0.0.1:8080", "10.0.0.1:8080", false},
		{"127.0.0.1:0", "127.0.0.1:0", false}, // two random ports never collide
	}
	for _, tt := range tests {
		if got := sameListenAddr(tt.a, tt.b); got != tt.want {
			t.Errorf("sameListenAddr(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
