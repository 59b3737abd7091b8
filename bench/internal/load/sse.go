package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
	"github.com/nostressplanner/liveupdates/retry"
)

type sseResult struct {
	Target           string    `json:"target"`
	Subs             int       `json:"subs"`
	Connected        int       `json:"connected"`
	ConnectSeconds   float64   `json:"connect_s"`
	RSSBefore        int64     `json:"rss_before"`
	RSSConnected     int64     `json:"rss_connected"`
	RSSAfter         int64     `json:"rss_after"`
	BytesPerConn     float64   `json:"bytes_per_conn"`
	LastMs           []float64 `json:"last_ms"`
	LastP50ms        float64   `json:"last_p50_ms"`
	DeliveryP50ms    float64   `json:"delivery_p50_ms"`
	Missing          int       `json:"missing"`
	Reconnects       int64     `json:"reconnects"`
	StreamEnded      string    `json:"stream_ended,omitempty"`
	Deliveries       int       `json:"deliveries"`
	CPUSeconds       float64   `json:"cpu_s"`
	CPUusPerDelivery float64   `json:"cpu_us_per_delivery"`
	LoadCPUSeconds   float64   `json:"load_cpu_s"`
}

// sseSubs are c.subs subscribers of one channel; arrivals[r][i] is when
// (nanoseconds since start) subscriber i got round r.
type sseSubs struct {
	start      time.Time
	arrivals   [][]atomic.Int64
	counts     []atomic.Int64
	connected  atomic.Int64
	failed     atomic.Int64
	reconnects atomic.Int64
	firstErr   atomic.Pointer[error]
	streamErr  atomic.Pointer[error]
}

// subscribe opens the subscriptions. A browser's EventSource reconnects
// when its stream ends or cannot open; so do these (a few tries per
// opening), and the result counts it. wg waits for them after ctx ends.
func (ss *sseSubs) subscribe(ctx context.Context, s server, channel string, subs int, wg *sync.WaitGroup) {
	hc := httpClient(0)
	for i := range subs {
		wg.Go(func() {
			for first := true; ctx.Err() == nil; first = false {
				res, err := openStream(ctx, s, hc, channel)
				if err != nil {
					if ctx.Err() == nil {
						ss.firstErr.CompareAndSwap(nil, &err)
						ss.failed.Add(1)
					}
					return
				}
				if first {
					ss.connected.Add(1)
				} else {
					ss.reconnects.Add(1)
				}
				ss.read(ctx, res, i)
			}
		})
	}
}

// read records when subscriber i gets each round, until its stream ends.
func (ss *sseSubs) read(ctx context.Context, res *http.Response, i int) {
	defer res.Body.Close()
	rd := measure.NewSSEReader(bufio.NewReaderSize(res.Body, 4096))
	for {
		ev, err := rd.Next()
		if err != nil {
			if ctx.Err() == nil {
				ss.streamErr.CompareAndSwap(nil, &err)
			}
			return
		}
		r, ok := measure.IntField(ev.Data, "r")
		if !ok || r < 0 || int(r) >= len(ss.arrivals) || ss.arrivals[r][i].Load() != 0 {
			continue
		}
		ss.arrivals[r][i].Store(int64(time.Since(ss.start)))
		ss.counts[r].Add(1)
	}
}

// openStream opens one SSE subscription, trying up to 5 times, since a
// burst of thousands of connects can overflow a listen backlog.
func openStream(ctx context.Context, s server, hc *http.Client, channel string) (*http.Response, error) {
	b := retry.New(200*time.Millisecond, time.Second)
	for attempt := 1; ; attempt++ {
		req, err := s.streamRequest(ctx, channel)
		if err != nil {
			return nil, err
		}
		res, err := hc.Do(req)
		if err == nil {
			if res.StatusCode == http.StatusOK {
				return res, nil
			}
			res.Body.Close()
			err = fmt.Errorf("status %s", res.Status)
		}
		if attempt == 5 || !b.Wait(ctx, time.Time{}) {
			return nil, err
		}
	}
}

