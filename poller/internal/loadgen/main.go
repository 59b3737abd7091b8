// Command loadgen drives the poller's HTTP API from a separate process, so
// the benchmark measures the server and not the client. It prints one JSON
// result on stdout.
//
//	loadgen -mode rps  -base URL -ids 10000 -conns 64 -duration 3s -kind 304|200
//	loadgen -mode hold -base URL -ids 10000 -since N -wait 30 [-event ID]
//	loadgen -mode repoll -base URL -ids 2000 -since N -wait 30 -event ID -duration 10s
//	loadgen -mode sse    -base URL -ids 2000 -since N -event ID -duration 60s [-until SEQ]
//
// rps first learns each eventId's ETag (one GET each), then polls as fast as
// it can: kind 304 sends If-None-Match with the learnt ETag, kind 200 asks
// since the seq before the eventId's newest, so each answer holds one change.
// hold opens one long-poll per eventId (or, with -event, ids long-polls on
// that one eventId) and, once they end, reports when each answer carrying a
// change arrived (unix nanoseconds), for wake latency and fan-out time.
// repoll runs ids long-polls on one eventId, each re-polling at once with the
// cursor it was given (as the browser client does), for -duration, and
// reports every answer that carried changes as [cursor, unix nanoseconds]
// per client, for a hot event's answers per change and fan-out time.
// sse opens ids Server-Sent Event streams on one eventId from since, prints
// "open" on stderr once all are open, and, at SIGINT or -duration, reports
// every event received as [seq, unix nanoseconds] per stream; with -until it
// ends once every stream has received that seq.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Requests int64            `json:"requests"`
	Seconds  float64          `json:"seconds"`
	RPS      float64          `json:"rps"`
	Status   map[int]int64    `json:"status"`
	Errors   int64            `json:"errors"`
	Arrivals map[string]int64 `json:"arrivals,omitempty"`
	// Answers (repoll) holds, per client, cursor and arrival pairs.
	Answers [][]int64 `json:"answers,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "rps", "rps or hold")
	base := flag.String("base", "", "poller base URL, such as http://127.0.0.1:8080")
	ids := flag.Int("ids", 10000, "distinct eventIds e0..e<ids-1>")
	conns := flag.Int("conns", 64, "concurrent connections (rps)")
	duration := flag.Duration("duration", 3*time.Second, "how long to poll (rps)")
	kind := flag.String("kind", "304", "304 or 200 (rps)")
	since := flag.Uint64("since", 0, "cursor for long-polls (hold)")
	wait := flag.Int("wait", 30, "long-poll seconds (hold)")
	until := flag.Uint64("until", 0, "sse: end once every stream has received this seq")
	event := flag.String("event", "", "hold: every long-poll on this one eventId (arrivals keyed by client number) instead of one per eventId")
	flag.Parse()
	if *base == "" {
		return fmt.Errorf("-base is required")
	}
	switch *mode {
	case "rps":
		return rps(*base, *ids, *conns, *duration, *kind)
	case "hold":
		return hold(*base, *ids, *since, *wait, *event)
	case "repoll":
		return repoll(*base, *ids, *since, *wait, *event, *duration)
	case "sse":
		return sse(*base, *ids, *since, *until, *event, *duration)
	}
	return fmt.Errorf("unknown -mode %q", *mode)
}

func client(conns int) *http.Client {
	dials := make(chan struct{}, 128) // keep the listen backlog from overflowing
	d := &net.Dialer{Timeout: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials <- struct{}{}
			defer func() { <-dials }()
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func rps(base string, ids, conns int, duration time.Duration, kind string) error {
	c := client(conns)
	etags := make([]string, ids)
	newest := make([]uint64, ids)
	for i := range ids {
		res, err := c.Get(fmt.Sprintf("%s/v1/events/e%d/updates", base, i))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		etags[i] = res.Header.Get("ETag")
		newest[i], _ = strconv.ParseUint(strings.Trim(etags[i], `"`), 10, 64)
	}
	var n, errs atomic.Int64
	var mu sync.Mutex
	status := map[int]int64{}
	deadline := time.Now().Add(duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			local := map[int]int64{}
			buf := make([]byte, 4096)
			for i := w; time.Now().Before(deadline); i += conns {
				id := i % ids
				var url string
				req, _ := http.NewRequest(http.MethodGet, "", nil)
				if kind == "304" {
					url = fmt.Sprintf("%s/v1/events/e%d/updates?since=%d", base, id, newest[id])
					req.Header.Set("If-None-Match", etags[id])
				} else {
					url = fmt.Sprintf("%s/v1/events/e%d/updates?since=%d", base, id, max(newest[id], 1)-1)
				}
				req.URL, _ = req.URL.Parse(url)
				req.Host = req.URL.Host
				res, err := c.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				for {
					if _, err := res.Body.Read(buf); err != nil {
						break
					}
				}
				res.Body.Close()
				local[res.StatusCode]++
				n.Add(1)
			}
			mu.Lock()
			for k, v := range local {
				status[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(result{Requests: n.Load(), Seconds: el, RPS: float64(n.Load()) / el, Status: status, Errors: errs.Load()})
}

func hold(base string, ids int, since uint64, wait int, event string) error {
	c := client(ids)
	c.Timeout = time.Duration(wait+30) * time.Second
	var errs atomic.Int64
	var mu sync.Mutex
	status := map[int]int64{}
	arrivals := map[string]int64{}
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			id, key := "e"+strconv.Itoa(i), ""
			if event != "" {
				id, key = event, strconv.Itoa(i)
			} else {
				key = id
			}
			res, err := c.Get(fmt.Sprintf("%s/v1/events/%s/updates?since=%d&wait=%d", base, id, since, wait))
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
			if err == nil && strings.Contains(string(b), `"events":[{`) {
				arrivals[key] = at
			}
		})
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(result{Requests: int64(ids), Status: status, Errors: errs.Load(), Arrivals: arrivals})
}

