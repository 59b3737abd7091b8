package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// TestASecondDevOnTheSameDataDirIsRefused is the regression test for two dev
// processes sharing ./data with their ports moved apart: both started, each
// stored a different change under the same seq, and after a restart a change
// answered 202 was gone. The second must be refused at once, by name, and the
// directory must be free again once the first stops.
func TestASecondDevOnTheSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	first := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": testutil.FreeAddr(t),
		"LIVE_DATA_DIR":    dir,
	})
	second := map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": testutil.FreeAddr(t),
		"LIVE_DATA_DIR":    dir,
	}
	// Without the lock the second dev runs until this context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"dev"}, envOf(second), io.Discard, io.Discard)
	if !errors.Is(err, errDataDirInUse) || !strings.Contains(err.Error(), "LIVE_DATA_DIR") || ctx.Err() != nil {
		t.Fatalf("second dev on %s = %v, want it refused at once naming LIVE_DATA_DIR", dir, err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("first dev stopped with %v", err)
	}
	// Released on stop: the same directory serves a new dev.
	again := startDev(t, second)
	if err := again.stop(); err != nil {
		t.Fatalf("dev on the released directory stopped with %v", err)
	}
}

func TestThePortInUseHintNamesTheDataDir(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = run(t.Context(), []string{"dev"}, envOf(map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": busy.Addr().String(),
		"LIVE_DATA_DIR":    t.TempDir(),
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "LIVE_NATS_LISTEN") || !strings.Contains(err.Error(), "LIVE_DATA_DIR") {
		t.Fatalf("dev on a busy port = %v, want a hint naming LIVE_NATS_LISTEN and LIVE_DATA_DIR", err)
	}
}

// TestMetricsAddrTakesMetricsOffThePublicPort: with LIVE_METRICS_ADDR,
// /metrics answers there and is a 404 on the public port; every answer of
// both says nosniff.
func TestMetricsAddrTakesMetricsOffThePublicPort(t *testing.T) {
	metricsAddr := testutil.FreeAddr(t)
	d := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":    testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN":  testutil.FreeAddr(t),
		"LIVE_DATA_DIR":     t.TempDir(),
		"LIVE_METRICS_ADDR": metricsAddr,
	})
	fetch := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", url, got)
		}
		return resp.StatusCode, string(b)
	}
	if code, _ := fetch(d.base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics = %d, want 404 with LIVE_METRICS_ADDR set", code)
	}
	if code, body := fetch("http://" + metricsAddr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "liveupdates_api_") || !strings.Contains(body, "liveupdates_poller_") {
		t.Errorf("/metrics on LIVE_METRICS_ADDR = %d, want 200 with the roles' metrics", code)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := fetch("http://" + metricsAddr + p); code != http.StatusOK {
			t.Errorf("%s on LIVE_METRICS_ADDR = %d, want 200", p, code)
		}
		if code, _ := fetch(d.base + p); code != http.StatusOK {
			t.Errorf("public %s = %d, want 200", p, code)
		}
	}
	if code, _ := fetch(d.base + "/v1/nowhere"); code != http.StatusNotFound {
		t.Errorf("public miss = %d, want 404", code)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("dev stopped with %v", err)
	}
}
