package pushercompat

import (
	"crypto/hmac"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/nostressplanner/liveupdates/wire"
)

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
