package poller

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/polltoken"
)

// Config is the poller's configuration. Every zero value means the default
// named on the field, so a Config{} works.
type Config struct {
	// Secret verifies poll tokens (LIVE_POLL_SECRET). Zero (empty) means
	// reads are open to anyone: fine for dev, never for production.
	Secret []byte
	// RingSize is how many recent changes are held per eventId. Zero means 64.
	RingSize int
	// RingAge drops held changes older than this (by stream time). Zero
	// means 10m.
	RingAge time.Duration
	// MaxEvents caps the eventIds held; the least recently changed are
	// evicted beyond it. Zero means 100,000.
	MaxEvents int
	// MaxBytes caps the encoded envelope bytes held; the least recently
	// changed eventIds are evicted beyond it. Zero means 256 MiB.
	MaxBytes int64
	// ReplayDepth is how many of the newest stored changes are replayed at
	// start. Zero means 1,000,000.
	ReplayDepth uint64
	// MaxWait caps a long-poll's wait=. Zero means 30s.
	MaxWait time.Duration
	// BehindWait is how long a request whose cursor is ahead of this
	// replica waits for the replica to catch up. Zero means 2s.
	BehindWait time.Duration
	// CORSOrigins are the browser origins allowed to read; "*" allows any.
	// Zero (empty) means no CORS headers at all (same-origin only).
	CORSOrigins []string
	// Rate is each client's sustained requests per second. Zero means 5;
	// negative means unlimited.
	Rate float64
	// Burst is each client's burst. Zero means 20.
	Burst int
	// MaxClients caps the clients tracked for rate limiting and the active
	// clients gauge. Zero means 100,000.
	MaxClients int
	// Heartbeat is the SSE comment-line interval. Zero means 15s.
	Heartbeat time.Duration
	// SSEWriteTimeout bounds every write to an SSE stream (each write gets
	// at least nine tenths of it): a client that does not take the bytes
	// within it is disconnected and resumes with Last-Event-ID. Zero means
	// 10s.
	SSEWriteTimeout time.Duration
	// SSEMaxPerToken caps the open SSE streams of one poll token (when
	// LIVE_POLL_SECRET is set). Zero means 16.
	SSEMaxPerToken int
	// SSEMaxPerAddr caps the open SSE streams of one remote address. Zero
	// means 64.
	SSEMaxPerAddr int
	// PollInterval is the browsers' polling interval; a client counts as
	// active when seen within two of them. Zero means 2s.
	PollInterval time.Duration
	// Pusher is what browsers need to reach Pusher (GET /v1/config) and
	// what signs their private-channel subscriptions (POST
	// /v1/pusher/auth). Zero (no Key) means Pusher is off: /v1/config says
	// "pusher": null and the auth route answers 404.
	Pusher Pusher
	// Park is how an HTTP/1.1 long-poll waits: ParkKeepAlive hijacks the
	// connection, parks it without goroutines and, after the answer, hands
	// it back to a server with the outer server's handler and timeouts;
	// ParkClose parks too but answers with Connection: close; ParkOff keeps
	// the plain net/http wait (~21 KiB per waiting client instead of ~2).
	// Zero (empty) means ParkKeepAlive.
	Park string
	// Linger is how long a long-poll woken by a change waits before it
	// answers, so the changes that follow within it ride in the same
	// answer. On a hot eventId every answer costs the client a re-poll, so
	// without it each change costs one answer and one request per waiting
	// browser; with it each browser gets at most about one answer per
	// Linger. It delays the first answer after a quiet spell by Linger.
	// Zero means 250ms; negative means off (answer at once).
	Linger time.Duration
	// HotLongPolls is how many clients waiting on one eventId (long-polls,
	// and SSE streams, so an eventId whose clients moved stays hot) make
	// it hot: for Config.hotHold after that was last seen, every long-poll
	// answer for it carries "Live-Transport: sse", which asks clients that
	// understand it to move to the SSE stream from the same cursor. On a
	// hot eventId every change costs each long-poller an answer and a new
	// request (net/http serving those re-polls was ~84% of the CPU of
	// 5,000 long-polls on one eventId); a stream costs one write. Old
	// clients ignore the header and keep long-polling. Zero means 500;
	// negative means off.
	HotLongPolls int
}

