package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func quietLog() logrus.FieldLogger {
	l, _ := logtest.NewNullLogger()
	return l
}

// startServer runs s on a loopback port and returns its base URL and a
// function that stops it and returns Run's result.
func startServer(t *testing.T, s *Server) (string, func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Listener = l
	if s.Log == nil {
		s.Log = quietLog()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr, err := s.BoundAddr(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var stopped atomic.Bool
	stop := func() error {
		if stopped.Swap(true) {
			return nil
		}
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return within 15s of cancellation")
			return nil
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + addr.String(), stop
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestReadinessReportsEveryFailingCheckByName(t *testing.T) {
	t.Parallel()
	var natsDown atomic.Bool
	natsDown.Store(true)
	checks := &Checks{}
	checks.Add("nats", func(context.Context) error {
		if natsDown.Load() {
			return errors.New("not connected")
		}
		return nil
	})
	checks.Add("poller", func(context.Context) error { return nil })
	reg := prometheus.NewRegistry()
	base, _ := startServer(t, &Server{Handler: Mux(reg, checks)})

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz = %d %q, want 200 while a dependency is down (alive is not ready)", code, body)
	}
	code, body := get(t, base+"/readyz")
	var got struct {
		Status string            `json:"status"`
		Failed map[string]string `json:"failed"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || got.Failed["nats"] != "not connected" || len(got.Failed) != 1 {
		t.Fatalf("/readyz = %d %+v, want 503 naming only nats with its reason", code, got)
	}
	natsDown.Store(false)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz = %d %q, want 200 once every check passes", code, body)
	}
}

func TestAddReplacesACheckOfTheSameName(t *testing.T) {
	t.Parallel()
	c := &Checks{}
	c.Add("x", func(context.Context) error { return errors.New("old") })
	c.Add("x", func(context.Context) error { return errors.New("new") })
	if got := c.Run(t.Context()); len(got) != 1 || got["x"] != "new" {
		t.Fatalf("Run() = %v, want only the newer check", got)
	}
}

func TestMetricsServeTheInjectedRegistry(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "liveupdates_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	base, _ := startServer(t, &Server{Handler: Mux(reg, &Checks{})})
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "liveupdates_test_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics = %d, want the registry's counter and the runtime collectors; body:\n%s", code, body)
	}
}

func TestRunFinishesInFlightRequestsBeforeReturning(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished, drainedFirst atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		finished.Store(true)
		_, _ = w.Write([]byte("done"))
	})
	s := &Server{Handler: mux}
	s.BeforeDrain = func() {
		drainedFirst.Store(!finished.Load())
		close(release) // like the poller ending its long-polls
	}
	base, stop := startServer(t, s)

	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			answer <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- string(b)
	}()
	<-entered
	if err := stop(); err != nil {
		t.Fatalf("Run() = %v, want nil after a clean drain", err)
	}
	if !finished.Load() {
		t.Fatal("Run returned before the in-flight request finished")
	}
	if !drainedFirst.Load() {
		t.Fatal("BeforeDrain ran after the request had finished, want it first")
	}
	if got := <-answer; got != "done" {
		t.Fatalf("in-flight request got %q, want its full answer", got)
	}
}

func TestRunReportsAnAddressItCannotBind(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &Server{Addr: l.Addr().String(), Handler: http.NewServeMux(), Log: quietLog()}
	err = s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Run() = %v, want an error naming %s", err, l.Addr())
	}
}

func TestAnUnknownPathGetsAJSONNotFound(t *testing.T) {
	t.Parallel()
	base, _ := startServer(t, &Server{Handler: Mux(prometheus.NewRegistry(), &Checks{})})
	code, body := get(t, base+"/nowhere")
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &eb); err != nil || code != http.StatusNotFound || eb.Error.Code != "not_found" || eb.Error.Message == "" {
		t.Fatalf("GET /nowhere = %d %q, want 404 with a JSON error body", code, body)
	}
}

func TestRunReportsAMetricsAddressItCannotBind(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Listener: l, Handler: http.NewServeMux(), Log: quietLog(), AdminAddr: busy.Addr().String()}
	err = s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) || !strings.Contains(err.Error(), "metrics") {
		t.Fatalf("Run() = %v, want an error naming the metrics address %s", err, busy.Addr())
	}
	// The public listener was released with it.
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatalf("the public listener %s still accepts after Run failed", l.Addr())
	}
}
