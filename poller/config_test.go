package poller

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr []string // variables every error must name
	}{
		{"no variables give the defaults and open reads", nil, func(c Config) bool {
			return c.Open() && c.RingSize == 64 && c.MaxWait == 30*time.Second && c.Rate == 5 && c.Burst == 20 && c.Heartbeat == 15*time.Second && c.Park == ParkKeepAlive &&
				c.Linger == 250*time.Millisecond && c.HotLongPolls == 500
		}, nil},
		{"a hot threshold is read", map[string]string{"LIVE_POLLER_HOT_LONGPOLLS": "50"}, func(c Config) bool { return c.HotLongPolls == 50 }, nil},
		{"a hot threshold of off is off", map[string]string{"LIVE_POLLER_HOT_LONGPOLLS": "Off"}, func(c Config) bool { return c.HotLongPolls < 0 && c.withDefaults().HotLongPolls < 0 }, nil},
		{"a linger is read", map[string]string{"LIVE_POLLER_LINGER": "1s"}, func(c Config) bool { return c.Linger == time.Second }, nil},
		{"a linger of 0 is off", map[string]string{"LIVE_POLLER_LINGER": "0"}, func(c Config) bool { return c.Linger < 0 && c.withDefaults().Linger < 0 }, nil},
		{"a linger of off is off", map[string]string{"LIVE_POLLER_LINGER": "OFF"}, func(c Config) bool { return c.Linger < 0 }, nil},
		{"every variable is read", map[string]string{
			"LIVE_POLL_SECRET": "0123456789abcdef", "LIVE_POLLER_RING_SIZE": "8", "LIVE_POLLER_RING_AGE": "1m",
			"LIVE_POLLER_MAX_EVENTS": "10", "LIVE_POLLER_REPLAY_DEPTH": "100", "LIVE_POLLER_MAX_WAIT": "20s",
			"LIVE_POLLER_CORS_ORIGINS": "https://a.example, *", "LIVE_POLLER_RATE": "off", "LIVE_POLLER_BURST": "3",
			"LIVE_POLLER_HEARTBEAT": "5s", "LIVE_POLLER_MAX_BYTES": "1MiB", "LIVE_POLLER_PARK": "close",
			"LIVE_POLLER_SSE_WRITE_TIMEOUT": "3s", "LIVE_POLLER_SSE_MAX_PER_TOKEN": "2", "LIVE_POLLER_SSE_MAX_PER_ADDR": "5",
			"PUSHER_KEY": "k", "PUSHER_SECRET": "s", "PUSHER_CLUSTER": "eu", "PUSHER_HOST": "p.example:6001", "PUSHER_SECURE": "false",
			"LIVE_POLLER_PUSHER_WS_URL": "wss://ws.example", "LIVE_RELAY_CHANNEL_PREFIX": "ev-", "LIVE_RELAY_PRIVATE_CHANNELS": "true",
		}, func(c Config) bool {
			if c.SSEWriteTimeout != 3*time.Second || c.SSEMaxPerToken != 2 || c.SSEMaxPerAddr != 5 {
				return false
			}
			if c.Pusher != (Pusher{Key: "k", Secret: "s", Cluster: "eu", WSHost: "ws.example", WSPort: 443, ForceTLS: true, ChannelPrefix: "ev-", Private: true}) {
				return false
			}
			return !c.Open() && c.RingSize == 8 && c.RingAge == time.Minute && c.MaxEvents == 10 && c.ReplayDepth == 100 &&
				c.MaxWait == 20*time.Second && len(c.CORSOrigins) == 2 && c.Rate < 0 && c.Burst == 3 && c.Heartbeat == 5*time.Second && c.MaxBytes == 1<<20 &&
				c.Park == ParkClose
		}, nil},
		{"every problem is reported at once, each naming its variable", map[string]string{
			"LIVE_POLL_SECRET": "short", "LIVE_POLLER_RING_SIZE": "0", "LIVE_POLLER_RING_AGE": "soon",
			"LIVE_POLLER_RATE": "-1", "LIVE_POLLER_CORS_ORIGINS": "app.example", "LIVE_POLLER_PARK": "sometimes",
			"LIVE_POLLER_LINGER": "-1s", "LIVE_POLLER_HOT_LONGPOLLS": "0",
		}, nil, []string{"LIVE_POLL_SECRET", "LIVE_POLLER_RING_SIZE", "LIVE_POLLER_RING_AGE", "LIVE_POLLER_RATE", "LIVE_POLLER_CORS_ORIGINS", "LIVE_POLLER_PARK", "LIVE_POLLER_LINGER", "LIVE_POLLER_HOT_LONGPOLLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := LoadConfig(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("LoadConfig()=nil, want errors")
				}
				for _, v := range tc.wantErr {
					if !strings.Contains(err.Error(), v) {
						t.Errorf("LoadConfig() error %q does not name %s", err, v)
					}
				}
				if strings.Contains(err.Error(), "short") {
					t.Errorf("error %q echoes the secret", err)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("LoadConfig()=%+v, %v", c, err)
			}
		})
	}
}

