package pushercompat

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The worked example of Pusher's REST API docs ("Generating authentication
// signatures"), also pusher-http-go's TestTriggerRequestUrl.
const (
	vectorKey       = "278d425bdf160c739803"
	vectorSecret    = "7ad3773142a6692b25b8"
	vectorTimestamp = 1353088179
	vectorBody      = `{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`
	vectorMD5       = "ec365a775a4cd0599faeb73354201b6f"
	vectorSignature = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
)

func TestDocumentedVectorIsAccepted(t *testing.T) {
	t.Parallel()
	if got := bodyMD5([]byte(vectorBody)); got != vectorMD5 {
		t.Fatalf("bodyMD5()=%s, want %s", got, vectorMD5)
	}
	s := Start(t, Options{
		AppID: "3", Key: vectorKey, Secret: vectorSecret,
		Now: func() time.Time { return time.Unix(vectorTimestamp, 0) },
	})
	// The query exactly as the docs give it, typed out rather than computed,
	// so the server's string-to-sign is checked against Pusher's.
	q := "auth_key=" + vectorKey + "&auth_timestamp=1353088179&auth_version=1.0&body_md5=" + vectorMD5 + "&auth_signature=" + vectorSignature
	got := rawDo(t, s, http.MethodPost, "/apps/3/events?"+q, []byte(vectorBody))
	if got.status != http.StatusOK || got.body != "{}" {
		t.Fatalf("vector answered %d %q, want 200 {}", got.status, got.body)
	}
	evs := s.Events()
	if len(evs) != 1 {
		t.Fatalf("Events()=%v, want one", evs)
	}
	want := Event{Channel: "project-3", Name: "foo", Data: `{"some":"data"}`, At: time.Unix(vectorTimestamp, 0), Request: 1}
	if evs[0] != want {
		t.Fatalf("Events()[0]=%+v, want %+v", evs[0], want)
	}

	// One flipped hex digit of the signature must be refused.
	bad := strings.Replace(q, vectorSignature, "e"+vectorSignature[1:], 1)
	if got := rawDo(t, s, http.MethodPost, "/apps/3/events?"+bad, []byte(vectorBody)); got.status != http.StatusUnauthorized {
		t.Fatalf("tampered vector answered %d %q, want 401", got.status, got.body)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"name":"e","channel":"c","data":"d"}`)
	const path = "/apps/1/events"
	signed := func(c credentials, ts time.Time) string {
		return signedQuery(c, http.MethodPost, path, ts.Unix(), body)
	}
	// edit re-signs nothing: it changes a correctly signed query.
	edit := func(q string, fn func(url.Values)) string {
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatalf("parse %q: %v", q, err)
		}
		fn(v)
		return v.Encode()
	}
	good := signed(defaultCreds, now)
	tests := []struct {
		name  string
		query string
		body  []byte
		path  string
		want  string // "" for accepted, else a prefix of the 401 message
	}{
		{name: "a correctly signed request is accepted", query: good, body: body, path: path},
		{name: "a timestamp exactly 600 s old is accepted", query: signed(defaultCreds, now.Add(-600*time.Second)), body: body, path: path},
		{name: "a timestamp exactly 600 s ahead is accepted", query: signed(defaultCreds, now.Add(600*time.Second)), body: body, path: path},
		{name: "upper-case hex in the signature is accepted", query: edit(good, func(v url.Values) { v.Set("auth_signature", strings.ToUpper(v.Get("auth_signature"))) }), body: body, path: path},
		{name: "a timestamp 601 s old is refused", query: signed(defaultCreds, now.Add(-601*time.Second)), body: body, path: path, want: "Timestamp expired"},
		{name: "a timestamp 601 s ahead is refused", query: signed(defaultCreds, now.Add(601*time.Second)), body: body, path: path, want: "Timestamp expired"},
		{name: "a huge timestamp is refused without overflow", query: edit(good, func(v url.Values) { v.Set("auth_timestamp", "9223372036854775807") }), body: body, path: path, want: "Timestamp expired"},
		{name: "a huge negative timestamp is refused without overflow", query: edit(good, func(v url.Values) { v.Set("auth_timestamp", "-9223372036854775808") }), body: body, path: path, want: "Timestamp expired"},
		{name: "a non-numeric timestamp is refused", query: edit(good, func(v url.Values) { v.Set("auth_timestamp", "soon") }), body: body, path: path, want: "Invalid auth_timestamp"},
		{name: "a wrong secret is refused", query: signed(credentials{key: "key", secret: "guess"}, now), body: body, path: path, want: "Invalid signature"},
		{name: "an unknown key is refused", query: signed(credentials{key: "other", secret: "secret"}, now), body: body, path: path, want: "Unknown auth_key"},
		{name: "another auth_version is refused", query: edit(good, func(v url.Values) { v.Set("auth_version", "2.0") }), body: body, path: path, want: "Unsupported auth_version"},
		{name: "a body that does not match body_md5 is refused", query: good, body: []byte(`{"name":"e","channel":"c","data":"X"}`), path: path, want: "Invalid body_md5"},
		{name: "a body without body_md5 is refused", query: edit(good, func(v url.Values) { v.Del("body_md5") }), body: body, path: path, want: "Missing parameter: body_md5"},
		{name: "a missing signature is refused", query: edit(good, func(v url.Values) { v.Del("auth_signature") }), body: body, path: path, want: "Missing parameter: auth_signature"},
		{name: "a missing key is refused", query: edit(good, func(v url.Values) { v.Del("auth_key") }), body: body, path: path, want: "Missing parameter: auth_key"},
		{name: "a repeated key is refused", query: edit(good, func(v url.Values) { v.Add("auth_key", "key") }), body: body, path: path, want: "Parameter auth_key given 2 times"},
		{name: "a signature for another path is refused", query: good, body: body, path: "/apps/1/batch_events", want: "Invalid signature"},
		{name: "an extra unsigned parameter is refused", query: edit(good, func(v url.Values) { v.Set("info", "user_count") }), body: body, path: path, want: "Invalid signature"},
		{name: "a malformed query is refused", query: good + "&%zz", body: body, path: path, want: "Invalid query string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := verify(defaultCreds, http.MethodPost, tt.path, tt.query, tt.body, now)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("verify()=%v, want accepted", err)
			case tt.want != "" && err == nil:
				t.Fatalf("verify()=nil, want 401 %q", tt.want)
			case tt.want != "" && (err.status != http.StatusUnauthorized || !strings.HasPrefix(err.msg, tt.want)):
				t.Fatalf("verify()=%d %q, want 401 %q...", err.status, err.msg, tt.want)
			}
		})
	}
}

func TestRealClientSignaturesAreCheckedEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret string
		skew   time.Duration // server clock minus real clock
		want   string        // "" for accepted, else the error prefix
	}{
		{name: "the right secret and clock are accepted", secret: "secret"},
		{name: "a wrong secret gets 401", secret: "wrong", want: "Status Code: 401 - Invalid signature"},
		{name: "a client clock 11 minutes behind gets 401", secret: "secret", skew: 11 * time.Minute, want: "Status Code: 401 - Timestamp expired"},
		{name: "a client clock 11 minutes ahead gets 401", secret: "secret", skew: -11 * time.Minute, want: "Status Code: 401 - Timestamp expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := Start(t, Options{Now: func() time.Time { return time.Now().Add(tt.skew) }})
			c := s.Client(5 * time.Second)
			c.Secret = tt.secret
			err := c.Trigger("event-e1", "vote.updated", `{"id":1}`)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Trigger()=%v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("Trigger()=%v, want %q...", err, tt.want)
			}
			wantEvents := 0
			if tt.want == "" {
				wantEvents = 1
			}
			if n := len(s.Events()); n != wantEvents || s.Requests() != 1 {
				t.Fatalf("Events()=%d, Requests()=%d, want %d and 1", n, s.Requests(), wantEvents)
			}
		})
	}
}
