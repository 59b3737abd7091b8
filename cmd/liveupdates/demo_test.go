package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
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

	// An id stored with other data is a conflict, answered as the API does.
	if code, body := post("/demo/e42/publish", `{"type":"vote.updated","data":{"v":1},"id":"demo-1"}`); code != http.StatusAccepted {
		t.Fatalf("POST publish with id demo-1 = %d %s, want 202", code, body)
	}
	if code, body := post("/demo/e42/publish", `{"type":"vote.updated","data":{"v":1},"id":"demo-1"}`); code != http.StatusAccepted {
		t.Errorf("POST publish of the same change again = %d %s, want 202 (a duplicate)", code, body)
	}
	if code, body := post("/demo/e42/publish", `{"type":"vote.updated","data":{"v":2},"id":"demo-1"}`); code != http.StatusConflict || !strings.Contains(body, wire.CodeIdempotencyConflict) {
		t.Errorf("POST publish of other data with id demo-1 = %d %s, want 409 %s", code, body, wire.CodeIdempotencyConflict)
	}
}

// TestTheDemoWritesAnswerOnlyThisMachine: dev listens on every interface,
// and its demo publish and token routes take no key, so a client from
// another machine gets 403 (and nothing is published: the publisher is
// never reached), while loopback clients, IPv4 or IPv6, are served.
func TestTheDemoWritesAnswerOnlyThisMachine(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mountDemo(mux, nil, quietLogger()) // no publisher: a 403 must come first
	for _, path := range []string{"/demo/e1/publish", "/demo/e1/token"} {
		for _, remote := range []string{"192.168.1.20:50000", "[2001:db8::1]:50000", "10.0.0.1:1", "not-an-address"} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"type":"vote.updated","data":{}}`))
			req.RemoteAddr = remote
			req.Header.Set("X-Forwarded-For", "127.0.0.1") // a client may write anything here
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusForbidden || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(rec.Body.String(), wire.CodeForbidden) {
				t.Errorf("POST %s from %s = %d %q %s, want 403 JSON %s", path, remote, rec.Code, rec.Header().Get("Content-Type"), rec.Body, wire.CodeForbidden)
			}
		}
	}
	// Loopback clients get past the check: the bad JSON is answered by the
	// route itself.
	for _, remote := range []string{"127.0.0.1:50000", "[::1]:50000"} {
		req := httptest.NewRequest(http.MethodPost, "/demo/e1/publish", strings.NewReader(`{`))
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), wire.CodeInvalidJSON) {
			t.Errorf("POST publish with bad JSON from %s = %d %s, want the route's 400 %s", remote, rec.Code, rec.Body, wire.CodeInvalidJSON)
		}
	}
}