// Open reports whether reads need no token (no LIVE_POLL_SECRET).
func (c Config) Open() bool { return len(c.Secret) == 0 }

// String renders the configuration for logs with the secret redacted.
func (c Config) String() string {
	c = c.withDefaults()
	secret := "none (open)"
	if !c.Open() {
		secret = "[redacted]"
	}
	pusher := "off"
	if c.Pusher.Enabled() {
		// The key is public (browsers get it); the secret never appears.
		pusher = fmt.Sprintf("key=%s cluster=%q ws_host=%q ws_port=%d ws_tls=%t channel_prefix=%q private=%t",
			c.Pusher.Key, c.Pusher.Cluster, c.Pusher.WSHost, c.Pusher.WSPort, c.Pusher.ForceTLS, c.Pusher.prefix(), c.Pusher.Private)
	}
	return fmt.Sprintf("pusher={%s} secret=%s ring_size=%d ring_age=%s max_events=%d max_bytes=%d replay_depth=%d max_wait=%s behind_wait=%s cors=%v rate=%g burst=%d heartbeat=%s sse_write_timeout=%s sse_max_per_token=%d sse_max_per_addr=%d park=%s linger=%s hot_longpolls=%s",
		pusher, secret, c.RingSize, c.RingAge, c.MaxEvents, c.MaxBytes, c.ReplayDepth, c.MaxWait, c.BehindWait, c.CORSOrigins, c.Rate, c.Burst, c.Heartbeat, c.SSEWriteTimeout, c.SSEMaxPerToken, c.SSEMaxPerAddr, c.Park, c.lingerString(), c.hotString())
}

func (c Config) hotString() string {
	if c.HotLongPolls < 0 {
		return "off"
	}
	return strconv.Itoa(c.HotLongPolls)
}

func (c Config) lingerString() string {
	if c.Linger < 0 {
		return "off"
	}
	return c.Linger.String()
}