// sse opens c.subs subscriptions to one channel and publishes one change at
// a time, timing each from just before the publish request to its arrival
// at the last subscriber. Round 0 is a warm-up, and also the proof that
// every subscriber is really subscribed before anything is timed.
func sse(ctx context.Context, c config) (*sseResult, error) {
	s := server{c}
	const channel = "bench"
	ctx, cancel := context.WithCancel(ctx)
	rounds := c.rounds + 1
	ss := &sseSubs{start: time.Now(), arrivals: make([][]atomic.Int64, rounds), counts: make([]atomic.Int64, rounds)}
	for r := range ss.arrivals {
		ss.arrivals[r] = make([]atomic.Int64, c.subs)
	}
	rssBefore, err := procsRSS(c.pids)
	if err != nil {
		cancel()
		return nil, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	ss.subscribe(ctx, s, channel, c.subs, &wg)
	waitFor(ctx, 2*time.Minute, 50*time.Millisecond, func() bool { return ss.connected.Load()+ss.failed.Load() >= int64(c.subs) })
	connectS := time.Since(ss.start).Seconds()
	if ss.failed.Load() > 0 || ss.connected.Load() < int64(c.subs) {
		return nil, fmt.Errorf("sse: %d of %d subscribers connected (%d failed, the first with %v)", ss.connected.Load(), c.subs, ss.failed.Load(), errOf(ss.firstErr.Load()))
	}
	pub := httpClient(1)
	// publish sends round r and waits until every subscriber has it (or
	// patience), returning when it was sent.
	publish := func(r int, patience time.Duration) (int64, error) {
		t0 := int64(time.Since(ss.start))
		res, err := pub.Do(s.publishRequest(ctx, channel, r))
		if err != nil || !s.ok(res) {
			return 0, fmt.Errorf("sse publish round %d: %v", r, err)
		}
		waitFor(ctx, patience, 2*time.Millisecond, func() bool { return ss.counts[r].Load() >= int64(c.subs) })
		return t0, nil
	}
	// Round 0 again and again until all have it: a subscriber counted as
	// connected may not be subscribed yet (its headers came first).
	var warmErr error
	waitFor(ctx, 30*time.Second, 0, func() bool {
		_, warmErr = publish(0, 3*time.Second)
		return warmErr != nil || ss.counts[0].Load() == int64(c.subs)
	})
	if warmErr != nil {
		return nil, warmErr
	}
	if got := ss.counts[0].Load(); got < int64(c.subs) {
		return nil, fmt.Errorf("sse: only %d of %d subscribers got the warm-up change (%d reconnects; a stream ended with %v)", got, c.subs, ss.reconnects.Load(), errOf(ss.streamErr.Load()))
	}
	time.Sleep(200 * time.Millisecond)
	rssConnected, err := procsRSS(c.pids)
	if err != nil {
		return nil, err
	}
	ph, err := startPhase(c, time.Duration(c.rounds)*300*time.Millisecond)
	if err != nil {
		return nil, err
	}
	res := &sseResult{Target: c.target, Subs: c.subs, Connected: int(ss.connected.Load()), ConnectSeconds: connectS,
		RSSBefore: rssBefore, RSSConnected: rssConnected}
	var deliveries []float64
	for r := 1; r < rounds; r++ {
		t0, err := publish(r, 20*time.Second)
		if err != nil {
			return nil, err
		}
		last := int64(0)
		for i := range c.subs {
			a := ss.arrivals[r][i].Load()
			if a == 0 {
				res.Missing++
				continue
			}
			res.Deliveries++
			last = max(last, a)
			deliveries = append(deliveries, ms(time.Duration(a-t0)))
		}
		res.LastMs = append(res.LastMs, ms(time.Duration(last-t0)))
		// Let the servers settle so rounds do not overlap.
		time.Sleep(100 * time.Millisecond)
	}
	sp, err := ph.end()
	if err != nil {
		return nil, err
	}
	if res.RSSAfter, err = procsRSS(c.pids); err != nil {
		return nil, err
	}
	res.LoadCPUSeconds, res.CPUSeconds = sp.loadCPU, sp.cpu
	res.BytesPerConn = float64(res.RSSAfter-rssBefore) / float64(c.subs)
	res.LastP50ms = measure.Median(res.LastMs)
	res.DeliveryP50ms = measure.Percentile(deliveries, 50)
	res.Reconnects = ss.reconnects.Load()
	if e := errOf(ss.streamErr.Load()); e != nil {
		res.StreamEnded = e.Error()
	}
	res.CPUusPerDelivery = sp.perItem(int64(res.Deliveries))
	return res, nil
}

// readStream reads eventID's stream of ours from since, as client.js's
// fetch-based reader does, calling got for each change with when it
// arrived, until the stream ends; it returns the cursor it reached and why
// the stream ended (nil when ctx did).
func readStream(ctx context.Context, s server, hc *http.Client, eventID string, since uint64, got func(seq uint64, at time.Time)) (uint64, error) {
	u := s.c.base + "/v1/events/" + eventID + "/stream?since=" + strconv.FormatUint(since, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return since, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return since, ctxErr(ctx, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return since, fmt.Errorf("stream: %s", res.Status)
	}
	rd := measure.NewSSEReader(bufio.NewReaderSize(res.Body, 4096))
	for {
		ev, err := rd.Next()
		if err != nil {
			return since, ctxErr(ctx, err)
		}
		if ev.Event == "reset" {
			if c, ok := measure.IntField(ev.Data, "cursor"); ok {
				since = uint64(c)
			}
			continue
		}
		seq, err := strconv.ParseUint(ev.ID, 10, 64)
		if err != nil || seq <= since {
			continue
		}
		since = seq
		got(seq, time.Now())
	}
}

// ctxErr is nil when ctx ended (err is then its doing), else err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
