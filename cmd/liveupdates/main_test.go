package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestCommandsRefuseWhatTheyCannotRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no command prints usage", nil, nil, "usage"},
		{"an unknown command prints usage", []string{"frobnicate"}, nil, "usage"},
		{"an unknown flag prints usage", []string{"api", "--no-such-flag"}, nil, "usage"},
		{"api without keys names the variable", []string{"api"}, map[string]string{"LIVE_NATS_URL": "nats://127.0.0.1:1"}, "LIVE_API_KEYS"},
		{"relay without pusher credentials says so", []string{"relay"}, map[string]string{"LIVE_NATS_URL": "nats://127.0.0.1:1"}, "pusher credentials are not set"},
		{"a bad stream setting names the variable", []string{"api", "--stream-max-age", "soon"}, map[string]string{"LIVE_API_KEYS": "k"}, "LIVE_STREAM_MAX_AGE"},
		{"a bad log format names the variable", []string{"poller"}, map[string]string{"LIVE_LOG_FORMAT": "xml"}, "LIVE_LOG_FORMAT"},
		{"publish without an event names the flag", []string{"publish", "--type", "vote.updated"}, nil, "--event is required"},
		{"publish with invalid JSON says so", []string{"publish", "--event", "e1", "--type", "vote.updated", "--data", "{"}, nil, "not valid JSON"},
		{"tail with a bad eventId says so", []string{"tail", "--event", "e/1"}, nil, "eventId"},
		{"tail with a negative limit names the flag", []string{"tail", "--event", "e1", "--limit", "-1"}, nil, `--limit="-1": want an integer from 0`},
		{"dlq show without a seq says so", []string{"dlq", "show"}, nil, "--seq is required"},
		{"dlq replay with a bad seq names the flag", []string{"dlq", "replay", "--seq", "x"}, nil, `--seq="x": want an integer from 1`},
		{"an operator tool takes the log settings as flags too", []string{"status", "--log-format", "xml"}, nil, "LIVE_LOG_FORMAT"},
		{"status fails at once without NATS", []string{"status"}, map[string]string{"LIVE_NATS_URL": "nats://127.0.0.1:1"}, "connect nats nats://127.0.0.1:1"},
		{"dlq list fails at once without NATS", []string{"dlq", "list"}, map[string]string{"LIVE_NATS_URL": "nats://127.0.0.1:1"}, "connect nats nats://127.0.0.1:1"},
		{"a half-given NATS login names both variables", []string{"status"}, map[string]string{"LIVE_NATS_USER": "ops"}, "LIVE_NATS_USER and LIVE_NATS_PASSWORD"},
		{"dev with a bad listen address names the variable", []string{"dev"}, map[string]string{"LIVE_NATS_LISTEN": "nowhere"}, "LIVE_NATS_LISTEN"},
		{"dev's own pusher server needs a fixed port", []string{"dev"}, map[string]string{"LIVE_DEV_PUSHER_ADDR": "127.0.0.1:0"}, "LIVE_DEV_PUSHER_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr syncBuffer
			err := run(t.Context(), tt.args, envOf(tt.env), &stdout, &stderr)
			if err == nil {
				t.Fatalf("run(%v) = nil, want an error mentioning %q", tt.args, tt.wantErr)
			}
			got := err.Error() + stderr.String()
			if !strings.Contains(got, tt.wantErr) {
				t.Fatalf("run(%v) = %v (stderr %q), want it to mention %q", tt.args, err, stderr.String(), tt.wantErr)
			}
		})
	}
}

