package pushercompat

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/sirupsen/logrus"

	"github.com/nostressplanner/liveupdates/wire"
)

// Close codes with the meaning pusher-js gives them (protocol.ts
// getCloseAction): 40xx stops the client for good, 41xx reconnects after a
// second, 42xx at once. A passing problem never gets a 40xx.
const (
	CodeUnknownApp          websocket.StatusCode = 4001 // app key unknown: pusher-js gives up
	CodeUnsupportedProtocol websocket.StatusCode = 4007
	CodeNoProtocol          websocket.StatusCode = 4008
	CodeOverCapacity        websocket.StatusCode = 4100 // also a socket that cannot keep up
	CodeReconnect           websocket.StatusCode = 4200 // generic: reconnect now (shutdown)
	CodePongTimeout         websocket.StatusCode = 4201
)

const (
	// maxClientFrame bounds what a client may send: subscribe messages are
	// small, and coder/websocket's default (32 KiB) is more than needed.
	maxClientFrame = 16 << 10
	// maxChannelsPerSocket bounds the subscriptions of one socket, so one
	// client cannot grow the channel index without limit.
	maxChannelsPerSocket = 100
)

// Fixed frames, built once.
var (
	framePing = []byte(`{"event":"pusher:ping","data":"{}"}`)
	framePong = []byte(`{"event":"pusher:pong","data":"{}"}`)
)

type hubConfig struct {
	creds                                      credentials
	activityTimeout, pongTimeout, writeTimeout time.Duration
	sendQueue                                  int
	originPatterns                             []string
}

// hub is the WebSocket side: the sockets, the channel index and the
// fan-out. Each socket costs one goroutine (its reader) while idle; a pool
// of writers shared by all sockets writes queued frames, and one sweeper
// goroutine per hub does pings, pong timeouts and write timeouts, so idle
// sockets carry no timers.
type hub struct {
	cfg    hubConfig
	pool   *writers
	met    *metrics
	log    logrus.FieldLogger
	prefix uint32 // socket ids are prefix.counter: unique across restarts
	nextID atomic.Uint64
	// written counts frames written, for the benchmark's "last frame
	// written" time without gathering the registry.
	written atomic.Int64

	mu       sync.RWMutex
	sockets  map[*socket]struct{}
	channels map[string]map[*socket]struct{}
	closed   bool
	outage   bool
	sweeping bool
	stop     chan struct{}
	// wg counts every goroutine the hub owns or waits for: socket handlers,
	// writers, closers and the sweeper. An Add happens either under mu
	// with closed false, or on behalf of a registered socket whose handler
	// still holds its count, so it never races with Wait from zero.
	wg sync.WaitGroup
}

func newHub(cfg hubConfig, met *metrics, log logrus.FieldLogger) *hub {
	h := &hub{
		cfg: cfg, met: met, log: log,
		prefix:   rand.Uint32N(1_000_000_000),
		sockets:  make(map[*socket]struct{}),
		channels: make(map[string]map[*socket]struct{}),
		stop:     make(chan struct{}),
	}
	h.pool = newWriters(h)
	return h
}

// socket is one pusher-js connection.
type socket struct {
	h  *hub
	ws *websocket.Conn
	id string
	// lastSeen is when the client last sent anything (unix nanoseconds);
	// pingSent is when the server pinged without an answer since, or 0.
	lastSeen atomic.Int64
	pingSent atomic.Int64
	// writeStart is when the write in progress began (unix nanoseconds),
	// or 0: the sweeper enforces the write timeout with it, so a write
	// costs no timer. stuck is set once the sweeper has cut the socket.
	writeStart atomic.Int64
	stuck      atomic.Bool

	mu      sync.Mutex
	queue   [][]byte // frames not yet handed to a writer
	spare   [][]byte // the last batch written, emptied, for the next queue
	pending int      // frames queued or being written
	writing bool     // waiting for a writer or being written
	closing bool
	reason  string // why the server closed it; empty when the client did

	channels map[string]struct{} // guarded by h.mu
}

