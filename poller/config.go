package poller

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/env"
	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/wire"
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
}

// Pusher is the browser's side of the Pusher settings. The relay reads the
// same variables for the server side; only the WebSocket address differs,
// because browsers may reach a self-hosted server by another name than the
// relay's REST calls do.
type Pusher struct {
	// Key is the app key (PUSHER_KEY). Zero means Pusher is off.
	Key string
	// Secret signs private-channel subscriptions (PUSHER_SECRET). It is
	// never logged nor served. Zero means the auth route answers 404.
	Secret string
	// Cluster is Pusher's cluster, such as eu (PUSHER_CLUSTER).
	Cluster string
	// WSHost, WSPort, WSPath and ForceTLS are the browser-facing WebSocket
	// address of a self-hosted Pusher-compatible server
	// (LIVE_POLLER_PUSHER_WS_URL, else PUSHER_HOST and PUSHER_SECURE).
	// Zero WSHost means Pusher's own, by Cluster.
	WSHost   string
	WSPort   int
	WSPath   string
	ForceTLS bool
	// ChannelPrefix goes before the eventId (LIVE_RELAY_CHANNEL_PREFIX).
	// Zero means "event-".
	ChannelPrefix string
	// Private means the relay sends to private-<prefix><eventId>
	// (LIVE_RELAY_PRIVATE_CHANNELS), which browsers subscribe to through
	// POST /v1/pusher/auth.
	Private bool
}

// Enabled reports whether Pusher is configured.
func (p Pusher) Enabled() bool { return p.Key != "" }

func (p Pusher) prefix() string {
	if p.ChannelPrefix == "" {
		return "event-"
	}
	return p.ChannelPrefix
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
	return fmt.Sprintf("pusher={%s} secret=%s ring_size=%d ring_age=%s max_events=%d max_bytes=%d replay_depth=%d max_wait=%s behind_wait=%s cors=%v rate=%g burst=%d heartbeat=%s sse_write_timeout=%s sse_max_per_token=%d sse_max_per_addr=%d park=%s linger=%s",
		pusher, secret, c.RingSize, c.RingAge, c.MaxEvents, c.MaxBytes, c.ReplayDepth, c.MaxWait, c.BehindWait, c.CORSOrigins, c.Rate, c.Burst, c.Heartbeat, c.SSEWriteTimeout, c.SSEMaxPerToken, c.SSEMaxPerAddr, c.Park, c.lingerString())
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

		SSEWriteTimeout: 10 * time.Second,
		SSEMaxPerToken:  16,
		SSEMaxPerAddr:   64,
	}
}

