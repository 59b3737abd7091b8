// Command wsload is the load generator of the pushercompat WebSocket
// benchmark, run as a separate process so the server's memory is measured
// alone. It opens -n sockets to -url, subscribes each to -channel as
// pusher-js does, prints "ready <n>", and then, for every event named
// "bench" whose data is an integer i, prints "done <i> <unix nanoseconds>
// <its own CPU nanoseconds so far>" when the last of the n sockets has
// received it. It exits when stdin closes.
//
// The benchmark measures the server, so the clients are as cheap as they
// can be while still reading every frame off every socket: the handshake
// and the subscription are done with ordinary blocking Go I/O, then each
// socket's descriptor leaves Go's netpoller and -loops threads read them
// with epoll directly, one read(2) per ready socket and a minimal frame
// parser. A goroutine and a WebSocket library per socket cost about 20 us
// of CPU per frame here (two reads, a park and a wake-up each), which on 2
// cores is CPU taken from the server under test.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // the WebSocket accept key is defined with SHA-1 (RFC 6455 4.2.2)
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	u := flag.String("url", "", "ws://host:port/app/key?protocol=7")
	n := flag.Int("n", 10000, "sockets")
	channel := flag.String("channel", "event-bench", "channel to subscribe")
	parallel := flag.Int("parallel", 64, "dials in flight (the listen backlog is finite)")
	maxEvents := flag.Int("max-events", 100000, "largest event index counted")
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "epoll reader threads")
	nap := flag.Duration("nap", 500*time.Microsecond, "pause between reads while frames keep coming (0: block in epoll_wait every time)")
	flag.Parse()
	if err := run(*u, *n, *channel, *parallel, *maxEvents, max(*loops, 1), *nap); err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
}

func run(rawURL string, n int, channel string, parallel, maxEvents, loops int, nap time.Duration) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+256 {
		lim.Cur = min(lim.Max, uint64(n)+256)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
		}
	}
	target, err := url.Parse(rawURL)
	if err != nil || target.Scheme != "ws" {
		return fmt.Errorf("-url %q: want ws://host:port/path", rawURL)
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
	rs := make([]*reader, loops)
	for i := range rs {
		r, err := newReader(counts, int32(n), nap, say)
		if err != nil {
			return err
		}
		rs[i] = r
	}

	sem := make(chan struct{}, parallel)
	errc := make(chan error, n)
	var dialed sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		dialed.Add(1)
		go func() {
			defer dialed.Done()
			defer func() { <-sem }()
			c, err := open(target, channel)
			if err != nil {
				errc <- fmt.Errorf("socket %d: %w", i, err)
				return
			}
			if err := rs[i%loops].add(c); err != nil {
				errc <- fmt.Errorf("socket %d: %w", i, err)
			}
		}()
	}
	dialed.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	var readers sync.WaitGroup
	for _, r := range rs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			// One OS thread per loop: epoll_wait blocks the thread.
			runtime.LockOSThread()
			r.loop()
		}()
	}
	say("ready %d", n)
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // any end of stdin means stop
	for _, r := range rs {
		r.stop()
	}
	readers.Wait()
	return nil
}

// conn is one subscribed socket after its descriptor left Go's netpoller.
type conn struct {
	fd      int
	partial []byte // the start of a frame not yet complete
}

// open dials, upgrades and subscribes as pusher-js does, then hands back
// the raw descriptor (non-blocking) and any bytes read past the
// subscription answer.
func open(target *url.URL, channel string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", target.Host, 60*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()                                 //nolint:errcheck // the duplicate descriptor keeps the socket
	nc.SetDeadline(time.Now().Add(60 * time.Second)) //nolint:errcheck // a TCP conn always takes a deadline

	var keyRaw [16]byte
	rand.Read(keyRaw[:]) //nolint:errcheck // never fails
	key := base64.StdEncoding.EncodeToString(keyRaw[:])
	req := "GET " + target.RequestURI() + " HTTP/1.1\r\nHost: " + target.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) //nolint:gosec // RFC 6455
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		return nil, fmt.Errorf("upgrade answered %s", resp.Status)
	}
	if p, err := readFrame(br); err != nil || !bytes.Contains(p, []byte(`"pusher:connection_established"`)) {
		return nil, fmt.Errorf("handshake %q: %v", p, err)
	}
	sub := fmt.Sprintf(`{"event":"pusher:subscribe","data":{"channel":%q,"auth":""}}`, channel)
	if _, err := nc.Write(clientFrame(opText, []byte(sub))); err != nil {
		return nil, err
	}
	if p, err := readFrame(br); err != nil || !bytes.Contains(p, []byte(`"pusher_internal:subscription_succeeded"`)) {
		return nil, fmt.Errorf("subscribe %q: %v", p, err)
	}
	c := &conn{}
	if k := br.Buffered(); k > 0 {
		c.partial, _ = br.Peek(k)
		c.partial = bytes.Clone(c.partial)
	}
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	var dupErr error
	if err := rc.Control(func(fd uintptr) { c.fd, dupErr = syscall.Dup(int(fd)) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup: %w", dupErr)
	}
	// The deferred Close removes the original from Go's netpoller; the
	// duplicate shares the open file and so stays non-blocking.
	return c, nil
}

// readFrame reads one unfragmented server frame during the set-up.
func readFrame(br *bufio.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, err
	}
	size := int(hdr[1] & 0x7f)
	switch size {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, err
		}
		size = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		return nil, errors.New("frame too large")
	}
	p := make([]byte, size)
	_, err := io.ReadFull(br, p)
	return p, err
}

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xa
)