// serveWS upgrades /app/{key} and runs the socket until it ends.
func (h *hub) serveWS(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	outage, closed := h.outage, h.closed
	if !outage && !closed {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if outage {
		drop(w)
		return
	}
	if closed {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	// The wg count taken above passes to the socket's reader goroutine
	// once the socket is registered.
	handedOff := false
	defer func() {
		if !handedOff {
			h.wg.Done()
		}
	}()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: len(h.cfg.originPatterns) == 0,
		OriginPatterns:     h.cfg.originPatterns,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the request already.
		h.log.WithError(err).Debug("websocket upgrade refused")
		return
	}
	ws.SetReadLimit(maxClientFrame)
	key := strings.TrimPrefix(r.URL.Path, "/app/")
	if key != h.cfg.creds.key {
		h.refuse(ws, CodeUnknownApp, "App key "+truncate(key, 40)+" not in this cluster")
		return
	}
	switch p := r.URL.Query().Get("protocol"); {
	case p == "":
		h.refuse(ws, CodeNoProtocol, "No protocol version supplied")
		return
	case !supportedProtocol(p):
		h.refuse(ws, CodeUnsupportedProtocol, "Unsupported protocol version "+truncate(p, 10))
		return
	}

	s := &socket{h: h, ws: ws, id: fmt.Sprintf("%d.%d", h.prefix, h.nextID.Add(1))}
	s.lastSeen.Store(time.Now().UnixNano())
	if err := s.writeHandshake(h.handshake(s.id)); err != nil {
		ws.CloseNow() //nolint:errcheck // the write failed: the connection is gone
		h.met.closed.WithLabelValues(reasonWriteError).Inc()
		return
	}
	if !h.register(s) {
		// Close began between the upgrade and now.
		ws.Close(CodeReconnect, "Server is shutting down") //nolint:errcheck // best effort on the way out
		h.met.closed.WithLabelValues(reasonShutdown).Inc()
		return
	}
	// Read in a fresh goroutine and return: net/http then frees the
	// request, the response and its buffers, which a handler blocked in a
	// read loop would pin for the socket's life (about 5 KiB each), and
	// the reader's stack starts small instead of below net/http's frames.
	handedOff = true
	go s.run()
}

// run reads until the socket ends, then unregisters it. It owns one count
// of h.wg.
func (s *socket) run() {
	defer s.h.wg.Done()
	err := s.readLoop()
	s.h.remove(s)
	s.ws.CloseNow() //nolint:errcheck // waits for a Close in progress; otherwise the peer is gone
	s.mu.Lock()
	reason := s.reason
	s.mu.Unlock()
	if reason == "" {
		reason = reasonClient
	}
	s.h.met.closed.WithLabelValues(reason).Inc()
	s.h.log.WithFields(logrus.Fields{"socket_id": s.id, "reason": reason}).WithError(err).Debug("socket closed")
}

// supportedProtocol accepts the protocol versions pusher-js has spoken
// since version 3 (5 to 7); the messages used here did not change.
func supportedProtocol(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 5 && n <= 7
}

func (h *hub) refuse(ws *websocket.Conn, code websocket.StatusCode, text string) {
	ws.Close(code, text) //nolint:errcheck // the peer may not answer the close; either way it is over
	h.met.closed.WithLabelValues(reasonRefused).Inc()
}

func (h *hub) handshake(id string) []byte {
	secs := int64((h.cfg.activityTimeout + time.Second - 1) / time.Second)
	inner, _ := json.Marshal(struct { //nolint:errchkjson // a string and an int cannot fail
		SocketID        string `json:"socket_id"`
		ActivityTimeout int64  `json:"activity_timeout"`
	}{id, max(secs, 1)})
	return frame("pusher:connection_established", "", string(inner))
}

// register adds s to the hub unless the hub is closed, starting the
// sweeper with the first socket.
func (h *hub) register(s *socket) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.sockets[s] = struct{}{}
	if !h.sweeping {
		h.sweeping = true
		h.wg.Add(1)
		go h.sweep()
	}
	h.met.sockets.Inc()
	h.met.opened.Inc()
	return true
}

func (h *hub) remove(s *socket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sockets[s]; !ok {
		return
	}
	delete(h.sockets, s)
	for ch := range s.channels {
		h.leave(s, ch)
	}
	h.met.sockets.Dec()
}

// leave removes s from channel; h.mu must be held.
func (h *hub) leave(s *socket, channel string) {
	subs := h.channels[channel]
	delete(subs, s)
	if len(subs) == 0 {
		delete(h.channels, channel)
	}
	delete(s.channels, channel)
}