// TestSecretsAreRefusedAsFlags: every secret setting of every command
// comes from the environment only. Its flag is refused with a message that
// names the variable and does not echo the value, and --help lists it
// among the environment-only secrets, not as a flag.
func TestSecretsAreRefusedAsFlags(t *testing.T) {
	t.Parallel()
	seen := 0
	for _, c := range commands() {
		var help syncBuffer
		if err := run(t.Context(), append(strings.Fields(c.name), "--help"), envOf(nil), io.Discard, &help); err != nil {
			t.Fatalf("%s --help: %v", c.name, err)
		}
		for _, v := range c.vars {
			if !v.Secret {
				continue
			}
			seen++
			for _, arg := range [][]string{{"--" + flagName(v.Name) + "=s3cr3t-value"}, {"-" + flagName(v.Name), "s3cr3t-value"}} {
				var stderr syncBuffer
				// Should the flag be taken, the command must still stop at
				// once: a log format it refuses, and a deadline.
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err := run(ctx, append(strings.Fields(c.name), arg...), envOf(map[string]string{"LIVE_LOG_FORMAT": "xml"}), io.Discard, &stderr)
				cancel()
				if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "set "+v.Name+" in the environment") {
					t.Errorf("%s %v = %v (stderr %q), want it refused, naming %s", c.name, arg, err, stderr.String(), v.Name)
				}
				if strings.Contains(stderr.String(), "s3cr3t-value") {
					t.Errorf("%s %v echoes the secret: %q", c.name, arg, stderr.String())
				}
			}
			if strings.Contains(help.String(), "-"+flagName(v.Name)+" ") || !strings.Contains(help.String(), "  "+v.Name+"\n") {
				t.Errorf("%s --help offers the flag of %s or does not list it as environment-only:\n%s", c.name, v.Name, help.String())
			}
		}
	}
	if seen == 0 {
		t.Fatal("no command has a secret setting")
	}
}

