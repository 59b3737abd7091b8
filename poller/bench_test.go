package poller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkPoller measures the poller over real HTTP against a load
// generator in a separate process (bench/internal/load), with 10,000 distinct
// eventIds, and reports:
//
//   - rps_304, rps_bare_304, x_bare_304: conditional polls per second that
//     get 304, beside a bare net/http handler answering a constant 304 on
//     the same machine in the same run, and their ratio (target >= 0.7);
//   - rps_200, x_bare_200: polls answered 200 with one new change each;
//   - B/waiting_client: server heap+stack per waiting long-poll with 10,000
//     waiting (target <= 16 KiB);
//   - wake_p50_ms, wake_p99_ms: publish (JetStream ack) to long-poll answer
//     received by the load generator (target p50 <= 5 ms);
//   - fanout_{p50,last,server}_ms_{keepalive,off}: 10,000 long-polls on one
//     eventId, one publish: from its ack to the median and the last answer
//     received, and to the server having written every answer; parked
//     (keepalive) and on the plain net/http path (off) as the baseline.
//
// Run it once: go test -run '^$' -bench BenchmarkPoller -benchtime 1x ./poller/
// The rate limit is off here (all load comes from one IP).
func BenchmarkPoller(b *testing.B) {
	const ids = 10_000
	loadgen := filepath.Join(b.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "../bench/internal/load").CombinedOutput(); err != nil {
		b.Fatalf("build loadgen: %v\n%s", err, out)
	}
	srv := testutil.RunJetStream(b)
	js := srv.JS(b)
	ensureStream(b, js)
	for i := range ids {
		m := nats.NewMsg(wire.Subject(fmt.Sprintf("e%d", i), "vote.updated"))
		m.Header.Set(wire.HeaderMsgID, wire.NewID(time.Now()))
		m.Header.Set(wire.HeaderAt, wire.FormatAt(time.Now()))
		m.Data = []byte(`{"votes":{"alice":["2026-12-01","2026-12-02"],"bob":["2026-12-02"]}}`)
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatalf("publish: %v", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		b.Fatal("async publishes not acknowledged within 60s")
	}

	h := startPoller(b, srv, Config{Rate: -1, MaxWait: 2 * time.Minute, MaxEvents: 2 * ids})
	testutil.Eventually(b, 30*time.Second, func() bool { return h.p.idx.nEntries.Load() == ids }, "index holds %d eventIds", ids)
	mux := http.NewServeMux()
	h.p.Register(mux)
	poller := serve(b, mux)
	bare := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Etag"] = []string{`"1"`}
		w.WriteHeader(http.StatusNotModified)
	}))

	rps := func(base, kind string) float64 {
		r := runLoadgen(b, loadgen, "-mode", "rps", "-base", base, "-ids", fmt.Sprint(ids), "-conns", "32", "-duration", "2s", "-kind", kind)
		want := 304
		if kind == "200" {
			want = 200
		}
		if r.Errors > 0 || r.Status[want] != r.Requests {
			b.Fatalf("loadgen %s %s: %+v, want every answer %d", base, kind, r, want)
		}
		return r.RPS
	}
	b.ResetTimer()
	// Interleaved, best of two: the machine is shared, so one slow run
	// must not decide a ratio.
	var bare304, p304, p200 float64
	for range 2 {
		bare304 = max(bare304, rps(bare, "304"))
		p304 = max(p304, rps(poller, "304"))
		p200 = max(p200, rps(poller, "200"))
	}
	b.ReportMetric(bare304, "rps_bare_304")
	b.ReportMetric(p304, "rps_304")
	b.ReportMetric(p304/bare304, "x_bare_304")
	b.ReportMetric(p200, "rps_200")
	b.ReportMetric(p200/bare304, "x_bare_200")

	// Long-polls: 10,000 waiting, one per eventId.
	runtime.GC()
	before := memInUse()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)

	cursor := h.p.idx.appliedSeq()
	cmd := exec.Command(loadgen, "-mode", "hold", "-base", poller, "-ids", fmt.Sprint(ids), "-since", fmt.Sprint(cursor), "-wait", "110")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start loadgen: %v", err)
	}
	waiting := func() float64 { return promtest.ToFloat64(h.p.m.waiting) }
	testutil.Eventually(b, 60*time.Second, func() bool { return waiting() == ids }, "%d long-polls waiting", ids)
	runtime.GC()
	b.ReportMetric(float64(memInUse()-before)/ids, "B/waiting_client")
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	b.Logf("per waiting client: heap %d B, stack %d B; goroutines %d", (int64(ms1.HeapInuse)-int64(ms0.HeapInuse))/ids, (int64(ms1.StackInuse)-int64(ms0.StackInuse))/ids, runtime.NumGoroutine())

	const samples = 200
	published := map[string]int64{}
	for k := range samples {
		id := fmt.Sprintf("e%d", k*(ids/samples))
		t0 := time.Now().UnixNano()
		testutil.PublishChange(b, js, id, "vote.updated", `{"wake":true}`)
		published[id] = t0
		testutil.Eventually(b, 30*time.Second, func() bool { return waiting() <= float64(ids-k-1) }, "long-poll %s woken", id)
	}
	h.p.Drain()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("loadgen hold: %v", err)
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		b.Fatalf("loadgen output %q: %v", out.String(), err)
	}
	var lat []float64
	for id, t0 := range published {
		at, ok := res.Arrivals[id]
		if !ok {
			b.Fatalf("long-poll %s got no change; result %+v", id, res.Status)
		}
		lat = append(lat, float64(at-t0)/1e6)
	}
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "wake_p50_ms")
	b.ReportMetric(lat[len(lat)*99/100], "wake_p99_ms")

	// Fan-out, on fresh pollers (the one above is drained): 10,000
	// long-polls on one eventId, one publish wakes them all. Parked, then
	// on the plain net/http path as the baseline.
	for _, park := range []string{ParkKeepAlive, ParkOff} {
		hp := startPoller(b, srv, Config{Rate: -1, MaxWait: 2 * time.Minute, MaxEvents: 2 * ids, Park: park})
		m := http.NewServeMux()
		hp.p.Register(m)
		p50, last, server := fanout(b, loadgen, js, hp, serve(b, m), ids)
		b.ReportMetric(p50, "fanout_p50_ms_"+park)
		b.ReportMetric(last, "fanout_last_ms_"+park)
		b.ReportMetric(server, "fanout_server_ms_"+park)
		hp.stop()
	}
}

