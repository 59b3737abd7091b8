package producer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Tests of issue 8 (hardening): each fails without its fix.

// Item 5: data the readers would refuse is refused at the door.
func TestAPIRefusesDataWithInvalidUTF8(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, "{\"name\":\"\xff\xfe\"}")
	if a.status != http.StatusBadRequest || a.errorCode(t) != wire.CodeInvalidJSON {
		t.Fatalf("single: status=%d body=%s, want 400 invalid_json", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/publish", testKey, nil, "[{\"eventId\":\"e1\",\"type\":\"vote.updated\",\"data\":\"\xc3\"},{\"eventId\":\"e1\",\"type\":\"vote.updated\",\"data\":1}]")
	if a.status != http.StatusBadRequest || a.errorCode(t) != wire.CodeInvalidRequest {
		t.Fatalf("batch: status=%d body=%s, want 400 invalid_request", a.status, a.body)
	}
	var got struct{ Results []idSeq }
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Results) != 2 ||
		got.Results[0].Error == nil || got.Results[0].Error.Code != wire.CodeInvalidJSON {
		t.Fatalf("batch results %s (%v), want the first change invalid_json", a.body, err)
	}
	if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != 0 {
		t.Fatalf("stored %d changes, want none", n)
	}
}

// Item 6: a newline inside data would split an SSE field; data is stored
// compacted, by both routes.
func TestAPIStoresPrettyPrintedDataWithoutNewlines(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	pretty := "{\n  \"option\": \"2026-12-01\",\r\n  \"votes\": [\n    1,\n    2\n  ],\n  \"note\": \"a b\\nc\"\n}\n"
	const want = `{"option":"2026-12-01","votes":[1,2],"note":"a b\nc"}`
	if a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, pretty); a.status != http.StatusAccepted {
		t.Fatalf("single: status=%d body=%s", a.status, a.body)
	}
	batch := "[\n {\"eventId\": \"e1\", \"type\": \"vote.updated\", \"data\": " + pretty + "}\n]"
	if a := e.do(t, "POST", "/v1/publish", testKey, nil, batch); a.status != http.StatusOK {
		t.Fatalf("batch: status=%d body=%s", a.status, a.body)
	}
	msgs := testutil.ReadAll(t, e.js, wire.StreamName)
	if len(msgs) != 2 {
		t.Fatalf("stored %d changes, want 2", len(msgs))
	}
	for _, m := range msgs {
		if bytes.ContainsAny(m.Data, "\r\n") || string(m.Data) != want {
			t.Fatalf("seq %d stored %q, want %q", m.Sequence, m.Data, want)
		}
	}
}

// Item 7: an Idempotency-Key is scoped per (API key, eventId).
func TestAPIIdempotencyKeyIsScopedPerAPIKeyAndEventID(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	hdr := map[string]string{"Idempotency-Key": "order-42"}
	post := func(key, eventID string) idSeq {
		t.Helper()
		a := e.do(t, "POST", "/v1/events/"+eventID+"/vote.updated", key, hdr, `{"n":1}`)
		if a.status != http.StatusAccepted {
			t.Fatalf("%s on %s: status=%d body=%s, want 202", key[:7], eventID, a.status, a.body)
		}
		var r idSeq
		if err := json.Unmarshal(a.body, &r); err != nil {
			t.Fatalf("answer %s: %v", a.body, err)
		}
		return r
	}
	first := post(testKey, "ea")
	seen := map[uint64]bool{first.Seq: true}
	for _, p := range []struct{ key, eventID string }{{otherKey, "eb"}, {otherKey, "ea"}, {testKey, "eb"}} {
		r := post(p.key, p.eventID)
		if r.Duplicate || seen[r.Seq] || r.ID != "order-42" {
			t.Fatalf("%s on %s answered %+v: another key or eventId must not see key one's change on ea (seq %d)", p.key[:7], p.eventID, r, first.Seq)
		}
		seen[r.Seq] = true
	}
	if again := post(testKey, "ea"); !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("a retry by the same key on the same eventId answered %+v, want a duplicate of seq %d", again, first.Seq)
	}
	msgs := testutil.ReadAll(t, e.js, wire.StreamName)
	if len(msgs) != 4 {
		t.Fatalf("stored %d changes, want 4", len(msgs))
	}
	for _, m := range msgs {
		if id := m.Header.Get(wire.HeaderMsgID); strings.Contains(id, testKey) || strings.Contains(id, otherKey) {
			t.Fatalf("Nats-Msg-Id %q holds an API key", id)
		}
	}
}

