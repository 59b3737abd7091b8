package pushercompat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// triggerJSON builds an events body the way pusher-http-go does.
func triggerJSON(t *testing.T, channels []string, name, data string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"channels": channels, "name": name, "data": data})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// batchJSON builds a batch of n events on channel c-<i>.
func batchJSON(t *testing.T, n int, data string) []byte {
	t.Helper()
	items := make([]map[string]string, n)
	for i := range items {
		items[i] = map[string]string{"channel": fmt.Sprintf("c-%d", i), "name": "e", "data": data}
	}
	b, err := json.Marshal(map[string]any{"batch": items})
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func channelNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c-%d", i)
	}
	return out
}

// TestLimitsOverHTTP sends signed raw requests (the Go client would refuse
// some of these before sending) and checks Pusher's status for each, and
// that a refused request records nothing.
func TestLimitsOverHTTP(t *testing.T) {
	t.Parallel()
	const events, batch = "/apps/1/events", "/apps/1/batch_events"
	tests := []struct {
		name       string
		opts       Options
		path       string
		body       []byte
		wantStatus int
		wantBody   string // prefix
		wantEvents int
	}{
		{name: "data of exactly 10240 bytes is accepted", path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat("x", 10240)), wantStatus: 200, wantBody: "{}", wantEvents: 1},
		{name: "data of 10241 bytes gets 413 with Pusher's text", path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat("x", 10241)), wantStatus: 413, wantBody: "The data content of this event exceeds the allowed maximum (10240 bytes)"},
		{name: "data is counted unescaped, so 10240 quotes pass", path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat(`"`, 10240)), wantStatus: 200, wantBody: "{}", wantEvents: 1},
		{name: "a raised MaxPayloadBytes accepts 20000 bytes", opts: Options{MaxPayloadBytes: 20480}, path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat("x", 20000)), wantStatus: 200, wantBody: "{}", wantEvents: 1},
		{name: "a raised MaxPayloadBytes names itself in the 413", opts: Options{MaxPayloadBytes: 20480}, path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat("x", 20481)), wantStatus: 413, wantBody: "The data content of this event exceeds the allowed maximum (20480 bytes)"},
		{name: "an oversized event inside a batch gets 413", path: batch, body: batchJSON(t, 2, strings.Repeat("x", 10241)), wantStatus: 413, wantBody: "Event #0 in batch: The data content"},
		{name: "a batch of 10 is accepted", path: batch, body: batchJSON(t, 10, "d"), wantStatus: 200, wantBody: "{}", wantEvents: 10},
		{name: "a batch of 11 gets 400", path: batch, body: batchJSON(t, 11, "d"), wantStatus: 400, wantBody: "Batch too large: 11 events given, at most 10 allowed"},
		{name: "a raised MaxBatch accepts 11", opts: Options{MaxBatch: 20}, path: batch, body: batchJSON(t, 11, "d"), wantStatus: 200, wantBody: "{}", wantEvents: 11},
		{name: "100 channels are accepted", path: events, body: triggerJSON(t, channelNames(100), "e", "d"), wantStatus: 200, wantBody: "{}", wantEvents: 100},
		{name: "101 channels get 400", path: events, body: triggerJSON(t, channelNames(101), "e", "d"), wantStatus: 400, wantBody: "Too many channels"},
		{name: "a channel name of 164 bytes is accepted", path: events, body: triggerJSON(t, []string{strings.Repeat("a", 164)}, "e", "d"), wantStatus: 200, wantBody: "{}", wantEvents: 1},
		{name: "a channel name of 165 bytes gets 400", path: events, body: triggerJSON(t, []string{strings.Repeat("a", 165)}, "e", "d"), wantStatus: 400, wantBody: "Invalid channel name"},
		{name: "a channel name with a space gets 400", path: events, body: triggerJSON(t, []string{"a b"}, "e", "d"), wantStatus: 400, wantBody: "Invalid channel name"},
		{name: "a bad channel among good ones refuses the whole request", path: events, body: triggerJSON(t, []string{"ok-1", "b#d", "ok-2"}, "e", "d"), wantStatus: 400, wantBody: "Invalid channel name"},
		{name: "an event name of 200 bytes is accepted", path: events, body: triggerJSON(t, []string{"c"}, strings.Repeat("n", 200), "d"), wantStatus: 200, wantBody: "{}", wantEvents: 1},
		{name: "an event name of 201 bytes gets 400", path: events, body: triggerJSON(t, []string{"c"}, strings.Repeat("n", 201), "d"), wantStatus: 400, wantBody: "Invalid event name"},
		{name: "the pusher: prefix gets 400", path: events, body: triggerJSON(t, []string{"c"}, "pusher:subscribe", "d"), wantStatus: 400, wantBody: "Invalid event name"},
		{name: "the pusher_internal: prefix gets 400", path: events, body: triggerJSON(t, []string{"c"}, "pusher_internal:x", "d"), wantStatus: 400, wantBody: "Invalid event name"},
		{name: "a body that is not UTF-8 gets 400", path: events, body: []byte("{\"channels\":[\"c\"],\"name\":\"e\",\"data\":\"\xff\"}"), wantStatus: 400, wantBody: "Request body is not valid UTF-8"},
		{name: "malformed JSON gets 400", path: events, body: []byte(`{"channels":["c"],`), wantStatus: 400, wantBody: "Invalid JSON"},
		{name: "data that is not a string gets 400", path: events, body: []byte(`{"channels":["c"],"name":"e","data":{"a":1}}`), wantStatus: 400, wantBody: "Invalid JSON"},
		{name: "a body over the overall bound gets 413", opts: Options{MaxBatch: 1, MaxPayloadBytes: 1}, path: events, body: triggerJSON(t, []string{"c"}, "e", strings.Repeat("x", 1<<20)), wantStatus: 413, wantBody: "Request body too large"},
		{name: "a batch item with a bad socket_id gets 400 naming the item", path: batch, body: []byte(`{"batch":[{"channel":"c","name":"e","data":"d"},{"channel":"c","name":"e","data":"d","socket_id":"abc"}]}`), wantStatus: 400, wantBody: "Event #1 in batch: Invalid socket_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, tt.opts)
			got := rawPost(t, s, defaultCreds, time.Now(), tt.path, tt.body)
			if got.status != tt.wantStatus || !strings.HasPrefix(got.body, tt.wantBody) {
				t.Fatalf("answer=%d %q, want %d %q...", got.status, got.body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus != 200 && got.header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Fatalf("Content-Type=%q, want plain text", got.header.Get("Content-Type"))
			}
			if n := len(s.Events()); n != tt.wantEvents {
				t.Fatalf("Events()=%d, want %d", n, tt.wantEvents)
			}
			wantAccepted := 0
			if tt.wantStatus == 200 {
				wantAccepted = 1
			}
			if s.Requests() != 1 || s.Accepted() != wantAccepted {
				t.Fatalf("Requests()=%d Accepted()=%d, want 1 and %d", s.Requests(), s.Accepted(), wantAccepted)
			}
		})
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	body := triggerJSON(t, []string{"c"}, "e", "d")
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{name: "another app id gets 404", method: http.MethodPost, path: "/apps/2/events", wantStatus: 404},
		{name: "an unknown endpoint gets 404", method: http.MethodPost, path: "/apps/1/channels", wantStatus: 404},
		{name: "a path outside /apps gets 404", method: http.MethodPost, path: "/events", wantStatus: 404},
		{name: "GET on events gets 405", method: http.MethodGet, path: "/apps/1/events", wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{})
			q := signedQuery(defaultCreds, tt.method, tt.path, time.Now().Unix(), body)
			if got := rawDo(t, s, tt.method, tt.path+"?"+q, body); got.status != tt.wantStatus {
				t.Fatalf("answer=%d %q, want %d", got.status, got.body, tt.wantStatus)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	lim := limits{maxPayload: 10, maxBatch: 2, maxChannels: 2}
	tests := []struct {
		name       string
		ep         endpoint
		body       string
		wantStatus int // 0 for accepted
		want       []published
	}{
		{name: "a trigger on two channels publishes one event per channel", ep: endpointEvents,
			body: `{"channels":["a","b"],"name":"n","data":"d","socket_id":"1.2"}`,
			want: []published{{channel: "a", name: "n", data: "d", socketID: "1.2"}, {channel: "b", name: "n", data: "d", socketID: "1.2"}}},
		{name: "a trigger with a single channel field is accepted", ep: endpointEvents,
			body: `{"channel":"a","name":"n","data":""}`, want: []published{{channel: "a", name: "n"}}},
		{name: "unknown fields such as info are ignored", ep: endpointEvents,
			body: `{"channel":"a","name":"n","data":"d","info":"subscription_count","extra":1}`, want: []published{{channel: "a", name: "n", data: "d"}}},
		{name: "escaped data is counted and recorded unescaped", ep: endpointEvents,
			body: `{"channel":"a","name":"n","data":"\u00e9\n\"x\""}`, want: []published{{channel: "a", name: "n", data: "é\n\"x\""}}},
		{name: "a batch keeps its order", ep: endpointBatch,
			body: `{"batch":[{"channel":"b","name":"2","data":"y"},{"channel":"a","name":"1","data":"x"}]}`,
			want: []published{{channel: "b", name: "2", data: "y"}, {channel: "a", name: "1", data: "x"}}},
		{name: "both channels and channel are refused", ep: endpointEvents, body: `{"channels":["a"],"channel":"a","name":"n","data":"d"}`, wantStatus: 400},
		{name: "no channel at all is refused", ep: endpointEvents, body: `{"name":"n","data":"d"}`, wantStatus: 400},
		{name: "an empty channels list is refused", ep: endpointEvents, body: `{"channels":[],"name":"n","data":"d"}`, wantStatus: 400},
		{name: "an empty channel name is refused", ep: endpointEvents, body: `{"channel":"","name":"n","data":"d"}`, wantStatus: 400},
		{name: "a missing name is refused", ep: endpointEvents, body: `{"channel":"a","data":"d"}`, wantStatus: 400},
		{name: "missing data is refused", ep: endpointEvents, body: `{"channel":"a","name":"n"}`, wantStatus: 400},
		{name: "null data is refused", ep: endpointEvents, body: `{"channel":"a","name":"n","data":null}`, wantStatus: 400},
		{name: "data over the limit is 413", ep: endpointEvents, body: `{"channel":"a","name":"n","data":"12345678901"}`, wantStatus: 413},
		{name: "a socket id without a dot is refused", ep: endpointEvents, body: `{"channel":"a","name":"n","data":"d","socket_id":"12"}`, wantStatus: 400},
		{name: "a socket id with a sign is refused", ep: endpointEvents, body: `{"channel":"a","name":"n","data":"d","socket_id":"-1.2"}`, wantStatus: 400},
		{name: "trailing data after the object is refused", ep: endpointEvents, body: `{"channel":"a","name":"n","data":"d"} {}`, wantStatus: 400},
		{name: "a top-level array is refused", ep: endpointEvents, body: `[]`, wantStatus: 400},
		{name: "an empty body is refused", ep: endpointEvents, body: ``, wantStatus: 400},
		{name: "a batch without the batch key is refused", ep: endpointBatch, body: `{}`, wantStatus: 400},
		{name: "an empty batch is refused", ep: endpointBatch, body: `{"batch":[]}`, wantStatus: 400},
		{name: "a batch item without a channel is refused", ep: endpointBatch, body: `{"batch":[{"name":"n","data":"d"}]}`, wantStatus: 400},
		{name: "the first bad batch item decides the status", ep: endpointBatch,
			body: `{"batch":[{"channel":"a","name":"n","data":"12345678901"},{"channel":"a b","name":"n","data":"d"}]}`, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parse(tt.ep, []byte(tt.body), lim)
			if tt.wantStatus != 0 {
				if err == nil || err.status != tt.wantStatus {
					t.Fatalf("parse()=%v, %v, want status %d", got, err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse()=%v, want accepted", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("parse()=%+v, want %+v", got, tt.want)
			}
		})
	}
}
