package pushercompat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/pusher/pusher-http-go/v5"

	"github.com/nostressplanner/liveupdates/testutil"
)

// wsMsg is a frame from the server as pusher-js sees it.
type wsMsg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// dataString returns data, which the server always sends as a string.
func (m wsMsg) dataString(t testing.TB) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatalf("%s data %s is not a JSON string: %v", m.Event, m.Data, err)
	}
	return s
}

// wsClient speaks protocol 7 the way pusher-js 8.6.0 does.
type wsClient struct {
	t        testing.TB
	c        *websocket.Conn
	socketID string
	activity int
}

func wsURL(s *Server, key string) string {
	return "ws://" + s.Host() + "/app/" + key + "?protocol=7&client=js&version=8.6.0&flash=false"
}

// updateCounter counts the vote.updated events a socket reads, in a
// goroutine, until its connection ends or stays silent for the idle time.
type updateCounter struct {
	received atomic.Int64
	done     chan struct{}
	err      error // why reading stopped: set before done closes
}

func countUpdates(c *wsClient, idle time.Duration) *updateCounter {
	u := &updateCounter{done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for {
			m, err := c.readErr(idle)
			if err != nil {
				u.err = err
				return
			}
			if m.Event == "vote.updated" {
				u.received.Add(1)
			}
		}
	}()
	return u
}

// got returns nil once the socket has read want events, and otherwise
// says how many it read and, when it stopped reading, why (a close code).
func (u *updateCounter) got(want int) error {
	n := u.received.Load()
	select {
	case <-u.done:
		if n == int64(want) {
			return nil
		}
		return fmt.Errorf("the reading socket got %d of %d events and stopped reading: %w", n, want, u.err)
	default:
	}
	if n != int64(want) {
		return fmt.Errorf("the reading socket got %d of %d events", n, want)
	}
	return nil
}

// stop closes the socket and waits for the reader.
func (u *updateCounter) stop(c *wsClient) {
	c.c.CloseNow() //nolint:errcheck // done reading
	<-u.done
}

// bigBatch is ten vote.updated events of 10,000 bytes on channel: a batch
// that fills a socket that does not read in a few triggers.
func bigBatch(channel string) []pusher.Event {
	batch := make([]pusher.Event, 10)
	for i := range batch {
		batch[i] = pusher.Event{Channel: channel, Name: "vote.updated", Data: strings.Repeat("x", 10000)}
	}
	return batch
}

// dial connects and reads the handshake.
func dial(t testing.TB, s *Server) *wsClient {
	t.Helper()
	c := dialRaw(t, wsURL(s, s.creds.key))
	cl := &wsClient{t: t, c: c}
	m := cl.read()
	if m.Event != "pusher:connection_established" {
		t.Fatalf("first frame = %+v, want pusher:connection_established", m)
	}
	var hs struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	if err := json.Unmarshal([]byte(m.dataString(t)), &hs); err != nil {
		t.Fatalf("handshake data: %v", err)
	}
	cl.socketID, cl.activity = hs.SocketID, hs.ActivityTimeout
	return cl
}

func dialRaw(t testing.TB, u string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() }) //nolint:errcheck // the test is over
	return c
}