// fanout holds n long-polls on one eventId, publishes one change, and
// returns the milliseconds from the publish's ack to the median and the
// last answer received by the load generator, and to the server having
// written every answer (5 ms resolution).
func fanout(b *testing.B, loadgen string, js jetstream.JetStream, h *harness, base string, n int) (p50, last, server float64) {
	cursor := h.p.idx.appliedSeq()
	cmd := exec.Command(loadgen, "-mode", "hold", "-base", base, "-ids", fmt.Sprint(n), "-since", fmt.Sprint(cursor), "-wait", "60", "-event", "hot")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("start loadgen: %v", err)
	}
	waiting := func() float64 { return promtest.ToFloat64(h.p.m.waiting) }
	testutil.Eventually(b, 60*time.Second, func() bool { return waiting() == float64(n) }, "%d long-polls waiting on one eventId", n)
	testutil.PublishChange(b, js, "hot", "vote.updated", `{"hot":true}`)
	t0 := time.Now().UnixNano()
	testutil.Eventually(b, 60*time.Second, func() bool {
		h.p.pk.mu.Lock()
		busy := h.p.pk.workers
		h.p.pk.mu.Unlock()
		return waiting() == 0 && busy == 0
	}, "every fan-out answer written")
	server = float64(time.Now().UnixNano()-t0) / 1e6
	if err := cmd.Wait(); err != nil {
		b.Fatalf("loadgen hold: %v", err)
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		b.Fatalf("loadgen output %q: %v", out.String(), err)
	}
	if len(res.Arrivals) != n {
		b.Fatalf("fan-out: %d of %d long-polls got the change; result %+v", len(res.Arrivals), n, res.Status)
	}
	lat := make([]float64, 0, n)
	for _, at := range res.Arrivals {
		lat = append(lat, float64(at-t0)/1e6)
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)-1], server
}

