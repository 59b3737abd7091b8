package poller

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// parkedStreams waits until n streams are open and all of them parked.
func (h *harness) parkedStreams(n int) {
	h.t.Helper()
	testutil.Eventually(h.t, 60*time.Second, func() bool {
		return testutil.MetricSum(h.t, h.reg, "liveupdates_poller_sse_streams") == float64(n) &&
			testutil.MetricSum(h.t, h.reg, "liveupdates_poller_sse_streams_parked") == float64(n)
	}, "%d streams open and parked (open %v, parked %v)", n,
		testutil.MetricSum(h.t, h.reg, "liveupdates_poller_sse_streams"),
		testutil.MetricSum(h.t, h.reg, "liveupdates_poller_sse_streams_parked"))
}

// expectEvents reads want's seqs, in order, from events.
func expectEvents(t *testing.T, name string, events <-chan sseEvent, want []uint64) {
	t.Helper()
	for i, seq := range want {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("%s: stream ended after %d of %d changes", name, i, len(want))
			}
			var env wire.Envelope
			if err := json.Unmarshal([]byte(ev.data), &env); err != nil {
				t.Fatalf("%s: event %d: data %q: %v", name, i, ev.data, err)
			}
			if ev.id != strconv.FormatUint(seq, 10) || env.Seq != seq {
				t.Fatalf("%s: event %d: id %q seq %d, want %d", name, i, ev.id, env.Seq, seq)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no event for seq %d (the %dth) within 30s", name, seq, i)
		}
	}
}

