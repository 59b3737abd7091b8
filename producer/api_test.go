package producer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

const (
	testKey    = "key-one-0123456789"
	otherKey   = "key-two-0123456789"
	pollSecret = "poll-secret-0123456789"
)

type apiEnv struct {
	srv   *testutil.JetStream
	js    jetstream.JetStream
	url   string
	reg   *prometheus.Registry
	clock *testutil.Clock
	logs  *logtest.Hook
}

func newAPIEnv(t *testing.T, cfg APIConfig) *apiEnv {
	t.Helper()
	srv, js := newStream(t)
	if cfg.Keys == nil {
		cfg.Keys = []string{testKey, otherKey}
	}
	if cfg.PublishTimeout == 0 {
		// What a loaded 2-core machine needs for a batch of 500; tests of
		// an outage set a short one.
		cfg.PublishTimeout = 30 * time.Second
	}
	reg := prometheus.NewRegistry()
	clk := testutil.NewClock(fixedNow)
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	pub := NewPublisher(js, Options{Metrics: newMetrics(t, reg), Now: clk.Now, PollSecret: []byte(pollSecret)})
	api, err := NewAPI(cfg, APIDeps{Publisher: pub, Log: log, Registerer: reg, Now: clk.Now})
	if err != nil {
		t.Fatalf("NewAPI()=%v", err)
	}
	mux := ops.Mux(reg, &ops.Checks{})
	api.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &apiEnv{srv: srv, js: js, url: hs.URL, reg: reg, clock: clk, logs: hook}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the "error.code" of an error body.
func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var b wire.ErrorBody
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatalf("error body %q: %v", a.body, err)
	}
	if b.Error.Message == "" {
		t.Fatalf("error body %q has no message", a.body)
	}
	return b.Error.Code
}

func (e *apiEnv) do(t *testing.T, method, path, key string, hdr map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

type idSeq struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
	Error     *wire.ErrorDetail
}

