package poller

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// sseEvent is one dispatched event as EventSource sees it.
type sseEvent struct {
	id, event, data string
}

// parseSSE reads a stream as the HTML spec's EventSource does: lines end at
// CRLF, LF or CR; data lines are joined with "\n"; an event is dispatched
// at a blank line, and only when it has data; comments and retry are
// skipped. It is deliberately not the lenient helper readSSE, because the
// bugs it guards against are in how a real EventSource splits fields.
func parseSSE(r *bufio.Reader, out chan<- sseEvent) {
	defer close(out)
	var (
		data    strings.Builder
		hasData bool
		event   string
		lastID  string
		line    []byte
	)
	dispatch := func() {
		if hasData {
			d := strings.TrimSuffix(data.String(), "\n")
			out <- sseEvent{id: lastID, event: event, data: d}
		}
		data.Reset()
		hasData, event = false, ""
	}
	field := func(l string) {
		if l == "" {
			dispatch()
			return
		}
		if strings.HasPrefix(l, ":") {
			return
		}
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "data":
			data.WriteString(v)
			data.WriteByte('\n')
			hasData = true
		case "event":
			event = v
		case "id":
			lastID = v
		}
	}
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		switch b {
		case '\n':
			field(string(line))
			line = line[:0]
		case '\r':
			field(string(line))
			line = line[:0]
			if nb, err := r.Peek(1); err == nil && nb[0] == '\n' {
				_, _ = r.ReadByte()
			}
		default:
			line = append(line, b)
		}
	}
}

func openSSE(t *testing.T, url string, hdr ...string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	events := make(chan sseEvent, 64)
	if res.StatusCode == http.StatusOK {
		go parseSSE(bufio.NewReader(res.Body), events)
	}
	return res, events
}

func TestSSEDataWithLineBreaksArrivesWhole(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	// Pretty-printed JSON, a blank line inside it, and CR and CRLF breaks:
	// all valid JSON whitespace that a raw message can carry.
	bodies := []string{
		"{\n  \"a\": 1,\n\n  \"b\": [\n    2\n  ]\n}",
		"{\"c\":\r\n3,\r\"d\":\r4}",
	}
	var want []uint64
	for _, b := range bodies {
		want = append(want, testutil.PublishChange(t, js, "e1", "vote.updated", b))
	}
	after := testutil.PublishChange(t, js, "e1", "phase.changed", `{"after":true}`)
	h := startPoller(t, srv, Config{})
	h.waitApplied(after)

	_, events := openSSE(t, h.url+"/v1/events/e1/stream?since=0")
	for i, seq := range append(want, after) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended before seq %d", seq)
			}
			var env wire.Envelope
			if err := json.Unmarshal([]byte(ev.data), &env); err != nil {
				t.Fatalf("event %d: data %q is not the envelope: %v", i, ev.data, err)
			}
			if ev.id != strconv.FormatUint(seq, 10) || env.Seq != seq {
				t.Fatalf("event %d: id %q seq %d, want %d", i, ev.id, env.Seq, seq)
			}
			if i < len(bodies) {
				var got, exp any
				if err := json.Unmarshal(env.Data, &got); err != nil {
					t.Fatalf("event %d: data %q: %v", i, env.Data, err)
				}
				_ = json.Unmarshal([]byte(bodies[i]), &exp)
				if fmt.Sprint(got) != fmt.Sprint(exp) {
					t.Fatalf("event %d: data %v, want %v", i, got, exp)
				}
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no SSE event for seq %d within 20s", seq)
		}
	}
}

// stuckClient opens an SSE stream over raw TCP with a tiny receive buffer
// and never reads from it.
func stuckClient(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: poller\r\n\r\n", path); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c
}

// heapPeak samples the heap until stopped and returns the highest HeapAlloc.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// publishBig stores n changes of about size bytes each on eventID.
func publishBig(t *testing.T, srv *testutil.JetStream, eventID string, n, size int) uint64 {
	t.Helper()
	js := srv.JS(t)
	ensureStream(t, js)
	pad := strings.Repeat("x", size)
	var last uint64
	for i := range n {
		last = testutil.PublishChange(t, js, eventID, "vote.updated", fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad))
	}
	return last
}

