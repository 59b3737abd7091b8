package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/retry"
)

type pollResult struct {
	Polls          int64   `json:"polls"`
	NotModified    int64   `json:"not_modified"`
	Errors         int64   `json:"errors"`
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"polls_per_s"`
	CPUSeconds     float64 `json:"cpu_s"`
	CPUusPerPol    float64 `json:"cpu_us_per_poll"`
	LoadCPUSeconds float64 `json:"load_cpu_s"`
}

// learnETags asks each of eventIds e0..e<ids-1> for its ETag, asking again
// (for up to 30 s in all) while one has no change yet: the changes were
// just published, and the poller may not have read them.
func learnETags(ctx context.Context, s server, hc *http.Client, ids int) ([]string, error) {
	etags := make([]string, ids)
	deadline := time.Now().Add(30 * time.Second)
	b := retry.New(10*time.Millisecond, 200*time.Millisecond)
	for i := range ids {
		b.Reset()
		for etags[i] == "" {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.updatesURL("e"+strconv.Itoa(i), ""), nil)
			res, err := hc.Do(req)
			if err != nil {
				return nil, fmt.Errorf("learn the etag of e%d: %w", i, err)
			}
			drain(res, make([]byte, 512))
			if tag := res.Header.Get("ETag"); tag != "" && tag != `"0"` {
				etags[i] = tag
			} else if !b.Wait(ctx, deadline) {
				return nil, fmt.Errorf("e%d has no change after 30s", i)
			}
		}
	}
	return etags, nil
}

// pollAll polls eventIds e0..e<ids-1> round robin from conns connections
// until stop closes; each answer is read whole, and its status (0 for a
// failed request) goes to count with the worker's number.
func pollAll(hc *http.Client, conns, ids int, stop <-chan struct{}, request func(id int) *http.Request, count func(worker, status int)) {
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for i := w; ; i += conns {
				select {
				case <-stop:
					return
				default:
				}
				res, err := hc.Do(request(i % ids))
				if err != nil {
					count(w, 0)
					continue
				}
				drain(res, buf)
				count(w, res.StatusCode)
			}
		})
	}
	wg.Wait()
}

// poll304 stores one change on each of c.ids eventIds, learns each one's
// ETag, then polls them round robin with If-None-Match from c.conns
// connections: every answer is a 304, what a browser polling every 2 s
// costs when nothing changed.
func poll304(ctx context.Context, c config) (*pollResult, error) {
	s := server{c}
	hc := httpClient(c.conns)
	for first := 0; first < c.ids; first += 500 {
		n := min(500, c.ids-first)
		res, err := hc.Do(s.batchRequest(ctx, s.batchBody(first, n, c.ids, 0)))
		if err != nil || !s.ok(res) {
			return nil, fmt.Errorf("poll304 seed: %v", err)
		}
	}
	etags, err := learnETags(ctx, s, hc, c.ids)
	if err != nil {
		return nil, fmt.Errorf("poll304: %w", err)
	}
	var polls, notMod, errs atomic.Int64
	var measuring atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pollAll(hc, c.conns, c.ids, stop, func(id int) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.updatesURL("e"+strconv.Itoa(id), ""), nil)
			req.Header.Set("If-None-Match", etags[id])
			return req
		}, func(_, status int) {
			switch {
			case !measuring.Load():
			case status == 0:
				errs.Add(1)
			default:
				polls.Add(1)
				if status == http.StatusNotModified {
					notMod.Add(1)
				}
			}
		})
	}()
	sp, err := timed(c, &measuring)
	close(stop)
	<-done
	if err != nil {
		return nil, err
	}
	return &pollResult{Polls: polls.Load(), NotModified: notMod.Load(), Errors: errs.Load(), Seconds: sp.seconds,
		PerSec: float64(polls.Load()) / sp.seconds, CPUSeconds: sp.cpu, CPUusPerPol: sp.perItem(polls.Load()),
		LoadCPUSeconds: sp.loadCPU}, nil
}

// rps learns each eventId's ETag, then polls as fast as it can for
// -duration: kind 304 sends If-None-Match with the learnt ETag, kind 200
// asks since the seq before the eventId's newest, so each answer holds one
// change. It reports answers per second by status.
func rps(ctx context.Context, c config) (*arrivalsResult, error) {
	s := server{c}
	hc := httpClient(c.conns)
	etags, err := learnETags(ctx, s, hc, c.ids)
	if err != nil {
		return nil, fmt.Errorf("rps: %w", err)
	}
	newest := make([]uint64, c.ids)
	for i, tag := range etags {
		newest[i], _ = strconv.ParseUint(strings.Trim(tag, `"`), 10, 64)
	}
	var n, errs atomic.Int64
	local := make([]map[int]int64, c.conns)
	for w := range local {
		local[w] = map[int]int64{}
	}
	stop := make(chan struct{})
	start := time.Now()
	t := time.AfterFunc(c.duration, func() { close(stop) })
	defer t.Stop()
	pollAll(hc, c.conns, c.ids, stop, func(id int) *http.Request {
		since := max(newest[id], 1) - 1
		if c.kind == "304" {
			since = newest[id]
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.updatesURL("e"+strconv.Itoa(id), "since="+strconv.FormatUint(since, 10)), nil)
		if c.kind == "304" {
			req.Header.Set("If-None-Match", etags[id])
		}
		return req
	}, func(w, status int) {
		if status == 0 {
			errs.Add(1)
			return
		}
		local[w][status]++
		n.Add(1)
	})
	el := time.Since(start).Seconds()
	var status statusCounts
	for _, m := range local {
		status.add(m)
	}
	return &arrivalsResult{Requests: n.Load(), Seconds: el, RPS: float64(n.Load()) / el, Status: status.m, Errors: errs.Load()}, nil
}