// subscribe adds s to channel and queues subscription_succeeded under the
// same lock as the fan-out, so the client hears of its subscription before
// any event on it.
func (h *hub) subscribe(s *socket, channel string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.sockets[s]; !ok {
		return errors.New("socket closed")
	}
	if _, ok := s.channels[channel]; !ok {
		if len(s.channels) >= maxChannelsPerSocket {
			return fmt.Errorf("at most %d channels per connection", maxChannelsPerSocket)
		}
		if s.channels == nil {
			s.channels = make(map[string]struct{})
		}
		s.channels[channel] = struct{}{}
		subs := h.channels[channel]
		if subs == nil {
			subs = make(map[*socket]struct{})
			h.channels[channel] = subs
		}
		subs[s] = struct{}{}
	}
	s.enqueue(frame("pusher_internal:subscription_succeeded", channel, "{}"))
	return nil
}

func (h *hub) unsubscribe(s *socket, channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := s.channels[channel]; ok {
		h.leave(s, channel)
	}
}

// publish fans accepted events out to their channels' sockets, skipping
// the excluded socket_id. It never blocks on a socket: each has its own
// bounded queue. The store calls it under its lock, in acceptance order.
func (h *hub) publish(evs []Event) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return
	}
	for _, e := range evs {
		subs := h.channels[e.Channel]
		if len(subs) == 0 {
			continue
		}
		f := frame(e.Name, e.Channel, e.Data)
		for s := range subs {
			if e.SocketID != "" && s.id == e.SocketID {
				continue
			}
			s.enqueue(f)
		}
	}
}

// sweep pings sockets that have been silent for the activity timeout,
// closes with 4201 those that did not answer within the pong timeout, and
// cuts those whose current write has taken longer than the write timeout.
// A timeout therefore fires up to a quarter of itself (at most 1 s) late.
func (h *hub) sweep() {
	defer h.wg.Done()
	tick := min(h.cfg.activityTimeout, h.cfg.pongTimeout, h.cfg.writeTimeout) / 4
	tick = min(max(tick, 10*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			h.check(now.UnixNano())
		}
	}
}

func (h *hub) check(now int64) {
	activity, pong, write := int64(h.cfg.activityTimeout), int64(h.cfg.pongTimeout), int64(h.cfg.writeTimeout)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.sockets {
		if start := s.writeStart.Load(); start != 0 && now-start > write {
			s.cut()
			continue
		}
		if sent := s.pingSent.Load(); sent != 0 {
			if now-sent > pong {
				s.close(CodePongTimeout, "Pong reply not received", reasonPongTimeout)
			}
			continue
		}
		if now-s.lastSeen.Load() > activity && s.pingSent.CompareAndSwap(0, now) {
			s.enqueue(framePing)
		}
	}
}

// closeAll closes every socket with code; it returns how many.
func (h *hub) closeAll(code websocket.StatusCode, text, reason string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.sockets {
		s.close(code, text, reason)
	}
	return len(h.sockets)
}

// close closes every socket with 4200 and waits for every goroutine the
// hub owns. New upgrades are answered 503.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.stop)
	for s := range h.sockets {
		s.close(CodeReconnect, "Server is shutting down", reasonShutdown)
	}
	h.pool.close()
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hub) setOutage(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outage = on
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sockets)
}

func (h *hub) subscribers(channel string) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.channels[channel])
}

// enqueue queues f for the socket, handing the socket to the writer pool
// when it was not waiting already. A socket with SendQueue frames pending
// is closed with 4100 instead: it cannot keep up, and pusher-js reconnects
// after a second.
func (s *socket) enqueue(f []byte) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if s.pending >= s.h.cfg.sendQueue {
		s.mu.Unlock()
		s.close(CodeOverCapacity, "Too many messages waiting: the connection cannot keep up", reasonSlowConsumer)
		return
	}
	s.queue = append(s.queue, f)
	s.pending++
	if !s.writing {
		s.writing = true
		s.h.pool.schedule(s)
	}
	s.mu.Unlock()
}

