package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
	"github.com/nostressplanner/liveupdates/retry"
)

// arrivalsResult is what the poller benchmarks' modes print: times are unix
// nanoseconds, read by poller/bench_test.go.
type arrivalsResult struct {
	Requests int64         `json:"requests"`
	Seconds  float64       `json:"seconds"`
	RPS      float64       `json:"rps"`
	Status   map[int]int64 `json:"status"`
	Errors   int64         `json:"errors"`
	// Arrivals (hold): when each client's answer carrying a change came,
	// keyed by eventId, or by client number with -event.
	Arrivals map[string]int64 `json:"arrivals,omitempty"`
	// Answers (repoll, sse-arrivals): per client, pairs of a cursor (repoll)
	// or seq (sse-arrivals) and when it arrived.
	Answers [][]int64 `json:"answers,omitempty"`
}

// statusCounts adds up answers by status code from many clients, each
// counting into its own map first.
type statusCounts struct {
	mu sync.Mutex
	m  map[int]int64
}

func (s *statusCounts) add(local map[int]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[int]int64{}
	}
	for k, v := range local {
		s.m[k] += v
	}
}

// pollAnswer is one long-poll answer, read whole.
type pollAnswer struct {
	status int
	at     time.Time
	// cursor and seqs of an answer 200 that parsed.
	cursor uint64
	seqs   []uint64
	// hint: the answer asks the client to move to the SSE stream
	// (Live-Transport: sse, a hot eventId).
	hint bool
	err  error
}

// streamer reads eventID's SSE stream from since until it ends and returns
// the cursor it reached: what client.js does on an answer's hint.
type streamer func(ctx context.Context, since uint64) uint64

// streamHold is how long a long-poll client goes on long-polling after its
// stream ended before a hint moves it again, as client.js waits the
// stream's retry: delay (the poller sends 2 s).
const streamHold = 2 * time.Second

// longPoll is one browser client on one eventId: it long-polls from since
// and re-polls with the cursor each answer gives, until ctx ends. After an
// answer with changes it first waits uniform in [0, spread), as client.js
// does (repollDelay); after any other answer it re-polls at once.
// Every answer read whole goes to answered; a request that fails, or an
// answer that is not a 200 that parses, goes to failed and is followed by a
// backoff, so a refused connection does not spin. With stream (not nil),
// an answer hinting at SSE hands the client to it, as client.js does, and
// long-poll resumes from the cursor it reached when the stream ends.
func longPoll(ctx context.Context, s server, hc *http.Client, eventID string, since uint64, wait int, spread time.Duration, answered func(pollAnswer), failed func(), stream streamer) {
	b := retry.New(100*time.Millisecond, time.Second)
	var buf bytes.Buffer
	var holdUntil time.Time
	for ctx.Err() == nil {
		u := s.longPollURL(eventID, since, wait)
		if stream != nil && time.Now().After(holdUntil) {
			u += "&transport=sse" // as client.js says when it can take the stream
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		res, err := hc.Do(req)
		if err == nil {
			a := pollAnswer{status: res.StatusCode, hint: res.Header.Get("Live-Transport") == "sse"}
			buf.Reset()
			_, err = buf.ReadFrom(res.Body)
			a.at = time.Now()
			res.Body.Close()
			if err == nil {
				if res.StatusCode == http.StatusOK {
					a.cursor, a.seqs, a.err = measure.ParseUpdates(buf.Bytes())
				}
				answered(a)
				if a.err == nil && res.StatusCode == http.StatusOK {
					since = max(since, a.cursor)
					b.Reset()
					if len(a.seqs) > 0 && spread > 0 {
						_ = retry.Sleep(ctx, rand.N(spread))
					}
					if a.hint && stream != nil && time.Now().After(holdUntil) {
						since = max(since, stream(ctx, since))
						holdUntil = time.Now().Add(streamHold)
					}
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		failed()
		b.Wait(ctx, time.Time{})
	}
}

// repollSpread is the pacing of a long-poll client, as client.js takes it
// (repollDelay): -repoll-spread when set, else /v1/config's repollSpreadMs,
// else 250 ms; capped at 2 s.
func repollSpread(ctx context.Context, c config) time.Duration {
	if c.spread >= 0 {
		return c.spread
	}
	d := 250 * time.Millisecond
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/config", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return d
	}
	defer res.Body.Close()
	var cfg struct {
		RepollSpreadMs *float64 `json:"repollSpreadMs"`
	}
	if res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(&cfg) == nil && cfg.RepollSpreadMs != nil {
		d = time.Duration(*cfg.RepollSpreadMs * float64(time.Millisecond))
	}
	return min(max(d, 0), 2*time.Second)
}

// repoll runs c.ids long-polls on one eventId, each re-polling at once with
// the cursor it was given (as the browser client does), for -duration or
// until SIGINT, and reports every answer that carried changes as [cursor,
// unix nanoseconds] per client: a hot event's answers per change and
// fan-out time.
func repoll(ctx context.Context, c config) (*arrivalsResult, error) {
	s := server{c}
	hc := httpClient(c.ids)
	spread := repollSpread(ctx, c)
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	var n, errs atomic.Int64
	var status statusCounts
	answers := make([][]int64, c.ids)
	var wg sync.WaitGroup
	for i := range c.ids {
		wg.Go(func() {
			local := map[int]int64{}
			longPoll(ctx, s, hc, c.event, c.since, c.wait, spread, func(a pollAnswer) {
				n.Add(1)
				local[a.status]++
				if a.err == nil && len(a.seqs) > 0 {
					answers[i] = append(answers[i], int64(a.cursor), a.at.UnixNano())
				}
			}, func() { errs.Add(1) }, nil)
			status.add(local)
		})
	}
	wg.Wait()
	return &arrivalsResult{Requests: n.Load(), Seconds: c.duration.Seconds(), RPS: float64(n.Load()) / c.duration.Seconds(),
		Status: status.m, Errors: errs.Load(), Answers: answers}, nil
}

// hold opens one long-poll per eventId e0..e<ids-1> (or, with -event, ids
// long-polls on that one eventId) and, once they all end, reports when each
// answer carrying a change arrived: wake latency and fan-out time.
func hold(ctx context.Context, c config) (*arrivalsResult, error) {
	s := server{c}
	hc := httpClient(c.ids)
	hc.Timeout = time.Duration(c.wait+30) * time.Second
	var errs atomic.Int64
	var mu sync.Mutex
	status := map[int]int64{}
	arrivals := map[string]int64{}
	var wg sync.WaitGroup
	for i := range c.ids {
		wg.Go(func() {
			id, key := "e"+strconv.Itoa(i), ""
			if c.event != "" {
				id, key = c.event, strconv.Itoa(i)
			} else {
				key = id
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.longPollURL(id, c.since, c.wait), nil)
			res, err := hc.Do(req)
			if err != nil {
				errs.Add(1)
				return
			}
			b, err := io.ReadAll(res.Body)
			at := time.Now().UnixNano()
			res.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			status[res.StatusCode]++
			if err != nil || res.StatusCode != http.StatusOK {
				return
			}
			if _, seqs, err := measure.ParseUpdates(b); err == nil && len(seqs) > 0 {
				arrivals[key] = at
			}
		})
	}
	wg.Wait()
	return &arrivalsResult{Requests: int64(c.ids), Status: status, Errors: errs.Load(), Arrivals: arrivals}, nil
}
