package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

type ingestResult struct {
	Target         string  `json:"target"`
	Events         int64   `json:"events"`
	Requests       int     `json:"requests"`
	Errors         int64   `json:"errors"`
	Seconds        float64 `json:"seconds"`
	EventsPerSec   float64 `json:"events_per_s"`
	P50ms          float64 `json:"p50_ms"`
	P99ms          float64 `json:"p99_ms"`
	CPUSeconds     float64 `json:"cpu_s"`
	CPUusPerItem   float64 `json:"cpu_us_per_event"`
	LoadCPUSeconds float64 `json:"load_cpu_s"`
}

// ingest sends batches from c.clients clients, each waiting for its answer
// before the next, for warm-up plus duration; only the duration counts.
func ingest(ctx context.Context, c config) (*ingestResult, error) {
	s := server{c}
	hc := httpClient(c.clients)
	var (
		mu        sync.Mutex
		latencies []float64
		events    atomic.Int64
		errs      atomic.Int64
		measuring atomic.Bool
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range c.clients {
		body := s.batchBody(w*c.batch, c.batch, c.chs, w)
		wg.Go(func() {
			var local []float64
			for {
				select {
				case <-stop:
					mu.Lock()
					latencies = append(latencies, local...)
					mu.Unlock()
					return
				default:
				}
				counted := measuring.Load()
				t0 := time.Now()
				res, err := hc.Do(s.batchRequest(ctx, body))
				good := err == nil && s.ok(res)
				el := time.Since(t0)
				if !counted || !measuring.Load() {
					continue
				}
				if !good {
					errs.Add(1)
					continue
				}
				events.Add(int64(c.batch))
				local = append(local, ms(el))
			}
		})
	}
	sp, err := timed(c, &measuring)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	n := events.Load()
	return &ingestResult{Target: c.target, Events: n, Requests: len(latencies), Errors: errs.Load(), Seconds: sp.seconds,
		EventsPerSec: float64(n) / sp.seconds, P50ms: measure.Percentile(latencies, 50), P99ms: measure.Percentile(latencies, 99),
		CPUSeconds: sp.cpu, CPUusPerItem: sp.perItem(n), LoadCPUSeconds: sp.loadCPU}, nil
}

type seedResult struct {
	Changes int     `json:"changes"`
	Seconds float64 `json:"seconds"`
}

// seed stores c.count changes over c.chs eventIds in batches of c.batch
// from c.clients clients, then exits: the relay's backlog.
func seed(ctx context.Context, c config) (*seedResult, error) {
	s := server{c}
	hc := httpClient(c.clients)
	requests := (c.count + c.batch - 1) / c.batch
	next := atomic.Int64{}
	var failed atomic.Value
	t0 := time.Now()
	var wg sync.WaitGroup
	for range c.clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				n := min(c.batch, c.count-i*c.batch)
				res, err := hc.Do(s.batchRequest(ctx, s.batchBody(i*c.batch, n, c.chs, i)))
				if err != nil || !s.ok(res) {
					failed.Store(fmt.Errorf("seed request %d: %v", i, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return nil, err
	}
	return &seedResult{Changes: c.count, Seconds: time.Since(t0).Seconds()}, nil
}
