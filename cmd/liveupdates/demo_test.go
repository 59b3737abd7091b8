package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

func TestDevServesTheDemoAndItsPublishRoute(t *testing.T) {
	d := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":   testutil.FreeAddr(t),
		"LIVE_NATS_LISTEN": testutil.FreeAddr(t),
		"LIVE_DATA_DIR":    t.TempDir(),
	})
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(d.base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(d.base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	tests := []struct {
		path, wantType, wantIn string
	}{
		{"/demo/e42", "text/html", "import { connect } from './assets/client.js'"},
		{"/demo/assets/client.js", "text/javascript", "export function connect(options)"},
		{"/demo/assets/pusher.min.js", "text/javascript", `const r="8.6.0",o=7`},
	}
	for _, tt := range tests {
		code, ctype, body := get(tt.path)
		if code != http.StatusOK || !strings.HasPrefix(ctype, tt.wantType) || !strings.Contains(body, tt.wantIn) {
			t.Errorf("GET %s = %d %q (%d bytes), want 200 %s containing %q", tt.path, code, ctype, len(body), tt.wantType, tt.wantIn)
		}
	}
	if code, _, _ := get("/demo/assets/demo_test.go"); code != http.StatusNotFound {
		t.Errorf("GET an unknown asset = %d, want 404", code)
	}
	if code, _, _ := get("/demo/not%20an%20id"); code != http.StatusBadRequest {
		t.Errorf("GET /demo/ with a bad eventId = %d, want 400", code)
	}

	code, body := post("/demo/e42/publish", `{"type":"vote.updated","data":{"option":3}}`)
	if code != http.StatusAccepted {
		t.Fatalf("POST publish = %d %s, want 202", code, body)
	}
	var res struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.ID == "" || res.Seq == 0 {
		t.Fatalf("POST publish body = %s (%v), want an id and a seq", body, err)
	}
	// The poller has it: the demo publishes into the real pipeline.
	testutil.Eventually(t, 20*time.Second, func() bool {
		_, _, b := get("/v1/events/e42/updates?since=0")
		return strings.Contains(b, res.ID) && strings.Contains(b, `"option":3`)
	}, "the demo's change never reached the poller")

	if code, body := post("/demo/e42/publish", `{"type":"Vote","data":{}}`); code != http.StatusBadRequest || !strings.Contains(body, "invalid_type") {
		t.Errorf("POST publish with a bad type = %d %s, want 400 invalid_type", code, body)
	}
	if code, body := post("/demo/e42/publish", `{`); code != http.StatusBadRequest || !strings.Contains(body, "invalid_json") {
		t.Errorf("POST publish with bad JSON = %d %s, want 400 invalid_json", code, body)
	}
	if code, body := post("/demo/e42/token", ``); code != http.StatusOK || body != "{\"token\":\"\"}\n" {
		t.Errorf("POST token without LIVE_POLL_SECRET = %d %q, want 200 an empty token", code, body)
	}
}
