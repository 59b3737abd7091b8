package producer

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzAPIRequest drives the whole ingest API with arbitrary paths, headers
// and bodies against a real JetStream and checks the contract: never a
// panic, never a 5xx while JetStream is up, every refusal a JSON error body
// with a code and a message, and a 2xx only when the stream holds the
// change it names (the one stored first, for a duplicate id).
func FuzzAPIRequest(f *testing.F) {
	f.Add("/v1/events/e42/vote.updated", testKey, "", "", `{"v":1}`)
	f.Add("/v1/events/e42/vote.updated", testKey, "key-1", "1.2", `[1,2]`)
	f.Add("/v1/events/e%2F42/vote.updated", testKey, "", "", `{}`)
	f.Add("/v1/events/e42/Vote", testKey, "", "", `{}`)
	f.Add("/v1/events/e42/vote.updated", "nope", "", "", `{}`)
	f.Add("/v1/events/e42/vote.updated", testKey, "bad key", "x", `{`)
	f.Add("/v1/publish", testKey, "", "", `[{"eventId":"e1","type":"vote.updated","data":1}]`)
	f.Add("/v1/publish", testKey, "", "", `[{"eventId":"e1","type":"vote.updated"}, 3]`)
	f.Add("/v1/publish", testKey, "", "9.9", `{"not":"an array"}`)
	f.Add("/v1/tokens", testKey, "", "", `{"eventId":"e42","ttl":60}`)
	f.Add("/v1/tokens", testKey, "", "", `{"eventId":"../x"}`)
	f.Add("/v1/nothing", testKey, "", "", ``)

	_, js := newStream(f)
	reg := prometheus.NewRegistry()
	pub := NewPublisher(js, Options{Metrics: newMetrics(f, reg), PollSecret: []byte(pollSecret)})
	api, err := NewAPI(APIConfig{Keys: []string{testKey}, Rate: 1e9, Burst: 1 << 30, PollSecret: []byte(pollSecret)},
		APIDeps{Publisher: pub, Registerer: reg})
	if err != nil {
		f.Fatal(err)
	}
	mux := ops.Mux(reg, &ops.Checks{})
	api.Register(mux)

	f.Fuzz(func(t *testing.T, path, key, idemKey, socketID, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(http.MethodPost, "http://api.test"+path, strings.NewReader(body))
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set("Authorization", "Bearer "+key)
		if idemKey != "" && validHeader(idemKey) {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		if socketID != "" && validHeader(socketID) {
			req.Header.Set("X-Socket-Id", socketID)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		res := rec.Result()
		b := rec.Body.Bytes()
		if res.StatusCode >= 500 {
			t.Fatalf("POST %q = %d %s: a 5xx while JetStream is up", path, res.StatusCode, b)
		}
		if res.StatusCode >= 300 {
			if res.StatusCode == http.StatusMovedPermanently || res.StatusCode == http.StatusTemporaryRedirect || res.StatusCode == http.StatusPermanentRedirect {
				return // ServeMux cleaning the path; no handler ran
			}
			var eb wire.ErrorBody
			if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("POST %q = %d with body %q: want {\"error\":{\"code\",\"message\"}}", path, res.StatusCode, b)
			}
			return
		}
		if res.StatusCode == http.StatusAccepted {
			var r struct {
				ID        string `json:"id"`
				Seq       uint64 `json:"seq"`
				Duplicate bool   `json:"duplicate"`
			}
			if err := json.Unmarshal(b, &r); err != nil || r.Seq == 0 {
				t.Fatalf("POST %q = 202 %s: want an id and a seq", path, b)
			}
			st, err := js.Stream(t.Context(), wire.StreamName)
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.GetMsg(t.Context(), r.Seq)
			if err != nil {
				t.Fatalf("202 for seq %d, which the stream does not hold: %v", r.Seq, err)
			}
			// A duplicate id answers with the change stored first, whose
			// data may differ from this request's.
			// Data is stored compacted.
			var compact bytes.Buffer
			if err := json.Compact(&compact, []byte(body)); err != nil {
				t.Fatalf("202 for data that does not compact: %q: %v", body, err)
			}
			if m.Header.Get(wire.HeaderID) != r.ID || !r.Duplicate && !bytes.Equal(m.Data, compact.Bytes()) {
				t.Fatalf("202 %s, but the stream holds id %q data %q", b, m.Header.Get(wire.HeaderID), m.Data)
			}
		}
	})
}

// validHeader reports whether v can be sent as a header value at all.
func validHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