func TestAPIPublishesOneChangeAndStoresItAsSent(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	body := `{"option":"2026-12-01","votes":3}`
	a := e.do(t, "POST", "/v1/events/e42/vote.updated", testKey, map[string]string{"X-Socket-Id": "12.34"}, body)
	if a.status != http.StatusAccepted {
		t.Fatalf("status=%d body=%s, want 202", a.status, a.body)
	}
	var got idSeq
	if err := json.Unmarshal(a.body, &got); err != nil || got.Seq != 1 || got.ID == "" {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	envs, sockets := stored(t, e.js)
	if len(envs) != 1 {
		t.Fatalf("stored %d, want 1", len(envs))
	}
	want := wire.Envelope{ID: got.ID, Seq: 1, EventID: "e42", Type: "vote.updated", At: fixedNow, Data: json.RawMessage(body)}
	if string(envs[0].AppendJSON(nil)) != string(want.AppendJSON(nil)) || sockets[0] != "12.34" {
		t.Fatalf("stored %s socket %q, want %s socket 12.34", envs[0].AppendJSON(nil), sockets[0], want.AppendJSON(nil))
	}
}

func TestAPIIdempotencyKeyStoresOnceAndAnswersTheSameSeq(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	hdr := map[string]string{"Idempotency-Key": "order-7:v1"}
	var answers []idSeq
	for range 3 {
		a := e.do(t, "POST", "/v1/events/e1/phase.changed", testKey, hdr, `{"phase":"vote"}`)
		if a.status != http.StatusAccepted {
			t.Fatalf("status=%d body=%s", a.status, a.body)
		}
		var r idSeq
		if err := json.Unmarshal(a.body, &r); err != nil {
			t.Fatalf("answer %s: %v", a.body, err)
		}
		answers = append(answers, r)
	}
	if answers[0].ID != "order-7:v1" || answers[1].Seq != answers[0].Seq || answers[2].Seq != answers[0].Seq || !answers[2].Duplicate {
		t.Fatalf("answers %+v, want one id and seq, later ones duplicates", answers)
	}
	if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != 1 {
		t.Fatalf("stored %d, want 1", n)
	}
}

func TestAPIAnswersEveryErrorWithItsStatusAndCode(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{MaxEventBytes: 100, MaxRequestBytes: 4000, PollSecret: []byte(pollSecret)})
	big := `"` + strings.Repeat("x", 200) + `"`
	many := "[" + strings.Repeat(`{"eventId":"e1","type":"vote.updated","data":1},`, MaxBatchItems) + `{"eventId":"e1","type":"vote.updated","data":1}]`
	tests := []struct {
		name, method, path, key string
		hdr                     map[string]string
		body                    string
		status                  int
		code                    string
	}{
		{"no Authorization header", "POST", "/v1/events/e1/vote.updated", "", nil, `1`, 401, wire.CodeUnauthorized},
		{"an unknown key", "POST", "/v1/events/e1/vote.updated", "nope", nil, `1`, 401, wire.CodeUnauthorized},
		{"a Basic scheme", "POST", "/v1/events/e1/vote.updated", "", map[string]string{"Authorization": "Basic " + testKey}, `1`, 401, wire.CodeUnauthorized},
		{"an unknown key on the batch", "POST", "/v1/publish", "nope", nil, `[]`, 401, wire.CodeUnauthorized},
		{"an unknown key on tokens", "POST", "/v1/tokens", "nope", nil, `{}`, 401, wire.CodeUnauthorized},
		{"an eventId with a bad character", "POST", "/v1/events/e%2542/vote.updated", testKey, nil, `1`, 400, wire.CodeInvalidEventID},
		{"an eventId over 128 characters", "POST", "/v1/events/" + strings.Repeat("a", 129) + "/vote.updated", testKey, nil, `1`, 400, wire.CodeInvalidEventID},
		{"a type with upper case", "POST", "/v1/events/e1/Vote.updated", testKey, nil, `1`, 400, wire.CodeInvalidType},
		{"a body that is not JSON", "POST", "/v1/events/e1/vote.updated", testKey, nil, `{"a":`, 400, wire.CodeInvalidJSON},
		{"an empty body", "POST", "/v1/events/e1/vote.updated", testKey, nil, ``, 400, wire.CodeInvalidJSON},
		{"a bad Idempotency-Key", "POST", "/v1/events/e1/vote.updated", testKey, map[string]string{"Idempotency-Key": "a/b"}, `1`, 400, wire.CodeInvalidID},
		{"a bad X-Socket-Id", "POST", "/v1/events/e1/vote.updated", testKey, map[string]string{"X-Socket-Id": "abc"}, `1`, 400, wire.CodeInvalidSocketID},
		{"a bad X-Socket-Id on the batch", "POST", "/v1/publish", testKey, map[string]string{"X-Socket-Id": "1."}, `[]`, 400, wire.CodeInvalidSocketID},
		{"data over the per-change limit", "POST", "/v1/events/e1/vote.updated", testKey, nil, big, 413, wire.CodeTooLarge},
		{"a batch over the request limit", "POST", "/v1/publish", testKey, nil, "[" + strings.Repeat(" ", 5000) + "]", 413, wire.CodeTooLarge},
		{"a batch over 500 changes", "POST", "/v1/publish", testKey, nil, many, 413, wire.CodeTooLarge},
		{"a batch that is an object", "POST", "/v1/publish", testKey, nil, `{"eventId":"e1"}`, 400, wire.CodeInvalidJSON},
		{"an empty batch", "POST", "/v1/publish", testKey, nil, `[]`, 400, wire.CodeInvalidRequest},
		{"a batch with an unknown field", "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"vote.updated","data":1,"colour":"red"}]`, 400, wire.CodeInvalidJSON},
		{"a batch with trailing data", "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"vote.updated","data":1}] []`, 400, wire.CodeInvalidJSON},
		{"a batch with an Idempotency-Key", "POST", "/v1/publish", testKey, map[string]string{"Idempotency-Key": "k"}, `[]`, 400, wire.CodeInvalidRequest},
		{"a GET on a publish route", "GET", "/v1/events/e1/vote.updated", testKey, nil, ``, 405, wire.CodeMethodNotAllowed},
		{"an unknown route", "POST", "/v1/nothing", testKey, nil, ``, 404, wire.CodeNotFound},
		{"a token for a bad eventId", "POST", "/v1/tokens", testKey, nil, `{"eventId":"a b"}`, 400, wire.CodeInvalidEventID},
		{"a token with a ttl over 24h", "POST", "/v1/tokens", testKey, nil, `{"eventId":"e1","ttl":86401}`, 400, wire.CodeInvalidRequest},
		{"a token with a fractional ttl", "POST", "/v1/tokens", testKey, nil, `{"eventId":"e1","ttl":1.5}`, 400, wire.CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := e.do(t, tt.method, tt.path, tt.key, tt.hdr, tt.body)
			if a.status != tt.status {
				t.Fatalf("status=%d body=%s, want %d", a.status, a.body, tt.status)
			}
			if got := a.errorCode(t); got != tt.code {
				t.Fatalf("code=%q, want %q (body %s)", got, tt.code, a.body)
			}
			if a.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("401 without WWW-Authenticate")
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type=%q", ct)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != 0 {
			t.Errorf("rejected requests stored %d changes", n)
		}
		for _, entry := range e.logs.AllEntries() {
			line, _ := entry.String()
			if strings.Contains(line, testKey) || strings.Contains(line, "nope") {
				t.Errorf("a log line holds an API key: %s", line)
			}
		}
	})
}

func TestAPIRateLimitsPerKeyWithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{Rate: 2, Burst: MaxBatchItems})
	items := make([]string, MaxBatchItems)
	for i := range items {
		items[i] = fmt.Sprintf(`{"eventId":"e1","type":"vote.updated","data":%d}`, i)
	}
	full := "[" + strings.Join(items, ",") + "]"
	if a := e.do(t, "POST", "/v1/publish", testKey, nil, full); a.status != http.StatusOK {
		t.Fatalf("first full batch: status=%d body=%.200s", a.status, a.body)
	}
	a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, `1`)
	if a.status != http.StatusTooManyRequests || a.errorCode(t) != wire.CodeRateLimited || a.header.Get("Retry-After") != "1" {
		t.Fatalf("over the rate: status=%d Retry-After=%q body=%s, want 429 with Retry-After 1", a.status, a.header.Get("Retry-After"), a.body)
	}
	a = e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"vote.updated","data":1},{"eventId":"e1","type":"vote.updated","data":2},{"eventId":"e1","type":"vote.updated","data":3}]`)
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "2" {
		t.Fatalf("3 changes at 2/s: status=%d Retry-After=%q, want 429 with Retry-After 2", a.status, a.header.Get("Retry-After"))
	}
	if a := e.do(t, "POST", "/v1/events/e1/vote.updated", otherKey, nil, `1`); a.status != http.StatusAccepted {
		t.Fatalf("another key: status=%d body=%s, want 202 (limits are per key)", a.status, a.body)
	}
	e.clock.Add(time.Second)
	if a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, `1`); a.status != http.StatusAccepted {
		t.Fatalf("a second later: status=%d body=%s, want 202", a.status, a.body)
	}
	if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != MaxBatchItems+2 {
		t.Fatalf("stored %d, want %d", n, MaxBatchItems+2)
	}
}

func TestAPIBatchAnswersAResultPerChange(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{MaxEventBytes: 64})
	body := `[
		{"eventId":"e1","type":"vote.updated","data":{"n":1},"id":"c1"},
		{"eventId":"bad id","type":"vote.updated","data":1,"id":"c2"},
		{"eventId":"e2","type":"attendee.updated","data":[1,2],"socketId":"9.9"},
		{"eventId":"e1","type":"vote.updated","data":"` + strings.Repeat("x", 80) + `","id":"c4"},
		{"eventId":"e1","type":"vote.updated"},
		{"eventId":"e1","type":"vote.updated","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","id":"bad\u0000id"},
		{"eventId":"e1","type":"vote.updated","data":{"n":1},"id":"c1"}
	]`
	a := e.do(t, "POST", "/v1/publish", testKey, map[string]string{"X-Socket-Id": "1.2"}, body)
	if a.status != http.StatusBadRequest || a.errorCode(t) != wire.CodeInvalidRequest {
		t.Fatalf("status=%d body=%s, want 400 invalid_request for a batch with invalid changes", a.status, a.body)
	}
	var got struct{ Results []idSeq }
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Results) != 7 {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	r := got.Results
	wantErr := map[int]string{0: wire.CodeBatchRejected, 1: wire.CodeInvalidEventID, 2: wire.CodeBatchRejected,
		3: wire.CodeTooLarge, 4: wire.CodeInvalidJSON, 5: wire.CodeTooLarge, 6: wire.CodeBatchRejected}
	for i, res := range r {
		code := ""
		if res.Error != nil {
			code = res.Error.Code
		}
		if code != wantErr[i] || res.Seq != 0 {
			t.Fatalf("result %d: %+v, want error code %q and no seq (body %s)", i, res, wantErr[i], a.body)
		}
	}
	if r[0].ID != "c1" || r[1].ID != "c2" || r[3].ID != "c4" || r[5].ID != "" {
		t.Fatalf("results %+v, want valid given ids echoed", r)
	}
	if n := len(testutil.ReadAll(t, e.js, wire.StreamName)); n != 0 {
		t.Fatalf("a refused batch stored %d changes, want none", n)
	}

	// The same batch without its invalid changes is stored whole.
	valid := `[
		{"eventId":"e1","type":"vote.updated","data":{"n":1},"id":"c1"},
		{"eventId":"e2","type":"attendee.updated","data":[1,2],"socketId":"9.9"},
		{"eventId":"e1","type":"vote.updated","data":{"n":1},"id":"c1"}
	]`
	a = e.do(t, "POST", "/v1/publish", testKey, map[string]string{"X-Socket-Id": "1.2"}, valid)
	if a.status != http.StatusOK {
		t.Fatalf("status=%d body=%s, want 200 when every change is stored", a.status, a.body)
	}
	got.Results = nil
	if err := json.Unmarshal(a.body, &got); err != nil || len(got.Results) != 3 {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	r = got.Results
	if r[0].ID != "c1" || r[0].Seq == 0 || r[2].Seq != r[0].Seq || !r[2].Duplicate || r[1].ID == "" || r[1].Seq == 0 {
		t.Fatalf("results %+v, want c1 stored once and the repeat marked duplicate", r)
	}
	envs, sockets := stored(t, e.js)
	if len(envs) != 2 || envs[0].ID != "c1" || string(envs[1].Data) != "[1,2]" || sockets[0] != "1.2" || sockets[1] != "9.9" {
		t.Fatalf("stored %+v sockets %v", envs, sockets)
	}

	a = e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e3","type":"x y","data":1}]`)
	if a.status != http.StatusBadRequest || a.errorCode(t) != wire.CodeInvalidRequest || !bytes.Contains(a.body, []byte(wire.CodeInvalidType)) {
		t.Fatalf("none valid: status=%d body=%s, want 400 with the per-change codes", a.status, a.body)
	}
	a = e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e3","type":"vote.updated","data":"`+strings.Repeat("y", 80)+`"}]`)
	if a.status != http.StatusRequestEntityTooLarge || a.errorCode(t) != wire.CodeTooLarge {
		t.Fatalf("only too large: status=%d body=%s, want 413 payload_too_large", a.status, a.body)
	}
}