// LoadConfig reads the poller's variables; every problem is reported at once.
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
//	LIVE_POLLER_SSE_WRITE_TIMEOUT  bound of one SSE write, default 10s
//	LIVE_POLLER_SSE_MAX_PER_TOKEN  open SSE streams per poll token, default 16
//	LIVE_POLLER_SSE_MAX_PER_ADDR   open SSE streams per remote address, default 64
//	PUSHER_KEY, PUSHER_SECRET, PUSHER_CLUSTER  Pusher for browsers (/v1/config, /v1/pusher/auth)
//	PUSHER_HOST, PUSHER_SECURE                 a self-hosted server, as the relay reaches it
//	LIVE_POLLER_PUSHER_WS_URL                  ws(s)://host[:port][/path] browsers connect to, default from PUSHER_HOST
//	LIVE_RELAY_CHANNEL_PREFIX, LIVE_RELAY_PRIVATE_CHANNELS  the channel names the relay sends to
func LoadConfig(getenv func(string) string) (Config, error) {
	c := defaults()
	var errs []error
	if v := getenv("LIVE_POLL_SECRET"); v != "" {
		if len(v) < polltoken.MinSecretLen {
			// Never echo the secret itself.
			errs = append(errs, fmt.Errorf("LIVE_POLL_SECRET: want at least %d bytes, got %d", polltoken.MinSecretLen, len(v)))
		}
		c.Secret = []byte(v)
	}
	posInt := func(name string, min, max int, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < min || n > max {
				errs = append(errs, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, min, max))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, min, max time.Duration, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < min || d > max {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration from %s to %s", name, v, min, max))
				return
			}
			*dst = d
		}
	}
	posInt("LIVE_POLLER_RING_SIZE", 1, 1<<16, &c.RingSize)
	dur("LIVE_POLLER_RING_AGE", time.Second, 7*24*time.Hour, &c.RingAge)
	posInt("LIVE_POLLER_MAX_EVENTS", 1, 1<<26, &c.MaxEvents)
	if v := getenv("LIVE_POLLER_MAX_BYTES"); v != "" {
		n, err := env.ParseBytes(v)
		if err != nil || n < 1<<10 {
			errs = append(errs, fmt.Errorf("LIVE_POLLER_MAX_BYTES=%q: want a size of at least 1KiB such as 256MiB", v))
		} else {
			c.MaxBytes = n
		}
	}
	if v := getenv("LIVE_POLLER_REPLAY_DEPTH"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			errs = append(errs, fmt.Errorf("LIVE_POLLER_REPLAY_DEPTH=%q: want a positive integer", v))
		} else {
			c.ReplayDepth = n
		}
	}
	dur("LIVE_POLLER_MAX_WAIT", time.Second, 5*time.Minute, &c.MaxWait)
	dur("LIVE_POLLER_BEHIND_WAIT", time.Millisecond, time.Minute, &c.BehindWait)
	if v := getenv("LIVE_POLLER_CORS_ORIGINS"); v != "" {
		c.CORSOrigins = nil
		for o := range strings.SplitSeq(v, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			if o != "*" && !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
				errs = append(errs, fmt.Errorf("LIVE_POLLER_CORS_ORIGINS: origin %q: want \"*\" or an http(s)://host[:port] origin", o))
				continue
			}
			c.CORSOrigins = append(c.CORSOrigins, strings.TrimSuffix(o, "/"))
		}
	}
	if v := getenv("LIVE_POLLER_RATE"); v != "" {
		if strings.EqualFold(v, "off") {
			c.Rate = -1
		} else if f, err := strconv.ParseFloat(v, 64); err != nil || !(f > 0) || f > 1e9 {
			errs = append(errs, fmt.Errorf("LIVE_POLLER_RATE=%q: want a positive number of requests per second, or off", v))
		} else {
			c.Rate = f
		}
	}
	posInt("LIVE_POLLER_BURST", 1, 1<<20, &c.Burst)
	posInt("LIVE_POLLER_MAX_CLIENTS", 1, 1<<24, &c.MaxClients)
	dur("LIVE_POLLER_HEARTBEAT", time.Second, 10*time.Minute, &c.Heartbeat)
	dur("LIVE_POLLER_POLL_INTERVAL", 100*time.Millisecond, time.Minute, &c.PollInterval)
	dur("LIVE_POLLER_SSE_WRITE_TIMEOUT", 100*time.Millisecond, 10*time.Minute, &c.SSEWriteTimeout)
	posInt("LIVE_POLLER_SSE_MAX_PER_TOKEN", 1, 1<<20, &c.SSEMaxPerToken)
	posInt("LIVE_POLLER_SSE_MAX_PER_ADDR", 1, 1<<20, &c.SSEMaxPerAddr)
	pc, err := loadPusher(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	c.Pusher = pc
	switch v := strings.ToLower(getenv("LIVE_POLLER_PARK")); v {
	case "":
	case ParkKeepAlive, ParkClose, ParkOff:
		c.Park = v
	default:
		errs = append(errs, fmt.Errorf("LIVE_POLLER_PARK=%q: want keepalive, close or off", v))
	}
	if v := getenv("LIVE_POLLER_LINGER"); v != "" {
		if d, err := time.ParseDuration(v); strings.EqualFold(v, "off") || (err == nil && d == 0) {
			c.Linger = -1
		} else if err != nil || d < 0 || d > 5*time.Second {
			errs = append(errs, fmt.Errorf("LIVE_POLLER_LINGER=%q: want a duration from 0 (off) to 5s", v))
		} else {
			c.Linger = d
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// loadPusher reads the browser's side of the Pusher settings.
func loadPusher(getenv func(string) string) (Pusher, error) {
	var errs []error
	p := Pusher{
		Key:           strings.TrimSpace(getenv("PUSHER_KEY")),
		Secret:        strings.TrimSpace(getenv("PUSHER_SECRET")),
		Cluster:       strings.TrimSpace(getenv("PUSHER_CLUSTER")),
		ChannelPrefix: getenv("LIVE_RELAY_CHANNEL_PREFIX"),
	}
	boolVar := func(name string, def bool) bool {
		v := getenv(name)
		if v == "" {
			return def
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", name, v))
			return def
		}
		return b
	}
	p.Private = boolVar("LIVE_RELAY_PRIVATE_CHANNELS", false)
	secure := boolVar("PUSHER_SECURE", true)
	if err := wire.ValidateChannelPrefix(p.prefix(), p.Private); err != nil {
		errs = append(errs, fmt.Errorf("LIVE_RELAY_CHANNEL_PREFIX=%q: %w", p.ChannelPrefix, err))
	}
	if v := strings.TrimSpace(getenv("LIVE_POLLER_PUSHER_WS_URL")); v != "" {
		host, port, path, tls, err := parseWSURL(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("LIVE_POLLER_PUSHER_WS_URL=%q: %w", v, err))
		}
		p.WSHost, p.WSPort, p.WSPath, p.ForceTLS = host, port, path, tls
	} else if v := strings.TrimSpace(getenv("PUSHER_HOST")); v != "" {
		// A self-hosted server (soketi, pushercompat) serves the WebSocket
		// and REST on one address; browsers use it unless told otherwise.
		scheme := "ws://"
		if secure {
			scheme = "wss://"
		}
		host, port, path, tls, err := parseWSURL(scheme + v)
		if err != nil {
			errs = append(errs, fmt.Errorf("PUSHER_HOST=%q: want host[:port]: %w", v, err))
		}
		p.WSHost, p.WSPort, p.WSPath, p.ForceTLS = host, port, path, tls
	}
	if p.Key == "" && p.Private {
		// Nothing to do: with Pusher off, browsers poll, and the poller's
		// reads are guarded by poll tokens, not channels.
		p.Private = false
	}
	if p.Private && p.Secret == "" {
		errs = append(errs, errors.New("PUSHER_SECRET is empty while LIVE_RELAY_PRIVATE_CHANNELS=true: the poller signs browsers' private-channel subscriptions with it"))
	}
	return p, errors.Join(errs...)
}

// parseWSURL reads ws(s)://host[:port][/path] as pusher-js takes it: wsHost,
// wsPort (the scheme's default when absent), wsPath and forceTLS.
func parseWSURL(v string) (host string, port int, path string, tls bool, err error) {
	u, err := url.Parse(v)
	if err != nil {
		return "", 0, "", false, errors.New("want ws://host[:port][/path] or wss://…")
	}
	switch u.Scheme {
	case "ws":
		port = 80
	case "wss":
		port, tls = 443, true
	default:
		return "", 0, "", false, errors.New("want the scheme ws or wss")
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", 0, "", false, errors.New("want ws://host[:port][/path] or wss://… with no user, query or fragment")
	}
	if ps := u.Port(); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, "", false, errors.New("want a port from 1 to 65535")
		}
		port = n
	}
	return u.Hostname(), port, strings.TrimSuffix(u.Path, "/"), tls, nil
}
