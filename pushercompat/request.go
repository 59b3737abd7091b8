package pushercompat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/nostressplanner/liveupdates/wire"
)

// Pusher's limit on event names (REST API); the channel rule is wire's.
const maxEventName = 200

// apiError is a refusal: the status and the plain-text body Pusher-style.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// limits are the per-request limits a parse enforces.
type limits struct {
	maxPayload, maxBatch, maxChannels int
}

// endpoint is which of the two publishing endpoints a body was sent to.
type endpoint int

const (
	endpointEvents endpoint = iota + 1
	endpointBatch
)

// published is one event as it was accepted from a request, before it is
// stamped with arrival time and request index.
type published struct {
	channel, name, data, socketID string
}

// triggerBody is POST /apps/{id}/events. Pointers tell "absent" from
// "empty", which Pusher treats differently (data "" is fine, no data is not).
type triggerBody struct {
	Name     *string   `json:"name"`
	Data     *string   `json:"data"`
	Channels *[]string `json:"channels"`
	Channel  *string   `json:"channel"`
	SocketID *string   `json:"socket_id"`
	Info     *string   `json:"info"`
}

type batchItem struct {
	Name     *string `json:"name"`
	Data     *string `json:"data"`
	Channel  *string `json:"channel"`
	SocketID *string `json:"socket_id"`
	Info     *string `json:"info"`
}

type batchBody struct {
	Batch *[]batchItem `json:"batch"`
}

// parse decodes and validates a request body for ep and returns the events
// it publishes (one per channel for a trigger, in order), or the refusal.
// Every check of the body lives here, so the fuzz target covers it all.
func parse(ep endpoint, body []byte, lim limits) ([]published, *apiError) {
	if !utf8.Valid(body) {
		return nil, badRequest("Request body is not valid UTF-8")
	}
	switch ep {
	case endpointEvents:
		var b triggerBody
		if err := decodeStrict(body, &b); err != nil {
			return nil, err
		}
		return b.events(lim)
	case endpointBatch:
		var b batchBody
		if err := decodeStrict(body, &b); err != nil {
			return nil, err
		}
		return b.events(lim)
	default:
		return nil, &apiError{status: http.StatusNotFound, msg: "Not found"}
	}
}

// decodeStrict decodes exactly one JSON object; trailing data is an error
// because a real JSON parser would refuse it too.
func decodeStrict(body []byte, v any) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return badRequest("Invalid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("Invalid JSON: data after the top-level value")
	}
	return nil
}

func (b triggerBody) events(lim limits) ([]published, *apiError) {
	var channels []string
	switch {
	case b.Channels != nil && b.Channel != nil:
		return nil, badRequest("Specify either channels or channel, not both")
	case b.Channels != nil:
		channels = *b.Channels
	case b.Channel != nil:
		channels = []string{*b.Channel}
	}
	if len(channels) == 0 {
		return nil, badRequest("Missing channels: give between 1 and %d", lim.maxChannels)
	}
	if len(channels) > lim.maxChannels {
		return nil, badRequest("Too many channels: %d given, at most %d allowed", len(channels), lim.maxChannels)
	}
	for _, ch := range channels {
		if err := checkChannel(ch); err != nil {
			return nil, err
		}
	}
	common, err := checkEvent(b.Name, b.Data, b.SocketID, lim)
	if err != nil {
		return nil, err
	}
	out := make([]published, len(channels))
	for i, ch := range channels {
		out[i] = common
		out[i].channel = ch
	}
	return out, nil
}

func (b batchBody) events(lim limits) ([]published, *apiError) {
	if b.Batch == nil {
		return nil, badRequest("Missing batch")
	}
	items := *b.Batch
	if len(items) == 0 {
		return nil, badRequest("Batch is empty")
	}
	if len(items) > lim.maxBatch {
		return nil, badRequest("Batch too large: %d events given, at most %d allowed", len(items), lim.maxBatch)
	}
	out := make([]published, len(items))
	for i, it := range items {
		if it.Channel == nil {
			return nil, inBatch(i, badRequest("Missing channel"))
		}
		if err := checkChannel(*it.Channel); err != nil {
			return nil, inBatch(i, err)
		}
		ev, err := checkEvent(it.Name, it.Data, it.SocketID, lim)
		if err != nil {
			return nil, inBatch(i, err)
		}
		ev.channel = *it.Channel
		out[i] = ev
	}
	return out, nil
}

// inBatch names the batch position in a refusal, keeping its status.
func inBatch(i int, err *apiError) *apiError {
	return &apiError{status: err.status, msg: fmt.Sprintf("Event #%d in batch: %s", i, err.msg)}
}

func checkEvent(name, data, socketID *string, lim limits) (published, *apiError) {
	if name == nil || *name == "" {
		return published{}, badRequest("Missing event name")
	}
	if err := checkEventName(*name); err != nil {
		return published{}, err
	}
	if data == nil {
		return published{}, badRequest("Missing data")
	}
	if len(*data) > lim.maxPayload {
		// Pusher's own text (quoted in remind101/tugboat#8).
		return published{}, &apiError{
			status: http.StatusRequestEntityTooLarge,
			msg:    fmt.Sprintf("The data content of this event exceeds the allowed maximum (%d bytes). See https://pusher.com/docs/channels/server_api/http-api#publishing-events for more info", lim.maxPayload),
		}
	}
	ev := published{name: *name, data: *data}
	if socketID != nil {
		if !validSocketID(*socketID) {
			return published{}, badRequest("Invalid socket_id %q: want digits.digits", *socketID)
		}
		ev.socketID = *socketID
	}
	return ev, nil
}

func checkChannel(ch string) *apiError {
	if ch == "" {
		return badRequest("Invalid channel name \"\": empty")
	}
	if len(ch) > wire.MaxPusherChannelLen {
		return badRequest("Invalid channel name: %d bytes, at most %d allowed", len(ch), wire.MaxPusherChannelLen)
	}
	if !channelChars(ch) {
		return badRequest("Invalid channel name %q: only [A-Za-z0-9_\\-=@,.;] allowed", ch)
	}
	return nil
}

// validChannel is checkChannel's rule without its answers, for subscribe.
func validChannel(ch string) bool {
	return ch != "" && len(ch) <= wire.MaxPusherChannelLen && channelChars(ch)
}

func channelChars(ch string) bool {
	for i := 0; i < len(ch); i++ {
		if !wire.PusherChannelByte(ch[i]) {
			return false
		}
	}
	return true
}

func checkEventName(name string) *apiError {
	if len(name) > maxEventName {
		return badRequest("Invalid event name: %d bytes, at most %d allowed", len(name), maxEventName)
	}
	for _, p := range []string{"pusher:", "pusher_internal:"} {
		if strings.HasPrefix(name, p) {
			return badRequest("Invalid event name %q: the %s prefix is reserved", name, p)
		}
	}
	return nil
}

// validSocketID is pusher-http-go's rule \A\d+\.\d+\z.
func validSocketID(s string) bool {
	dot := strings.IndexByte(s, '.')
	if dot <= 0 || dot == len(s)-1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != dot && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}