func TestParkedSSEStreamsGetEveryChangeInOrder(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{SSEMaxPerAddr: 1000, Rate: -1})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{"n":0}`)
	h.waitApplied(first)

	const streams = 40
	var all []<-chan sseEvent
	for range streams {
		_, events := openSSE(t, fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, first))
		all = append(all, events)
	}
	h.parkedStreams(streams)
	// Changes in quick succession (several per round) between changes of
	// another eventId, which must not reach these streams.
	var want []uint64
	for i := range 30 {
		want = append(want, testutil.PublishChange(t, js, "e1", "vote.updated", fmt.Sprintf(`{"n":%d,"text":"line\nbreak"}`, i+1)))
		testutil.PublishChange(t, js, "e2", "vote.updated", `{}`)
	}
	for i, events := range all {
		expectEvents(t, fmt.Sprintf("stream %d", i), events, want)
	}
	// They stayed parked throughout.
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams_parked"); got != streams {
		t.Fatalf("parked streams=%v after the changes, want %d", got, streams)
	}
}

func TestParkedSSEStreamThatStopsReadingIsClosedAndTheOthersStillReceive(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	// A write timeout far beyond the test: only the bound on pending bytes
	// can close the stuck stream, and the others must not wait on it.
	h := startPoller(t, srv, Config{SSEWriteTimeout: 10 * time.Minute, SSEMaxPerAddr: 1000, Rate: -1, Heartbeat: 10 * time.Minute})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	path := fmt.Sprintf("/v1/events/e1/stream?since=%d", first)
	stuckClient(t, strings.TrimPrefix(h.url, "http://"), path)
	const readers = 4
	var all []<-chan sseEvent
	for range readers {
		_, events := openSSE(t, h.url+path)
		all = append(all, events)
	}
	h.parkedStreams(readers + 1)

	// 256 KB changes, one round each (every reader has a change before
	// the next is published), 2 MiB more than the stuck socket's send
	// buffer can grow to: the rest waits in the stream, more than
	// sseParkPendingMax. The readers never wait on the stuck one.
	pad := strings.Repeat("x", 256<<10)
	for i := range (maxSendBuffer(t) + 2<<20) / (256 << 10) {
		seq := testutil.PublishChange(t, js, "e1", "vote.updated", fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad))
		for r, events := range all {
			expectEvents(t, fmt.Sprintf("reader %d", r), events, []uint64{seq})
		}
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		return testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_slow_closed_total") == 1 &&
			testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams") == readers &&
			testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams_parked") == readers
	}, "the stuck stream is closed as slow (slow-closed %v, open %v, parked %v)",
		testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_slow_closed_total"),
		testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams"),
		testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams_parked"))
}

func TestParkedSSEClientThatHangsUpIsReleased(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	// No heartbeat within the test: only the reaper can find the client
	// gone.
	h := startPoller(t, srv, Config{SSEMaxPerAddr: 3, Rate: -1, Heartbeat: 10 * time.Minute, PollInterval: 200 * time.Millisecond})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	url := fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, first)
	a, _ := openSSE(t, url)
	b, _ := openSSE(t, url)
	_, events := openSSE(t, url)
	h.parkedStreams(3)
	if res, _ := openSSE(t, url); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a 4th stream from the address=%d, want 429: parked streams count toward the cap", res.StatusCode)
	}
	a.Body.Close()
	b.Body.Close()
	h.parkedStreams(1)
	if res, _ := openSSE(t, url); res.StatusCode != http.StatusOK {
		t.Fatalf("a stream after two hung up=%d, want 200: their places are free", res.StatusCode)
	}
	// The stream that stayed still gets changes.
	expectEvents(t, "the stream that stayed", events, []uint64{testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)})
}

func TestDrainEndsParkedSSEStreams(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{SSEMaxPerAddr: 1000, Rate: -1})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	path := fmt.Sprintf("/v1/events/e1/stream?since=%d", first)
	const streams = 10
	var all []<-chan sseEvent
	for range streams - 1 {
		_, events := openSSE(t, h.url+path)
		all = append(all, events)
	}
	// One over a raw connection, to see how its body ends.
	rc := dialRaw(t, h.url)
	rc.send(path)
	res, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if res.StatusCode != http.StatusOK || len(res.TransferEncoding) == 0 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("stream answer %d, transfer encoding %v: want 200, chunked", res.StatusCode, res.TransferEncoding)
	}
	h.parkedStreams(streams)

	h.p.Drain()
	for i, events := range all {
		select {
		case ev, ok := <-events:
			if ok {
				t.Fatalf("stream %d: event %+v after Drain, want the end", i, ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("stream %d still open 30s after Drain", i)
		}
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("raw stream after Drain: %v (read %q), want a clean end of the chunked body", err, body)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams"); got != 0 {
		t.Fatalf("open streams=%v after Drain, want 0", got)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams_parked"); got != 0 {
		t.Fatalf("parked streams=%v after Drain, want 0", got)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_slow_closed_total"); got != 0 {
		t.Fatalf("slow-closed=%v, want 0: streams ended by Drain are not slow readers", got)
	}
}

func TestParkedSSEStreamsGetHeartbeats(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{Heartbeat: 200 * time.Millisecond})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, first), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET stream: %v", err)
	}
	defer res.Body.Close()
	events := make(chan map[string]string, 64)
	go readSSE(res, events)
	h.parkedStreams(1)
	beats := 0
	deadline := time.After(30 * time.Second)
	for beats < 3 {
		select {
		case ev := <-events:
			if ev["comment"] != "heartbeat" {
				t.Fatalf("event %v, want a heartbeat", ev)
			}
			beats++
		case <-deadline:
			t.Fatalf("%d heartbeats within 30s, want 3", beats)
		}
	}
}

// HTTP/1.0 cannot carry a chunked stream, and Park=off keeps every stream on
// the goroutine path: both still stream.
func TestSSEStreamsThatCannotParkKeepTheirGoroutine(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{SSEMaxPerAddr: 1000, Rate: -1})
	off := startPoller(t, srv, Config{Park: ParkOff})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	off.waitApplied(first)
	path := fmt.Sprintf("/v1/events/e1/stream?since=%d", first)

	rc := dialRaw(t, h.url)
	if _, err := fmt.Fprintf(rc.c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, rc.host); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(rc.br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.0 stream: %v %v", res, err)
	}
	events10 := make(chan sseEvent, 64)
	go parseSSE(bufio.NewReader(res.Body), events10)
	_, eventsOff := openSSE(t, off.url+path)
	for _, hh := range []*harness{h, off} {
		testutil.Eventually(t, 30*time.Second, func() bool {
			return testutil.MetricSum(t, hh.reg, "liveupdates_poller_sse_streams") == 1
		}, "the stream is open")
		if got := testutil.MetricSum(t, hh.reg, "liveupdates_poller_sse_streams_parked"); got != 0 {
			t.Fatalf("parked streams=%v, want 0", got)
		}
	}
	s := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	expectEvents(t, "HTTP/1.0", events10, []uint64{s})
	expectEvents(t, "Park=off", eventsOff, []uint64{s})
}

// maxSendBuffer is the most a TCP socket's send buffer grows to here
// (tcp_wmem's maximum).
func maxSendBuffer(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		return 4 << 20 // Linux's usual maximum
	}
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("tcp_wmem %q: %v", b, err)
	}
	return n
}

// A burst that outruns the rounds pushes a parked group's cursor below the
// ring: its streams get the dropped changes from the stream, then the
// ring's, every one in order, and stay parked (the goroutine path's deep
// resume, not a reconnect).
func TestParkedSSEGroupBelowTheRingPagesThroughTheStream(t *testing.T) {
	t.Parallel()
	srv, js := runStream(t)
	h := startPoller(t, srv, Config{RingSize: 2, SSEMaxPerAddr: 1000, Rate: -1})
	first := testutil.PublishChange(t, js, "e1", "vote.updated", `{}`)
	h.waitApplied(first)
	const streams = 3
	var all []<-chan sseEvent
	for range streams {
		_, events := openSSE(t, fmt.Sprintf("%s/v1/events/e1/stream?since=%d", h.url, first))
		all = append(all, events)
	}
	h.parkedStreams(streams)
	// Hold the group as if a round were being written: changes only mark
	// it dirty, as they do when a burst comes faster than the rounds.
	w := h.p.waits
	w.mu.Lock()
	g := w.sse["e1"]
	g.running = true
	w.mu.Unlock()
	var want []uint64
	for i := range 6 {
		want = append(want, testutil.PublishChange(t, js, "e1", "vote.updated", fmt.Sprintf(`{"n":%d}`, i)))
	}
	h.waitApplied(want[len(want)-1])
	h.p.roundDone(g) // the held round ends; the next reads below the ring
	for i, events := range all {
		expectEvents(t, fmt.Sprintf("stream %d", i), events, want)
	}
	if got := testutil.MetricSum(t, h.reg, "liveupdates_poller_sse_streams_parked"); got != streams {
		t.Fatalf("parked streams=%v, want %d: the deep resume keeps them", got, streams)
	}
}