// clientFrame is one masked frame, as a client must send (RFC 6455 5.3).
func clientFrame(op byte, p []byte) []byte {
	b := make([]byte, 0, 8+len(p))
	b = append(b, 0x80|op)
	if len(p) < 126 {
		b = append(b, 0x80|byte(len(p)))
	} else {
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	var m [4]byte
	rand.Read(m[:]) //nolint:errcheck // never fails
	b = append(b, m[:]...)
	for i, c := range p {
		b = append(b, c^m[i%4])
	}
	return b
}

// reader owns some sockets and reads them with its own epoll instance.
type reader struct {
	epfd    int
	wake    [2]int // a pipe: closing its write end stops the loop
	mu      sync.Mutex
	conns   map[int]*conn
	counts  []atomic.Int32
	n       int32
	say     func(string, ...any)
	scratch []byte
	nap     time.Duration // see loop
}

func newReader(counts []atomic.Int32, n int32, nap time.Duration, say func(string, ...any)) (*reader, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	r := &reader{epfd: epfd, conns: make(map[int]*conn), counts: counts, n: n, nap: nap, say: say, scratch: make([]byte, 64<<10)}
	if err := syscall.Pipe2(r.wake[:], syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(r.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, r.wake[0], &ev); err != nil {
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return r, nil
}

func (r *reader) add(c *conn) error {
	r.mu.Lock()
	r.conns[c.fd] = c
	r.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (r *reader) stop() { syscall.Close(r.wake[1]) } //nolint:errcheck // wakes the loop either way

// loop reads ready sockets until stop. Frames left incomplete by the
// set-up are handled first.
func (r *reader) loop() {
	r.mu.Lock()
	for _, c := range r.conns {
		if len(c.partial) > 0 {
			p := c.partial
			c.partial = nil
			r.consume(c, p)
		}
	}
	r.mu.Unlock()
	events := make([]syscall.EpollEvent, 1024)
	timeout := -1
	for {
		k, err := syscall.EpollWait(r.epfd, events, timeout)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			fmt.Fprintln(os.Stderr, "wsload: epoll_wait:", err)
			return
		}
		for _, ev := range events[:k] {
			fd := int(ev.Fd)
			if fd == r.wake[0] {
				for _, c := range r.conns {
					syscall.Close(c.fd) //nolint:errcheck // exiting
				}
				return
			}
			if c := r.conns[fd]; c != nil {
				r.readFrom(c)
			}
		}
		switch {
		case k == 0:
			// Nothing came during the nap: block until something does.
			timeout = -1
		case k < len(events) && r.nap > 0:
			// Fewer ready than asked for: the server may still be
			// writing. Nap instead of blocking, so that its writes in the
			// meantime find no thread to wake: a wake-up per frame (an
			// IPI on a VM) costs the server's CPU more than the reading
			// costs this one. A frame waits at most the nap for its read.
			time.Sleep(r.nap)
			timeout = 0
		default:
			timeout = 0
		}
	}
}

// readFrom reads what one ready socket has and handles its frames.
func (r *reader) readFrom(c *conn) {
	m, err := syscall.Read(c.fd, r.scratch)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if m <= 0 {
		fmt.Fprintf(os.Stderr, "wsload: a socket ended (%v)\n", err)
		r.drop(c)
		return
	}
	p := r.scratch[:m]
	if len(c.partial) > 0 {
		p = append(c.partial, p...)
		c.partial = nil
	}
	r.consume(c, p)
}

func (r *reader) drop(c *conn) {
	syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil) //nolint:errcheck // closing removes it anyway
	syscall.Close(c.fd)                                        //nolint:errcheck // gone
	delete(r.conns, c.fd)
}

// consume handles every complete frame in p and keeps the rest.
func (r *reader) consume(c *conn, p []byte) {
	for len(p) >= 2 {
		op, size, hl := p[0]&0x0f, int(p[1]&0x7f), 2
		switch size {
		case 126:
			if len(p) < 4 {
				c.partial = bytes.Clone(p)
				return
			}
			size, hl = int(binary.BigEndian.Uint16(p[2:4])), 4
		case 127:
			if len(p) < 10 {
				c.partial = bytes.Clone(p)
				return
			}
			size, hl = int(binary.BigEndian.Uint64(p[2:10])), 10
		}
		if len(p) < hl+size {
			break
		}
		r.frame(c, op, p[hl:hl+size])
		p = p[hl+size:]
	}
	if len(p) > 0 {
		c.partial = bytes.Clone(p)
	}
}

// benchPrefix starts every benchmark frame; the index follows in data.
var (
	benchPrefix = []byte(`{"event":"bench","channel":`)
	dataKey     = []byte(`"data":"`)
)

func (r *reader) frame(c *conn, op byte, p []byte) {
	switch op {
	case opPing:
		syscall.Write(c.fd, clientFrame(opPong, p)) //nolint:errcheck // a failed pong ends the socket on the next read
		return
	case opClose:
		code := 0
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		fmt.Fprintf(os.Stderr, "wsload: the server closed a socket with %d\n", code)
		return
	case opText:
	default:
		return
	}
	if !bytes.HasPrefix(p, benchPrefix) {
		if bytes.Contains(p, []byte(`"pusher:ping"`)) {
			syscall.Write(c.fd, clientFrame(opText, []byte(`{"event":"pusher:pong","data":{}}`))) //nolint:errcheck // as above
		}
		return
	}
	k := bytes.LastIndex(p, dataKey)
	if k < 0 {
		return
	}
	digits, _, _ := bytes.Cut(p[k+len(dataKey):], []byte(`"`))
	i, err := strconv.Atoi(string(digits))
	if err != nil || i < 0 || i >= len(r.counts) {
		return
	}
	if r.counts[i].Add(1) == r.n {
		r.say("done %d %d %d", i, time.Now().UnixNano(), cpuTime())
	}
}

// cpuTime is the process's user+system CPU time so far, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
