package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

// sseArrivals opens c.ids Server-Sent Event streams on one eventId from
// c.since, prints "open" on stderr once all are open and, at SIGINT or
// -duration, reports every change received as [seq, unix nanoseconds] per
// stream; with -until it ends once every stream has received that seq. The
// poller's benchmark publishes and times the changes itself.
func sseArrivals(ctx context.Context, c config) (*arrivalsResult, error) {
	hc := httpClient(c.ids)
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	url := c.base + "/v1/events/" + c.event + "/stream?since=" + strconv.FormatUint(c.since, 10)
	var opened, errs, reached atomic.Int64
	answers := make([][]int64, c.ids)
	var wg sync.WaitGroup
	for i := range c.ids {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			res, err := hc.Do(req)
			if err != nil {
				errs.Add(1)
				return
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				errs.Add(1)
				return
			}
			if opened.Add(1) == int64(c.ids) {
				fmt.Fprintln(os.Stderr, "open")
			}
			rd := measure.NewSSEReader(bufio.NewReaderSize(res.Body, 16<<10))
			for {
				ev, err := rd.Next()
				if err != nil {
					return
				}
				seq, err := strconv.ParseUint(ev.ID, 10, 64)
				if err != nil {
					continue
				}
				answers[i] = append(answers[i], int64(seq), time.Now().UnixNano())
				if c.until > 0 && seq == c.until && reached.Add(1) == int64(c.ids) {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	return &arrivalsResult{Requests: opened.Load(), Errors: errs.Load(), Answers: answers}, nil
}
