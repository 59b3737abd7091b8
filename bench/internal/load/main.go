// Command load drives liveupdates or Centrifugo over HTTP from its own
// process, so the peer benchmark measures the same client against both
// servers and never the client inside a server. Each mode prints one JSON
// result on stdout; bench/peer runs it and builds the table.
//
//	load -mode ingest  -target ours|centrifugo -base URL -pid N [-clients 8 -batch 100 -channels 200 -duration 5s]
//	load -mode sse     -target ours|centrifugo -base URL -pid N [-subs 5000 -rounds 8]
//	load -mode hot     -base URL -pid N [-subs 5000 -rate 10 -duration 20s -idle 4s]
//	load -mode poll304 -base URL -pid N [-ids 1000 -conns 32 -duration 4s]
//	load -mode seed    -base URL -count N
//
// -pid names the server process: the tool reads its CPU time and resident
// memory from /proc around the measured phase. -profile-url, when set, is
// fetched (a pprof CPU profile of the measured phase) into -profile-out.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

// config is every flag; each mode reads the ones it needs.
type config struct {
	mode, target, base   string
	apiKey, tokenSecret  string
	pid                  int
	clients, batch, chs  int
	subs, rounds, ids    int
	conns, count         int
	rate                 float64
	duration, idle, warm time.Duration
	profileURL, profOut  string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run() error {
	var c config
	flag.StringVar(&c.mode, "mode", "", "ingest, sse, hot, poll304 or seed")
	flag.StringVar(&c.target, "target", "ours", "ours or centrifugo")
	flag.StringVar(&c.base, "base", "", "server base URL, such as http://127.0.0.1:8080")
	flag.StringVar(&c.apiKey, "api-key", "dev", "ours: the ingest API key; centrifugo: http_api.key")
	flag.StringVar(&c.tokenSecret, "token-secret", "", "centrifugo: client.token.hmac_secret_key, to sign connection tokens")
	flag.IntVar(&c.pid, "pid", 0, "the server's process id, for CPU time and resident memory")
	flag.IntVar(&c.clients, "clients", 8, "ingest: concurrent clients")
	flag.IntVar(&c.batch, "batch", 100, "ingest: changes per request")
	flag.IntVar(&c.chs, "channels", 200, "ingest: distinct eventIds (channels)")
	flag.IntVar(&c.subs, "subs", 5000, "sse, hot: subscribers of one eventId (channel)")
	flag.IntVar(&c.rounds, "rounds", 8, "sse: measured publishes, one at a time")
	flag.IntVar(&c.ids, "ids", 1000, "poll304: distinct eventIds")
	flag.IntVar(&c.conns, "conns", 32, "poll304: concurrent connections")
	flag.IntVar(&c.count, "count", 20000, "seed: changes to publish")
	flag.Float64Var(&c.rate, "rate", 10, "hot: changes per second")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "ingest, poll304: measured time; hot: the storm")
	flag.DurationVar(&c.idle, "idle", 4*time.Second, "hot: publishing with no long-polls, for the idle ack latency")
	flag.DurationVar(&c.warm, "warmup", time.Second, "ingest, poll304: unmeasured time first")
	flag.StringVar(&c.profileURL, "profile-url", "", "pprof CPU profile URL of the server, fetched during the measured phase")
	flag.StringVar(&c.profOut, "profile-out", "", "where to write that profile")
	flag.Parse()
	if c.base == "" {
		return errors.New("-base is required")
	}
	if c.target != "ours" && c.target != "centrifugo" {
		return fmt.Errorf("-target %q: want ours or centrifugo", c.target)
	}
	if err := raiseFileLimit(); err != nil {
		return err
	}
	ctx := context.Background()
	var res any
	var err error
	switch c.mode {
	case "ingest":
		res, err = ingest(ctx, c)
	case "sse":
		res, err = sse(ctx, c)
	case "hot":
		res, err = hot(ctx, c)
	case "poll304":
		res, err = poll304(ctx, c)
	case "seed":
		res, err = seed(ctx, c)
	default:
		return fmt.Errorf("-mode %q: want ingest, sse, hot, poll304 or seed", c.mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// raiseFileLimit lifts the soft limit on open files to the hard one: 5,000
// subscribers are 5,000 sockets here.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit nofile: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("setrlimit nofile %d: %w", l.Max, err)
	}
	return nil
}

// httpClient keeps up to conns connections alive and dials at most 64 at
// once, so opening thousands does not overflow the server's listen backlog.
func httpClient(conns int) *http.Client {
	dials := make(chan struct{}, 64)
	d := &net.Dialer{Timeout: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case dials <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-dials }()
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// server knows each target's routes and bodies.
type server struct {
	c config
}

// pad makes every change about as large as a vote update (the producer's
// benchmarks use 47 bytes).
const pad = "0123456789abcdefghij"

func (s server) data(n int) string { return `{"r":` + strconv.Itoa(n) + `,"pad":"` + pad + `"}` }

// batchBody is one ingest request: n changes over channels first..first+n-1
// (mod chs).
func (s server) batchBody(first, n, chs, tag int) []byte {
	var b bytes.Buffer
	if s.c.target == "ours" {
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"eventId":"e%d","type":"vote.updated","data":%s}`, (first+i)%chs, s.data(tag))
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	b.WriteString(`{"commands":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"publish":{"channel":"e%d","data":%s}}`, (first+i)%chs, s.data(tag))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func (s server) batchRequest(ctx context.Context, body []byte) *http.Request {
	path := "/v1/publish"
	if s.c.target == "centrifugo" {
		path = "/api/batch"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+path, bytes.NewReader(body))
	s.auth(req)
	return req
}

// publishRequest publishes one change to one eventId (channel).
func (s server) publishRequest(ctx context.Context, channel string, n int) *http.Request {
	var req *http.Request
	if s.c.target == "ours" {
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+"/v1/events/"+channel+"/vote.updated", bytes.NewReader([]byte(s.data(n))))
	} else {
		body := `{"channel":"` + channel + `","data":` + s.data(n) + `}`
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.c.base+"/api/publish", bytes.NewReader([]byte(body)))
	}
	s.auth(req)
	return req
}

func (s server) auth(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	if s.c.target == "ours" {
		req.Header.Set("Authorization", "Bearer "+s.c.apiKey)
	} else {
		req.Header.Set("X-API-Key", s.c.apiKey)
	}
}

// streamRequest opens an SSE subscription to one channel: ours at
// /v1/events/{id}/stream, Centrifugo's uni_sse with a connection token that
// subscribes it server-side.
func (s server) streamRequest(ctx context.Context, channel string) (*http.Request, error) {
	if s.c.target == "ours" {
		return http.NewRequestWithContext(ctx, http.MethodGet, s.c.base+"/v1/events/"+channel+"/stream", nil)
	}
	tok, err := measure.HS256(map[string]any{
		"sub": "bench", "channels": []string{channel}, "exp": time.Now().Add(time.Hour).Unix(),
	}, s.c.tokenSecret)
	if err != nil {
		return nil, err
	}
	connect, _ := json.Marshal(map[string]string{"token": tok})
	return http.NewRequestWithContext(ctx, http.MethodGet, s.c.base+"/connection/uni_sse?cf_connect="+url.QueryEscape(string(connect)), nil)
}

// ok reads a publish answer whole and says whether every change in it was
// accepted: a 2xx, and for Centrifugo no error among the replies.
func (s server) ok(res *http.Response) bool {
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode/100 != 2 {
		return false
	}
	return s.c.target == "ours" || !bytes.Contains(body, []byte(`"error"`))
}

// cpuMeter reads the server's CPU time at the start and end of a phase.
type cpuMeter struct {
	pid   int
	start time.Duration
}

func startCPU(pid int) (*cpuMeter, error) {
	d, err := measure.ProcCPU(pid)
	return &cpuMeter{pid: pid, start: d}, err
}

func (m *cpuMeter) seconds() (float64, error) {
	d, err := measure.ProcCPU(m.pid)
	return (d - m.start).Seconds(), err
}

// profile fetches a CPU profile of the next d from the server's debug
// address, when asked to; wait returns once it is written.
func profile(c config, d time.Duration) (wait func() error) {
	if c.profileURL == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			u := c.profileURL + "?seconds=" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
			res, err := http.Get(u)
			if err != nil {
				return fmt.Errorf("profile %s: %w", u, err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("profile %s: %s", u, res.Status)
			}
			f, err := os.Create(c.profOut)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, res.Body); err != nil {
				f.Close()
				return fmt.Errorf("profile %s: %w", u, err)
			}
			return f.Close()
		}()
	}()
	return func() error { return <-done }
}

type ingestResult struct {
	Target       string  `json:"target"`
	Events       int64   `json:"events"`
	Requests     int     `json:"requests"`
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	CPUSeconds   float64 `json:"cpu_s"`
	CPUusPerItem float64 `json:"cpu_us_per_event"`
	// The load tool's own CPU time: on a shared machine it says how much
	// of the cores the client took from the server.
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
				local = append(local, float64(el)/float64(time.Millisecond))
			}
		})
	}
	time.Sleep(c.warm) // the servers' first requests pay for warming up
	cpu, err := startCPU(c.pid)
	if err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	self, err := startCPU(os.Getpid())
	if err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	prof := profile(c, c.duration)
	t0 := time.Now()
	measuring.Store(true)
	time.Sleep(c.duration)
	measuring.Store(false)
	el := time.Since(t0).Seconds()
	cpuS, cpuErr := cpu.seconds()
	selfS, _ := self.seconds()
	close(stop)
	wg.Wait()
	if err := errors.Join(cpuErr, prof()); err != nil {
		return nil, err
	}
	n := events.Load()
	r := &ingestResult{Target: c.target, Events: n, Requests: len(latencies), Errors: errs.Load(), Seconds: el,
		EventsPerSec: float64(n) / el, P50ms: measure.Percentile(latencies, 50), P99ms: measure.Percentile(latencies, 99),
		CPUSeconds: cpuS, LoadCPUSeconds: selfS}
	if n > 0 {
		r.CPUusPerItem = cpuS * 1e6 / float64(n)
	}
	return r, nil
}

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

// sse opens c.subs subscriptions to one channel and publishes one change at
// a time, timing each from just before the publish request to its arrival
// at the last subscriber. Round 0 is a warm-up, and also the proof that
// every subscriber is really subscribed before anything is timed.
func sse(ctx context.Context, c config) (*sseResult, error) {
	s := server{c}
	const channel = "bench"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := httpClient(0)
	rounds := c.rounds + 1
	// arrivals[r][i]: nanoseconds since start when subscriber i got round r.
	arrivals := make([][]atomic.Int64, rounds)
	counts := make([]atomic.Int64, rounds)
	for r := range arrivals {
		arrivals[r] = make([]atomic.Int64, c.subs)
	}
	start := time.Now()
	rssBefore, err := measure.ProcRSS(c.pid)
	if err != nil {
		return nil, err
	}
	var connected, failed atomic.Int64
	var reconnects atomic.Int64
	var firstErr, streamErr atomic.Pointer[error]
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range c.subs {
		wg.Go(func() {
			// A browser's EventSource reconnects when its stream ends or
			// cannot open; so do these (a few tries per opening), and the
			// result counts it.
			for first := true; ctx.Err() == nil; first = false {
				res, err := openStream(ctx, s, hc, channel)
				if err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
						failed.Add(1)
					}
					return
				}
				if first {
					connected.Add(1)
				} else {
					reconnects.Add(1)
				}
				rd := measure.NewSSEReader(bufio.NewReaderSize(res.Body, 4096))
				for {
					ev, err := rd.Next()
					if err != nil {
						if ctx.Err() == nil {
							streamErr.CompareAndSwap(nil, &err)
						}
						break
					}
					r, ok := measure.IntField(ev.Data, "r")
					if !ok || r < 0 || int(r) >= rounds || arrivals[r][i].Load() != 0 {
						continue
					}
					arrivals[r][i].Store(int64(time.Since(start)))
					counts[r].Add(1)
				}
				res.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(2 * time.Minute)
	for connected.Load()+failed.Load() < int64(c.subs) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	connectS := time.Since(start).Seconds()
	if failed.Load() > 0 || connected.Load() < int64(c.subs) {
		return nil, fmt.Errorf("sse: %d of %d subscribers connected (%d failed, the first with %v)", connected.Load(), c.subs, failed.Load(), errOf(firstErr.Load()))
	}
	pub := httpClient(1)
	// publish sends round r and waits until every subscriber has it (or
	// patience), returning when it was sent.
	publish := func(r int, patience time.Duration) (int64, error) {
		t0 := int64(time.Since(start))
		res, err := pub.Do(s.publishRequest(ctx, channel, r))
		if err != nil || !s.ok(res) {
			return 0, fmt.Errorf("sse publish round %d: %v", r, err)
		}
		until := time.Now().Add(patience)
		for counts[r].Load() < int64(c.subs) && time.Now().Before(until) {
			time.Sleep(2 * time.Millisecond)
		}
		return t0, nil
	}
	// Round 0 again and again until all have it: a subscriber counted as
	// connected may not be subscribed yet (its headers came first).
	warm := time.Now().Add(30 * time.Second)
	for {
		if _, err := publish(0, 3*time.Second); err != nil {
			return nil, err
		}
		if counts[0].Load() == int64(c.subs) || time.Now().After(warm) {
			break
		}
	}
	if got := counts[0].Load(); got < int64(c.subs) {
		return nil, fmt.Errorf("sse: only %d of %d subscribers got the warm-up change (%d reconnects; a stream ended with %v)", got, c.subs, reconnects.Load(), errOf(streamErr.Load()))
	}
	time.Sleep(200 * time.Millisecond)
	rssConnected, err := measure.ProcRSS(c.pid)
	if err != nil {
		return nil, err
	}
	cpu, err := startCPU(c.pid)
	if err != nil {
		return nil, err
	}
	self, err := startCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	prof := profile(c, time.Duration(c.rounds)*300*time.Millisecond)
	res := &sseResult{Target: c.target, Subs: c.subs, Connected: int(connected.Load()), ConnectSeconds: connectS,
		RSSBefore: rssBefore, RSSConnected: rssConnected}
	var deliveries []float64
	for r := 1; r < rounds; r++ {
		t0, err := publish(r, 20*time.Second)
		if err != nil {
			return nil, err
		}
		last := int64(0)
		for i := range c.subs {
			a := arrivals[r][i].Load()
			if a == 0 {
				res.Missing++
				continue
			}
			res.Deliveries++
			last = max(last, a)
			deliveries = append(deliveries, float64(a-t0)/1e6)
		}
		res.LastMs = append(res.LastMs, float64(last-t0)/1e6)
		// Let the servers settle so rounds do not overlap.
		time.Sleep(100 * time.Millisecond)
	}
	cpuS, cpuErr := cpu.seconds()
	selfS, selfErr := self.seconds()
	if err := errors.Join(cpuErr, selfErr, prof()); err != nil {
		return nil, err
	}
	res.LoadCPUSeconds = selfS
	res.RSSAfter, err = measure.ProcRSS(c.pid)
	if err != nil {
		return nil, err
	}
	res.BytesPerConn = float64(res.RSSAfter-rssBefore) / float64(c.subs)
	res.LastP50ms = measure.Median(res.LastMs)
	res.DeliveryP50ms = measure.Percentile(deliveries, 50)
	res.CPUSeconds = cpuS
	res.Reconnects = reconnects.Load()
	if e := errOf(streamErr.Load()); e != nil {
		res.StreamEnded = e.Error()
	}
	if res.Deliveries > 0 {
		res.CPUusPerDelivery = cpuS * 1e6 / float64(res.Deliveries)
	}
	return res, nil
}

// openStream opens one SSE subscription, trying up to 5 times, since a
// burst of thousands of connects can overflow a listen backlog.
func openStream(ctx context.Context, s server, hc *http.Client, channel string) (*http.Response, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var req *http.Request
		if req, err = s.streamRequest(ctx, channel); err != nil {
			return nil, err
		}
		var res *http.Response
		if res, err = hc.Do(req); err == nil {
			if res.StatusCode == http.StatusOK {
				return res, nil
			}
			res.Body.Close()
			err = fmt.Errorf("status %s", res.Status)
		}
	}
	return nil, err
}

type hotResult struct {
	Subs             int     `json:"subs"`
	Waiting          float64 `json:"waiting"`
	BytesPerWaiting  float64 `json:"bytes_per_waiting"`
	LoadCPUSeconds   float64 `json:"load_cpu_s"`
	Changes          int     `json:"changes"`
	PublishFailed    int     `json:"publish_failed"`
	FullyDelivered   int     `json:"fully_delivered"`
	Deliveries       int     `json:"deliveries"`
	Answers          int64   `json:"answers"`
	PollErrors       int64   `json:"poll_errors"`
	LastP50ms        float64 `json:"last_p50_ms"`
	LastP99ms        float64 `json:"last_p99_ms"`
	DeliveryP99ms    float64 `json:"delivery_p99_ms"`
	AckIdleP50ms     float64 `json:"ack_idle_p50_ms"`
	AckStormP50ms    float64 `json:"ack_storm_p50_ms"`
	AckStormP99ms    float64 `json:"ack_storm_p99_ms"`
	CPUSeconds       float64 `json:"cpu_s"`
	CPUusPerAnswer   float64 `json:"cpu_us_per_answer"`
	CPUusPerDelivery float64 `json:"cpu_us_per_delivery"`
}

type publishAck struct {
	sent, acked time.Time
	seq         uint64
	err         error
}

// publishAt publishes c.rate changes per second to eventId for d, each from
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
func ackMillis(acks []publishAck) (ms []float64, failed int) {
	for _, a := range acks {
		if a.err != nil {
			failed++
		}
		ms = append(ms, float64(a.acked.Sub(a.sent))/1e6)
	}
	return ms, failed
}

// hot measures ours alone (Centrifugo has no long-poll): the publish ack
// latency idle, then c.subs long-polls on one eventId re-polling at once
// after each answer while c.rate changes per second are published to it.
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
	metricsURL := c.base + "/metrics"
	waiting := func() float64 {
		res, err := http.Get(metricsURL)
		if err != nil {
			return 0
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		v, _ := measure.PromValue(b, "liveupdates_poller_long_polls_waiting")
		return v
	}
	rssBefore, err := measure.ProcRSS(c.pid)
	if err != nil {
		return nil, err
	}

	type slot struct {
		arrivals []time.Time
	}
	var (
		mu       sync.Mutex
		bySeq    = map[uint64]*slot{}
		answers  atomic.Int64
		pollErrs atomic.Int64
	)
	ctx, cancel := context.WithCancel(ctx)
	hc := httpClient(c.subs)
	var wg sync.WaitGroup
	for range c.subs {
		wg.Go(func() {
			since := cursor
			var buf bytes.Buffer
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
					c.base+"/v1/events/"+eventID+"/updates?since="+strconv.FormatUint(since, 10)+"&wait=25", nil)
				res, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						pollErrs.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				buf.Reset()
				_, err = buf.ReadFrom(res.Body)
				at := time.Now()
				res.Body.Close()
				var next uint64
				var seqs []uint64
				if err == nil && res.StatusCode == http.StatusOK {
					next, seqs, err = measure.ParseUpdates(buf.Bytes())
				}
				if err != nil || res.StatusCode != http.StatusOK {
					if ctx.Err() == nil {
						pollErrs.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				answers.Add(1)
				mu.Lock()
				for _, seq := range seqs {
					sl := bySeq[seq]
					if sl == nil {
						sl = &slot{}
						bySeq[seq] = sl
					}
					sl.arrivals = append(sl.arrivals, at)
				}
				mu.Unlock()
				since = max(since, next)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	deadline := time.Now().Add(90 * time.Second)
	w := 0.0
	for time.Now().Before(deadline) {
		if w = waiting(); w >= float64(c.subs) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w < float64(c.subs) {
		return nil, fmt.Errorf("hot: %v of %d long-polls waiting after 90s", w, c.subs)
	}
	rssWaiting, err := measure.ProcRSS(c.pid)
	if err != nil {
		return nil, err
	}
	answers.Store(0)
	cpu, err := startCPU(c.pid)
	if err != nil {
		return nil, err
	}
	self, err := startCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	prof := profile(c, c.duration)
	storm := publishAt(ctx, s, pub, eventID, c.rate, c.duration)
	stormMs, stormFailed := ackMillis(storm)
	// Wait for the last changes to reach everybody (or 15 s).
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range storm {
			if a.err != nil {
				continue
			}
			if sl := bySeq[a.seq]; sl == nil || len(sl.arrivals) < c.subs {
				return false
			}
		}
		return true
	}
	until := time.Now().Add(15 * time.Second)
	for !complete() && time.Now().Before(until) {
		time.Sleep(20 * time.Millisecond)
	}
	cpuS, err := cpu.seconds()
	if err != nil {
		return nil, err
	}
	selfS, err := self.seconds()
	if err := errors.Join(err, prof()); err != nil {
		return nil, err
	}
	nAnswers := answers.Load()
	cancel()
	wg.Wait()

	res := &hotResult{Subs: c.subs, Waiting: w, BytesPerWaiting: float64(rssWaiting-rssBefore) / float64(c.subs),
		LoadCPUSeconds: selfS, Changes: len(storm) - stormFailed, PublishFailed: stormFailed, Answers: nAnswers, PollErrors: pollErrs.Load(), CPUSeconds: cpuS,
		AckIdleP50ms: measure.Percentile(idleMs, 50), AckStormP50ms: measure.Percentile(stormMs, 50),
		AckStormP99ms: measure.Percentile(stormMs, 99)}
	var lasts, all []float64
	for _, a := range storm {
		sl := bySeq[a.seq]
		if a.err != nil || sl == nil {
			continue
		}
		if len(sl.arrivals) >= c.subs {
			res.FullyDelivered++
		}
		last := time.Time{}
		for _, at := range sl.arrivals {
			if at.After(last) {
				last = at
			}
			all = append(all, float64(at.Sub(a.sent))/1e6)
		}
		res.Deliveries += len(sl.arrivals)
		lasts = append(lasts, float64(last.Sub(a.sent))/1e6)
	}
	res.LastP50ms = measure.Percentile(lasts, 50)
	res.LastP99ms = measure.Percentile(lasts, 99)
	res.DeliveryP99ms = measure.Percentile(all, 99)
	if nAnswers > 0 {
		res.CPUusPerAnswer = cpuS * 1e6 / float64(nAnswers)
	}
	if res.Deliveries > 0 {
		res.CPUusPerDelivery = cpuS * 1e6 / float64(res.Deliveries)
	}
	return res, nil
}

type pollResult struct {
	Polls       int64   `json:"polls"`
	NotModified int64   `json:"not_modified"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"polls_per_s"`
	CPUSeconds  float64 `json:"cpu_s"`
	CPUusPerPol float64 `json:"cpu_us_per_poll"`
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
	etags := make([]string, c.ids)
	deadline := time.Now().Add(30 * time.Second)
	for i := range c.ids {
		for etags[i] == "" {
			res, err := hc.Get(fmt.Sprintf("%s/v1/events/e%d/updates", c.base, i))
			if err != nil {
				return nil, err
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			etags[i] = res.Header.Get("ETag")
			if etags[i] == "" || etags[i] == `"0"` {
				etags[i] = ""
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("poll304: e%d has no change after 30s", i)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	var polls, notMod, errs atomic.Int64
	var measuring atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range c.conns {
		wg.Go(func() {
			buf := make([]byte, 512)
			for i := w; ; i += c.conns {
				select {
				case <-stop:
					return
				default:
				}
				id := i % c.ids
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/events/e%d/updates", c.base, id), nil)
				req.Header.Set("If-None-Match", etags[id])
				res, err := hc.Do(req)
				counted := measuring.Load()
				if err != nil {
					if counted {
						errs.Add(1)
					}
					continue
				}
				for {
					if _, err := res.Body.Read(buf); err != nil {
						break
					}
				}
				res.Body.Close()
				if counted {
					polls.Add(1)
					if res.StatusCode == http.StatusNotModified {
						notMod.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(c.warm)
	cpu, err := startCPU(c.pid)
	if err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	t0 := time.Now()
	measuring.Store(true)
	time.Sleep(c.duration)
	measuring.Store(false)
	el := time.Since(t0).Seconds()
	cpuS, err := cpu.seconds()
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	r := &pollResult{Polls: polls.Load(), NotModified: notMod.Load(), Errors: errs.Load(), Seconds: el,
		PerSec: float64(polls.Load()) / el, CPUSeconds: cpuS}
	if r.Polls > 0 {
		r.CPUusPerPol = cpuS * 1e6 / float64(r.Polls)
	}
	return r, nil
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

func errOf(p *error) error {
	if p == nil {
		return nil
	}
	return *p
}