func TestAPIAnswers503DuringANATSOutageAndRecovers(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{PublishTimeout: 2 * time.Second})
	if a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, `1`); a.status != http.StatusAccepted {
		t.Fatalf("before outage: status=%d body=%s", a.status, a.body)
	}
	e.srv.Stop()
	a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, map[string]string{"Idempotency-Key": "during"}, `2`)
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != wire.CodeUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("single during outage: status=%d Retry-After=%q body=%s, want 503 with Retry-After", a.status, a.header.Get("Retry-After"), a.body)
	}
	if !bytes.Contains(a.body, []byte("LIVE_STREAM_DUPLICATES")) {
		t.Fatalf("single during outage: body=%s, want the message to say idempotency holds only within LIVE_STREAM_DUPLICATES", a.body)
	}
	if got := a.header.Get("Idempotency-Key"); got != "during" {
		t.Fatalf("single during outage: Idempotency-Key=%q, want the change's id echoed for the retry", got)
	}
	anon := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, `2`)
	if id := anon.header.Get("Idempotency-Key"); anon.status != http.StatusServiceUnavailable || wire.ValidateID(id) != nil || !bytes.Contains(anon.body, []byte(id)) {
		t.Fatalf("without a key during outage: status=%d Idempotency-Key=%q body=%s, want 503 naming the generated id to retry with", anon.status, id, anon.body)
	}
	a = e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"vote.updated","data":3,"id":"b1"},{"eventId":"e1","type":"vote.updated","data":4,"id":"b2"}]`)
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != wire.CodeUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("batch during outage: status=%d body=%s, want 503 with Retry-After", a.status, a.body)
	}
	if !bytes.Contains(a.body, []byte(`"id":"b1","error":{"code":"unavailable"`)) {
		t.Fatalf("batch 503 does not say which ids to retry: %s", a.body)
	}
	e.srv.Start()
	testutil.EventuallyErr(t, 15*time.Second, func() error {
		a := e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, map[string]string{"Idempotency-Key": "during"}, `2`)
		if a.status != http.StatusAccepted {
			return fmt.Errorf("after restart: status=%d body=%s", a.status, a.body)
		}
		return nil
	})
	if a := e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"vote.updated","data":3,"id":"b1"}]`); a.status != http.StatusOK {
		t.Fatalf("batch after restart: status=%d body=%s", a.status, a.body)
	}
	envs, _ := stored(t, e.js)
	var ids []string
	for _, env := range envs {
		ids = append(ids, env.ID)
	}
	if len(envs) != 3 || ids[1] != "during" || ids[2] != "b1" {
		t.Fatalf("stored ids %v, want the first change, during, b1", ids)
	}
	if warned := len(e.logs.AllEntries()); warned == 0 {
		t.Fatalf("no log line about the unavailable publishes")
	}
}