func TestConfigStringRedactsTheSecret(t *testing.T) {
	t.Parallel()
	s := Config{Secret: []byte("super-secret-value!"), Pusher: Pusher{Key: "k", Secret: "pusher-secret-value"}}.String()
	if strings.Contains(s, "super-secret") || strings.Contains(s, "pusher-secret") || !strings.Contains(s, "redacted") {
		t.Fatalf("String()=%q, want the secret redacted", s)
	}
}

func TestParseQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want query
		code string
	}{
		{"an empty query has no since", "", query{}, ""},
		{"since and wait are read", "since=42&wait=10", query{since: 42, hasSince: true, wait: 10 * time.Second}, ""},
		{"a wait over the maximum is clamped", "wait=99", query{wait: 30 * time.Second}, ""},
		{"an empty since means none", "since=&_=123", query{}, ""},
		{"an escaped token is unescaped", "token=v1.e.1.a%2Db", query{token: "v1.e.1.a-b"}, ""},
		{"a signed since is refused", "since=%2B1", query{}, wire.CodeInvalidCursor},
		{"a bad escape is refused", "since=%zz", query{}, wire.CodeInvalidRequest},
		{"wait given twice is refused", "wait=1&wait=2", query{}, wire.CodeInvalidRequest},
		{"a client that can take the stream says transport=sse", "wait=5&transport=sse", query{wait: 5 * time.Second, sse: true}, ""},
		{"sse in a list of transports counts", "transport=webtransport,%20sse", query{sse: true}, ""},
		{"transports other than sse are ignored", "transport=webtransport", query{}, ""},
		{"transport given twice is refused", "transport=sse&transport=sse", query{}, wire.CodeInvalidRequest},
		{"an overlong transport list is refused", "transport=" + strings.Repeat("x,", 40), query{}, wire.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseQuery(tc.raw, 30*time.Second)
			if tc.code != "" {
				var ie *wire.InputError
				if !errors.As(err, &ie) || ie.Code != tc.code || !errors.Is(err, ErrInvalidQuery) {
					t.Fatalf("parseQuery(%q) err=%v, want code %s", tc.raw, err, tc.code)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseQuery(%q)=%+v, %v, want %+v", tc.raw, got, err, tc.want)
			}
		})
	}
}

func TestETagMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		inm  string
		want bool
	}{
		{"the exact tag matches", `"7"`, true},
		{"a weak tag matches", `W/"7"`, true},
		{"a list holding the tag matches", `"3", "7"`, true},
		{"a star matches", `*`, true},
		{"another seq does not match", `"70"`, false},
		{"an unquoted seq does not match", `7`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := etagMatch(tc.inm, 7); got != tc.want {
				t.Fatalf("etagMatch(%q, 7)=%v, want %v", tc.inm, got, tc.want)
			}
		})
	}
}

func TestRateLimiterRefillsAndStaysBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(1, 2, 64)
	var now int64 = 1e12
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.allow("c", now); ok != want {
			t.Fatalf("request %d allowed=%v, want %v", i, ok, want)
		}
	}
	if ok, _ := l.allow("c", now+int64(time.Second)); !ok {
		t.Fatal("not allowed after a second's refill")
	}
	for i := range 10_000 {
		l.allow(strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i%13)+http.StatusText(200)+string(rune(i)), now)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 64+limiterShards {
		t.Fatalf("tracked clients=%d, want at most about 64", total)
	}
}

func TestValidateRefusesWhatNewCannotWorkWith(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"the zero Config is valid: zero means the default", Config{}, ""},
		{"a secret of polltoken.MinSecretLen bytes is valid", Config{Secret: []byte("0123456789abcdef")}, ""},
		{"a shorter secret is refused", Config{Secret: []byte("0123456789abcde")}, "LIVE_POLL_SECRET"},
		{"a negative size is refused", Config{RingSize: -1}, "RingSize"},
		{"an origin without a scheme is refused", Config{CORSOrigins: []string{"app.example"}}, "CORSOrigins"},
		{"an unknown park mode is refused", Config{Park: "sometimes"}, "LIVE_POLLER_PARK"},
		{"private channels need the Pusher secret", Config{Pusher: Pusher{Key: "k", Private: true}}, "PUSHER_SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate()=%v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate()=%v, want an error naming %s", err, tc.wantErr)
			}
			if _, err := New(tc.cfg, Deps{JS: noJS{}}); err == nil {
				t.Fatal("New() accepted a Config that Validate refuses")
			}
		})
	}
}
