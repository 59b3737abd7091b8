package poller

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "since=1", "since=18446744073709551615&wait=30", "since=&wait=", "token=v1.e1.99.abc&_=1", "since=%31%32", "since=1&since=1", "wait=-1", "%zz=1", "since=+1", "wait=5&transport=sse", "transport=a,,sse,", "transport=sse&transport="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw, 30*time.Second)
		if err != nil {
			return
		}
		if q.wait < 0 || q.wait > 30*time.Second {
			t.Fatalf("parseQuery(%q).wait=%v, want 0..30s", raw, q.wait)
		}
		if !q.hasSince && q.since != 0 {
			t.Fatalf("parseQuery(%q) since=%d without hasSince", raw, q.since)
		}
	})
}

// noJS stands in for JetStream where a test never reaches it; any call panics.
type noJS struct{ jetstream.JetStream }

// FuzzRequest sends arbitrary paths, queries and cursor headers through the
// whole HTTP surface of a ready poller: it must never panic and must answer
// every request with a known status.
func FuzzRequest(f *testing.F) {
	seeds := []struct{ path, query, inm, lastID string }{
		{"/v1/events/e1/updates", "since=1", `"1"`, ""},
		{"/v1/events/e1/updates", "since=0&wait=5", "", ""},
		{"/v1/events/e.1/updates", "", "", ""},
		{"/v1/events/e1/stream", "", "", "2"},
		{"/v1/events/e1/stream", "", "", "x"},
		{"/v1/events/e1/messages/1", "", "", ""},
		{"/v1/events/e1/messages/99999999999999999999", "", "", ""},
		{"/v1/events/%00/updates", "since=%zz", "W/\"2\", *", ""},
		{"/v1/config", "", "", ""},
		{"/v1/client.js", "", `"x"`, ""},
	}
	for _, s := range seeds {
		f.Add(s.path, s.query, s.inm, s.lastID)
	}
	p, err := New(Config{MaxWait: time.Millisecond, BehindWait: time.Millisecond, Rate: -1, CORSOrigins: []string{"*"}}, Deps{JS: noJS{}})
	if err != nil {
		f.Fatal(err)
	}
	p.idx.reset(0)
	for i := range 3 {
		p.idx.apply(change(uint64(i+1), "e1"), time.Now())
	}
	p.markReady()
	p.following.Store(true)
	p.Drain() // long-polls and streams answer at once
	mux := http.NewServeMux()
	p.Register(mux)
	f.Fuzz(func(t *testing.T, path, query, inm, lastID string) {
		u, err := url.Parse("http://poller" + path)
		if err != nil || u.Path == "" {
			return
		}
		u.RawQuery = query
		r := httptest.NewRequest(http.MethodGet, "http://poller/", nil)
		r.URL = u
		r.RequestURI = u.RequestURI()
		r.Header.Set("If-None-Match", inm)
		r.Header.Set("Last-Event-ID", lastID)
		r.Header.Set("Origin", "https://a.example")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		switch rec.Code {
		case 200, 301, 304, 307, 308, 400, 404, 405:
		default:
			t.Fatalf("GET %s?%s=%d %s, want a known status", path, query, rec.Code, rec.Body)
		}
	})
}

// FuzzPusherAuth sends arbitrary bodies to POST /v1/pusher/auth: it must
// never panic and must answer a signature or a known error status.
func FuzzPusherAuth(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "socket_id=1234.1234&channel_name=private-event-e1"},
		{"application/json", `{"socket_id":"1.2","channel_name":"private-event-e1"}`},
		{"application/json", `{"socket_id":1}`},
		{"", "socket_id=1.2&socket_id=3.4"},
		{"application/x-www-form-urlencoded; charset=utf-8", "channel_name=private-event-%zz"},
		{"text/plain", "\x00"},
	} {
		f.Add(s.ct, s.body)
	}
	p, err := New(Config{Rate: -1, Pusher: Pusher{Key: "k", Secret: "s", Private: true}}, Deps{JS: noJS{}})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	f.Fuzz(func(t *testing.T, ct, body string) {
		r := httptest.NewRequest(http.MethodPost, "http://poller/v1/pusher/auth", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		switch rec.Code {
		case 200:
			if !strings.HasPrefix(rec.Body.String(), `{"auth":"k:`) {
				t.Fatalf("200 %s, want a signature", rec.Body)
			}
		case 400, 403, 413:
		default:
			t.Fatalf("POST %q %q=%d %s, want a known status", ct, body, rec.Code, rec.Body)
		}
	})
}