func TestAPIMintsPollTokens(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{PollSecret: []byte(pollSecret)})
	a := e.do(t, "POST", "/v1/tokens", testKey, nil, `{"eventId":"e42","ttl":120}`)
	if a.status != http.StatusOK {
		t.Fatalf("status=%d body=%s", a.status, a.body)
	}
	var got struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if err := json.Unmarshal(a.body, &got); err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	if want := time.Unix(fixedNow.Unix()+120, 0); !got.ExpiresAt.Equal(want) {
		t.Fatalf("expiresAt=%v, want %v", got.ExpiresAt, want)
	}
	if err := polltoken.Verify([]byte(pollSecret), got.Token, "e42", fixedNow.Add(119*time.Second)); err != nil {
		t.Fatalf("Verify()=%v", err)
	}
	if err := polltoken.Verify([]byte(pollSecret), got.Token, "e42", fixedNow.Add(121*time.Second)); err == nil {
		t.Fatalf("Verify() after expiry passed")
	}
	a = e.do(t, "POST", "/v1/tokens", testKey, nil, `{"eventId":"e42"}`)
	if err := json.Unmarshal(a.body, &got); err != nil || !got.ExpiresAt.Equal(time.Unix(fixedNow.Add(time.Hour).Unix(), 0)) {
		t.Fatalf("default ttl: %s %v", a.body, err)
	}

	off := newAPIEnv(t, APIConfig{})
	a = off.do(t, "POST", "/v1/tokens", testKey, nil, `{"eventId":"e42"}`)
	if a.status != http.StatusNotImplemented || a.errorCode(t) != CodeNotConfigured {
		t.Fatalf("without a secret: status=%d body=%s, want 501 not_configured", a.status, a.body)
	}
}