// writeQueued writes the frames queued when it starts (a pool worker calls
// it), then hands the socket back to the pool if more came meanwhile, so a
// socket that keeps receiving takes turns with the others.
func (s *socket) writeQueued() {
	s.mu.Lock()
	batch := s.queue
	s.queue, s.spare = s.spare, nil
	if len(batch) == 0 || s.closing {
		s.writing = false
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	for _, f := range batch {
		if err := s.writeNow(f); err != nil {
			s.close(CodeReconnect, "write failed", reasonWriteError)
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}
	clear(batch)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Keep a small batch's array for the next frames: a fan-out then
	// allocates nothing per socket. A long one is let go.
	if cap(batch) <= 16 && !s.closing {
		s.spare = batch[:0]
	}
	if len(s.queue) > 0 && !s.closing {
		s.h.pool.schedule(s)
		return
	}
	s.writing = false
}

// writeNow writes one frame. It sets no timer: the sweeper cuts the
// connection when a write has lasted longer than the write timeout (a
// context deadline per write cost a timer and an allocation per frame per
// socket, about a tenth of the fan-out's CPU).
func (s *socket) writeNow(f []byte) error {
	s.writeStart.Store(time.Now().UnixNano())
	err := s.ws.Write(context.Background(), websocket.MessageText, f)
	s.writeStart.Store(0)
	if err != nil {
		return fmt.Errorf("write to socket %s: %w", s.id, err)
	}
	s.h.met.sent.Inc()
	s.h.written.Add(1)
	return nil
}

// writeHandshake writes the first frame, before the socket is registered
// with the sweeper, so it bounds the write with a context instead.
func (s *socket) writeHandshake(f []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.h.cfg.writeTimeout)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, f); err != nil {
		return fmt.Errorf("write to socket %s: %w", s.id, err)
	}
	s.h.met.sent.Inc()
	s.h.written.Add(1)
	return nil
}

// cut closes the connection under a write that has lasted too long, as
// coder/websocket does when a write's context expires, and records why
// first: the reader may see the connection end before the writer does.
// The sweeper calls it under the hub's read lock, so the close runs in its
// own goroutine.
func (s *socket) cut() {
	if !s.stuck.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if !s.closing {
		s.closing, s.reason, s.queue = true, reasonWriteError, nil
	}
	s.mu.Unlock()
	s.h.wg.Add(1)
	go func() {
		defer s.h.wg.Done()
		s.ws.CloseNow() //nolint:errcheck // the peer is not reading
	}()
}

// close starts the close handshake with code, once. It runs in its own
// goroutine because the handshake waits for the peer (up to 5 s each way
// in coder/websocket), and the caller may hold the hub's lock.
func (s *socket) close(code websocket.StatusCode, text, reason string) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing, s.reason, s.queue = true, reason, nil
	s.mu.Unlock()
	s.h.wg.Add(1)
	go func() {
		defer s.h.wg.Done()
		if err := s.ws.Close(code, text); err != nil {
			s.h.log.WithError(err).WithField("socket_id", s.id).Debug("close handshake")
		}
	}()
}

// clientMessage is what pusher-js sends: data is an object (or, from some
// clients, a string holding one).
type clientMessage struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

type subscribeData struct {
	Channel string `json:"channel"`
	Auth    string `json:"auth"`
}

// readLoop handles the client's messages until the connection ends. Any
// message counts as activity and answers an outstanding ping.
func (s *socket) readLoop() error {
	for {
		typ, data, err := s.ws.Read(context.Background())
		if err != nil {
			return err
		}
		s.lastSeen.Store(time.Now().UnixNano())
		s.pingSent.Store(0)
		if typ != websocket.MessageText {
			s.sendError("Binary frames are not supported")
			continue
		}
		s.handle(data)
	}
}

// request is a client message, decoded.
type request struct {
	kind    requestKind
	channel string // subscribe, unsubscribe
	auth    string // subscribe
}

type requestKind int

const (
	requestPing requestKind = iota + 1
	requestPong
	requestSubscribe
	requestUnsubscribe
)

