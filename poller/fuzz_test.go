package poller

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "since=1", "since=18446744073709551615&wait=30", "since=&wait=", "token=v1.e1.99.abc&_=1", "since=%31%32", "since=1&since=1", "wait=-1", "%zz=1", "since=+1"} {
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
