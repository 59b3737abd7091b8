package ops

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nostressplanner/liveupdates/testutil"
)

func TestHTTPMetricsCountByPatternCodeAndHijack(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewHTTPMetrics(reg, "api")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewHTTPMetrics(reg, "api"); err == nil {
		t.Fatal("registering a role's metrics twice did not fail")
	}
	mux := http.NewServeMux()
	m.HandleFunc(mux, "GET /v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		w.(http.Flusher).Flush() // SSE handlers rely on this
		_, _ = w.Write([]byte("ok"))
	})
	m.HandleFunc(mux, "GET /v1/park", func(w http.ResponseWriter, r *http.Request) {
		if err := answerHijacked(w.(http.Hijacker).Hijack()); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{"/v1/things/a", "/v1/things/b", "/v1/things/missing", "/v1/park"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		_, _ = bufio.NewReader(resp.Body).ReadString(0)
		resp.Body.Close()
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"GET /v1/things/{id}", "200", 2}, {"GET /v1/things/{id}", "404", 1}, {"GET /v1/park", CodeHijacked, 1}} {
		waitRequests(t, reg, "liveupdates_api_http_requests_total", c.route, c.code, c.want)
	}
	testutil.CollectAndLint(t, reg, "liveupdates_api_")
}

// TestHTTPMetricsKeepTheResponseControllerWorking: the poller parks
// long-polls with http.NewResponseController(w).Hijack() and bounds SSE
// writes with SetWriteDeadline, the API bounds bodies with SetReadDeadline;
// through the middleware each must still reach the connection, and a
// hijack through the controller must count as hijacked.
func TestHTTPMetricsKeepTheResponseControllerWorking(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewHTTPMetrics(reg, "poller")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	m.HandleFunc(mux, "GET /sse", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetReadDeadline: %v", err)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline: %v", err)
		}
		w.WriteHeader(http.StatusAccepted)
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
	})
	m.HandleFunc(mux, "GET /park", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		// Counted already, before the answer: a client (or a test) that
		// has it must find it counted.
		if got := testutil.MetricSum(t, reg, "liveupdates_poller_http_requests_total", "route", "GET /park", "code", CodeHijacked); got != 1 {
			t.Errorf("right after the hijack requests{code=%s}=%v, want 1", CodeHijacked, got)
		}
		if err := answerHijacked(c, rw, err); err != nil {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, p := range []string{"/sse", "/park"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
	}
	for _, c := range []struct{ route, code string }{{"GET /sse", "202"}, {"GET /park", CodeHijacked}} {
		waitRequests(t, reg, "liveupdates_poller_http_requests_total", c.route, c.code, 1)
	}
}

// answerHijacked answers 204 on a hijacked connection, as the poller
// answers a parked long-poll, and closes it.
func answerHijacked(c net.Conn, rw *bufio.ReadWriter, err error) error {
	if err != nil {
		return fmt.Errorf("hijack: %w", err)
	}
	defer c.Close()
	if _, err := rw.WriteString("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	return rw.Flush()
}

// waitRequests waits for a request count: the middleware counts once the
// handler has returned, which may be just after the client has its answer
// (a hijacked connection is closed before its handler returns).
func waitRequests(t *testing.T, reg prometheus.Gatherer, name, route, code string, want float64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return testutil.MetricSum(t, reg, name, "route", route, "code", code) == want
	}, "%s{route=%q,code=%s} never reached %v", name, route, code, want)
}