// parseRequest decodes a client frame. A refusal is the message of the
// pusher:error to answer (wire text, so not a Go error), empty otherwise.
func parseRequest(data []byte) (req request, refusal string) {
	var m clientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return request{}, "Invalid JSON"
	}
	switch m.Event {
	case "pusher:ping":
		return request{kind: requestPing}, ""
	case "pusher:pong":
		return request{kind: requestPong}, ""
	case "pusher:subscribe", "pusher:unsubscribe":
		var d subscribeData
		if err := decodeData(m.Data, &d); err != nil {
			return request{}, "Invalid " + strings.TrimPrefix(m.Event, "pusher:") + " data"
		}
		kind := requestSubscribe
		if m.Event == "pusher:unsubscribe" {
			kind = requestUnsubscribe
		}
		return request{kind: kind, channel: d.Channel, auth: d.Auth}, ""
	}
	if strings.HasPrefix(m.Event, "client-") {
		return request{}, "Client events are not enabled on this server"
	}
	return request{}, "Unsupported event " + strconv.Quote(truncate(m.Event, 64))
}

func (s *socket) handle(data []byte) {
	req, refusal := parseRequest(data)
	if refusal != "" {
		s.sendError(refusal)
		return
	}
	switch req.kind {
	case requestPing:
		s.enqueue(framePong)
	case requestPong:
		// Counted as activity already.
	case requestSubscribe:
		s.subscribe(req.channel, req.auth)
	case requestUnsubscribe:
		s.h.unsubscribe(s, req.channel)
	}
}

// subscribe checks the channel and its signature. A refusal is a
// subscription_error on that channel and the socket stays open: a close
// with a 40xx code would stop pusher-js for good.
func (s *socket) subscribe(ch, auth string) {
	switch {
	case !validChannel(ch):
		s.subscriptionError(ch, http.StatusBadRequest, "Invalid channel name")
		s.h.met.subscriptions.WithLabelValues("invalid").Inc()
		return
	case strings.HasPrefix(ch, "presence-"):
		s.subscriptionError(ch, http.StatusBadRequest, "Presence channels are not supported by this server")
		s.h.met.subscriptions.WithLabelValues("invalid").Inc()
		return
	case strings.HasPrefix(ch, "private-"):
		c := s.h.cfg.creds
		want := wire.PusherChannelAuth(c.key, c.secret, s.id, ch)
		if !hmac.Equal([]byte(auth), []byte(want)) {
			s.subscriptionError(ch, http.StatusUnauthorized, "Invalid signature: expected HMAC SHA256 hex digest of "+s.id+":"+ch)
			s.h.met.subscriptions.WithLabelValues("auth_error").Inc()
			return
		}
	}
	if err := s.h.subscribe(s, ch); err != nil {
		s.subscriptionError(ch, http.StatusBadRequest, err.Error())
		s.h.met.subscriptions.WithLabelValues("invalid").Inc()
		return
	}
	s.h.met.subscriptions.WithLabelValues("ok").Inc()
}

// subscriptionError is the shape pusher-js emits on the channel as
// pusher:subscription_error.
func (s *socket) subscriptionError(channel string, status int, msg string) {
	inner, _ := json.Marshal(struct { //nolint:errchkjson // strings and an int cannot fail
		Type   string `json:"type"`
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{"AuthError", msg, status})
	s.enqueue(frame("pusher:subscription_error", channel, string(inner)))
}

// sendError reports a problem with a message without closing: the
// connection-level pusher:error that pusher-js only logs.
func (s *socket) sendError(msg string) {
	b, _ := json.Marshal(struct { //nolint:errchkjson // a string cannot fail
		Event string `json:"event"`
		Data  struct {
			Message string `json:"message"`
		} `json:"data"`
	}{Event: "pusher:error", Data: struct {
		Message string `json:"message"`
	}{msg}})
	s.enqueue(b)
}

// decodeData reads data as an object, or as a string holding one.
func decodeData(raw json.RawMessage, v any) error {
	if len(raw) > 0 && raw[0] == '"' {
		var inner string
		if err := json.Unmarshal(raw, &inner); err != nil {
			return err
		}
		raw = json.RawMessage(inner)
	}
	return json.Unmarshal(raw, v)
}

// frame is a server message: data is always a JSON string, as Pusher sends.
func frame(event, channel, data string) []byte {
	b, _ := json.Marshal(struct { //nolint:errchkjson // strings cannot fail
		Event   string `json:"event"`
		Channel string `json:"channel,omitempty"`
		Data    string `json:"data"`
	}{event, channel, data})
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
