package poller

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	pusher "github.com/pusher/pusher-http-go/v5"
)

func TestConfigTellsABrowserHowToConnect(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c map[string]any)
	}{
		{"without Pusher, pusher is null and browsers poll", nil, func(t *testing.T, c map[string]any) {
			if p, ok := c["pusher"]; !ok || p != nil {
				t.Fatalf("pusher=%v (present %v), want null", p, ok)
			}
		}},
		{"Pusher's own cluster with private channels", map[string]string{
			"PUSHER_KEY": "k1", "PUSHER_SECRET": "s1", "PUSHER_CLUSTER": "eu", "PUSHER_HOST": "",
			"LIVE_RELAY_PRIVATE_CHANNELS": "true", "LIVE_RELAY_CHANNEL_PREFIX": "ev-", "LIVE_POLL_SECRET": "0123456789abcdef",
		}, func(t *testing.T, c map[string]any) {
			p := c["pusher"].(map[string]any)
			if p["key"] != "k1" || p["cluster"] != "eu" || p["channel"] != "private-ev-{eventId}" || p["private"] != true ||
				p["authEndpoint"] != "/v1/pusher/auth" || p["forceTLS"] != true || p["wsHost"] != nil {
				t.Fatalf("pusher=%v", p)
			}
			if c["tokenRequired"] != true {
				t.Fatalf("tokenRequired=%v, want true", c["tokenRequired"])
			}
			if strings.Contains(mustJSON(t, c), "s1") {
				t.Fatalf("config %v carries the Pusher secret", c)
			}
		}},
		{"a self-hosted server by PUSHER_HOST, public channels", map[string]string{
			"PUSHER_KEY": "k2", "PUSHER_SECRET": "s2", "PUSHER_HOST": "127.0.0.1:6001", "PUSHER_SECURE": "false",
		}, func(t *testing.T, c map[string]any) {
			p := c["pusher"].(map[string]any)
			if p["wsHost"] != "127.0.0.1" || p["wsPort"] != 6001.0 || p["forceTLS"] != false || p["channel"] != "event-{eventId}" || p["private"] != false {
				t.Fatalf("pusher=%v", p)
			}
		}},
		{"the browser-facing WebSocket address overrides the REST host", map[string]string{
			"PUSHER_KEY": "k3", "PUSHER_SECRET": "s3", "PUSHER_HOST": "pusher.internal:8080", "PUSHER_SECURE": "false",
			"LIVE_POLLER_PUSHER_WS_URL": "wss://ws.example.com/pusher",
		}, func(t *testing.T, c map[string]any) {
			p := c["pusher"].(map[string]any)
			if p["wsHost"] != "ws.example.com" || p["wsPort"] != 443.0 || p["wsPath"] != "/pusher" || p["forceTLS"] != true {
				t.Fatalf("pusher=%v", p)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := LoadConfig(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("LoadConfig()=%v", err)
			}
			cfg.CORSOrigins = []string{"https://app.example"}
			cfg.PollInterval = 3 * time.Second
			h := startPoller(t, srv, cfg)
			r := h.get("/v1/config", "Origin", "https://app.example")
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
				t.Fatalf("GET /v1/config=%d %v", r.status, r.header)
			}
			var c map[string]any
			if err := json.Unmarshal(r.body, &c); err != nil {
				t.Fatalf("config %s: %v", r.body, err)
			}
			urls := c["urls"].(map[string]any)
			if urls["updates"] != "/v1/events/{eventId}/updates" || urls["stream"] != "/v1/events/{eventId}/stream" ||
				urls["messages"] != "/v1/events/{eventId}/messages/{seq}" || c["pollIntervalMs"] != 3000.0 || c["longPollWaitSeconds"] != 30.0 ||
				c["repollSpreadMs"] != 250.0 || c["transportHeader"] != "Live-Transport" || c["hotLongPolls"] != 500.0 {
				t.Fatalf("config=%s", r.body)
			}
			tc.check(t, c)
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigRejectsBadPusherSettings(t *testing.T) {
	t.Parallel()
	_, err := LoadConfig(func(k string) string {
		return map[string]string{
			"PUSHER_KEY": "k", "LIVE_RELAY_PRIVATE_CHANNELS": "true", "LIVE_RELAY_CHANNEL_PREFIX": "bad prefix",
			"LIVE_POLLER_PUSHER_WS_URL": "http://x",
		}[k]
	})
	for _, v := range []string{"PUSHER_SECRET", "LIVE_RELAY_CHANNEL_PREFIX", "LIVE_POLLER_PUSHER_WS_URL"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("LoadConfig()=%v, want an error naming %s", err, v)
		}
	}
}

func postForm(t *testing.T, u string, form url.Values, hdr ...string) reply {
	t.Helper()
	return post(t, u, "application/x-www-form-urlencoded", form.Encode(), hdr...)
}

func post(t *testing.T, u, ct, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{res.StatusCode, res.Header, b}
}

func TestPusherAuthSignsTheDocumentedVector(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	// pusher.com/docs/auth_signatures: socket 1234.1234, private-foobar.
	h := startPoller(t, srv, Config{Pusher: Pusher{Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8", ChannelPrefix: "foo", Private: true}})
	r := postForm(t, h.url+"/v1/pusher/auth", url.Values{"socket_id": {"1234.1234"}, "channel_name": {"private-foobar"}})
	want := `{"auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"}`
	if r.status != 200 || strings.TrimSpace(string(r.body)) != want {
		t.Fatalf("auth=%d %s, want 200 %s", r.status, r.body, want)
	}
	// The same answer as pusher-http-go's own signer.
	pc := pusher.Client{AppID: "1", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}
	lib, err := pc.AuthorizePrivateChannel([]byte("socket_id=1234.1234&channel_name=private-foobar"))
	if err != nil || string(lib) != want {
		t.Fatalf("pusher-http-go says %s, %v; the poller %s", lib, err, r.body)
	}
}

func TestPusherAuthSignsOnlyTheTokensOwnEvent(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	secret := []byte("0123456789abcdef0123")
	key, psecret := "appkey", "appsecret"
	h := startPoller(t, srv, Config{Secret: secret, Rate: -1, CORSOrigins: []string{"*"},
		Pusher: Pusher{Key: key, Secret: psecret, Private: true}})
	tok, err := polltoken.Mint(secret, "e42", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := polltoken.Mint(secret, "e42", time.Second, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	auth := h.url + "/v1/pusher/auth"
	sig := wire.PusherChannelAuth(key, psecret, "99.7", "private-event-e42")
	for _, tc := range []struct {
		name   string
		do     func() reply
		status int
		code   string
	}{
		{"a form with the token as Bearer, as pusher-js sends it", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}}, "Authorization", "Bearer "+tok)
		}, 200, ""},
		{"the token as a form field", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}, "token": {tok}})
		}, 200, ""},
		{"the token in the query", func() reply {
			return postForm(t, auth+"?token="+url.QueryEscape(tok), url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}})
		}, 200, ""},
		{"JSON", func() reply {
			return post(t, auth, "application/json", `{"socket_id":"99.7","channel_name":"private-event-e42","token":"`+tok+`"}`)
		}, 200, ""},
		{"another event's channel is refused", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e43"}, "token": {tok}})
		}, 403, wire.CodeForbidden},
		{"a public or foreign channel is refused", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-other-e42"}, "token": {tok}})
		}, 403, wire.CodeForbidden},
		{"a presence channel is refused", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"presence-event-e42"}, "token": {tok}})
		}, 403, wire.CodeForbidden},
		{"a bad socket id is refused", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7:x"}, "channel_name": {"private-event-e42"}, "token": {tok}})
		}, 400, wire.CodeInvalidSocketID},
		{"no token is 401", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}})
		}, 401, wire.CodeUnauthorized},
		{"an expired token is 401", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}, "token": {expired}})
		}, 401, wire.CodeUnauthorized},
		{"a forged token is 401", func() reply {
			return postForm(t, auth, url.Values{"socket_id": {"99.7"}, "channel_name": {"private-event-e42"}, "token": {tok + "x"}})
		}, 401, wire.CodeUnauthorized},
		{"a field given twice is 400", func() reply {
			return post(t, auth, "application/x-www-form-urlencoded", "socket_id=99.7&socket_id=1.1&channel_name=private-event-e42&token="+url.QueryEscape(tok))
		}, 400, wire.CodeInvalidRequest},
		{"a huge body is 413", func() reply {
			return post(t, auth, "application/x-www-form-urlencoded", "socket_id=99.7&pad="+strings.Repeat("x", 8<<10))
		}, 413, wire.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do()
			if r.status != tc.status {
				t.Fatalf("status=%d body=%s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 200 {
				var a struct{ Auth string }
				if err := json.Unmarshal(r.body, &a); err != nil || a.Auth != sig {
					t.Fatalf("auth=%s, want %s", r.body, sig)
				}
				return
			}
			var e struct{ Error struct{ Code string } }
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Code != tc.code {
				t.Fatalf("error=%s, want code %s", r.body, tc.code)
			}
		})
	}
	pre := preflight(t, auth, "https://app.example")
	if pre.status != 204 || !strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(pre.header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Fatalf("preflight=%d %v, want 204 allowing POST and Content-Type", pre.status, pre.header)
	}
}