func (cl *wsClient) send(event string, data any) {
	cl.t.Helper()
	b, err := json.Marshal(map[string]any{"event": event, "data": data})
	if err != nil {
		cl.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.c.Write(ctx, websocket.MessageText, b); err != nil {
		cl.t.Fatalf("send %s: %v", event, err)
	}
}

func (cl *wsClient) readErr(timeout time.Duration) (wsMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	typ, b, err := cl.c.Read(ctx)
	if err != nil {
		return wsMsg{}, err
	}
	var m wsMsg
	if typ != websocket.MessageText {
		return m, fmt.Errorf("frame type %v, want text", typ)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("frame %s: %w", b, err)
	}
	return m, nil
}

func (cl *wsClient) read() wsMsg {
	cl.t.Helper()
	m, err := cl.readErr(15 * time.Second)
	if err != nil {
		cl.t.Fatalf("read: %v", err)
	}
	return m
}

// closeCode reads until the connection ends and returns its close code
// (-1 when it ended without one).
func (cl *wsClient) closeCode() websocket.StatusCode {
	cl.t.Helper()
	for {
		_, err := cl.readErr(20 * time.Second)
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

func (cl *wsClient) subscribe(channel, auth string) wsMsg {
	cl.t.Helper()
	cl.send("pusher:subscribe", map[string]string{"auth": auth, "channel": channel})
	return cl.read()
}

func (cl *wsClient) mustSubscribe(channel, auth string) {
	cl.t.Helper()
	if m := cl.subscribe(channel, auth); m.Event != "pusher_internal:subscription_succeeded" || m.Channel != channel {
		cl.t.Fatalf("subscribe %s = %+v, want subscription_succeeded", channel, m)
	}
}

// privateAuth signs the way a backend does, through pusher-http-go.
func privateAuth(t testing.TB, c *pusher.Client, socketID, channel string) string {
	t.Helper()
	b, err := c.AuthorizePrivateChannel([]byte(url.Values{"socket_id": {socketID}, "channel_name": {channel}}.Encode()))
	if err != nil {
		t.Fatalf("AuthorizePrivateChannel: %v", err)
	}
	var a struct{ Auth string }
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a.Auth
}

func TestASocketGetsTheHandshakeAndTheEventsOfItsChannels(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{AppID: "7", Key: "k7", Secret: "s7"})
	cl := dial(t, s)
	if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(cl.socketID) || cl.activity != 120 {
		t.Fatalf("handshake socket_id=%q activity_timeout=%d, want digits.digits and 120", cl.socketID, cl.activity)
	}
	cl.mustSubscribe("event-e1", "")
	pc := s.Client(0)
	if err := pc.Trigger("event-other", "vote.updated", `{"n":0}`); err != nil {
		t.Fatal(err)
	}
	if err := pc.Trigger("event-e1", "vote.updated", `{"n":1}`); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.TriggerBatch([]pusher.Event{
		{Channel: "event-e1", Name: "phase.changed", Data: "plain"},
		{Channel: "event-other", Name: "phase.changed", Data: "x"},
		{Channel: "event-e1", Name: "final.date.set", Data: `{"n":3}`},
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		m := cl.read()
		got = append(got, m.Channel+"/"+m.Event+"/"+m.dataString(t))
	}
	want := []string{`event-e1/vote.updated/{"n":1}`, `event-e1/phase.changed/plain`, `event-e1/final.date.set/{"n":3}`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("socket got %q, want %q (only its channel, in order)", got, want)
	}

	cl.send("pusher:unsubscribe", map[string]string{"channel": "event-e1"})
	testutil.Eventually(t, 10*time.Second, func() bool { return s.Subscribers("event-e1") == 0 }, "unsubscribe did not take")
	if err := pc.Trigger("event-e1", "vote.updated", "after"); err != nil {
		t.Fatal(err)
	}
	cl.send("pusher:ping", map[string]any{})
	if m := cl.read(); m.Event != "pusher:pong" {
		t.Fatalf("after unsubscribing, next frame = %+v, want only the pong", m)
	}
}

func TestPrivateChannelsNeedTheSignatureOfThisSocket(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	pc := s.Client(0)
	cl := dial(t, s)

	tests := []struct {
		name, channel, auth string
		wantStatus          int
	}{
		{"no auth", "private-event-e2", "", 401},
		{"another socket's signature", "private-event-e2", privateAuth(t, pc, "1.2", "private-event-e2"), 401},
		{"another channel's signature", "private-event-e2", privateAuth(t, pc, cl.socketID, "private-event-e3"), 401},
		{"an invalid channel name", "event e2", "", 400},
		{"a presence channel", "presence-e2", "", 400},
	}
	for _, tt := range tests {
		m := cl.subscribe(tt.channel, tt.auth)
		var d struct {
			Type   string `json:"type"`
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if m.Event == "pusher:subscription_error" {
			if err := json.Unmarshal([]byte(m.dataString(t)), &d); err != nil {
				t.Fatal(err)
			}
		}
		if m.Event != "pusher:subscription_error" || m.Channel != tt.channel || d.Status != tt.wantStatus || d.Type != "AuthError" || d.Error == "" {
			t.Fatalf("%s: subscribe = %+v (%+v), want subscription_error status %d", tt.name, m, d, tt.wantStatus)
		}
	}
	// The socket stayed up through every refusal, and the right signature works.
	cl.mustSubscribe("private-event-e2", privateAuth(t, pc, cl.socketID, "private-event-e2"))
	if err := pc.Trigger("private-event-e2", "vote.updated", "secret"); err != nil {
		t.Fatal(err)
	}
	if m := cl.read(); m.Event != "vote.updated" || m.dataString(t) != "secret" {
		t.Fatalf("private event = %+v", m)
	}
}

func TestTheSocketIDOfTheSenderIsExcluded(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	pc := s.Client(0)
	a, b := dial(t, s), dial(t, s)
	if a.socketID == b.socketID {
		t.Fatalf("two sockets share the id %s", a.socketID)
	}
	a.mustSubscribe("event-e3", "")
	b.mustSubscribe("event-e3", "")
	if _, err := pc.TriggerWithParams("event-e3", "vote.updated", "from-a", pusher.TriggerParams{SocketID: &a.socketID}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.TriggerBatch([]pusher.Event{{Channel: "event-e3", Name: "vote.updated", Data: "from-b", SocketID: &b.socketID}}); err != nil {
		t.Fatal(err)
	}
	if err := pc.Trigger("event-e3", "vote.updated", "from-backend"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cl   *wsClient
		want []string
	}{{a, []string{"from-b", "from-backend"}}, {b, []string{"from-a", "from-backend"}}} {
		var got []string
		for range 2 {
			got = append(got, c.cl.read().dataString(t))
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Fatalf("socket %s got %q, want %q", c.cl.socketID, got, c.want)
		}
	}
}

func TestPingAndPongGoBothWays(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{ActivityTimeout: 100 * time.Millisecond, PongTimeout: 300 * time.Millisecond})
	answering, silent := dial(t, s), dial(t, s)
	if answering.activity != 1 {
		t.Fatalf("activity_timeout=%d, want 100ms rounded up to 1 s", answering.activity)
	}
	answering.send("pusher:ping", map[string]any{})
	// The server's own ping may come first on a loaded machine.
	for m := answering.read(); m.Event != "pusher:pong"; m = answering.read() {
		if m.Event != "pusher:ping" {
			t.Fatalf("answer to ping = %+v, want pusher:pong", m)
		}
		answering.send("pusher:pong", map[string]any{})
	}

	// silent never answers: 4201, the code pusher-js reconnects on at once.
	silentDone := make(chan websocket.StatusCode, 1)
	go func() { silentDone <- silent.closeCode() }()

	for i := range 3 {
		m := answering.read()
		if m.Event != "pusher:ping" {
			t.Fatalf("frame %d = %+v, want the server's pusher:ping", i, m)
		}
		answering.send("pusher:pong", map[string]any{})
	}
	select {
	case code := <-silentDone:
		if code != CodePongTimeout {
			t.Fatalf("silent socket closed with %d, want 4201", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("silent socket was not closed")
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return s.Sockets() == 1 }, "sockets=%d, want the answering one only", s.Sockets())
}

func TestHandshakeRefusalsUsePusherCloseCodes(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Key: "right"})
	for _, tt := range []struct {
		name, url string
		want      websocket.StatusCode
	}{
		{"an unknown key", wsURL(s, "wrong"), CodeUnknownApp},
		{"no protocol", "ws://" + s.Host() + "/app/right", CodeNoProtocol},
		{"protocol 4", "ws://" + s.Host() + "/app/right?protocol=4", CodeUnsupportedProtocol},
	} {
		cl := &wsClient{t: t, c: dialRaw(t, tt.url)}
		if code := cl.closeCode(); code != tt.want {
			t.Errorf("%s: closed with %d, want %d", tt.name, code, tt.want)
		}
	}
}

// TestASlowSocketIsClosedAndOthersStillReceive: a socket that stops
// reading fills its TCP buffers and then its bounded queue; it is closed
// (4100 when the close frame can still be written) while a reading socket
// on the same channel gets every event and triggers are answered at once.
//
// Each batch is triggered once the reading socket has read the one before.
// A trigger is answered when its frames are queued, not written, and on a
// loaded machine a writer may wait 10 to 25 ms for a CPU while the loop
// triggers again: two batches (20 frames) in that queue of 16 and the
// server closes the reading socket as a slow consumer too, as it should.
// Unpaced, this test failed that way under stress-ng every time, with the
// reading socket closed (4100) after reading every frame written to it.
func TestASlowSocketIsClosedAndOthersStillReceive(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	// A write timeout far above the test's bound, so only the queue bound
	// can close the slow socket.
	s := Start(t, Options{SendQueue: 16, WriteTimeout: 5 * time.Minute, Registerer: reg})
	pc := s.Client(10 * time.Second)
	// A small receive window: the slow socket's writes block after a few
	// hundred kilobytes, not after the 32 MiB loopback autotuning allows.
	slow, fast := dialSmallWindow(t, s), dial(t, s)
	slow.mustSubscribe("event-e4", "")
	fast.mustSubscribe("event-e4", "")

	fastCount := countUpdates(fast, 60*time.Second)
	batch := bigBatch("event-e4")
	sent := 0
	closedAs := func(reason string) float64 {
		return testutil.MetricSum(t, reg, "liveupdates_pushercompat_sockets_closed_total", "reason", reason)
	}
	trigger := func() {
		t.Helper()
		start := time.Now()
		if _, err := pc.TriggerBatch(batch); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("a trigger took %v: the slow socket stalls the server", d)
		}
		sent += len(batch)
		testutil.EventuallyErr(t, time.Minute, func() error { return fastCount.got(sent) })
	}
	deadline := time.Now().Add(2 * time.Minute)
	for closedAs(reasonSlowConsumer) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events sent in 2 minutes and the slow socket is still open", sent)
		}
		trigger()
	}
	// One more batch after the close reaches the reading socket.
	trigger()
	testutil.Eventually(t, 30*time.Second, func() bool { return s.Subscribers("event-e4") == 1 }, "the slow socket is still subscribed")
	select {
	case <-fastCount.done:
		t.Fatalf("the reading socket was closed: %v", fastCount.err)
	default:
	}
	if n := closedAs(reasonSlowConsumer); n != 1 {
		t.Fatalf("%v sockets closed as slow consumers, want the slow one only", n)
	}
	fastCount.stop(fast)
	code := slow.closeCode()
	if code != CodeOverCapacity && code != -1 {
		t.Fatalf("the slow socket ended with %d, want 4100 or a cut connection", code)
	}
}