type loadResult struct {
	Requests int64            `json:"requests"`
	RPS      float64          `json:"rps"`
	Status   map[int]int64    `json:"status"`
	Errors   int64            `json:"errors"`
	Arrivals map[string]int64 `json:"arrivals"`
	Answers  [][]int64        `json:"answers"`
}

func runLoadgen(b *testing.B, bin string, args ...string) loadResult {
	b.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		b.Fatalf("loadgen %v: %v", args, err)
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("loadgen output %q: %v", out, err)
	}
	return r
}

// serve runs h on a plain http.Server (as production does) on loopback.
func serve(b *testing.B, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l) // ends with ErrServerClosed at cleanup
	}()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return "http://" + l.Addr().String()
}

func memInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// BenchmarkHotEvent measures a hot eventId: hotClients long-polls on one
// eventId, each re-polling at once with its new cursor (a separate process,
// bench/internal/load -mode repoll), while 10 changes/s are published to it
// for 5 s (one goroutine per publish, so a slow ack does not slow the rate).
// It runs with Config.Linger off, at its default (_on), 500ms and 1s on
// fresh pollers in the same run and reports, for each (suffix _off, _on,
// _500ms, _1s):
//
//   - answers_per_change: answers carrying changes ÷ changes published
//     (hotClients means one answer per client per change);
//   - last_p50_ms, last_p99_ms: publish to the last client holding a cursor
//     at or past the change, over the changes;
//   - ack_p50_ms: the publishes' own ack latency (publishers starving);
//   - missed: (change, client) pairs never delivered before the tail ended;
//
// and, for each linger, x_answers_*, x_last_p99_* and x_ack_p50_* (that
// linger ÷ off).
//
// Run it: go test -run '^$' -bench BenchmarkHotEvent -benchtime 1x ./poller/
func BenchmarkHotEvent(b *testing.B) {
	const (
		hotClients = 2000
		rate       = 10
		storm      = 5 * time.Second
		tail       = 6 * time.Second
	)
	loadgen := filepath.Join(b.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "../bench/internal/load").CombinedOutput(); err != nil {
		b.Fatalf("build loadgen: %v\n%s", err, out)
	}
	srv := testutil.RunJetStream(b)
	js := srv.JS(b)
	ensureStream(b, js)
	b.ResetTimer()
	res := map[string]map[string]float64{}
	for _, mode := range []struct {
		name   string
		linger time.Duration
	}{{"off", -1}, {"on", 0}, {"500ms", 500 * time.Millisecond}, {"1s", time.Second}} {
		h := startPoller(b, srv, Config{Rate: -1, MaxWait: 2 * time.Minute, Linger: mode.linger})
		m := http.NewServeMux()
		h.p.Register(m)
		base := serve(b, m)
		cursor := h.p.idx.appliedSeq()
		cmd := exec.Command(loadgen, "-mode", "repoll", "-base", base, "-ids", fmt.Sprint(hotClients), "-since", fmt.Sprint(cursor),
			"-wait", "30", "-event", "hot", "-duration", (storm + tail + 60*time.Second).String())
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			b.Fatalf("start loadgen: %v", err)
		}
		waiting := func() float64 { return promtest.ToFloat64(h.p.m.waiting) }
		testutil.Eventually(b, 60*time.Second, func() bool { return waiting() == hotClients }, "%d long-polls waiting on one eventId", hotClients)

		type pub struct {
			t0  int64
			seq uint64
			ack float64
		}
		var (
			mu   sync.Mutex
			pubs []pub
			wg   sync.WaitGroup
		)
		tick := time.NewTicker(time.Second / rate)
		for k := range int(storm.Seconds() * rate) {
			if k > 0 {
				<-tick.C
			}
			wg.Go(func() {
				t0 := time.Now().UnixNano()
				seq := testutil.PublishChange(b, js, "hot", "vote.updated", fmt.Sprintf(`{"n":%d}`, k))
				ack := float64(time.Now().UnixNano()-t0) / 1e6
				mu.Lock()
				pubs = append(pubs, pub{t0, seq, ack})
				mu.Unlock()
			})
		}
		tick.Stop()
		wg.Wait()
		last := pubs[0].seq
		for _, p := range pubs {
			last = max(last, p.seq)
		}
		// The tail: every client has the last change, or the tail ends.
		settle := time.NewTicker(50 * time.Millisecond)
		settled := func() bool {
			h.p.pk.mu.Lock()
			busy := h.p.pk.workers + len(h.p.pk.lingering)
			h.p.pk.mu.Unlock()
			return busy == 0 && waiting() == hotClients && h.p.idx.appliedSeq() >= last
		}
		for end, calm := time.Now().Add(tail), 0; time.Now().Before(end) && calm < 3; {
			<-settle.C
			if settled() {
				calm++
			} else {
				calm = 0
			}
		}
		settle.Stop()
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		var lr loadResult
		if err := json.Unmarshal(out.Bytes(), &lr); err != nil {
			b.Fatalf("loadgen output %q: %v", out.String(), err)
		}
		answers, missed := 0, 0
		lastAt := make([]float64, 0, len(pubs))
		acks := make([]float64, 0, len(pubs))
		for _, p := range pubs {
			acks = append(acks, p.ack)
			worst := int64(0)
			for _, a := range lr.Answers {
				got := false
				for i := 0; i+1 < len(a); i += 2 {
					if uint64(a[i]) >= p.seq {
						worst, got = max(worst, a[i+1]), true
						break
					}
				}
				if !got {
					missed++
				}
			}
			if worst > 0 {
				lastAt = append(lastAt, float64(worst-p.t0)/1e6)
			}
		}
		for _, a := range lr.Answers {
			answers += len(a) / 2
		}
		slices.Sort(lastAt)
		slices.Sort(acks)
		r := map[string]float64{
			"answers_per_change": float64(answers) / float64(len(pubs)),
			"ack_p50_ms":         acks[len(acks)/2],
			"missed":             float64(missed),
		}
		if len(lastAt) > 0 {
			r["last_p50_ms"] = lastAt[len(lastAt)/2]
			r["last_p99_ms"] = lastAt[len(lastAt)*99/100]
		}
		for k, v := range r {
			b.ReportMetric(v, k+"_"+mode.name)
		}
		res[mode.name] = r
		h.stop()
	}
	for _, on := range []string{"on", "500ms", "1s"} {
		b.ReportMetric(res[on]["answers_per_change"]/res["off"]["answers_per_change"], "x_answers_"+on)
		if res["off"]["last_p99_ms"] > 0 {
			b.ReportMetric(res[on]["last_p99_ms"]/res["off"]["last_p99_ms"], "x_last_p99_"+on)
		}
		b.ReportMetric(res[on]["ack_p50_ms"]/res["off"]["ack_p50_ms"], "x_ack_p50_"+on)
	}
}