// Item 7: the same Idempotency-Key with another body is 409, by both routes.
func TestAPIIdempotencyKeyWithAnotherBodyIs409(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	hdr := map[string]string{"Idempotency-Key": "order-7"}
	a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, hdr, `{"n":1}`)
	if a.status != http.StatusAccepted {
		t.Fatalf("first: status=%d body=%s", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, hdr, `{"n":2}`)
	if a.status != http.StatusConflict || a.errorCode(t) != wire.CodeIdempotencyConflict {
		t.Fatalf("other body: status=%d body=%s, want 409 idempotency_conflict", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/events/e1/phase.changed", testKey, hdr, `{"n":1}`)
	if a.status != http.StatusConflict || a.errorCode(t) != wire.CodeIdempotencyConflict {
		t.Fatalf("other type: status=%d body=%s, want 409 idempotency_conflict", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, hdr, `{ "n": 1 }`)
	if a.status != http.StatusAccepted || !bytes.Contains(a.body, []byte(`"duplicate":true`)) {
		t.Fatalf("same body: status=%d body=%s, want a 202 duplicate", a.status, a.body)
	}

	a = e.do(t, "POST", "/v1/publish", testKey, nil,
		`[{"eventId":"e1","type":"vote.updated","data":{"n":3},"id":"order-7"},{"eventId":"e1","type":"vote.updated","data":1,"id":"new-1"}]`)
	if a.status != http.StatusConflict || a.errorCode(t) != wire.CodeIdempotencyConflict {
		t.Fatalf("batch: status=%d body=%s, want 409 idempotency_conflict", a.status, a.body)
	}
	var got struct{ Results []idSeq }
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Results) != 2 {
		t.Fatalf("batch answer %s: %v", a.body, err)
	}
	if r := got.Results; r[0].Error == nil || r[0].Error.Code != wire.CodeIdempotencyConflict || r[0].Seq != 0 || r[1].Error != nil || r[1].Seq == 0 {
		t.Fatalf("batch results %+v, want order-7 refused and new-1 stored", r)
	}
	if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != 2 {
		t.Fatalf("stored %d changes, want 2", n)
	}
}

// Item 10: headers, Content-Length: 100, one byte and no key: the 401 comes
// at once, without waiting for a body that never comes, and the server
// closes the connection. The httptest server has no read timeouts, so
// without the fix this waits forever.
func TestAPIAnswersAnUnauthenticatedPartialBodyAt401AndCloses(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	for _, key := range []string{"", "Authorization: Bearer nope\r\n"} {
		resp, rest := rawRequest(t, e.url, "POST /v1/events/e1/vote.updated HTTP/1.1\r\nHost: api\r\n"+key+
			"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("key %q: status=%d Connection=%q, want 401 and close", key, resp.StatusCode, resp.Header.Get("Connection"))
		}
		if err := rest(); err != nil {
			t.Fatalf("key %q: the server did not close the connection: %v", key, err)
		}
	}
}

// Item 10: an authenticated client that stops sending mid-body is cut off
// after BodyTimeout.
func TestAPIBoundsTheTimeToReadABody(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{BodyTimeout: 200 * time.Millisecond})
	resp, rest := rawRequest(t, e.url, "POST /v1/events/e1/vote.updated HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Length: 100\r\n\r\n{")
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("status=%d Connection=%q, want 408 and close", resp.StatusCode, resp.Header.Get("Connection"))
	}
	if err := rest(); err != nil {
		t.Fatalf("the server did not close the connection: %v", err)
	}
	// A request refused before its body is read (here a bad eventId):
	// net/http reads the rest of the body before it answers, within the
	// same deadline.
	resp, rest = rawRequest(t, e.url, "POST /v1/events/e%2542/vote.updated HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Length: 100\r\n\r\n{")
	if resp.StatusCode != http.StatusBadRequest || !resp.Close {
		t.Fatalf("refused unread: status=%d Connection=%q, want 400 and close", resp.StatusCode, resp.Header.Get("Connection"))
	}
	if err := rest(); err != nil {
		t.Fatalf("refused unread: the server did not close the connection: %v", err)
	}
}

