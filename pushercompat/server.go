package pushercompat

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"
	"github.com/sirupsen/logrus"
)

// Options configure a Server. Every zero value means Pusher's own default.
type Options struct {
	// AppID, Key and Secret are the app's credentials. Zero means "1",
	// "key" and "secret".
	AppID, Key, Secret string
	// MaxPayloadBytes is the largest data string of one event, in bytes
	// after JSON unescaping. Zero means 10240 (Pusher's 10 KB); set it
	// higher to act as a dedicated cluster with a raised limit.
	MaxPayloadBytes int
	// MaxBatch is the most events in one batch_events request. Zero means 10.
	MaxBatch int
	// MaxChannels is the most channels in one events request. Zero means 100.
	MaxChannels int
	// Now is the server's clock, used for the auth_timestamp window, for
	// arrival times and for FailFor windows. Zero means time.Now. The
	// WebSocket side's timers (activity, pong, writes) use real time.
	Now func() time.Time
	// RecordLimit is how many accepted events and exchanges are kept for
	// Events, EventsOn and Exchanges; the oldest go first. Zero means all,
	// which suits a test; a long-running server (dev) sets a bound.
	RecordLimit int

	// ActivityTimeout is sent to clients as activity_timeout (whole seconds,
	// rounded up, at least 1): the client pings after that much silence.
	// The server pings a socket it has not heard from for that long. Zero
	// means 120 s, Pusher's.
	ActivityTimeout time.Duration
	// PongTimeout is how long the server waits for any message after its
	// ping before it closes the socket with 4201. Zero means 30 s.
	PongTimeout time.Duration
	// WriteTimeout bounds one write to a socket; a socket that cannot take
	// a frame in that time is closed. The sweeper enforces it (writes carry
	// no timer), so it fires up to a quarter of itself, at most 1 s, late.
	// Zero means 10 s.
	WriteTimeout time.Duration
	// SendQueue is the most frames waiting for one socket; a socket that
	// falls that far behind is closed with 4100 (pusher-js reconnects after
	// a second) so it never holds up the others. Zero means 256.
	SendQueue int
	// OriginPatterns, when set, are the browser origins allowed to open a
	// WebSocket (host patterns as in coder/websocket AcceptOptions). Empty
	// means any origin, as Pusher itself allows: public channels are
	// public and private ones are protected by their signature.
	OriginPatterns []string
	// Log receives connection-level messages. Zero means they are dropped.
	Log logrus.FieldLogger
	// Registerer receives the liveupdates_pushercompat_* metrics. Zero
	// means a private registry nobody scrapes. Registering twice on one
	// registry panics.
	Registerer prometheus.Registerer
}

// Defaults of Options, Pusher's multi-tenant limits.
const (
	DefaultMaxPayloadBytes = 10240
	DefaultMaxBatch        = 10
	DefaultMaxChannels     = 100

	DefaultActivityTimeout = 120 * time.Second
	DefaultPongTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultSendQueue       = 256
)

// Event is one event the server accepted on one channel. A trigger on three
// channels records three Events.
type Event struct {
	Channel, Name, Data string
	// SocketID is the excluded publisher's socket id; empty when none.
	SocketID string
	// At is when the request carrying the event arrived (Options.Now).
	At time.Time
	// Request is the 1-based index of the HTTP request that carried it.
	Request int
}

// Exchange is one HTTP request as the server saw and answered it.
type Exchange struct {
	// Request is the 1-based index of the request, in arrival order.
	Request      int
	Method, Path string
	// At is when the request arrived (Options.Now).
	At time.Time
	// Status is the status answered; zero when the connection was dropped
	// or the client went away before an answer.
	Status int
	// Message is the plain-text body of a refusal, or why there was no
	// answer; empty on 200.
	Message string
	// Events is how many events the request recorded (zero unless 200).
	Events int
}

