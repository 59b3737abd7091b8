package pushercompat

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
)

// BenchmarkHandlerVsBaseline measures the server's cost per request against
// a baseline handler in the same run: read the body, json.Unmarshal it into
// a map, answer {}. The ratio is what signature checks, validation,
// recording and fan-out add; tests that publish thousands of events should
// not feel it.
func BenchmarkHandlerVsBaseline(b *testing.B) {
	for _, tc := range []struct {
		name string
		path string
		body []byte
	}{
		{name: "trigger_1KiB", path: "/apps/1/events", body: benchTrigger(b, 1024)},
		{name: "batch_10x1KiB", path: "/apps/1/batch_events", body: benchBatch(b, 10, 1024)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := signedQuery(defaultCreds, http.MethodPost, tc.path, time.Now().Unix(), tc.body)
			target := tc.path + "?" + q
			baseline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				var v map[string]any
				if err != nil || json.Unmarshal(body, &v) != nil {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				io.WriteString(w, "{}") //nolint:errcheck
			})
			s, err := New(Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(s.Close)
			run := func(h http.Handler, n int) time.Duration {
				s.Reset() // keep the record from growing without bound
				start := time.Now()
				for range n {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, bytes.NewReader(tc.body)))
					if rec.Code != http.StatusOK {
						b.Fatalf("answer %d %s", rec.Code, rec.Body)
					}
				}
				return time.Since(start)
			}
			b.ReportAllocs()
			b.ResetTimer()
			// Interleave in chunks so both see the same machine load (the
			// machine is shared) and neither pays all the warm-up.
			var base, ours time.Duration
			for done := 0; done < b.N; {
				n := min(256, b.N-done)
				base += run(baseline, n)
				ours += run(s.Handler(), n)
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "baseline_ns/op")
			b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "server_ns/op")
			b.ReportMetric(float64(ours)/float64(base), "x_baseline")
		})
	}
}

func benchTrigger(b *testing.B, size int) []byte {
	body, err := json.Marshal(map[string]any{"channels": []string{"event-e1"}, "name": "vote.updated", "data": benchData(size)})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func benchBatch(b *testing.B, n, size int) []byte {
	items := make([]map[string]string, n)
	for i := range items {
		items[i] = map[string]string{"channel": fmt.Sprintf("event-e%d", i), "name": "vote.updated", "data": benchData(size)}
	}
	body, err := json.Marshal(map[string]any{"batch": items})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// benchData is JSON-looking data with quotes, so escaping is exercised.
func benchData(size int) string {
	return strings.Repeat(`{"k":"v"}`, size/9+1)[:size]
}