func TestAFlagWinsOverItsVariable(t *testing.T) {
	t.Parallel()
	c := command{name: "api", vars: apiVars()}
	s, err := parseSettings(c, []string{"--nats-url", "nats://flag:4222"}, envOf(map[string]string{
		"LIVE_NATS_URL": "nats://env:4222", "LIVE_HTTP_ADDR": ":9999",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Getenv("LIVE_NATS_URL"); got != "nats://flag:4222" {
		t.Fatalf("LIVE_NATS_URL = %q, want the flag's value", got)
	}
	if got := s.Getenv("LIVE_HTTP_ADDR"); got != ":9999" {
		t.Fatalf("LIVE_HTTP_ADDR = %q, want the variable's value when no flag is given", got)
	}
}

// TestTheReadmeDocumentsEverySetting keeps three lists equal: the
// variables the packages read, the settings (and flags) of the commands, and
// the README's configuration table.
func TestTheReadmeDocumentsEverySetting(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`((?:LIVE|PUSHER)_[A-Z0-9_]+)`")
	documented := map[string]bool{}
	for _, line := range bytes.Split(readme, []byte("\n")) {
		cells := bytes.Split(line, []byte("|"))
		if len(cells) < 3 || len(bytes.TrimSpace(cells[0])) > 0 { // a table row: the variables are its first cell
			continue
		}
		for _, m := range name.FindAllSubmatch(cells[1], -1) {
			documented[string(m[1])] = true
		}
	}
	settings := map[string]bool{}
	for _, c := range commands() {
		for _, v := range c.vars {
			settings[v.Name] = true
			if !documented[v.Name] {
				t.Errorf("README.md does not document %s (a setting of %s)", v.Name, c.name)
			}
		}
	}
	for v := range documented {
		if !settings[v] {
			t.Errorf("README.md documents %s, which no command reads", v)
		}
	}
	read := regexp.MustCompile(`"((?:LIVE|PUSHER)_[A-Z0-9_]+)"`)
	for _, dir := range []string{"producer", "relay", "poller", "stream", "cmd/liveupdates"} {
		files, err := filepath.Glob(filepath.Join("../..", dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range read.FindAllSubmatch(src, -1) {
				if !settings[string(m[1])] {
					t.Errorf("%s reads %s, which no command lists as a setting (so it has no flag and no README row)", f, m[1])
				}
			}
		}
	}
	for _, cmd := range []string{"make run", "make test"} {
		if !bytes.Contains(readme, []byte(cmd)) {
			t.Errorf("README.md does not show %q", cmd)
		}
	}
}

func TestRedactURLHidesThePassword(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"nats://user:pw@host:4222": "nats://redacted@host:4222",
		"nats://host:4222":         "nats://host:4222",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDevServesTheNewcomerPath is the README's promise: `make run`, then a
// curl with the key "dev" gets 202 with a seq, `tail --from-start` shows the
// change, a poll returns it, and SIGTERM stops everything cleanly.
//
// Without Pusher credentials dev relays to its own Pusher-compatible
// server: a socket subscribed there as pusher-js does gets the change.
func TestDevServesTheNewcomerPath(t *testing.T) {
	httpAddr, natsAddr, pusherAddr := testutil.FreeAddr(t), testutil.FreeAddr(t), testutil.FreeAddr(t)
	d := startDev(t, map[string]string{
		"LIVE_HTTP_ADDR":          httpAddr,
		"LIVE_NATS_LISTEN":        natsAddr,
		"LIVE_DATA_DIR":           t.TempDir(),
		"LIVE_DEV_PUSHER_ADDR":    pusherAddr,
		"LIVE_RELAY_BATCH_WINDOW": "5ms",
	})
	base, logs := d.base, d.logs
	_, httpPort, _ := strings.Cut(httpAddr, ":")
	for _, want := range []string{`API key \"dev\"`, "dev serves its own pusher-compatible server", "LIVE_POLL_SECRET is unset",
		"http://localhost:" + httpPort + "/demo/e42"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("dev logs do not say %q; logs:\n%s", want, logs.String())
		}
	}
	sock := dialDevPusher(t, pusherAddr, "event-e42")

	body := postChange(t, base+"/v1/events/e42/vote.updated", "dev")
	var res struct {
		ID  string `json:"id"`
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Seq == 0 || res.ID == "" {
		t.Fatalf("POST body = %s (%v), want an id and a seq", body, err)
	}

	if m := sock.next(t); m.Event != "vote.updated" || m.Channel != "event-e42" {
		t.Fatalf("the socket on dev's pusher server got %+v, want vote.updated on event-e42", m)
	} else if env := m.envelope(t); env.Seq != res.Seq || env.ID != res.ID || string(env.Data) != `{"v":1}` {
		t.Fatalf("the socket got the envelope %+v, want seq %d id %s", env, res.Seq, res.ID)
	}

	var tailOut syncBuffer
	tailCtx, tailCancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer tailCancel()
	err := run(tailCtx, []string{"tail", "--event", "e42", "--from-start", "--limit", "1"},
		envOf(map[string]string{"LIVE_NATS_URL": "nats://" + natsAddr}), &tailOut, io.Discard)
	if err != nil {
		t.Fatalf("tail: %v", err)
	}
	var got wire.Envelope
	if err := json.Unmarshal([]byte(tailOut.String()), &got); err != nil {
		t.Fatalf("tail printed %q: %v", tailOut.String(), err)
	}
	if got.Seq != res.Seq || got.ID != res.ID || got.EventID != "e42" || got.Type != "vote.updated" || string(got.Data) != `{"v":1}` {
		t.Fatalf("tail printed %+v, want seq %d id %s with the data", got, res.Seq, res.ID)
	}

	// The operator's publish, straight to NATS and through the API; the
	// same id twice stores one change.
	natsEnv := envOf(map[string]string{"LIVE_NATS_URL": "nats://" + natsAddr})
	var viaNATS, again, viaAPI syncBuffer
	if err := run(t.Context(), []string{"publish", "--event", "e42", "--type", "phase.changed", "--data", `{"phase":"vote"}`, "--id", "op-1"},
		natsEnv, &viaNATS, io.Discard); err != nil {
		t.Fatalf("publish to nats: %v", err)
	}
	if err := run(t.Context(), []string{"publish", "--event", "e42", "--type", "phase.changed", "--data", `{"phase":"vote"}`, "--id", "op-1"},
		natsEnv, &again, io.Discard); err != nil {
		t.Fatalf("publish to nats again: %v", err)
	}
	if err := run(t.Context(), []string{"publish", "--event", "e42", "--type", "vote.updated", "--data", `{"v":2}`, "--api-url", base},
		envOf(map[string]string{"LIVE_API_KEY": "dev"}), &viaAPI, io.Discard); err != nil {
		t.Fatalf("publish through the api: %v", err)
	}
	var first, second, third struct {
		ID        string `json:"id"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	}
	for _, p := range []struct {
		out *syncBuffer
		v   any
	}{{&viaNATS, &first}, {&again, &second}, {&viaAPI, &third}} {
		if err := json.Unmarshal([]byte(p.out.String()), p.v); err != nil {
			t.Fatalf("publish printed %q: %v", p.out.String(), err)
		}
	}
	if first.ID != "op-1" || first.Seq != res.Seq+1 || first.Duplicate || second.Seq != first.Seq || !second.Duplicate {
		t.Fatalf("publish twice with id op-1 = %+v then %+v, want seq %d stored once", first, second, res.Seq+1)
	}
	if third.Seq != first.Seq+1 || third.ID == "" {
		t.Fatalf("publish through the api = %+v, want the next seq %d", third, first.Seq+1)
	}
	err = run(t.Context(), []string{"publish", "--event", "e42", "--type", "vote.updated", "--api-url", base},
		envOf(map[string]string{"LIVE_API_KEY": "wrong"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), wire.CodeUnauthorized) {
		t.Fatalf("publish with a wrong key = %v, want the API's 401 %s", err, wire.CodeUnauthorized)
	}
	res.Seq = third.Seq // the poll below sees all three changes

	var poll struct {
		Cursor string            `json:"cursor"`
		Events []json.RawMessage `json:"events"`
	}
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		resp, err := http.Get(base + "/v1/events/e42/updates?since=0")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&poll); err != nil {
			return err
		}
		if poll.Cursor != strconv.FormatUint(res.Seq, 10) || len(poll.Events) != 3 {
			return fmt.Errorf("poll = %+v, want cursor %d and the three changes", poll, res.Seq)
		}
		return nil
	})

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, re := range []string{`liveupdates_api_http_requests_total\{code="202",route="POST /v1/events/\{eventId\}/\{type\}"\} [1-9]`,
		`liveupdates_poller_http_requests_total\{code="200",route="GET /v1/events/\{eventId\}/updates"\} [1-9]`,
		`liveupdates_pushercompat_sockets 1`} {
		if !regexp.MustCompile(re).Match(metrics) {
			t.Errorf("/metrics has no %s; it has:\n%s", re, bytes.Join(regexp.MustCompile(`(?m)^liveupdates_\w+_http_requests_total.*$`).FindAll(metrics, -1), []byte("\n")))
		}
	}
	// dev exports the roles' own series, which the alerts and the dashboard
	// read, never series of its own name that they would not see.
	if m := regexp.MustCompile(`(?m)^liveupdates_dev_\w+`).Find(metrics); m != nil {
		t.Errorf("/metrics has %s: dev must export the roles' series under the roles' names", m)
	}
	alerts, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\bliveupdates_[a-z0-9_]*[a-z0-9]\b`).FindAll(alerts, -1) {
		name := regexp.MustCompile(`_(bucket|sum|count)$`).ReplaceAll(m, nil)
		if !bytes.Contains(metrics, []byte("\n# TYPE "+string(name)+" ")) {
			t.Errorf("deploy/prometheus/alerts.yml reads %s, which dev does not export", name)
		}
	}

	if err := d.stop(); err != nil {
		t.Fatalf("dev stopped with %v, want nil", err)
	}
	if code := sock.closeCode(t); code != pushercompat.CodeReconnect {
		t.Fatalf("on shutdown the socket was closed with %d, want 4200 (pusher-js reconnects)", code)
	}
}

// postChange posts {"v":1} to an ingest API url with key and returns the
// answer's body; anything but 202 fails the test.
func postChange(t *testing.T, url, key string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST %s = %d %s, want 202", url, resp.StatusCode, body)
	}
	return body
}

// devSocket is a WebSocket client speaking Pusher protocol 7 as pusher-js does.
type devSocket struct{ c *websocket.Conn }

type devFrame struct {
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
}

func (m devFrame) envelope(t *testing.T) wire.Envelope {
	t.Helper()
	var env wire.Envelope
	if err := json.Unmarshal([]byte(m.Data), &env); err != nil {
		t.Fatalf("data %q: %v", m.Data, err)
	}
	return env
}

// dialDevPusher connects to dev's own Pusher-compatible server with dev's
// key and subscribes to channel.
func dialDevPusher(t *testing.T, addr, channel string) *devSocket {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/app/"+devPusherKey+"?protocol=7&client=js&version=8.6.0", nil)
	if err != nil {
		t.Fatalf("dial dev's pusher server: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() }) //nolint:errcheck // the test is over
	s := &devSocket{c: c}
	if m := s.next(t); m.Event != "pusher:connection_established" {
		t.Fatalf("first frame %+v, want the handshake", m)
	}
	sub, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": channel, "auth": ""}})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	if m := s.next(t); m.Event != "pusher_internal:subscription_succeeded" {
		t.Fatalf("subscribe answered %+v", m)
	}
	return s
}

func (s *devSocket) next(t *testing.T) devFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, b, err := s.c.Read(ctx)
	if err != nil {
		t.Fatalf("read from dev's pusher server: %v", err)
	}
	var m devFrame
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return m
}

func (s *devSocket) closeCode(t *testing.T) websocket.StatusCode {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		_, _, err := s.c.Read(ctx)
		cancel()
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// TestDevForwardsToAPusherCompatibleServer runs dev with Pusher credentials
// pointing at the test server: a change posted to the API reaches its
// channel through the real pusher-http-go client, with the envelope intact
// and the sender's socket excluded.
func TestDevForwardsToAPusherCompatibleServer(t *testing.T) {
	ps := pushercompat.Start(t, pushercompat.Options{})
	httpAddr, natsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	env := map[string]string{
		"LIVE_HTTP_ADDR":          httpAddr,
		"LIVE_NATS_LISTEN":        natsAddr,
		"LIVE_DATA_DIR":           t.TempDir(),
		"PUSHER_APP_ID":           "1",
		"PUSHER_KEY":              "key",
		"PUSHER_SECRET":           "secret",
		"PUSHER_HOST":             ps.Host(),
		"PUSHER_SECURE":           "false",
		"LIVE_RELAY_BATCH_WINDOW": "5ms",
	}
	d := startDev(t, env)
	base, logs := d.base, d.logs
	if !strings.Contains(logs.String(), "pusher credentials are set") || strings.Contains(logs.String(), "dev serves its own") || strings.Contains(logs.String(), "secret\"") {
		t.Fatalf("dev logs do not say it uses the configured pusher, or show the secret:\n%s", logs.String())
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/v1/events/e7/phase.changed", strings.NewReader(`{"phase":"vote"}`))
	req.Header.Set("Authorization", "Bearer dev")
	req.Header.Set("X-Socket-Id", "123.456")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST = %d, want 202", resp.StatusCode)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return len(ps.EventsOn("event-e7")) > 0 },
		"nothing reached Pusher; logs:\n%s", logs)
	got := ps.EventsOn("event-e7")[0]
	var envl wire.Envelope
	if err := json.Unmarshal([]byte(got.Data), &envl); err != nil {
		t.Fatalf("pusher data %q: %v", got.Data, err)
	}
	if got.Name != "phase.changed" || got.SocketID != "123.456" || envl.EventID != "e7" || string(envl.Data) != `{"phase":"vote"}` || envl.Seq == 0 {
		t.Fatalf("pusher got %+v with envelope %+v, want phase.changed for e7 excluding socket 123.456", got, envl)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("dev stopped with %v, want nil", err)
	}
}

type devProcess struct {
	base string
	logs *syncBuffer
	stop func() error
}

// startDev runs `liveupdates dev` with env until stop (or the test's end)
// and waits until it is ready.
func startDev(t *testing.T, env map[string]string) devProcess {
	t.Helper()
	if _, ok := env["LIVE_DEV_PUSHER_ADDR"]; !ok && env["PUSHER_APP_ID"] == "" {
		// Without credentials dev serves its own Pusher-compatible server:
		// give it a port of its own, not the default 8081 every test shares.
		env["LIVE_DEV_PUSHER_ADDR"] = testutil.FreeAddr(t)
	}
	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"dev"}, envOf(env), io.Discard, logs) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("dev did not stop within 20s of cancellation")
			return nil
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("dev stopped with %v", err)
		}
	})
	base := "http://" + env["LIVE_HTTP_ADDR"]
	testutil.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "dev never became ready; logs:\n%s", logs)
	return devProcess{base: base, logs: logs, stop: stop}
}

func TestDevTellsBrowsersAnAddressTheyCanReach(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		listen, want string
		wantErr      bool
	}{
		{"127.0.0.1:8081", "127.0.0.1:8081", false},
		{":8081", "127.0.0.1:8081", false},
		{"0.0.0.0:9000", "127.0.0.1:9000", false},
		{"192.0.2.7:8081", "192.0.2.7:8081", false},
		{"127.0.0.1:0", "", true},
		{"8081", "", true},
	} {
		got, err := devPusherAddr(tt.listen)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("devPusherAddr(%q) = %q, %v; want %q (error %v)", tt.listen, got, err, tt.want, tt.wantErr)
		}
	}
	for addr, want := range map[string]string{
		":8080":          "http://localhost:8080/demo/e42",
		"127.0.0.1:9999": "http://localhost:9999/demo/e42",
		"nonsense":       "http://localhost:8080/demo/e42",
	} {
		if got := demoURL(addr); got != want {
			t.Errorf("demoURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