// Server is a Pusher Channels HTTP API for tests: the publishing endpoints
// with real signature checks and Pusher's limits, a record of what it
// accepted, and fault injection. All methods are safe for concurrent use.
type Server struct {
	creds credentials
	appID string
	lim   limits
	now   func() time.Time

	store  *store
	faults *faults
	hub    *hub
	met    *metrics
	log    logrus.FieldLogger

	recordLimit int

	mu        sync.Mutex
	requests  int
	accepted  int
	exchanges []Exchange

	srv       *httptest.Server // nil for New
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a server that is not listening; serve Handler() yourself, or
// use Start. It refuses negative limits and metrics that do not register.
func New(opts Options) (*Server, error) {
	o := Options{
		AppID: "1", Key: "key", Secret: "secret",
		MaxPayloadBytes: DefaultMaxPayloadBytes, MaxBatch: DefaultMaxBatch, MaxChannels: DefaultMaxChannels,
		Now: time.Now,
	}
	var bad []string
	for name, v := range map[string]int{
		"MaxPayloadBytes": opts.MaxPayloadBytes, "MaxBatch": opts.MaxBatch, "MaxChannels": opts.MaxChannels,
		"RecordLimit": opts.RecordLimit, "SendQueue": opts.SendQueue,
		"ActivityTimeout": int(opts.ActivityTimeout), "PongTimeout": int(opts.PongTimeout), "WriteTimeout": int(opts.WriteTimeout),
	} {
		if v < 0 {
			bad = append(bad, fmt.Sprintf("%s=%d", name, v))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, errors.New("pushercompat: negative Options: " + strings.Join(bad, ", "))
	}
	if opts.AppID != "" {
		o.AppID = opts.AppID
	}
	if opts.Key != "" {
		o.Key = opts.Key
	}
	if opts.Secret != "" {
		o.Secret = opts.Secret
	}
	if opts.MaxPayloadBytes > 0 {
		o.MaxPayloadBytes = opts.MaxPayloadBytes
	}
	if opts.MaxBatch > 0 {
		o.MaxBatch = opts.MaxBatch
	}
	if opts.MaxChannels > 0 {
		o.MaxChannels = opts.MaxChannels
	}
	if opts.Now != nil {
		o.Now = opts.Now
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("component", "pushercompat")
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	met, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("pushercompat: %w", err)
	}
	s := &Server{
		creds:       credentials{key: o.Key, secret: o.Secret},
		appID:       o.AppID,
		lim:         limits{maxPayload: o.MaxPayloadBytes, maxBatch: o.MaxBatch, maxChannels: o.MaxChannels},
		now:         o.Now,
		store:       newStore(opts.RecordLimit),
		recordLimit: opts.RecordLimit,
		faults:      &faults{},
		met:         met,
		log:         log,
		done:        make(chan struct{}),
	}
	s.hub = newHub(hubConfig{
		creds:           s.creds,
		activityTimeout: orDefault(opts.ActivityTimeout, DefaultActivityTimeout),
		pongTimeout:     orDefault(opts.PongTimeout, DefaultPongTimeout),
		writeTimeout:    orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		sendQueue:       orDefault(opts.SendQueue, DefaultSendQueue),
		originPatterns:  slices.Clone(opts.OriginPatterns),
	}, met, log)
	s.store.onAdd = s.hub.publish
	return s, nil
}

func orDefault[T time.Duration | int](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Start returns a server listening on 127.0.0.1 on a free port, closed at
// t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(s.Handler())
	t.Cleanup(s.Close)
	return s
}

// Close closes every WebSocket with 4200 (pusher-js reconnects at once,
// to whatever serves next) and waits for their goroutines, stops the
// listener (if Start made one), cuts open connections so requests waiting
// on SetLatency end, and closes every Subscribe channel. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.hub.close()
		if s.srv != nil {
			s.srv.CloseClientConnections()
			s.srv.Close()
		}
		s.store.close()
	})
}

// Handler returns the whole server: the WebSocket endpoint /app/{key} for
// pusher-js and the HTTP API under /apps/{appId}/. Mount it at the root of
// its own listener (paths are Pusher's) and call Close when done: hijacked
// WebSockets outlive http.Server.Shutdown.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/app/") {
			s.hub.serveWS(w, r)
			return
		}
		s.serveHTTP(w, r)
	})
}

// URL returns "http://127.0.0.1:port", or "" for a server made by New.
func (s *Server) URL() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// Host returns "127.0.0.1:port" for pusher.Client.Host, or "" for a server
// made by New.
func (s *Server) Host() string {
	return strings.TrimPrefix(s.URL(), "http://")
}

