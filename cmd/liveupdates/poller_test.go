package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// TestPollerGivesBrowsersThePusherSettings runs the poller command with the
// Pusher variables (and one as a flag): /v1/config carries what a browser
// needs, never the secret, and /v1/pusher/auth signs with the secret.
func TestPollerGivesBrowsersThePusherSettings(t *testing.T) {
	t.Parallel()
	js := testutil.RunJetStream(t)
	addr := testutil.FreeAddr(t)
	env := map[string]string{
		"LIVE_NATS_URL":               js.URL(),
		"LIVE_HTTP_ADDR":              addr,
		"PUSHER_KEY":                  "the-key",
		"PUSHER_SECRET":               "the-secret",
		"PUSHER_HOST":                 "pusher.internal:6001",
		"PUSHER_SECURE":               "false",
		"LIVE_RELAY_PRIVATE_CHANNELS": "true",
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- run(ctx, []string{"poller", "--poller-pusher-ws-url", "wss://ws.example.com"}, envOf(env), io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("poller did not stop within 30s")
		}
	})
	base := "http://" + addr
	var body []byte
	testutil.Eventually(t, 60*time.Second, func() bool {
		res, err := http.Get(base + "/v1/config")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		body, _ = io.ReadAll(res.Body)
		return res.StatusCode == http.StatusOK
	}, "GET /v1/config answers; logs:\n%s", logs)
	var c struct {
		Pusher struct {
			Key, WSHost, Channel, AuthEndpoint string
			WSPort                             int
			ForceTLS                           bool
		}
	}
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatalf("config %s: %v", body, err)
	}
	p := c.Pusher
	if p.Key != "the-key" || p.WSHost != "ws.example.com" || p.WSPort != 443 || !p.ForceTLS || p.Channel != "private-event-{eventId}" || p.AuthEndpoint != "/v1/pusher/auth" {
		t.Fatalf("config=%s, want the key, the flag's WebSocket address and private channels", body)
	}
	if strings.Contains(string(body), "the-secret") || strings.Contains(logs.String(), "the-secret") {
		t.Fatalf("the Pusher secret leaked: config %s; logs:\n%s", body, logs)
	}
	res, err := http.PostForm(base+"/v1/pusher/auth", url.Values{"socket_id": {"1.2"}, "channel_name": {"private-event-e1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	auth, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(auth), `{"auth":"the-key:`) {
		t.Fatalf("auth=%d %s, want a signature by the-key", res.StatusCode, auth)
	}
}
