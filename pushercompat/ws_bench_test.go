package pushercompat

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/testutil"
)

// benchSockets is the figure: 10,000 sockets on one channel.
// PUSHERCOMPAT_BENCH_SOCKETS lowers it for a quick look.
func benchSockets(b *testing.B) int {
	if v := os.Getenv("PUSHERCOMPAT_BENCH_SOCKETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 20000 {
			b.Fatalf("PUSHERCOMPAT_BENCH_SOCKETS=%q: want 1..20000", v)
		}
		return n
	}
	return 10000
}

// BenchmarkSockets holds N idle WebSockets on one channel (opened by
// internal/wsload, a separate process, so only the server's memory is
// counted) and reports:
//
//   - KiB/socket: HeapInuse+StackInuse of this process with N sockets
//     subscribed and idle, minus the same with the server started and no
//     socket, after a GC, divided by N (target <= 24 KiB);
//   - p50-ms, max-ms: from just before a pusher-http-go Trigger to the
//     moment the load generator has the event on its last socket (target:
//     p50 <= 250 ms). One trigger per iteration; run with -benchtime 20x.
//
// Everything is on 127.0.0.1; RLIMIT_NOFILE is raised as needed.
func BenchmarkSockets(b *testing.B) {
	n := benchSockets(b)
	raiseNoFile(b, uint64(n)+512)
	loadgen := filepath.Join(b.TempDir(), "wsload")
	if out, err := exec.Command("go", "build", "-o", loadgen, "./internal/wsload").CombinedOutput(); err != nil {
		b.Fatalf("build wsload: %v\n%s", err, out)
	}

	s := Start(b, Options{})
	pc := s.Client(30 * time.Second)
	before := memInUse()

	cmd := exec.Command(loadgen, "-url", "ws://"+s.Host()+"/app/"+s.creds.key+"?protocol=7&client=js&version=8.6.0",
		"-n", strconv.Itoa(n), "-channel", "event-bench")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	b.Cleanup(func() {
		stdin.Close() //nolint:errcheck // closing stdin is the stop signal
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill() //nolint:errcheck // it did not stop by itself
			<-done
		}
	})
	next := func(timeout time.Duration) string {
		select {
		case l, ok := <-lines:
			if !ok {
				b.Fatal("wsload exited")
			}
			return l
		case <-time.After(timeout):
			b.Fatalf("wsload said nothing for %v", timeout)
		}
		return ""
	}
	if l := next(5 * time.Minute); l != fmt.Sprintf("ready %d", n) {
		b.Fatalf("wsload said %q, want ready %d", l, n)
	}
	testutil.Eventually(b, time.Minute, func() bool { return s.Subscribers("event-bench") == n },
		"subscribers=%d, want %d", s.Subscribers("event-bench"), n)

	after := memInUse()
	goroutines := runtime.NumGoroutine()
	lat := make([]time.Duration, 0, b.N)
	var loadCPU time.Duration
	lastLoadCPU := int64(-1)
	serverCPU0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := pc.Trigger("event-bench", "bench", strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		l := next(time.Minute)
		var got int
		var at, cpu int64
		if _, err := fmt.Sscanf(l, "done %d %d %d", &got, &at, &cpu); err != nil || got != i {
			b.Fatalf("wsload said %q, want done %d", l, i)
		}
		lat = append(lat, time.Unix(0, at).Sub(t0))
		if lastLoadCPU >= 0 {
			loadCPU += time.Duration(cpu - lastLoadCPU)
		}
		lastLoadCPU = cpu
	}
	b.StopTimer()
	serverCPU := cpuTime(b) - serverCPU0
	b.ReportMetric(float64(serverCPU)/float64(b.N)/1e6, "server-cpu-ms/trigger")
	if b.N > 1 {
		b.ReportMetric(float64(loadCPU)/float64(b.N-1)/1e6, "loadgen-cpu-ms/trigger")
	}
	// After ResetTimer, which clears reported metrics.
	perSocket := float64(int64(after.total())-int64(before.total())) / float64(n)
	b.ReportMetric(perSocket/1024, "KiB/socket")
	b.ReportMetric(float64(int64(after.heap)-int64(before.heap))/float64(n), "heap-B/socket")
	b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/float64(n), "stack-B/socket")
	b.ReportMetric(float64(goroutines)/float64(n), "goroutines/socket")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
	b.Logf("%d sockets: %.1f KiB/socket (heap+stack in use), trigger to last socket p50 %v max %v over %d triggers; server CPU %v per trigger; %s",
		n, perSocket/1024, lat[len(lat)/2], lat[len(lat)-1], len(lat), serverCPU/time.Duration(b.N), strings.TrimSpace(after.String()))
}

type memFigures struct{ heap, stack uint64 }

func (m memFigures) total() uint64 { return m.heap + m.stack }
func (m memFigures) String() string {
	return fmt.Sprintf("heap in use %d MiB, stacks %d MiB", m.heap>>20, m.stack>>20)
}

func memInUse() memFigures {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memFigures{heap: ms.HeapInuse, stack: ms.StackInuse}
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func raiseNoFile(b *testing.B, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	if lim.Max < want {
		b.Fatalf("RLIMIT_NOFILE hard limit %d < %d: raise it (ulimit -Hn)", lim.Max, want)
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raise RLIMIT_NOFILE to %d: %v", want, err)
	}
}
