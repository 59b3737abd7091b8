package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    map[string]string
		check   func(Config) error
		wantErr []string // each must appear in the error
	}{
		{
			name: "no variables gives the documented defaults with Pusher off",
			vars: nil,
			check: func(c Config) error {
				if c.PusherEnabled() || !c.Secure || c.MaxPayloadKB != 10 || c.BatchWindow != 20*time.Millisecond ||
					c.MaxInFlight != 4 || c.ChannelPrefix != "event-" || len(c.CoalesceTypes) != 6 || c.Timeout != 5*time.Second {
					return fmt.Errorf("defaults %+v", c)
				}
				return nil
			},
		},
		{
			name: "credentials and a local host enable Pusher over http",
			vars: map[string]string{"PUSHER_APP_ID": "1", "PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHER_HOST": "127.0.0.1:1", "PUSHER_SECURE": "false"},
			check: func(c Config) error {
				if !c.PusherEnabled() || c.Secure || c.Host != "127.0.0.1:1" {
					return fmt.Errorf("got %+v", c)
				}
				return nil
			},
		},
		{
			name: "coalescing off leaves no type",
			vars: map[string]string{"LIVE_RELAY_COALESCE": "off"},
			check: func(c Config) error {
				if len(c.CoalesceTypes) != 0 {
					return fmt.Errorf("CoalesceTypes=%v", c.CoalesceTypes)
				}
				return nil
			},
		},
		{
			name: "coalescing a list keeps exactly those types",
			vars: map[string]string{"LIVE_RELAY_COALESCE": "vote.updated, custom.thing"},
			check: func(c Config) error {
				if strings.Join(c.CoalesceTypes, ",") != "vote.updated,custom.thing" {
					return fmt.Errorf("CoalesceTypes=%v", c.CoalesceTypes)
				}
				return nil
			},
		},
		{
			name:    "partial credentials name the missing variables",
			vars:    map[string]string{"PUSHER_APP_ID": "1"},
			wantErr: []string{"PUSHER_KEY", "PUSHER_SECRET"},
		},
		{
			name: "every bad value is reported at once",
			vars: map[string]string{
				"PUSHER_SECURE": "maybe", "PUSHER_MAX_PAYLOAD_KB": "0", "LIVE_RELAY_BATCH_WINDOW": "soon",
				"LIVE_RELAY_MAX_IN_FLIGHT": "100", "LIVE_RELAY_COALESCE": "Vote!", "LIVE_RELAY_CHANNEL_PREFIX": "bad prefix",
				"LIVE_RELAY_REQUESTS_PER_SECOND": "-1", "LIVE_RELAY_ACK_WAIT": "10ms",
			},
			wantErr: []string{"PUSHER_SECURE", "PUSHER_MAX_PAYLOAD_KB", "LIVE_RELAY_BATCH_WINDOW", "LIVE_RELAY_MAX_IN_FLIGHT",
				"LIVE_RELAY_COALESCE", "LIVE_RELAY_CHANNEL_PREFIX", "LIVE_RELAY_REQUESTS_PER_SECOND", "LIVE_RELAY_ACK_WAIT"},
		},
		{
			name:    "a prefix too long for the longest eventId is refused",
			vars:    map[string]string{"LIVE_RELAY_CHANNEL_PREFIX": strings.Repeat("p", 30), "LIVE_RELAY_PRIVATE_CHANNELS": "true"},
			wantErr: []string{"LIVE_RELAY_CHANNEL_PREFIX", "164"},
		},
		{
			name:    "max ack pending below the batch size is refused",
			vars:    map[string]string{"LIVE_RELAY_BATCH_SIZE": "100", "LIVE_RELAY_MAX_ACK_PENDING": "10"},
			wantErr: []string{"LIVE_RELAY_MAX_ACK_PENDING"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := LoadConfig(envOf(tt.vars))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("LoadConfig()=nil error, want one naming %v", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("LoadConfig() error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig()=%v", err)
			}
			if err := tt.check(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRedactedHidesTheSecret(t *testing.T) {
	t.Parallel()
	c := Config{AppID: "1", Key: "k", Secret: "s3cr3t"}
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("Redacted() leaks the secret: %s", b)
	}
}

func mkItem(seq uint64, channel, typ, socketID, data string) *item {
	return &item{seq: seq, channel: channel, socketID: socketID,
		env: wire.Envelope{ID: fmt.Sprintf("id%d", seq), Seq: seq, EventID: strings.TrimPrefix(channel, "event-"), Type: typ,
			At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: json.RawMessage(data)}}
}

func TestCoalesce(t *testing.T) {
	t.Parallel()
	vote, phase := wire.TypeVoteUpdated, wire.TypePhaseChanged
	tests := []struct {
		name  string
		items []*item
		types map[string]bool
		want  string // groups as seq lists
	}{
		{"nothing coalesces when no type is configured",
			[]*item{mkItem(1, "a", vote, "", "1"), mkItem(2, "a", vote, "", "1")}, nil, "[[1] [2]]"},
		{"a channel's changes of one type collapse into the newest at its place",
			[]*item{mkItem(1, "a", vote, "", "1"), mkItem(2, "a", phase, "", "1"), mkItem(3, "a", vote, "", "1")},
			map[string]bool{vote: true}, "[[2] [1 3]]"},
		{"channels never mix",
			[]*item{mkItem(1, "a", vote, "", "1"), mkItem(2, "b", vote, "", "1"), mkItem(3, "a", vote, "", "1")},
			map[string]bool{vote: true}, "[[2] [1 3]]"},
		{"types not configured pass alone",
			[]*item{mkItem(1, "a", phase, "", "1"), mkItem(2, "a", phase, "", "1")},
			map[string]bool{vote: true}, "[[1] [2]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got [][]uint64
			for _, g := range coalesce(tt.items, tt.types) {
				var seqs []uint64
				for _, it := range g {
					seqs = append(seqs, it.seq)
				}
				got = append(got, seqs)
			}
			if fmt.Sprint(got) != tt.want {
				t.Fatalf("coalesce()=%v, want %s", got, tt.want)
			}
		})
	}
}

func TestEncoderEvent(t *testing.T) {
	t.Parallel()
	big := `"` + strings.Repeat("ab", 1000) + `"`
	tests := []struct {
		name      string
		group     []*item
		wantShape shape
		wantSock  string
		wantCount int
	}{
		{"a small change is sent as is", []*item{mkItem(1, "event-a", "vote.updated", "1.2", `{"x":1}`)}, shapePlain, "1.2", 0},
		{"a large compressible change is gzipped", []*item{mkItem(1, "event-a", "vote.updated", "", big)}, shapeCompressed, "", 0},
		{"a coalesced group carries its count and the shared socket", []*item{
			mkItem(1, "event-a", "vote.updated", "1.2", "1"), mkItem(2, "event-a", "vote.updated", "1.2", "2")}, shapePlain, "1.2", 2},
		{"a group from several sockets excludes nobody", []*item{
			mkItem(1, "event-a", "vote.updated", "1.2", "1"), mkItem(2, "event-a", "vote.updated", "3.4", "2")}, shapePlain, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := newEncoder(1).event(tt.group)
			if ev.shape != tt.wantShape || ev.socketID != tt.wantSock {
				t.Fatalf("event() shape=%v socket=%q, want %v %q", ev.shape, ev.socketID, tt.wantShape, tt.wantSock)
			}
			var env wire.Envelope
			if err := json.Unmarshal([]byte(ev.data), &env); err != nil {
				t.Fatalf("event data is not an envelope: %v", err)
			}
			if env.Coalesced != tt.wantCount || env.Seq != tt.group[len(tt.group)-1].seq || len(ev.data) > 1024 {
				t.Fatalf("envelope %s, want coalesced %d, newest seq, at most 1024 bytes", ev.data, tt.wantCount)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	fail := errors.New("failed")
	tests := []struct {
		name string
		err  error
		ex   exchange
		want outcome
	}{
		{"a 200 is accepted", nil, exchange{called: true, status: 200}, accepted},
		{"a 429 is retried", fail, exchange{called: true, status: 429}, retryable},
		{"a 503 is retried", fail, exchange{called: true, status: 503}, retryable},
		{"a connection error is retried", fail, exchange{called: true, err: fail}, retryable},
		{"a 2xx whose body failed is retried", fail, exchange{called: true, status: 200}, retryable},
		{"a 400 is rejected", fail, exchange{called: true, status: 400}, rejected},
		{"a 413 is rejected", fail, exchange{called: true, status: 413}, rejected},
		{"a 401 is refused", fail, exchange{called: true, status: 401}, refused},
		{"a 403 is refused", fail, exchange{called: true, status: 403}, refused},
		{"a batch the library refused to send is rejected", fail, exchange{}, rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := classify(tt.err, tt.ex); got != tt.want {
				t.Fatalf("classify()=%v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"seconds are read", "3", 3 * time.Second},
		{"an HTTP date is read relative to now", now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{"a date in the past is zero", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage is zero", "soon", 0},
		{"negative seconds are zero", "-4", 0},
		{"empty is zero", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Fatalf("parseRetryAfter(%q)=%v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestGateBackoffStaysWithinItsStep(t *testing.T) {
	t.Parallel()
	for range 50 {
		g := newGate(100*time.Millisecond, time.Second, time.Minute)
		for n := 1; n <= 12; n++ {
			ceil := min(100*time.Millisecond<<(n-1), time.Second)
			if d, _ := g.Failure(0); d < 100*time.Millisecond || d > ceil {
				t.Fatalf("delay after %d failures=%v, want within [100ms, %v]", n, d, ceil)
			}
		}
	}
}

// TestGateLetsOneProbePerStep runs lanes against a failing Pusher under a
// fake clock: only one lane probes per backoff step, probes are spaced by at
// least the base delay and by Retry-After, and all proceed on recovery.
func TestGateLetsOneProbePerStep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate(100*time.Millisecond, time.Second, time.Minute)
		var mu sync.Mutex
		var probes []time.Time
		const failures = 6
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					if err := g.Wait(context.Background()); err != nil {
						t.Errorf("Wait()=%v", err)
						return
					}
					mu.Lock()
					probes = append(probes, time.Now())
					n := len(probes)
					mu.Unlock()
					time.Sleep(time.Millisecond) // the request, on the fake clock
					if n <= failures {
						retryAfter := time.Duration(0)
						if n == 3 {
							retryAfter = 5 * time.Second
						}
						g.Failure(retryAfter)
						continue
					}
					g.Success()
					return
				}
			})
		}
		wg.Wait()
		// The first request of each lane goes out before any failure is
		// known; from then on, one probe per step.
		// Six failures, the successful probe, then the other three lanes.
		if len(probes) != failures+4 {
			t.Fatalf("%d requests, want %d", len(probes), failures+4)
		}
		if gap := probes[4].Sub(probes[3]); gap < 5*time.Second {
			t.Errorf("first probe came %v after a Retry-After of 5s", gap)
		}
		for i := 5; i <= failures; i++ {
			if gap := probes[i].Sub(probes[i-1]); gap < 100*time.Millisecond {
				t.Errorf("probe %d came %v after the previous, want at least the base 100ms", i, gap)
			}
		}
		if !g.Healthy() {
			t.Fatal("gate not healthy after a success")
		}
	})
}

func TestGateWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newGate(time.Second, time.Minute, time.Minute)
		g.Failure(time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait()=%v, want the context's deadline", err)
		}
		if err := g.WaitHealthy(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitHealthy()=%v, want the context's deadline", err)
		}
	})
}

func TestGateRefusalIsReportedUntilSuccess(t *testing.T) {
	t.Parallel()
	g := newGate(time.Millisecond, time.Second, time.Minute)
	g.Refused(fmt.Errorf("%w: http status 401", ErrPusherRefused), 0)
	if err := g.Refusal(); !errors.Is(err, ErrPusherRefused) {
		t.Fatalf("Refusal()=%v, want ErrPusherRefused", err)
	}
	g.Success()
	if err := g.Refusal(); err != nil {
		t.Fatalf("Refusal()=%v after success, want nil", err)
	}
}

// TestLaneAwaitMoreIgnoresAStaleWakeUp: a wake-up left over from changes an
// earlier take already got must not pass for more changes, or a backlog's
// tail goes out as a partial batch.
func TestLaneAwaitMoreIgnoresAStaleWakeUp(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := &lane{wake: make(chan struct{}, 1)}
		l.push([]*item{{seq: 1}})
		if got, err := l.take(t.Context()); err != nil || len(got) != 1 {
			t.Fatalf("take()=%d items, %v; want 1", len(got), err)
		}
		start := time.Now()
		if l.awaitMore(t.Context(), 20*time.Millisecond, func() bool { return false }) {
			t.Fatal("awaitMore reported more changes after a stale wake-up with an empty queue")
		}
		if waited := time.Since(start); waited != 20*time.Millisecond {
			t.Fatalf("awaitMore returned after %v, want the whole 20ms window", waited)
		}
		go func() {
			time.Sleep(5 * time.Millisecond) // fake clock: a push 5ms into the window
			l.push([]*item{{seq: 2}})
		}()
		start = time.Now()
		if !l.awaitMore(t.Context(), 20*time.Millisecond, func() bool { return false }) {
			t.Fatal("awaitMore missed changes pushed within the window")
		}
		if waited := time.Since(start); waited != 5*time.Millisecond {
			t.Fatalf("awaitMore returned after %v, want 5ms, when the push came", waited)
		}
	})
}

// TestOneSetOfDefaults: LoadConfig without variables, New's filling of a
// zero Config and Defaults agree (issue 11: the relay kept its defaults
// twice).
func TestOneSetOfDefaults(t *testing.T) {
	t.Parallel()
	loaded, err := LoadConfig(envOf(nil))
	if err != nil {
		t.Fatalf("LoadConfig()=%v", err)
	}
	if !reflect.DeepEqual(loaded, Defaults()) {
		t.Fatalf("LoadConfig() without variables=%+v, want Defaults()=%+v", loaded, Defaults())
	}
	filled := Config{}.withDefaults()
	filled.Secure, filled.CoalesceTypes = loaded.Secure, loaded.CoalesceTypes // zero means off for New
	if !reflect.DeepEqual(filled, loaded) {
		t.Fatalf("Config{}.withDefaults()=%+v, want %+v", filled, loaded)
	}
}

func TestNewRefusesWhatValidateRefuses(t *testing.T) {
	t.Parallel()
	cfg := Config{AppID: "1", Key: "k", Secret: "s", BatchSize: 100, MaxAckPending: 10}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "LIVE_RELAY_MAX_ACK_PENDING") {
		t.Fatalf("Validate()=%v, want an error naming LIVE_RELAY_MAX_ACK_PENDING", err)
	}
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "LIVE_RELAY_MAX_ACK_PENDING") {
		t.Fatalf("New()=%v, want Validate's error", err)
	}
	if err := (Config{AppID: "1", Key: "k", Secret: "s"}).Validate(); err != nil {
		t.Fatalf("Validate() of credentials alone=%v, want nil (the rest defaults)", err)
	}
}
