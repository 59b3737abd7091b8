package pushercompat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/sirupsen/logrus"
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