// Not parallel: it measures this process's heap.
func TestSSEClientsThatNeverReadAreCutOffWithBoundedMemory(t *testing.T) {
	srv := testutil.RunJetStream(t)
	last := publishBig(t, srv, "e1", 64, 60<<10)
	h := startPoller(t, srv, Config{SSEWriteTimeout: 2 * time.Second, SSEMaxPerAddr: 1000, Rate: -1})
	h.waitApplied(last)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop := heapPeak()

	const clients = 100
	addr := strings.TrimPrefix(h.url, "http://")
	for range clients {
		stuckClient(t, addr, "/v1/events/e1/stream?since=0")
	}
	count := func(name string, labels ...string) float64 {
		return testutil.MetricSum(t, h.reg, name, labels...)
	}
	testutil.Eventually(t, 90*time.Second, func() bool {
		return count("liveupdates_poller_answers_total", "route", "stream", "outcome", "ok") == clients &&
			count("liveupdates_poller_sse_slow_closed_total") == clients &&
			count("liveupdates_poller_sse_streams") == 0
	}, "every stuck stream is closed (opened %v, slow-closed %v, open %v)",
		count("liveupdates_poller_answers_total", "route", "stream", "outcome", "ok"),
		count("liveupdates_poller_sse_slow_closed_total"), count("liveupdates_poller_sse_streams"))
	peak := stop()
	// The ring is 3.75 MiB; a copy of it per stuck stream would be 375 MiB.
	const bound = 96 << 20
	if peak > base && peak-base > bound {
		t.Fatalf("heap grew by %d MiB with %d stuck streams, want under %d MiB", (peak-base)>>20, clients, bound>>20)
	}
	t.Logf("heap peak %d MiB over a base of %d MiB with %d stuck streams", peak>>20, base>>20, clients)
}

func TestDrainDoesNotWaitOnStuckSSEWriters(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	last := publishBig(t, srv, "e1", 64, 60<<10)
	// A write timeout far beyond the test: only Drain can end the writes.
	h := startPoller(t, srv, Config{SSEWriteTimeout: 10 * time.Minute, SSEMaxPerAddr: 1000, Rate: -1})
	h.waitApplied(last)
	// A server of its own, to shut it down as SIGTERM does.
	mux := http.NewServeMux()
	h.p.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	const clients = 20
	addr := strings.TrimPrefix(hs.URL, "http://")
	for range clients {
		stuckClient(t, addr, "/v1/events/e1/stream?since=0")
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams") == clients
	}, "every stream is open")

	start := time.Now()
	h.p.Drain()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := hs.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown()=%v after %v with %d stuck SSE writers, want nil: Drain must end their writes", err, time.Since(start), clients)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_slow_closed_total"); got != 0 {
		t.Fatalf("slow-closed=%v, want 0: streams ended by Drain are not slow readers", got)
	}
}

func TestSSEStreamsAreCappedPerTokenAndAddress(t *testing.T) {
	t.Parallel()
	srv := testutil.RunJetStream(t)
	secret := []byte("0123456789abcdef0123")
	h := startPoller(t, srv, Config{Secret: secret, SSEMaxPerToken: 2, SSEMaxPerAddr: 3, Rate: -1})
	mint := func(id string, ttl time.Duration) string {
		tok, err := polltoken.Mint(secret, id, ttl, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokA, tokB, tokC := mint("e1", time.Hour), mint("e2", time.Hour), mint("e3", time.Hour)
	open := func(id, tok string, want int) *http.Response {
		t.Helper()
		res, _ := openSSE(t, h.url+"/v1/events/"+id+"/stream", "Authorization", "Bearer "+tok)
		if res.StatusCode != want {
			t.Fatalf("stream %s=%d, want %d", id, res.StatusCode, want)
		}
		if want == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		return res
	}
	a1 := open("e1", tokA, 200)
	open("e1", tokA, 200)
	open("e1", tokA, http.StatusTooManyRequests) // the token's cap
	open("e2", tokB, 200)
	open("e3", tokC, http.StatusTooManyRequests) // the address's cap
	a1.Body.Close()
	testutil.Eventually(t, 30*time.Second, func() bool {
		res, _ := openSSE(t, h.url+"/v1/events/e1/stream", "Authorization", "Bearer "+tokA)
		res.Body.Close()
		return res.StatusCode == 200
	}, "a closed stream frees its place")
}