func TestAPIMetricsCountRequestsAndPassLint(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, APIConfig{})
	e.do(t, "POST", "/v1/events/e1/vote.updated", testKey, nil, `1`)
	e.do(t, "POST", "/v1/events/e1/vote.updated", "", nil, `1`)
	e.do(t, "POST", "/v1/publish", testKey, nil, `[{"eventId":"e1","type":"blocks.updated","data":1}]`)
	e.do(t, "GET", "/v1/publish", testKey, nil, ``)
	e.do(t, "POST", "/v1/nothing", testKey, nil, ``)
	testutil.CollectAndLint(t, e.reg, "liveupdates_")
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "liveupdates_api_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			counts[key] = m.GetCounter().GetValue()
		}
	}
	for _, want := range []string{
		"code=202 route=POST /v1/events/{eventId}/{type} ",
		"code=401 route=POST /v1/events/{eventId}/{type} ",
		"code=200 route=POST /v1/publish ",
		"code=405 route=/v1/publish ",
		"code=404 route=/v1/ ",
	} {
		if counts[want] != 1 {
			t.Fatalf("requests_total{%s}=%v, want 1 (all: %v)", want, counts[want], counts)
		}
	}
}

func TestNewAPIRefusesAConfigurationWithoutKeys(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	_, err := NewAPI(APIConfig{}, APIDeps{Publisher: NewPublisher(js, Options{})})
	if err == nil || !strings.Contains(err.Error(), "LIVE_API_KEYS") {
		t.Fatalf("NewAPI() without keys=%v, want an error naming LIVE_API_KEYS", err)
	}
	if _, err := NewAPI(APIConfig{Keys: []string{"k"}}, APIDeps{}); err == nil {
		t.Fatalf("NewAPI() without a publisher succeeded")
	}
}