// BenchmarkSSEFanout measures sseStreams Server-Sent Event streams on one
// eventId (a separate process, bench/internal/load -mode sse-arrivals) receiving 20
// changes published 250 ms apart, parked (ssepark.go: one shared buffer per
// change written by the parking workers, _shared) and, as the baseline, each
// on its handler goroutine with its frames encoded per stream and the
// deadline moved on every write as before (_perstream), interleaved in the
// same run. It
// reports last_p50_ms and last_max_ms (publish to the last stream, over the
// changes), each_p50_ms (publish to each stream), cpu_us_per_delivery (this
// process's CPU, JetStream included, ÷ deliveries) and x_last_p50,
// x_cpu (shared ÷ perstream).
//
// Run it: go test -run '^$' -bench BenchmarkSSEFanout -benchtime 1x ./poller/
func BenchmarkSSEFanout(b *testing.B) {
	const (
		sseStreams = 2000
		changes    = 20
	)
	loadgen := filepath.Join(b.TempDir(), "loadgen")
	if out, err := exec.Command("go", "build", "-o", loadgen, "../bench/internal/load").CombinedOutput(); err != nil {
		b.Fatalf("build loadgen: %v\n%s", err, out)
	}
	srv := testutil.RunJetStream(b)
	js := srv.JS(b)
	ensureStream(b, js)
	b.ResetTimer()
	res := map[string]map[string][]float64{}
	for _, mode := range []string{"perstream", "shared", "perstream", "shared"} {
		h := startPoller(b, srv, Config{Rate: -1, SSEMaxPerAddr: 1 << 20, Heartbeat: 10 * time.Minute})
		h.p.sseBaseline.Store(mode == "perstream")
		m := http.NewServeMux()
		h.p.Register(m)
		base := serve(b, m)
		cursor := h.p.idx.appliedSeq()
		cmd := exec.Command(loadgen, "-mode", "sse-arrivals", "-base", base, "-ids", fmt.Sprint(sseStreams), "-since", fmt.Sprint(cursor),
			"-event", "hot", "-duration", "120s", "-until", fmt.Sprint(cursor+changes))
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			b.Fatalf("start loadgen: %v", err)
		}
		testutil.Eventually(b, 60*time.Second, func() bool { return promtest.ToFloat64(h.p.m.streams) == sseStreams }, "%d streams open", sseStreams)
		cpu0 := cpuTime()
		t0 := map[uint64]int64{}
		tick := time.NewTicker(250 * time.Millisecond)
		for k := range changes {
			if k > 0 {
				<-tick.C
			}
			at := time.Now().UnixNano()
			t0[testutil.PublishChange(b, js, "hot", "vote.updated", fmt.Sprintf(`{"n":%d,"pad":"%0200d"}`, k, k))] = at
		}
		tick.Stop()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("loadgen sse: %v", err)
		}
		cpu := cpuTime() - cpu0
		var lr loadResult
		if err := json.Unmarshal(out.Bytes(), &lr); err != nil {
			b.Fatalf("loadgen output %q: %v", out.String(), err)
		}
		lastAt := map[uint64]int64{}
		var each []float64
		deliveries := 0
		for _, a := range lr.Answers {
			for i := 0; i+1 < len(a); i += 2 {
				seq := uint64(a[i])
				if _, ok := t0[seq]; !ok {
					continue
				}
				deliveries++
				lastAt[seq] = max(lastAt[seq], a[i+1])
				each = append(each, float64(a[i+1]-t0[seq])/1e6)
			}
		}
		if deliveries != sseStreams*changes {
			b.Fatalf("%s: %d deliveries, want %d", mode, deliveries, sseStreams*changes)
		}
		var last []float64
		for seq, at := range lastAt {
			last = append(last, float64(at-t0[seq])/1e6)
		}
		slices.Sort(last)
		slices.Sort(each)
		r := res[mode]
		if r == nil {
			r = map[string][]float64{}
			res[mode] = r
		}
		r["last_p50_ms"] = append(r["last_p50_ms"], last[len(last)/2])
		r["last_max_ms"] = append(r["last_max_ms"], last[len(last)-1])
		r["each_p50_ms"] = append(r["each_p50_ms"], each[len(each)/2])
		r["cpu_us_per_delivery"] = append(r["cpu_us_per_delivery"], float64(cpu.Microseconds())/float64(deliveries))
		h.stop()
	}
	mean := func(v []float64) float64 {
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	for mode, r := range res {
		for k, v := range r {
			b.ReportMetric(mean(v), k+"_"+mode)
		}
	}
	b.ReportMetric(mean(res["shared"]["last_p50_ms"])/mean(res["perstream"]["last_p50_ms"]), "x_last_p50")
	b.ReportMetric(mean(res["shared"]["cpu_us_per_delivery"])/mean(res["perstream"]["cpu_us_per_delivery"]), "x_cpu")
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
