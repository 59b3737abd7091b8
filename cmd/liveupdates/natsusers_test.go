package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// runRoleProcess runs `liveupdates <role>` with env until the test ends and
// waits for its /readyz.
func runRoleProcess(t *testing.T, role string, env map[string]string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{role}, envOf(env), io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s stopped with %v", role, err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s", role)
		}
	})
	testutil.EventuallyErr(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("%s exited: %v; logs:\n%s", role, err, logs)
		default:
		}
		resp, err := http.Get("http://" + env["LIVE_HTTP_ADDR"] + "/readyz")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz = %d %s", role, resp.StatusCode, b)
		}
		return nil
	})
	return logs
}

// TestEachRoleRunsAsItsOwnNATSUser runs the api, the relay and the poller as
// separate commands, each logged in as its own NATS user with the
// permissions of ops.NATSRoles (those of deploy/nats.yaml), against a real
// nats-server that accepts nobody else: each still does its whole job (a
// change posted to the api reaches Pusher through the relay and a poll
// through the poller), while the poller's user cannot publish a change, the
// api's cannot purge or delete the stream, and the relay's cannot publish a
// change either.
func TestEachRoleRunsAsItsOwnNATSUser(t *testing.T) {
	t.Parallel()
	users := newDevUsers()
	ns := testutil.RunJetStreamWith(t, func(o *server.Options) {
		users.configure(o)
		o.NoAuthUser = "" // here nobody gets in without a user
	})
	ps := pushercompat.Start(t, pushercompat.Options{})
	roleEnv := func(role string, more map[string]string) map[string]string {
		env := map[string]string{
			"LIVE_NATS_URL":      ns.URL(),
			"LIVE_NATS_USER":     role,
			"LIVE_NATS_PASSWORD": users.passwords[role],
			"LIVE_HTTP_ADDR":     testutil.FreeAddr(t),
		}
		for k, v := range more {
			env[k] = v
		}
		return env
	}
	apiEnv := roleEnv("api", map[string]string{"LIVE_API_KEYS": "k1"})
	runRoleProcess(t, "api", apiEnv) // creates LIVE_EVENTS
	pollerEnv := roleEnv("poller", nil)
	pollerLogs := runRoleProcess(t, "poller", pollerEnv)
	relayLogs := runRoleProcess(t, "relay", roleEnv("relay", map[string]string{
		"PUSHER_APP_ID": "1", "PUSHER_KEY": "key", "PUSHER_SECRET": "secret",
		"PUSHER_HOST": ps.Host(), "PUSHER_SECURE": "false", "LIVE_RELAY_BATCH_WINDOW": "5ms",
	}))

	postChange(t, "http://"+apiEnv["LIVE_HTTP_ADDR"]+"/v1/events/e1/vote.updated", "k1") // as the api user
	testutil.Eventually(t, 20*time.Second, func() bool { return len(ps.EventsOn("event-e1")) == 1 },
		"the relay user's change never reached Pusher; relay logs:\n%s", relayLogs)
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + pollerEnv["LIVE_HTTP_ADDR"] + "/v1/events/e1/updates?since=0")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var poll struct {
			Events []wire.Envelope `json:"events"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&poll); err != nil {
			return err
		}
		if len(poll.Events) != 1 || string(poll.Events[0].Data) != `{"v":1}` {
			return fmt.Errorf("poll as the poller user = %+v, want the change; logs:\n%s", poll, pollerLogs)
		}
		return nil
	})

	// What each user must not do. A denied JetStream request is never
	// answered, so each attempt ends at its short deadline with an error.
	as := func(role string) jetstream.JetStream {
		nc := ns.Conn(t, nats.UserInfo(role, users.passwords[role]), nats.CustomInboxPrefix(ops.InboxPrefix(role)),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the violations are expected
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	operatorStream, err := as("operator").Stream(short(), wire.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	denied := map[string]func(ctx context.Context) error{}
	for _, role := range []string{"poller", "relay"} {
		denied["the "+role+" user publishes a change"] = func(ctx context.Context) error {
			_, err := as(role).Publish(ctx, "live.events.e1.vote.updated", []byte(`{"v":666}`))
			return err
		}
	}
	for _, role := range []string{"api", "poller", "relay"} {
		denied["the "+role+" user deletes the stream"] = func(ctx context.Context) error {
			return as(role).DeleteStream(ctx, wire.StreamName)
		}
		denied["the "+role+" user purges the stream"] = func(ctx context.Context) error {
			return purgeAs(ctx, as(role), operatorStream)
		}
	}
	denied["the poller user deletes the relay's consumer"] = func(ctx context.Context) error {
		return as("poller").DeleteConsumer(ctx, wire.StreamName, relay.Consumer)
	}
	denied["the api user creates a consumer"] = func(ctx context.Context) error {
		_, err := as("api").CreateOrUpdateConsumer(ctx, wire.StreamName, jetstream.ConsumerConfig{Durable: "rogue"})
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for what, attempt := range denied {
		ctx := short()
		wg.Go(func() {
			if err := attempt(ctx); err == nil {
				mu.Lock()
				defer mu.Unlock()
				t.Errorf("%s: allowed, want a permissions violation", what)
			}
		})
	}
	wg.Wait()
	// Nothing above changed the stream: the one change is still there alone.
	info, err := as("operator").Stream(short(), wire.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("%s holds %d messages after the denied attempts, want the 1 change", wire.StreamName, n)
	}
}

// purgeAs sends the purge request of st's stream on js's connection.
func purgeAs(ctx context.Context, js jetstream.JetStream, st jetstream.Stream) error {
	resp, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.PURGE."+st.CachedInfo().Config.Name, nil)
	if err != nil {
		return err
	}
	var r struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return err
	}
	if !r.Success {
		return fmt.Errorf("purge refused: %+v", r.Error)
	}
	return nil
}

func TestNATSAuthSettings(t *testing.T) {
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	ns := testutil.RunJetStreamWith(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	})
	t.Run("an nkey seed logs in as its user", func(t *testing.T) {
		c, err := dialNATS(envOf(map[string]string{"LIVE_NATS_URL": ns.URL(), "LIVE_NATS_NKEY_SEED": string(seed)}), "api", quietLogger(), failFast)
		if err != nil {
			t.Fatalf("connect with the seed: %v", err)
		}
		c.nc.Close()
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"a user without a password", map[string]string{"LIVE_NATS_USER": "api"}, "set both or neither"},
		{"a password without a user", map[string]string{"LIVE_NATS_PASSWORD": "pw"}, "set both or neither"},
		{"two ways at once", map[string]string{"LIVE_NATS_USER": "api", "LIVE_NATS_PASSWORD": "pw", "LIVE_NATS_NKEY_SEED": string(seed)}, "not several"},
		{"a seed that is not one", map[string]string{"LIVE_NATS_NKEY_SEED": "SUNOTASEEDATALL"}, "not a user nkey seed"},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			r := env.NewReader(envOf(tc.env))
			natsAuth(r)
			if err := r.Err(); err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), string(seed)) {
				t.Fatalf("natsAuth(%v) = %v, want an error saying %q without the seed", tc.env, err, tc.want)
			}
		})
	}
}

func quietLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// TestThePartitionedRelayRunsAsTheRelayUser: in partitioned mode the relay
// also keeps leases and checkpoints in its KV buckets; logged in as the
// relay user of ops.NATSRoles (that of deploy/nats.yaml) it must still
// start and send a change to Pusher, which it cannot when the user lacks
// the buckets' subjects.
func TestThePartitionedRelayRunsAsTheRelayUser(t *testing.T) {
	t.Parallel()
	if want := []string{relay.LeaseBucket, relay.CheckpointBucket}; !slices.Equal(ops.RelayKVBuckets, want) {
		t.Fatalf("ops.RelayKVBuckets = %v, want the relay's buckets %v", ops.RelayKVBuckets, want)
	}
	users := newDevUsers()
	ns := testutil.RunJetStreamWith(t, func(o *server.Options) {
		users.configure(o)
		o.NoAuthUser = ""
	})
	ps := pushercompat.Start(t, pushercompat.Options{})
	relayLogs := runRoleProcess(t, "relay", map[string]string{
		"LIVE_NATS_URL":      ns.URL(),
		"LIVE_NATS_USER":     "relay",
		"LIVE_NATS_PASSWORD": users.passwords["relay"],
		"LIVE_HTTP_ADDR":     testutil.FreeAddr(t),
		"PUSHER_APP_ID":      "1", "PUSHER_KEY": "key", "PUSHER_SECRET": "secret",
		"PUSHER_HOST": ps.Host(), "PUSHER_SECURE": "false", "LIVE_RELAY_BATCH_WINDOW": "5ms",
		"LIVE_RELAY_PARTITIONS": "4",
	})
	nc := ns.Conn(t, nats.UserInfo("operator", users.passwords["operator"]))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := js.Publish(ctx, fmt.Sprintf("live.events.e%d.vote.updated", i), []byte(`{"v":1}`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for i := range 3 {
			if len(ps.EventsOn(fmt.Sprintf("event-e%d", i))) != 1 {
				return false
			}
		}
		return true
	}, "the partitioned relay never sent the changes to Pusher as the relay user; relay logs:\n%s", relayLogs)
	// The leases were taken as the relay user: the buckets exist.
	for _, b := range ops.RelayKVBuckets {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := js.KeyValue(ctx, b)
		cancel()
		if err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	// status shows who holds each partition, and how long ago it renewed.
	operator := envOf(map[string]string{"LIVE_NATS_URL": ns.URL(), "LIVE_NATS_USER": "operator", "LIVE_NATS_PASSWORD": users.passwords["operator"]})
	var text string
	testutil.EventuallyErr(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var out, textOut syncBuffer
		if err := run(ctx, []string{"status", "--json"}, operator, &out, io.Discard); err != nil {
			return err
		}
		var rep statusReport
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			return fmt.Errorf("status --json printed %q: %w", out.String(), err)
		}
		if len(rep.Partitions) != 4 {
			return fmt.Errorf("status shows partitions %+v, want the 4 of LIVE_RELAY_PARTITIONS", rep.Partitions)
		}
		for _, p := range rep.Partitions {
			if age, err := time.ParseDuration(p.Age); p.Owner == "" || err != nil || age > time.Minute {
				return fmt.Errorf("status shows partition %+v, want an owner that renewed its lease lately", p)
			}
		}
		if err := run(ctx, []string{"status"}, operator, &textOut, io.Discard); err != nil {
			return err
		}
		text = textOut.String()
		return nil
	})
	if !regexp.MustCompile(`partition +3: owner \S+ \(renewed \S+ ago\)`).MatchString(text) {
		t.Errorf("status does not name partition 3's owner:\n%s", text)
	}
}

// TestTheAPIEnsuresTheConfiguredStream: the api creates LIVE_EVENTS with
// the LIVE_STREAM_* settings it was given, not stream defaults.
func TestTheAPIEnsuresTheConfiguredStream(t *testing.T) {
	t.Parallel()
	ns := testutil.RunJetStream(t)
	runRoleProcess(t, "api", map[string]string{
		"LIVE_NATS_URL":       ns.URL(),
		"LIVE_HTTP_ADDR":      testutil.FreeAddr(t),
		"LIVE_API_KEYS":       "k",
		"LIVE_STREAM_MAX_AGE": "90m",
	})
	st, err := ns.JS(t).Stream(t.Context(), wire.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != 90*time.Minute {
		t.Fatalf("the api created %s with max age %v, want LIVE_STREAM_MAX_AGE=90m", wire.StreamName, got)
	}
}
