package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseFlagsReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := parseFlags([]string{"-mode", "hot", "-target", "nginx", "-conns", "0"})
	if err == nil {
		t.Fatal("parseFlags() = nil, want an error")
	}
	for _, want := range []string{"-base is required", `-target "nginx"`, "-mode hot needs -pid", "-conns 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("parseFlags() = %q, want it to say %q", err, want)
		}
	}
	if _, err := parseFlags([]string{"-mode", "repoll", "-base", "http://x"}); err == nil || !strings.Contains(err.Error(), "needs -event") {
		t.Errorf("repoll without -event: parseFlags() = %v, want it to ask for -event", err)
	}
	if _, err := parseFlags([]string{"-mode", "rps", "-base", "http://x"}); err != nil {
		t.Errorf("rps needs no -pid: parseFlags() = %v", err)
	}
	c, err := parseFlags([]string{"-mode", "sse", "-base", "http://poller", "-pid", "3,4, 5"})
	if err != nil || fmt.Sprint(c.pids) != "[3 4 5]" || c.publishBase != "http://poller" {
		t.Errorf("parseFlags(-pid 3,4, 5) = %v pids %v publish base %q, want [3 4 5] and -base", err, c.pids, c.publishBase)
	}
	if _, err := parseFlags([]string{"-mode", "sse", "-base", "http://x", "-pid", "3,x"}); err == nil {
		t.Errorf("parseFlags(-pid 3,x) = nil, want an error")
	}
}

func TestLongPollFollowsTheCursorAndCountsAFailedAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var sinces []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sinces = append(sinces, r.URL.Query().Get("since"))
		n := len(sinces)
		mu.Unlock()
		switch n {
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 2:
			fmt.Fprint(w, `{"cursor":"9","events":[{"seq":8,"data":{}},{"seq":9,"data":{}}]}`)
		default:
			cancel() // the third request came with the new cursor: enough
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	var answers []pollAnswer
	failures := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		longPoll(ctx, server{config{base: srv.URL}}, srv.Client(), "hot", 3, 25, 0, func(a pollAnswer) {
			answers = append(answers, a)
		}, func() { failures++ }, nil)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("longPoll did not return 30s after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"3", "3", "9"}; strings.Join(sinces, ",") != strings.Join(want, ",") {
		t.Fatalf("since of each request = %v, want %v", sinces, want)
	}
	if failures != 1 {
		t.Errorf("failures = %d, want 1 (the 503)", failures)
	}
	if len(answers) != 2 || answers[0].status != 503 || answers[1].cursor != 9 || fmt.Sprint(answers[1].seqs) != "[8 9]" {
		t.Errorf("answers = %+v, want a 503 then cursor 9 with seqs 8 and 9", answers)
	}
}