func repoll(base string, ids int, since uint64, wait int, event string, duration time.Duration) error {
	if event == "" {
		return fmt.Errorf("repoll needs -event")
	}
	c := client(ids)
	// SIGINT ends the run early with a result: the benchmark stops it
	// once every client has the last change.
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, duration)
	defer cancel()
	var n, errs atomic.Int64
	var mu sync.Mutex
	status := map[int]int64{}
	answers := make([][]int64, ids)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			cursor := since
			local := map[int]int64{}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/events/%s/updates?since=%d&wait=%d", base, event, cursor, wait), nil)
				res, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						time.Sleep(100 * time.Millisecond) // a refused connection must not spin
					}
					continue
				}
				b, err := io.ReadAll(res.Body)
				at := time.Now().UnixNano()
				res.Body.Close()
				if err != nil {
					continue
				}
				n.Add(1)
				local[res.StatusCode]++
				var body struct {
					Cursor string            `json:"cursor"`
					Events []json.RawMessage `json:"events"`
				}
				if res.StatusCode != http.StatusOK || json.Unmarshal(b, &body) != nil {
					continue
				}
				cur, err := strconv.ParseUint(body.Cursor, 10, 64)
				if err != nil {
					continue
				}
				if len(body.Events) > 0 {
					answers[i] = append(answers[i], int64(cur), at)
				}
				cursor = cur
			}
			mu.Lock()
			for k, v := range local {
				status[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(result{Requests: n.Load(), Seconds: duration.Seconds(), RPS: float64(n.Load()) / duration.Seconds(), Status: status, Errors: errs.Load(), Answers: answers})
}

func sse(base string, ids int, since, until uint64, event string, duration time.Duration) error {
	if event == "" {
		return fmt.Errorf("sse needs -event")
	}
	c := client(ids)
	sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(sctx, duration)
	defer cancel()
	var opened, errs, reached atomic.Int64
	answers := make([][]int64, ids)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/events/%s/stream?since=%d", base, event, since), nil)
			res, err := c.Do(req)
			if err != nil {
				errs.Add(1)
				return
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				errs.Add(1)
				return
			}
			if opened.Add(1) == int64(ids) {
				fmt.Fprintln(os.Stderr, "open")
			}
			br := bufio.NewReaderSize(res.Body, 16<<10)
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if seq, ok := strings.CutPrefix(string(line), "id: "); ok {
					n, err := strconv.ParseUint(strings.TrimSpace(seq), 10, 64)
					if err == nil {
						answers[i] = append(answers[i], int64(n), time.Now().UnixNano())
						if until > 0 && n == until && reached.Add(1) == int64(ids) {
							cancel()
						}
					}
				}
			}
		})
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(result{Requests: opened.Load(), Errors: errs.Load(), Answers: answers})
}