// Client returns a real pusher-http-go client for this server with its own
// HTTPClient (timeout zero means 5 s, the library's default). When
// MaxPayloadBytes is raised above 10240, the client's
// OverrideMaxMessagePayloadKB is raised to match, as for a dedicated
// cluster. It panics for a server made by New, which has no address: a
// client with an empty Host would talk to the real Pusher.
func (s *Server) Client(timeout time.Duration) *pusher.Client {
	if s.srv == nil {
		panic("pushercompat: Client needs a listening server; use Start")
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c := &pusher.Client{
		AppID:  s.appID,
		Key:    s.creds.key,
		Secret: s.creds.secret,
		Host:   s.Host(),
		HTTPClient: &http.Client{
			Transport: s.srv.Client().Transport,
			Timeout:   timeout,
		},
	}
	if s.lim.maxPayload > DefaultMaxPayloadBytes {
		c.OverrideMaxMessagePayloadKB = (s.lim.maxPayload + 1023) / 1024
	}
	return c
}

// Events returns a copy of every accepted event, in acceptance order.
func (s *Server) Events() []Event { return s.store.all() }

// EventsOn returns the accepted events on channel, in acceptance order.
func (s *Server) EventsOn(channel string) []Event { return s.store.on(channel) }

// Requests returns how many HTTP requests reached the server, refused and
// dropped ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Accepted returns how many requests were answered 200.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Exchanges returns every finished request with its answer, in the order
// the answers were given.
func (s *Server) Exchanges() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.exchanges)
}

// FailNext makes the next n requests get f, replacing any earlier FailNext.
// It applies before any check, so even a badly signed request gets f.
// n <= 0 clears it.
func (s *Server) FailNext(n int, f Fault) { s.faults.failNext(n, f) }

// FailFor makes every request arriving within d from now (Options.Now) get
// f, replacing any earlier FailFor. FailNext, while it lasts, wins.
// d <= 0 clears it.
func (s *Server) FailFor(d time.Duration, f Fault) { s.faults.failUntil(s.now().Add(d), f) }

// SetLatency makes every request wait d (real time) before it is handled;
// a request whose client gives up meanwhile is not handled at all. Zero
// clears it.
func (s *Server) SetLatency(d time.Duration) { s.faults.setLatency(d) }

// SetOutage, while on, drops every request (the connection is closed with no
// answer), as when Pusher is unreachable.
func (s *Server) SetOutage(on bool) { s.faults.setOutage(on) }

// RejectWhen sets a per-event rule checked after a request passed every
// other check: if fn returns a status other than zero for any event of the
// request, the request is answered that status with msg (the status text
// when msg is empty) and records nothing. fn runs without locks held and
// may be called concurrently. nil clears it.
func (s *Server) RejectWhen(fn func(Event) (status int, msg string)) { s.faults.setRule(fn) }

// Subscribe returns a channel that receives every event accepted from now
// on, in acceptance order, and a cancel func that stops the subscription,
// waits for its goroutine and closes the channel. Delivery is unbounded:
// a slow reader never slows the server or loses an event. Close also ends
// every subscription.
func (s *Server) Subscribe() (<-chan Event, func()) { return s.store.subscribe() }

// Reset forgets recorded events, exchanges and counters (request numbers
// start again at 1), and clears every fault, latency, outage (the
// WebSocket outage too) and RejectWhen rule. Subscriptions and sockets
// stay.
func (s *Server) Reset() {
	s.mu.Lock()
	s.requests, s.accepted, s.exchanges = 0, 0, nil
	s.mu.Unlock()
	s.store.reset()
	s.faults.reset()
	s.hub.setOutage(false)
}

// SetWebSocketOutage, while on, drops every WebSocket upgrade (the
// connection is closed with no answer), as when the WebSocket side is
// unreachable; sockets already open stay open (CloseSockets ends them).
// Reset turns it off.
func (s *Server) SetWebSocketOutage(on bool) { s.hub.setOutage(on) }

// CloseSockets closes every open WebSocket with code (4200: pusher-js
// reconnects at once; 4100: after a second; 40xx: it gives up) and
// returns how many it closed. The close handshakes finish in the
// background.
func (s *Server) CloseSockets(code int, reason string) int {
	return s.hub.closeAll(websocket.StatusCode(code), reason, reasonFault)
}

// Sockets returns how many WebSockets are open past the handshake.
func (s *Server) Sockets() int { return s.hub.count() }

// Subscribers returns how many sockets are subscribed to channel.
func (s *Server) Subscribers(channel string) int { return s.hub.subscribers(channel) }