func TestRPSLearnsETagsThenCountsAnswersByStatus(t *testing.T) {
	t.Parallel()
	var asked atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// e0 has no change for its first two asks: the poller has not
		// read it yet.
		if r.URL.Path == "/v1/events/e0/updates" && r.Header.Get("If-None-Match") == "" && asked.Add(1) <= 2 {
			w.Header().Set("ETag", `"0"`)
			fmt.Fprint(w, `{"cursor":"0","events":[]}`)
			return
		}
		tag := `"7"`
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", tag)
		fmt.Fprint(w, `{"cursor":"7","events":[{"seq":7}]}`)
	}))
	t.Cleanup(srv.Close)
	res, err := rps(t.Context(), config{base: srv.URL, ids: 3, conns: 2, duration: 100 * time.Millisecond, kind: "304"})
	if err != nil {
		t.Fatalf("rps() error = %v", err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Status[http.StatusNotModified] != res.Requests {
		t.Fatalf("rps() = %+v, want every answer a 304 and no errors", res)
	}
	if asked.Load() < 3 {
		t.Errorf("e0 asked %d times before polling, want it asked again until it had a change", asked.Load())
	}
}

// A long-poll paces its re-polls after answers with changes as client.js
// does: 20 answers with a spread of 100 ms take about 1 s, not a few ms
// (19 waits uniform in [0, 100 ms) add up to less than 300 ms with a
// probability far below 1e-9).
func TestLongPollSpreadsItsRepollsAfterChanges(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n atomic.Int64
	var last atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		if k > 20 {
			cancel()
			<-r.Context().Done()
			return
		}
		last.Store(time.Now().UnixNano())
		fmt.Fprintf(w, `{"cursor":"%d","events":[{"seq":%d,"data":{}}]}`, k, k)
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	longPoll(ctx, server{config{base: srv.URL}}, srv.Client(), "hot", 0, 25, 100*time.Millisecond, func(pollAnswer) {}, func() {}, nil)
	if n.Load() <= 20 {
		t.Fatalf("requests=%d, want 21", n.Load())
	}
	if took := time.Duration(last.Load() - start.UnixNano()); took < 300*time.Millisecond {
		t.Fatalf("20 answers with changes took %v, want the re-polls spread (at least 300ms)", took)
	}
}

func TestRepollSpreadIsTheClientsOne(t *testing.T) {
	t.Parallel()
	cfg := `{"repollSpreadMs":500}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/config" || cfg == "" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, cfg)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name   string
		flag   time.Duration
		config string
		want   time.Duration
	}{
		{"from /v1/config", -1, `{"repollSpreadMs":500}`, 500 * time.Millisecond},
		{"linger off", -1, `{"repollSpreadMs":0}`, 0},
		{"capped", -1, `{"repollSpreadMs":60000}`, 2 * time.Second},
		{"an older poller", -1, `{}`, 250 * time.Millisecond},
		{"the flag wins", 100 * time.Millisecond, `{"repollSpreadMs":500}`, 100 * time.Millisecond},
	} {
		cfg = tc.config
		if got := repollSpread(t.Context(), config{base: srv.URL, spread: tc.flag}); got != tc.want {
			t.Errorf("%s: repollSpread=%v, want %v", tc.name, got, tc.want)
		}
	}
}

// On an answer saying Live-Transport: sse, a long-poll client reads the
// stream from its cursor, as client.js does, and when the stream ends
// long-polls again from the last change the stream brought.
func TestLongPollMovesToTheStreamOnTheHintAndBackWhenItEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path+"?since="+r.URL.Query().Get("since"))
		n := len(asked)
		mu.Unlock()
		switch {
		case n == 1:
			w.Header().Set("Live-Transport", "sse")
			fmt.Fprint(w, `{"cursor":"5","events":[{"seq":5,"data":{}}]}`)
		case strings.HasSuffix(r.URL.Path, "/stream"):
			fmt.Fprint(w, "retry: 2000\n\nid: 6\nevent: vote.updated\ndata: {\"seq\":6}\n\nid: 7\nevent: vote.updated\ndata: {\"seq\":7}\n\n")
		default:
			cancel()
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	s := server{config{base: srv.URL}}
	var streamed []uint64
	streams := 0
	longPoll(ctx, s, srv.Client(), "hot", 3, 25, 0, func(pollAnswer) {}, func() {}, func(ctx context.Context, since uint64) uint64 {
		streams++
		cur, err := readStream(ctx, s, srv.Client(), "hot", since, func(seq uint64, _ time.Time) { streamed = append(streamed, seq) })
		if err == nil {
			t.Errorf("readStream() error = nil, want the stream's end")
		}
		return cur
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "/v1/events/hot/updates?since=3,/v1/events/hot/stream?since=5,/v1/events/hot/updates?since=7"; strings.Join(asked, ",") != want {
		t.Fatalf("requests = %v, want %s", asked, want)
	}
	if streams != 1 || fmt.Sprint(streamed) != "[6 7]" {
		t.Fatalf("streams = %d with seqs %v, want 1 with [6 7]", streams, streamed)
	}
}
