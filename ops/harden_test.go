package ops

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPartialBodiesAreCutOffAfterTheReadTimeout is the regression test for
// clients that send headers, Content-Length: 100 and one byte, then nothing:
// before, each held its connection forever (past the header and idle
// timeouts), so a few hundred of them exhausted the process's descriptors.
// Both a route that reads the body and one that answers without reading it
// (the server then drains the body itself) must close the connection.
func TestPartialBodiesAreCutOffAfterTheReadTimeout(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 300 * time.Millisecond
	mux := Mux(prometheus.NewRegistry(), &Checks{})
	mux.HandleFunc("POST /read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "read")
	})
	base, _ := startServer(t, &Server{Handler: mux, ReadTimeout: bodyTimeout})
	addr := strings.TrimPrefix(base, "http://")

	const perRoute = 100
	routes := []string{"/read", "/healthz", "/nowhere"}
	start := time.Now()
	var conns []net.Conn
	for _, route := range routes {
		for range perRoute {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", route); err != nil {
				t.Fatalf("write: %v", err)
			}
			conns = append(conns, c)
		}
	}
	// Without a bound these reads end only at the client's own deadline.
	const bound = 20 * time.Second
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Go(func() {
			if err := c.SetReadDeadline(start.Add(bound)); err != nil {
				errs <- err
				return
			}
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				errs <- fmt.Errorf("connection %d (%s) still open %v after its partial body", i, routes[i/perRoute], bound)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d partial-body connections closed by the server within %v (read timeout %v)", len(conns), time.Since(start).Round(time.Millisecond), bodyTimeout)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d after the partial bodies, want 200", code)
	}
}

// TestLateWritersOutliveTheReadTimeout: the read deadline must not end a
// long-poll (reads nothing, writes late), nor a request whose body was read
// at once and whose answer comes later (the ingest API waiting for
// JetStream): net/http lifts it when the body is done. Were that to change,
// the deadline firing in the server's background read would cancel both
// contexts.
func TestLateWritersOutliveTheReadTimeout(t *testing.T) {
	t.Parallel()
	const bodyTimeout = 200 * time.Millisecond
	late := func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "context ended: "+contextErr(r), http.StatusServiceUnavailable)
			return
		case <-time.After(4 * bodyTimeout): // the long-poll's wait
		}
		_, _ = io.WriteString(w, "alive")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /poll", late)
	mux.HandleFunc("POST /ingest", late)
	base, _ := startServer(t, &Server{Handler: mux, ReadTimeout: bodyTimeout})

	check := func(resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != "alive" {
			t.Fatalf("%s = %d %q, want 200 alive after 4x the read timeout", resp.Request.URL.Path, resp.StatusCode, b)
		}
	}
	check(http.Get(base + "/poll"))
	check(http.Post(base+"/ingest", "application/json", strings.NewReader(`{"x":1}`)))
	// Twice on one keep-alive connection: the next request starts clean.
	check(http.Post(base+"/ingest", "application/json", strings.NewReader(`{"x":2}`)))
}

func contextErr(r *http.Request) string {
	if err := r.Context().Err(); err != nil {
		return err.Error()
	}
	return ""
}

func TestEveryAnswerSaysNoSniff(t *testing.T) {
	t.Parallel()
	mux := Mux(prometheus.NewRegistry(), &Checks{})
	mux.HandleFunc("GET /custom", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "<b>x</b>") })
	base, _ := startServer(t, &Server{Handler: mux})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/custom"},
		{"GET", "/nowhere"}, {"POST", "/healthz"},
	} {
		req, err := http.NewRequest(tc.method, base+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s: X-Content-Type-Options = %q, want nosniff", tc.method, tc.path, got)
		}
	}
}

// rawStatus sends one raw request and returns the status line.
func rawStatus(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	t.Parallel()
	base, _ := startServer(t, &Server{Handler: Mux(prometheus.NewRegistry(), &Checks{}), MaxHeaderBytes: 4 << 10})
	got := rawStatus(t, strings.TrimPrefix(base, "http://"), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	if !strings.Contains(got, "431") {
		t.Fatalf("status %q, want 431 for 64 KiB of headers over a 4 KiB bound", got)
	}
}
