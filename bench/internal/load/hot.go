package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

type hotResult struct {
	Subs            int     `json:"subs"`
	RepollSpreadMs  float64 `json:"repoll_spread_ms"`
	Waiting         float64 `json:"waiting"`
	BytesPerWaiting float64 `json:"bytes_per_waiting"`
	LoadCPUSeconds  float64 `json:"load_cpu_s"`
	Changes         int     `json:"changes"`
	PublishFailed   int     `json:"publish_failed"`
	FullyDelivered  int     `json:"fully_delivered"`
	Deliveries      int     `json:"deliveries"`
	Answers         int64   `json:"answers"`
	PollErrors      int64   `json:"poll_errors"`
	// Switched: clients that moved to the SSE stream on the poller's hint
	// (Live-Transport: sse); StreamErrors: streams that ended other than
	// by the end of the run (each client then long-polls again).
	Switched      int64   `json:"switched"`
	StreamsBefore float64 `json:"streams_before"`
	StreamErrors  int64   `json:"stream_errors"`
	StreamError   string  `json:"stream_error,omitempty"`
	LastP50ms     float64 `json:"last_p50_ms"`
	LastP99ms     float64 `json:"last_p99_ms"`
	// SlowestLast names the changes with the slowest last arrivals, as
	// "#n:ms" (n counts from 1 in publish order), to tell a slow start
	// (the move to SSE) from a slow steady state.
	SlowestLast      []string `json:"slowest_last,omitempty"`
	DeliveryP99ms    float64  `json:"delivery_p99_ms"`
	AckIdleP50ms     float64  `json:"ack_idle_p50_ms"`
	AckStormP50ms    float64  `json:"ack_storm_p50_ms"`
	AckStormP99ms    float64  `json:"ack_storm_p99_ms"`
	CPUSeconds       float64  `json:"cpu_s"`
	CPUusPerAnswer   float64  `json:"cpu_us_per_answer"`
	CPUusPerDelivery float64  `json:"cpu_us_per_delivery"`
}

type publishAck struct {
	sent, acked time.Time
	seq         uint64
	err         error
}

// publishAt publishes rate changes per second to eventId for d, each from
// its own goroutine so a slow answer does not slow the rate.
func publishAt(ctx context.Context, s server, hc *http.Client, eventID string, rate float64, d time.Duration) []publishAck {
	var mu sync.Mutex
	var acks []publishAck
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	end := time.After(d)
	for n := 0; ; n++ {
		select {
		case <-end:
			wg.Wait()
			return acks
		case <-tick.C:
		}
		wg.Go(func() {
			a := publishAck{sent: time.Now()}
			res, err := hc.Do(s.publishRequest(ctx, eventID, n))
			if err == nil {
				var body struct {
					Seq uint64 `json:"seq"`
				}
				err = json.NewDecoder(res.Body).Decode(&body)
				res.Body.Close()
				if err == nil && res.StatusCode != http.StatusAccepted {
					err = fmt.Errorf("publish: %s", res.Status)
				}
				a.seq = body.Seq
			}
			a.acked, a.err = time.Now(), err
			mu.Lock()
			acks = append(acks, a)
			mu.Unlock()
		})
	}
}

// ackMillis returns how long every publish waited for its answer, and how
// many failed: a starved server answers 503 once its publish timeout
// passes, and that wait counts too, as the publisher had it.
func ackMillis(acks []publishAck) (latencies []float64, failed int) {
	for _, a := range acks {
		if a.err != nil {
			failed++
		}
		latencies = append(latencies, ms(a.acked.Sub(a.sent)))
	}
	return latencies, failed
}

// arrivalsBySeq is when each change (by seq) reached each long-poll.
type arrivalsBySeq struct {
	mu sync.Mutex
	m  map[uint64][]time.Time
}

func (a *arrivalsBySeq) add(seqs []uint64, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, seq := range seqs {
		a.m[seq] = append(a.m[seq], at)
	}
}

// complete says whether every stored change reached n long-polls.
func (a *arrivalsBySeq) complete(acks []publishAck, n int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ack := range acks {
		if ack.err == nil && len(a.m[ack.seq]) < n {
			return false
		}
	}
	return true
}

// waiting reads ours' gauges of waiting long-polls and open SSE streams;
// 0 when it cannot.
func waiting(ctx context.Context, base string) (longPolls, streams float64) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	longPolls, _ = measure.PromValue(b, "liveupdates_poller_long_polls_waiting")
	streams, _ = measure.PromValue(b, "liveupdates_poller_sse_streams")
	return longPolls, streams
}

