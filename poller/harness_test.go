package poller

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// harness is one poller following a real embedded JetStream, served over a
// real HTTP server.
type harness struct {
	t    testing.TB
	p    *Poller
	reg  *prometheus.Registry
	url  string
	stop func()
}

func testStream() stream.Config { return stream.Config{} } // file storage: it survives an outage

// ensureStream creates LIVE_EVENTS so tests can publish before a poller runs.
func ensureStream(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	if _, _, err := stream.Ensure(t.Context(), js, testStream()); err != nil {
		t.Fatalf("Ensure()=%v", err)
	}
}

// runStream runs an embedded JetStream with LIVE_EVENTS created.
func runStream(t testing.TB) (*testutil.JetStream, jetstream.JetStream) {
	t.Helper()
	srv := testutil.RunJetStream(t)
	js := srv.JS(t)
	ensureStream(t, js)
	return srv, js
}

func startPoller(t testing.TB, srv *testutil.JetStream, cfg Config, opts ...func(*Deps)) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps := Deps{JS: srv.JS(t), Stream: testStream(), Registerer: reg}
	for _, o := range opts {
		o(&deps)
	}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New()=%v", err)
	}
	stopRun := testutil.RunUntilCancelled(t, "poller", p.Run)
	mux := http.NewServeMux()
	p.Register(mux)
	hs := httptest.NewServer(mux)
	stopped := false
	h := &harness{t: t, p: p, reg: reg, url: hs.URL}
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		p.Drain()
		hs.Close()
		stopRun()
	}
	t.Cleanup(h.stop)
	// Generous: a replay of thousands of changes on a loaded 2-core machine
	// takes tens of seconds.
	testutil.EventuallyErr(t, 60*time.Second, func() error { return p.Ready(t.Context()) })
	return h
}

// waitApplied waits until the poller has applied seq.
func (h *harness) waitApplied(seq uint64) {
	h.t.Helper()
	testutil.Eventually(h.t, 60*time.Second, func() bool { return h.p.idx.appliedSeq() >= seq }, "poller applies seq %d", seq)
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (h *harness) get(path string, hdr ...string) reply {
	h.t.Helper()
	return mustGet(h.t, h.url+path, hdr...)
}

// mustGet GETs url and fails the test on a transport error; call it from
// the test's goroutine.
func mustGet(t testing.TB, url string, hdr ...string) reply {
	t.Helper()
	r, err := getURL(t.Context(), url, hdr...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// getURL GETs url. It never fails the test, so any goroutine may call it.
func getURL(ctx context.Context, url string, hdr ...string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return reply{}, fmt.Errorf("request %s: %w", url, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read %s: %w", url, err)
	}
	return reply{res.StatusCode, res.Header, b}, nil
}

// asyncReply is the outcome of getAsync.
type asyncReply struct {
	reply
	err error
}

// getAsync GETs url in a goroutine; the outcome comes on the channel.
func getAsync(ctx context.Context, url string, hdr ...string) <-chan asyncReply {
	out := make(chan asyncReply, 1)
	go func() {
		r, err := getURL(ctx, url, hdr...)
		out <- asyncReply{r, err}
	}()
	return out
}

// done returns the reply, failing the test on a transport error.
func (a asyncReply) done(t testing.TB) reply {
	t.Helper()
	if a.err != nil {
		t.Fatal(a.err)
	}
	return a.reply
}

type updates struct {
	Cursor string          `json:"cursor"`
	Reset  bool            `json:"reset"`
	Events []wire.Envelope `json:"events"`
}

func decodeUpdates(t *testing.T, r reply) updates {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status=%d body=%s, want 200", r.status, r.body)
	}
	var u updates
	if err := json.Unmarshal(r.body, &u); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return u
}

func seqs(es []wire.Envelope) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func mustRequest(t testing.TB, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest(http.MethodGet, target, nil)
}