func preflight(t *testing.T, u, origin string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodOptions, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return reply{res.StatusCode, res.Header, nil}
}

func TestPusherAuthIsNotFoundWithoutPusher(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	h := startPoller(t, srv, Config{})
	r := postForm(t, h.url+"/v1/pusher/auth", url.Values{"socket_id": {"1.1"}, "channel_name": {"private-event-e1"}})
	if r.status != 404 {
		t.Fatalf("auth without Pusher=%d %s, want 404", r.status, r.body)
	}
}

func TestClientFilesAreServedAsJavaScript(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	files := fstest.MapFS{
		"client.js":   {Data: []byte("export function connect() {}\n")},
		"react.js":    {Data: []byte("import { connect } from './client.js';\n")},
		"client.d.ts": {Data: []byte("export declare function connect(): void;\n")},
		"demo.html":   {Data: []byte("<html></html>")},
	}
	h := startPoller(t, srv, Config{CORSOrigins: []string{"*"}}, func(d *Deps) { d.Client = files })
	for path, name := range map[string]string{
		"/v1/client.js": "client.js", "/v1/client/react.js": "react.js", "/v1/client/client.js": "client.js", "/v1/client.d.ts": "client.d.ts",
	} {
		r := h.get(path, "Origin", "https://app.example")
		if r.status != 200 || string(r.body) != string(files[name].Data) {
			t.Fatalf("GET %s=%d %q, want 200 with %s", path, r.status, r.body, name)
		}
		if ct := r.header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
			t.Fatalf("GET %s Content-Type=%q", path, ct)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.header.Get("Cache-Control"), "max-age") {
			t.Fatalf("GET %s headers=%v, want CORS and Cache-Control", path, r.header)
		}
		etag := r.header.Get("ETag")
		if nm := h.get(path, "If-None-Match", etag); etag == "" || nm.status != http.StatusNotModified || len(nm.body) != 0 {
			t.Fatalf("GET %s If-None-Match %s=%d, want 304", path, etag, nm.status)
		}
	}
	for _, path := range []string{"/v1/client/react.d.ts", "/v1/client/demo.html"} {
		if r := h.get(path); r.status != 404 {
			t.Fatalf("GET %s=%d, want 404 (absent or not a client file)", path, r.status)
		}
	}
	bare := startPoller(t, srv, Config{})
	if r := bare.get("/v1/client.js"); r.status != 404 {
		t.Fatalf("GET /v1/client.js without client files=%d, want 404", r.status)
	}
}
