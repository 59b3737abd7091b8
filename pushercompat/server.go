package pushercompat

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pusher/pusher-http-go/v5"
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
	// arrival times and for FailFor windows. Zero means time.Now.
	Now func() time.Time
}

// Defaults of Options, Pusher's multi-tenant limits.
const (
	DefaultMaxPayloadBytes = 10240
	DefaultMaxBatch        = 10
	DefaultMaxChannels     = 100
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

	mu        sync.Mutex
	requests  int
	accepted  int
	exchanges []Exchange

	srv       *httptest.Server // nil for New
	done      chan struct{}
	closeOnce sync.Once
}

// New returns a server that is not listening; serve Handler() yourself, or
// use Start. It panics on negative limits, which are a bug in the test.
func New(opts Options) *Server {
	o := Options{
		AppID: "1", Key: "key", Secret: "secret",
		MaxPayloadBytes: DefaultMaxPayloadBytes, MaxBatch: DefaultMaxBatch, MaxChannels: DefaultMaxChannels,
		Now: time.Now,
	}
	var bad []string
	for name, v := range map[string]int{"MaxPayloadBytes": opts.MaxPayloadBytes, "MaxBatch": opts.MaxBatch, "MaxChannels": opts.MaxChannels} {
		if v < 0 {
			bad = append(bad, fmt.Sprintf("%s=%d", name, v))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		panic("pushercompat: negative Options: " + strings.Join(bad, ", "))
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
	return &Server{
		creds:  credentials{key: o.Key, secret: o.Secret},
		appID:  o.AppID,
		lim:    limits{maxPayload: o.MaxPayloadBytes, maxBatch: o.MaxBatch, maxChannels: o.MaxChannels},
		now:    o.Now,
		store:  newStore(),
		faults: &faults{},
		done:   make(chan struct{}),
	}
}

// Start returns a server listening on 127.0.0.1 on a free port, closed at
// t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	s.srv = httptest.NewServer(s.Handler())
	t.Cleanup(s.Close)
	return s
}

// Close stops the listener (if Start made one), cuts open connections so
// requests waiting on SetLatency end, and closes every Subscribe channel.
// It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.srv != nil {
			s.srv.CloseClientConnections()
			s.srv.Close()
		}
		s.store.close()
	})
}

// Handler returns the HTTP API handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

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
// start again at 1), and clears every fault, latency, outage and
// RejectWhen rule. Subscriptions stay.
func (s *Server) Reset() {
	s.mu.Lock()
	s.requests, s.accepted, s.exchanges = 0, 0, nil
	s.mu.Unlock()
	s.store.reset()
	s.faults.reset()
}
