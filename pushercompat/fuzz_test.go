package pushercompat

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Independent oracles for what parse accepts, written from Pusher's docs
// rather than from parse's code.
var (
	channelRe  = regexp.MustCompile(`\A[A-Za-z0-9_\-=@,.;]{1,164}\z`)
	socketIDRe = regexp.MustCompile(`\A\d+\.\d+\z`)
)

// FuzzParse checks that the body parser never panics, refuses only with
// 400 or 413, accepts only events that satisfy Pusher's rules, and that an
// accepted body re-encoded as pusher-http-go would send it parses to the
// same events.
func FuzzParse(f *testing.F) {
	f.Add(false, []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`))
	f.Add(false, []byte(`{"name":"vote.updated","channel":"event-e1","data":"x","socket_id":"123.456"}`))
	f.Add(true, []byte(`{"batch":[{"channel":"a","name":"n","data":"d"},{"channel":"b","name":"n","data":"","socket_id":"1.2"}]}`))
	f.Add(true, []byte(`{"batch":[]}`))
	f.Add(false, []byte(`{"name":"pusher:x","channel":"a","data":"d"}`))
	f.Add(false, []byte("{\"name\":\"n\",\"channel\":\"a\",\"data\":\"\xff\"}"))
	lim := limits{maxPayload: 16, maxBatch: 3, maxChannels: 3}
	f.Fuzz(func(t *testing.T, batch bool, body []byte) {
		ep := endpointEvents
		if batch {
			ep = endpointBatch
		}
		evs, err := parse(ep, body, lim)
		if err != nil {
			if err.status != http.StatusBadRequest && err.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("parse refused with %d %q, want 400 or 413", err.status, err.msg)
			}
			if evs != nil {
				t.Fatalf("parse refused but returned events %v", evs)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("parse accepted a body that is not UTF-8")
		}
		most := lim.maxChannels
		if batch {
			most = lim.maxBatch
		}
		if len(evs) == 0 || len(evs) > most {
			t.Fatalf("parse accepted %d events, want 1..%d", len(evs), most)
		}
		for _, e := range evs {
			switch {
			case !channelRe.MatchString(e.channel):
				t.Fatalf("accepted channel %q", e.channel)
			case e.name == "" || len(e.name) > maxEventName || strings.HasPrefix(e.name, "pusher:") || strings.HasPrefix(e.name, "pusher_internal:"):
				t.Fatalf("accepted event name %q", e.name)
			case len(e.data) > lim.maxPayload:
				t.Fatalf("accepted %d bytes of data", len(e.data))
			case e.socketID != "" && !socketIDRe.MatchString(e.socketID):
				t.Fatalf("accepted socket id %q", e.socketID)
			}
		}
		if !batch {
			return
		}
		// Re-encode as pusher-http-go's batchEvent does and parse again.
		type item struct {
			Channel  string  `json:"channel"`
			Name     string  `json:"name"`
			Data     string  `json:"data"`
			SocketID *string `json:"socket_id,omitempty"`
		}
		items := make([]item, len(evs))
		for i, e := range evs {
			items[i] = item{Channel: e.channel, Name: e.name, Data: e.data}
			if e.socketID != "" {
				items[i].SocketID = &e.socketID
			}
		}
		again, mErr := json.Marshal(map[string]any{"batch": items})
		if mErr != nil {
			t.Fatalf("marshal: %v", mErr)
		}
		evs2, err := parse(endpointBatch, again, lim)
		if err != nil || !slices.Equal(evs, evs2) {
			t.Fatalf("re-encoded batch parsed to %v, %v; want %v", evs2, err, evs)
		}
	})
}

// FuzzSignature checks that what pusher-http-go signs always verifies, and
// that changing the body or the path breaks it.
func FuzzSignature(f *testing.F) {
	f.Add("/apps/1/events", []byte(`{"name":"e","channel":"c","data":"d"}`), "key", "secret", int64(0))
	f.Add("/apps/3/batch_events", []byte(`{"batch":[]}`), "278d425bdf160c739803", "7ad3773142a6692b25b8", int64(-600))
	f.Add("/apps/1/events", []byte{}, "k", "", int64(600))
	f.Fuzz(func(t *testing.T, path string, body []byte, key, secret string, skew int64) {
		// Keys and secrets are what Pusher issues: no characters that a
		// query string would need to escape.
		if key == "" || strings.ContainsAny(key, "&=%+#; \x00\n") || !utf8.ValidString(key) {
			return
		}
		now := time.Unix(1_700_000_000, 0)
		skew %= 601
		c := credentials{key: key, secret: secret}
		q := signedQuery(c, http.MethodPost, path, now.Unix()+skew, body)
		if err := verify(c, http.MethodPost, path, q, body, now); err != nil {
			t.Fatalf("signed request refused: %v", err)
		}
		if err := verify(c, http.MethodPost, path+"x", q, body, now); err == nil {
			t.Fatalf("request verified for another path")
		}
		other := append(slices.Clone(body), 'x')
		if err := verify(c, http.MethodPost, path, q, other, now); err == nil {
			t.Fatalf("request verified with another body")
		}
	})
}

// FuzzParseRequest checks that the WebSocket message decoder never panics,
// and that every subscribe it accepts reads back the same from the shape
// pusher-js sends (data an object) and from data as a string.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"event":"pusher:subscribe","data":{"auth":"","channel":"event-e1"}}`))
	f.Add([]byte(`{"event":"pusher:subscribe","data":"{\"auth\":\"k:s\",\"channel\":\"private-e1\"}"}`))
	f.Add([]byte(`{"event":"pusher:unsubscribe","data":{"channel":"event-e1"}}`))
	f.Add([]byte(`{"event":"pusher:ping","data":{}}`))
	f.Add([]byte(`{"event":"client-x","channel":"private-e1","data":{}}`))
	f.Add([]byte(`{"event":"pusher:subscribe","data":7}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, refusal := parseRequest(data)
		if refusal != "" {
			if req != (request{}) {
				t.Fatalf("parseRequest(%q) = %+v, %q: a refusal carries a message and nothing else", data, req, refusal)
			}
			return
		}
		if req.kind == 0 {
			t.Fatalf("parseRequest(%q) = %+v with no refusal, want a kind", data, req)
		}
		if req.kind != requestSubscribe {
			return
		}
		for _, shape := range []func() ([]byte, error){
			func() ([]byte, error) {
				return json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": req.channel, "auth": req.auth}})
			},
			func() ([]byte, error) {
				inner, err := json.Marshal(map[string]string{"channel": req.channel, "auth": req.auth})
				if err != nil {
					return nil, err
				}
				return json.Marshal(map[string]any{"event": "pusher:subscribe", "data": string(inner)})
			},
		} {
			b, err := shape()
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.Valid([]byte(req.channel + req.auth)) {
				return // re-encoding replaces invalid UTF-8; nothing to compare
			}
			again, refusal := parseRequest(b)
			if refusal != "" || again != req {
				t.Fatalf("parseRequest(%s) = %+v, %q; want %+v", b, again, refusal, req)
			}
		}
	})
}