// hot measures ours alone (Centrifugo has no long-poll): the publish ack
// latency idle, then c.subs long-polls on one eventId, each re-polling as
// the browser client does (after a random part of repollSpread when the
// answer had changes, and moving to the SSE stream when an answer says
// Live-Transport: sse), while c.rate changes per second are published to it.
func hot(ctx context.Context, c config) (*hotResult, error) {
	s := server{c}
	const eventID = "hot"
	pub := httpClient(64)
	idle := publishAt(ctx, s, pub, eventID, c.rate, c.idle)
	idleMs, idleFailed := ackMillis(idle)
	if idleFailed > 0 {
		return nil, fmt.Errorf("hot: %d of %d publishes failed with no long-polls waiting", idleFailed, len(idle))
	}
	cursor := uint64(0)
	for _, a := range idle {
		cursor = max(cursor, a.seq)
	}
	rssBefore, err := procsRSS(c.pids)
	if err != nil {
		return nil, err
	}

	arrivals := &arrivalsBySeq{m: map[uint64][]time.Time{}}
	var answers, pollErrs, switched, streamErrs atomic.Int64
	var streamErr atomic.Pointer[error]
	pollCtx, cancel := context.WithCancel(ctx)
	hc := httpClient(c.subs)
	spread := repollSpread(ctx, c)
	var wg sync.WaitGroup
	for range c.subs {
		wg.Go(func() {
			moved := false
			stream := func(ctx context.Context, since uint64) uint64 {
				if !moved {
					moved = true
					switched.Add(1)
				}
				cur, err := readStream(ctx, s, hc, eventID, since, func(seq uint64, at time.Time) {
					arrivals.add([]uint64{seq}, at)
				})
				if err != nil {
					streamErrs.Add(1)
					streamErr.CompareAndSwap(nil, &err)
				}
				return cur
			}
			longPoll(pollCtx, s, hc, eventID, cursor, 25, spread, func(a pollAnswer) {
				if a.err == nil && a.status == http.StatusOK {
					answers.Add(1)
					arrivals.add(a.seqs, a.at)
				}
			}, func() { pollErrs.Add(1) }, stream)
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	// A client that can take the stream may move to it before any change
	// (transport=sse on a hot eventId): it waits there.
	var lps, streams float64
	if !waitFor(ctx, 90*time.Second, 100*time.Millisecond, func() bool {
		lps, streams = waiting(ctx, c.base)
		return lps+streams >= float64(c.subs)
	}) {
		return nil, fmt.Errorf("hot: %v of %d clients waiting after 90s (%v long-polls, %v streams)", lps+streams, c.subs, lps, streams)
	}
	w := lps + streams
	rssWaiting, err := procsRSS(c.pids)
	if err != nil {
		return nil, err
	}
	answers.Store(0)
	ph, err := startPhase(c, c.duration)
	if err != nil {
		return nil, err
	}
	storm := publishAt(ctx, s, pub, eventID, c.rate, c.duration)
	// Acks come in as they are answered; number the changes as sent.
	sort.Slice(storm, func(i, j int) bool { return storm[i].sent.Before(storm[j].sent) })
	stormMs, stormFailed := ackMillis(storm)
	// Wait for the last changes to reach everybody (or 15 s).
	waitFor(ctx, 15*time.Second, 20*time.Millisecond, func() bool { return arrivals.complete(storm, c.subs) })
	sp, err := ph.end()
	if err != nil {
		return nil, err
	}
	nAnswers := answers.Load()
	cancel()
	wg.Wait()

	res := &hotResult{Subs: c.subs, RepollSpreadMs: ms(spread), Waiting: w, BytesPerWaiting: float64(rssWaiting-rssBefore) / float64(c.subs),
		LoadCPUSeconds: sp.loadCPU, Changes: len(storm) - stormFailed, PublishFailed: stormFailed, Answers: nAnswers,
		PollErrors: pollErrs.Load(), Switched: switched.Load(), StreamsBefore: streams, StreamErrors: streamErrs.Load(),
		CPUSeconds: sp.cpu, CPUusPerAnswer: sp.perItem(nAnswers),
		AckIdleP50ms: measure.Percentile(idleMs, 50), AckStormP50ms: measure.Percentile(stormMs, 50),
		AckStormP99ms: measure.Percentile(stormMs, 99)}
	var lasts, all []float64
	type slow struct {
		n  int
		ms float64
	}
	var slows []slow
	for n, a := range storm {
		ats := arrivals.m[a.seq]
		if a.err != nil || len(ats) == 0 {
			continue
		}
		if len(ats) >= c.subs {
			res.FullyDelivered++
		}
		last := time.Time{}
		for _, at := range ats {
			if at.After(last) {
				last = at
			}
			all = append(all, ms(at.Sub(a.sent)))
		}
		res.Deliveries += len(ats)
		lasts = append(lasts, ms(last.Sub(a.sent)))
		slows = append(slows, slow{n + 1, ms(last.Sub(a.sent))})
	}
	sort.Slice(slows, func(i, j int) bool { return slows[i].ms > slows[j].ms })
	for _, s := range slows[:min(5, len(slows))] {
		res.SlowestLast = append(res.SlowestLast, fmt.Sprintf("#%d:%.0f", s.n, s.ms))
	}
	if e := errOf(streamErr.Load()); e != nil {
		res.StreamError = e.Error()
	}
	res.LastP50ms = measure.Percentile(lasts, 50)
	res.LastP99ms = measure.Percentile(lasts, 99)
	res.DeliveryP99ms = measure.Percentile(all, 99)
	res.CPUusPerDelivery = sp.perItem(int64(res.Deliveries))
	return res, nil
}
