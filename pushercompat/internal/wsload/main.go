// Command wsload is the load generator of the pushercompat WebSocket
// benchmark, run as a separate process so the server's memory is measured
// alone. It opens -n sockets to -url, subscribes each to -channel as
// pusher-js does, prints "ready <n>", and then, for every event named
// "bench" whose data is an integer i, prints "done <i> <unix nanoseconds>
// <its own CPU nanoseconds so far>" when the last of the n sockets has
// received it. It exits when stdin closes.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

type frame struct {
	Event   string `json:"event"`
	Channel string `json:"channel"`
	Data    string `json:"data"`
}

func main() {
	url := flag.String("url", "", "ws://host:port/app/key?protocol=7")
	n := flag.Int("n", 10000, "sockets")
	channel := flag.String("channel", "event-bench", "channel to subscribe")
	parallel := flag.Int("parallel", 64, "dials in flight (the listen backlog is finite)")
	maxEvents := flag.Int("max-events", 100000, "largest event index counted")
	flag.Parse()
	if err := run(*url, *n, *channel, *parallel, *maxEvents); err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
}

func run(url string, n int, channel string, parallel, maxEvents int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+256 {
		lim.Cur = min(lim.Max, uint64(n)+256)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() //nolint:errcheck // the parent reads or is gone
	}

	counts := make([]atomic.Int32, maxEvents)
	conns := make([]*websocket.Conn, n)
	sem := make(chan struct{}, parallel)
	errc := make(chan error, n)
	var dialed sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		dialed.Add(1)
		go func() {
			defer dialed.Done()
			defer func() { <-sem }()
			c, err := open(url, channel)
			if err != nil {
				errc <- fmt.Errorf("socket %d: %w", i, err)
				return
			}
			conns[i] = c
		}()
	}
	dialed.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			read(c, counts, int32(n), say)
		}()
	}
	say("ready %d", n)
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // any end of stdin means stop
	for _, c := range conns {
		c.CloseNow() //nolint:errcheck // exiting
	}
	readers.Wait()
	return nil
}

func open(url, channel string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	var f frame
	if err := next(ctx, c, &f); err != nil || f.Event != "pusher:connection_established" {
		return nil, fmt.Errorf("handshake %+v: %v", f, err)
	}
	sub, _ := json.Marshal(map[string]any{"event": "pusher:subscribe", "data": map[string]string{"channel": channel, "auth": ""}})
	if err := c.Write(ctx, websocket.MessageText, sub); err != nil {
		return nil, err
	}
	if err := next(ctx, c, &f); err != nil || f.Event != "pusher_internal:subscription_succeeded" {
		return nil, fmt.Errorf("subscribe %+v: %v", f, err)
	}
	return c, nil
}

func next(ctx context.Context, c *websocket.Conn, f *frame) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, f)
}

// cpuTime is the process's user+system CPU time so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchPrefix starts every benchmark frame; the index follows in data.
var (
	benchPrefix = []byte(`{"event":"bench","channel":`)
	dataKey     = []byte(`"data":"`)
)

// read counts benchmark frames without a JSON decode, so the load
// generator's own cost weighs as little as it can on the latency.
func read(c *websocket.Conn, counts []atomic.Int32, n int32, say func(string, ...any)) {
	ctx := context.Background()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(b, benchPrefix) {
			if bytes.Contains(b, []byte(`"pusher:ping"`)) {
				c.Write(ctx, websocket.MessageText, []byte(`{"event":"pusher:pong","data":{}}`)) //nolint:errcheck // a failed pong ends the read next
			}
			continue
		}
		k := bytes.LastIndex(b, dataKey)
		if k < 0 {
			continue
		}
		digits, _, _ := bytes.Cut(b[k+len(dataKey):], []byte(`"`))
		i, err := strconv.Atoi(string(digits))
		if err != nil || i < 0 || i >= len(counts) {
			continue
		}
		if counts[i].Add(1) == n {
			say("done %d %d %d", i, time.Now().UnixNano(), cpuTime())
		}
	}
}
