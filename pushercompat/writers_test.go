package pushercompat

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/nostressplanner/liveupdates/testutil"
)

// dialSmallWindow dials a socket whose receive buffer is tiny, so a client
// that does not read blocks the server's writes after a few kilobytes.
func dialSmallWindow(t *testing.T, s *Server) *wsClient {
	t.Helper()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	c, _, err := websocket.Dial(ctx, wsURL(s, s.creds.key), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() }) //nolint:errcheck // the test is over
	cl := &wsClient{t: t, c: c}
	if m := cl.read(); m.Event != "pusher:connection_established" {
		t.Fatalf("first frame = %+v, want pusher:connection_established", m)
	}
	return cl
}

// TestMoreStuckSocketsThanWritersDoNotHoldUpOthers: more clients than the
// writer pool has workers stop reading, so every worker ends up blocked in
// a write (the write timeout and the send queue are far away); the pool
// grows, and a reading socket on the same channel still gets every event
// at once.
func TestMoreStuckSocketsThanWritersDoNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{SendQueue: 1 << 20, WriteTimeout: 10 * time.Minute})
	pc := s.Client(10 * time.Second)
	stuck := s.hub.pool.base + 4
	for range stuck {
		dialSmallWindow(t, s).mustSubscribe("event-e7", "")
	}
	fast := dial(t, s)
	fast.mustSubscribe("event-e7", "")

	fastCount := countUpdates(fast, 2*time.Minute)
	batch := bigBatch("event-e7")
	blocked := func() int {
		now := time.Now().UnixNano()
		s.hub.mu.RLock()
		defer s.hub.mu.RUnlock()
		n := 0
		for sk := range s.hub.sockets {
			if start := sk.writeStart.Load(); start != 0 && now-start > int64(100*time.Millisecond) {
				n++
			}
		}
		return n
	}
	withBlocked := func(err error) error {
		if err != nil {
			return fmt.Errorf("%w, with %d sockets blocked", err, blocked())
		}
		return nil
	}
	sent := 0
	deadline := time.Now().Add(2 * time.Minute)
	for blocked() < stuck {
		if time.Now().After(deadline) {
			t.Fatalf("%d events sent in 2 minutes and %d of %d sockets blocked in a write", sent, blocked(), stuck)
		}
		if _, err := pc.TriggerBatch(batch); err != nil {
			t.Fatal(err)
		}
		sent += len(batch)
		testutil.EventuallyErr(t, time.Minute, func() error { return withBlocked(fastCount.got(sent)) })
	}
	for range 3 {
		if _, err := pc.TriggerBatch(batch); err != nil {
			t.Fatal(err)
		}
		sent += len(batch)
	}
	testutil.EventuallyErr(t, time.Minute, func() error { return withBlocked(fastCount.got(sent)) })
	fastCount.stop(fast)
}