// rawRequest writes req on a new TCP connection to the server at base and
// reads the answer's head; rest reads on until the server closes. Both
// fail after a deadline a loaded machine meets easily.
func rawRequest(t *testing.T, base, req string) (*http.Response, func() error) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	if err := conn.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a partial body: %v", err)
	}
	return resp, func() error {
		_, err := io.Copy(io.Discard, br)
		return err // nil at EOF
	}
}

// Item 12: the key fingerprint in logs is an HMAC under a per-process key,
// not a SHA-256 prefix anyone can recompute from a guessed key.
func TestAPIKeyFingerprintIsAnHMACUnderAProcessKey(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	build := func() *API {
		a, err := NewAPI(APIConfig{Keys: []string{testKey}}, APIDeps{Publisher: NewPublisher(js, Options{}), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatalf("NewAPI()=%v", err)
		}
		return a
	}
	a, b := build(), build()
	sum := sha256.Sum256([]byte(testKey))
	if fp := a.fps[0]; fp == hex.EncodeToString(sum[:4]) || len(fp) != 8 {
		t.Fatalf("fingerprint %q is the key's unsalted SHA-256 prefix, or not 8 hex digits", fp)
	}
	if a.fps[0] == b.fps[0] {
		t.Fatalf("two processes gave key one the same fingerprint %q: the HMAC key is not per process", a.fps[0])
	}
	if a.scopes[0] != b.scopes[0] {
		t.Fatalf("dedup scopes %q and %q differ: a retry through another replica would be stored twice", a.scopes[0], b.scopes[0])
	}
}

// The API side of TestPublishADuplicateWhoseStoredCopyCannotBeReadIsUnavailable:
// a key whose stored copy cannot be read back answers 503 with Retry-After,
// by both routes, never 2xx (DESIGN: a publisher never gets 2xx wrongly).
func TestAPIIdempotencyKeyWhoseStoredCopyCannotBeReadIs503(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	hdr := map[string]string{"Idempotency-Key": "order-9"}
	a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, hdr, `{"n":1}`)
	if a.status != http.StatusAccepted {
		t.Fatalf("first: status=%d body=%s", a.status, a.body)
	}
	var first idSeq
	if err := json.Unmarshal(a.body, &first); err != nil || first.Seq == 0 {
		t.Fatalf("first answer %s: %v", a.body, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, wire.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := st.DeleteMsg(ctx, first.Seq); err != nil {
		t.Fatalf("DeleteMsg(%d)=%v", first.Seq, err)
	}
	for _, body := range []string{`{"n":1}`, `{"n":2}`} {
		a = e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, hdr, body)
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.errorCode(t) != wire.CodeUnavailable {
			t.Fatalf("single %s: status=%d Retry-After=%q body=%s, want 503 unavailable with Retry-After", body, a.status, a.header.Get("Retry-After"), a.body)
		}
	}
	a = e.do(t, "POST", "/v1/publish", testKey, nil,
		`[{"eventId":"e1","type":"vote.updated","data":{"n":1},"id":"order-9"},{"eventId":"e1","type":"vote.updated","data":1,"id":"new-2"}]`)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || a.errorCode(t) != wire.CodeUnavailable {
		t.Fatalf("batch: status=%d Retry-After=%q body=%s, want 503 unavailable with Retry-After", a.status, a.header.Get("Retry-After"), a.body)
	}
}