func (c Config) withDefaults() Config {
	d := defaults()
	if c.RingSize == 0 {
		c.RingSize = d.RingSize
	}
	if c.RingAge == 0 {
		c.RingAge = d.RingAge
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = d.MaxEvents
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.ReplayDepth == 0 {
		c.ReplayDepth = d.ReplayDepth
	}
	if c.MaxWait == 0 {
		c.MaxWait = d.MaxWait
	}
	if c.BehindWait == 0 {
		c.BehindWait = d.BehindWait
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Burst == 0 {
		c.Burst = d.Burst
	}
	if c.MaxClients == 0 {
		c.MaxClients = d.MaxClients
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.PollInterval == 0 {
		c.PollInterval = d.PollInterval
	}
	if c.SSEWriteTimeout == 0 {
		c.SSEWriteTimeout = d.SSEWriteTimeout
	}
	if c.SSEMaxPerToken == 0 {
		c.SSEMaxPerToken = d.SSEMaxPerToken
	}
	if c.SSEMaxPerAddr == 0 {
		c.SSEMaxPerAddr = d.SSEMaxPerAddr
	}
	if c.Park == "" {
		c.Park = d.Park
	}
	if c.Linger == 0 {
		c.Linger = d.Linger
	}
	if c.HotLongPolls == 0 {
		c.HotLongPolls = d.HotLongPolls
	}
	return c
}

func defaults() Config {
	return Config{
		RingSize:     64,
		RingAge:      10 * time.Minute,
		MaxEvents:    100_000,
		MaxBytes:     256 << 20,
		ReplayDepth:  1_000_000,
		MaxWait:      30 * time.Second,
		BehindWait:   2 * time.Second,
		Rate:         5,
		Burst:        20,
		MaxClients:   100_000,
		Heartbeat:    15 * time.Second,
		PollInterval: 2 * time.Second,
		Park:         ParkKeepAlive,
		Linger:       250 * time.Millisecond,
		HotLongPolls: 500,

		SSEWriteTimeout: 10 * time.Second,
		SSEMaxPerToken:  16,
		SSEMaxPerAddr:   64,
	}
}

// LoadConfig reads the poller's variables, starting from the defaults;
// every problem is reported at once.
//
//	LIVE_POLL_SECRET          token secret (>= 16 bytes); empty means open reads
//	LIVE_POLLER_RING_SIZE     changes held per eventId, default 64
//	LIVE_POLLER_RING_AGE      max age of a held change, default 10m
//	LIVE_POLLER_MAX_EVENTS    eventIds held, default 100000
//	LIVE_POLLER_MAX_BYTES     envelope bytes held (KiB/MiB/GiB), default 256MiB
//	LIVE_POLLER_REPLAY_DEPTH  changes replayed at start, default 1000000
//	LIVE_POLLER_MAX_WAIT      longest long-poll, default 30s
//	LIVE_POLLER_BEHIND_WAIT   wait for a cursor ahead of this replica, default 2s
//	LIVE_POLLER_CORS_ORIGINS  comma list of origins, "*" for any
//	LIVE_POLLER_RATE          requests/s per client, default 5; "off" disables
//	LIVE_POLLER_BURST         burst per client, default 20
//	LIVE_POLLER_MAX_CLIENTS   clients tracked, default 100000
//	LIVE_POLLER_HEARTBEAT     SSE heartbeat, default 15s
//	LIVE_POLLER_POLL_INTERVAL browsers' poll interval, default 2s
//	LIVE_POLLER_PARK          keepalive (default), close or off: see Config.Park
//	LIVE_POLLER_LINGER        hold of a woken long-poll's answer, default 250ms; 0 or "off" disables
//	LIVE_POLLER_HOT_LONGPOLLS clients waiting on one eventId that move its long-polls to SSE, default 500; "off" disables
//	LIVE_POLLER_SSE_WRITE_TIMEOUT  bound of one SSE write, default 10s
//	LIVE_POLLER_SSE_MAX_PER_TOKEN  open SSE streams per poll token, default 16
//	LIVE_POLLER_SSE_MAX_PER_ADDR   open SSE streams per remote address, default 64
//	PUSHER_KEY, PUSHER_SECRET, PUSHER_CLUSTER  Pusher for browsers (/v1/config, /v1/pusher/auth)
//	PUSHER_HOST, PUSHER_SECURE                 a self-hosted server, as the relay reaches it
//	LIVE_POLLER_PUSHER_WS_URL                  ws(s)://host[:port][/path] browsers connect to, default from PUSHER_HOST
//	LIVE_RELAY_CHANNEL_PREFIX, LIVE_RELAY_PRIVATE_CHANNELS  the channel names the relay sends to
func LoadConfig(getenv func(string) string) (Config, error) {
	c := defaults()
	r := env.NewReader(getenv)
	r.Secret("LIVE_POLL_SECRET", &c.Secret, polltoken.MinSecretLen)
	r.Int("LIVE_POLLER_RING_SIZE", &c.RingSize, 1, 1<<16)
	r.Duration("LIVE_POLLER_RING_AGE", &c.RingAge, time.Second, 7*24*time.Hour)
	r.Int("LIVE_POLLER_MAX_EVENTS", &c.MaxEvents, 1, 1<<26)
	r.Bytes("LIVE_POLLER_MAX_BYTES", &c.MaxBytes, 1<<10, 1<<40)
	r.Uint64("LIVE_POLLER_REPLAY_DEPTH", &c.ReplayDepth, 1, math.MaxUint64)
	r.Duration("LIVE_POLLER_MAX_WAIT", &c.MaxWait, time.Second, 5*time.Minute)
	r.Duration("LIVE_POLLER_BEHIND_WAIT", &c.BehindWait, time.Millisecond, time.Minute)
	if v, ok := r.Lookup("LIVE_POLLER_CORS_ORIGINS"); ok {
		c.CORSOrigins = nil
		for o := range strings.SplitSeq(v, ",") {
			o = strings.TrimSuffix(strings.TrimSpace(o), "/")
			if o == "" {
				continue
			}
			if err := validateOrigin(o); err != nil {
				r.Add(fmt.Errorf("LIVE_POLLER_CORS_ORIGINS: %w", err))
				continue
			}
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	if v, ok := r.Lookup("LIVE_POLLER_RATE"); ok {
		if f, err := strconv.ParseFloat(v, 64); strings.EqualFold(v, "off") {
			c.Rate = -1
		} else if err != nil || !(f > 0) || f > 1e9 {
			r.Fail("LIVE_POLLER_RATE", v, "a positive number of requests per second up to 1e9, or off")
		} else {
			c.Rate = f
		}
	}
	r.Int("LIVE_POLLER_BURST", &c.Burst, 1, 1<<20)
	r.Int("LIVE_POLLER_MAX_CLIENTS", &c.MaxClients, 1, 1<<24)
	r.Duration("LIVE_POLLER_HEARTBEAT", &c.Heartbeat, time.Second, 10*time.Minute)
	r.Duration("LIVE_POLLER_POLL_INTERVAL", &c.PollInterval, 100*time.Millisecond, time.Minute)
	r.Duration("LIVE_POLLER_SSE_WRITE_TIMEOUT", &c.SSEWriteTimeout, 100*time.Millisecond, 10*time.Minute)
	r.Int("LIVE_POLLER_SSE_MAX_PER_TOKEN", &c.SSEMaxPerToken, 1, 1<<20)
	r.Int("LIVE_POLLER_SSE_MAX_PER_ADDR", &c.SSEMaxPerAddr, 1, 1<<20)
	if v, ok := r.Lookup("LIVE_POLLER_PARK"); ok {
		switch v = strings.ToLower(v); v {
		case ParkKeepAlive, ParkClose, ParkOff:
			c.Park = v
		default:
			r.Fail("LIVE_POLLER_PARK", v, "keepalive, close or off")
		}
	}
	if v, ok := r.Lookup("LIVE_POLLER_LINGER"); ok {
		if d, err := time.ParseDuration(v); strings.EqualFold(v, "off") || (err == nil && d == 0) {
			c.Linger = -1
		} else if err != nil || d < 0 || d > 5*time.Second {
			r.Fail("LIVE_POLLER_LINGER", v, "a duration from 0 (off) to 5s")
		} else {
			c.Linger = d
		}
	}
	if v, ok := r.Lookup("LIVE_POLLER_HOT_LONGPOLLS"); ok {
		if n, err := strconv.Atoi(v); strings.EqualFold(v, "off") {
			c.HotLongPolls = -1
		} else if err != nil || n < 1 || n > 1<<24 {
			r.Fail("LIVE_POLLER_HOT_LONGPOLLS", v, "an integer from 1 to 16777216, or off")
		} else {
			c.HotLongPolls = n
		}
	}
	loadPusher(r, &c.Pusher)
	// The reader kept every bad value out, so Validate adds only the rules
	// across settings (the Pusher channel names), reported with the rest.
	r.Add(c.Validate())
	if err := r.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every setting New cannot work with; zero values mean
// their defaults and are valid. LoadConfig's ranges are narrower: these are
// the bounds of what works at all.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if !c.Open() && len(c.Secret) < polltoken.MinSecretLen {
		// Never echo the secret itself.
		errs = append(errs, fmt.Errorf("secret (LIVE_POLL_SECRET): want at least %d bytes when set, got %d", polltoken.MinSecretLen, len(c.Secret)))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"RingSize", int64(c.RingSize)}, {"RingAge", int64(c.RingAge)}, {"MaxEvents", int64(c.MaxEvents)},
		{"MaxBytes", c.MaxBytes}, {"MaxWait", int64(c.MaxWait)}, {"BehindWait", int64(c.BehindWait)},
		{"Burst", int64(c.Burst)}, {"MaxClients", int64(c.MaxClients)}, {"Heartbeat", int64(c.Heartbeat)},
		{"SSEWriteTimeout", int64(c.SSEWriteTimeout)}, {"SSEMaxPerToken", int64(c.SSEMaxPerToken)},
		{"SSEMaxPerAddr", int64(c.SSEMaxPerAddr)}, {"PollInterval", int64(c.PollInterval)},
	} {
		if f.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive value or zero (the default), got %d", f.name, f.v))
		}
	}
	for _, o := range c.CORSOrigins {
		if err := validateOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("CORSOrigins: %w", err))
		}
	}
	switch c.Park {
	case ParkKeepAlive, ParkClose, ParkOff:
	default:
		errs = append(errs, fmt.Errorf("park mode (LIVE_POLLER_PARK) %q: want keepalive, close or off", c.Park))
	}
	errs = append(errs, c.Pusher.validate())
	return errors.Join(errs...)
}

func validateOrigin(o string) error {
	if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
		return fmt.Errorf("origin %q: want \"*\" or an http(s)://host[:port] origin", o)
	}
	return nil
}