// TestAWriterThatDoesNotComeClosesTheSocketWith4100 is, made
// deterministic, what CPU starvation did to the slow-socket test's reading
// socket: frames queue up while no writer runs for the socket, and the one
// past SendQueue closes it with 4100 (pusher-js reconnects after a second
// and the client catches up); no frame is dropped without the close.
func TestAWriterThatDoesNotComeClosesTheSocketWith4100(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := Start(t, Options{SendQueue: 4, Registerer: reg})
	pc := s.Client(0)
	cl := dial(t, s)
	cl.mustSubscribe("event-e10", "")
	sk := serverSocket(t, s, cl.socketID)
	// Once the writer of subscription_succeeded is done, the socket waits
	// for a writer that never comes: writing set, nothing scheduled, as
	// when every worker is off the CPU.
	testutil.Eventually(t, 10*time.Second, func() bool {
		sk.mu.Lock()
		defer sk.mu.Unlock()
		if sk.writing || sk.pending != 0 {
			return false
		}
		sk.writing = true
		return true
	}, "the socket's writer did not finish the subscription_succeeded")
	for i := range 4 {
		if err := pc.Trigger("event-e10", "vote.updated", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	sk.mu.Lock()
	pending, closing := sk.pending, sk.closing
	sk.mu.Unlock()
	if pending != 4 || closing {
		t.Fatalf("after 4 frames: pending=%d closing=%v, want 4 queued and the socket open", pending, closing)
	}
	if err := pc.Trigger("event-e10", "vote.updated", "one too many"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.readErr(20 * time.Second); websocket.CloseStatus(err) != CodeOverCapacity {
		t.Fatalf("after the frame past the queue, the client read %v, want the close 4100", err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return s.Subscribers("event-e10") == 0 &&
			testutil.MetricSum(t, reg, "liveupdates_pushercompat_sockets_closed_total", "reason", reasonSlowConsumer) == 1
	}, "the socket is still subscribed or not counted as a slow consumer")
}

// serverSocket returns the server's side of the socket with id.
func serverSocket(t *testing.T, s *Server, id string) *socket {
	t.Helper()
	s.hub.mu.RLock()
	defer s.hub.mu.RUnlock()
	for sk := range s.hub.sockets {
		if sk.id == id {
			return sk
		}
	}
	t.Fatalf("no socket %s on the server", id)
	return nil
}

// TestAStuckWriteIsCutAfterTheWriteTimeout: a socket that stops reading
// with a send queue too long to fill ends when one write has been blocked
// for the write timeout: the sweeper enforces it, writes carry no timer.
// (That the others keep receiving meanwhile is
// TestMoreStuckSocketsThanWritersDoNotHoldUpOthers.)
func TestAStuckWriteIsCutAfterTheWriteTimeout(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := Start(t, Options{SendQueue: 1 << 20, WriteTimeout: time.Second, Registerer: reg})
	pc := s.Client(10 * time.Second)
	stuck := dialSmallWindow(t, s)
	stuck.mustSubscribe("event-e6", "")

	batch := bigBatch("event-e6")
	// A few megabytes, far more than the kernel buffers for a window of
	// 4 KiB, and far fewer frames than the send queue holds: only the
	// write timeout can end the socket.
	for range 30 {
		if _, err := pc.TriggerBatch(batch); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, time.Minute, func() bool { return s.Subscribers("event-e6") == 0 },
		"the stuck socket is still subscribed")
	testutil.Eventually(t, 30*time.Second, func() bool {
		return testutil.MetricSum(t, reg, "liveupdates_pushercompat_sockets_closed_total", "reason", "write_error") == 1
	}, "the stuck socket did not end as a write error")
	if n := testutil.MetricSum(t, reg, "liveupdates_pushercompat_sockets_closed_total", "reason", "slow_consumer"); n != 0 {
		t.Fatalf("%v sockets closed as slow consumers, want the write timeout to end it", n)
	}
}

func TestCloseSendsReconnectToEverySocket(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	a, b := dial(t, s), dial(t, s)
	a.mustSubscribe("event-e5", "")
	s.Close()
	for _, cl := range []*wsClient{a, b} {
		if code := cl.closeCode(); code != CodeReconnect {
			t.Fatalf("socket %s closed with %d on shutdown, want 4200", cl.socketID, code)
		}
	}
}

func TestWebSocketFaultsStopAndRestartTheSide(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := Start(t, Options{Registerer: reg})
	a := dial(t, s)
	a.mustSubscribe("event-e6", "")

	s.SetWebSocketOutage(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, _, err := websocket.Dial(ctx, wsURL(s, "key"), nil); err == nil {
		c.CloseNow() //nolint:errcheck
		t.Fatal("dial during the outage succeeded")
	}
	if n := s.CloseSockets(4200, "maintenance"); n != 1 {
		t.Fatalf("CloseSockets()=%d, want 1", n)
	}
	if code := a.closeCode(); code != CodeReconnect {
		t.Fatalf("closed with %d, want 4200", code)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return s.Sockets() == 0 && s.Subscribers("event-e6") == 0 }, "sockets=%d", s.Sockets())

	s.SetWebSocketOutage(false)
	b := dial(t, s)
	b.mustSubscribe("event-e6", "")
	if err := s.Client(0).Trigger("event-e6", "vote.updated", "back"); err != nil {
		t.Fatal(err)
	}
	if m := b.read(); m.dataString(t) != "back" {
		t.Fatalf("after the outage got %+v", m)
	}
	if got := testutil.MetricSum(t, reg, "liveupdates_pushercompat_sockets_closed_total", "reason", "fault"); got != 1 {
		t.Fatalf("closed by fault = %v, want 1", got)
	}
	testutil.CollectAndLint(t, reg, "liveupdates_pushercompat_")
}

func TestClientMessagesOfOtherKindsGetAnErrorNotAClose(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	cl := dial(t, s)
	for _, raw := range []string{`not json`, `{"event":"client-typing","channel":"private-x","data":{}}`, `{"event":"pusher:frobnicate"}`, `{"event":"pusher:subscribe","data":7}`} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := cl.c.Write(ctx, websocket.MessageText, []byte(raw))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if m := cl.read(); m.Event != "pusher:error" {
			t.Fatalf("answer to %s = %+v, want pusher:error", raw, m)
		}
	}
	// The data of a subscribe may also come as a string holding the object.
	cl.send("pusher:subscribe", `{"channel":"event-e8","auth":""}`)
	if m := cl.read(); m.Event != "pusher_internal:subscription_succeeded" {
		t.Fatalf("subscribe with string data = %+v", m)
	}
}

func TestRecordLimitKeepsTheNewest(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{RecordLimit: 3})
	pc := s.Client(0)
	for i := range 5 {
		if err := pc.Trigger("event-e9", "vote.updated", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, e := range s.Events() {
		got = append(got, e.Data)
	}
	if strings.Join(got, ",") != "2,3,4" || len(s.Exchanges()) != 3 || s.Requests() != 5 || s.Accepted() != 5 {
		t.Fatalf("Events()=%q, %d exchanges, Requests()=%d, Accepted()=%d; want the newest 3 kept and all 5 counted",
			got, len(s.Exchanges()), s.Requests(), s.Accepted())
	}
}
