package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// rig is one integration test's world: a real nats-server with LIVE_EVENTS,
// and the Pusher-compatible server.
type rig struct {
	t       testing.TB
	nats    *testutil.JetStream
	js      jetstream.JetStream
	pusher  *pushercompat.Server
	streams stream.Config
	ids     atomic.Int64
}

func newRig(t testing.TB, opts pushercompat.Options) *rig {
	t.Helper()
	r := &rig{t: t, nats: testutil.RunJetStream(t), pusher: pushercompat.Start(t, opts)}
	r.js = r.nats.JS(t)
	r.streams = stream.Config{Storage: jetstream.MemoryStorage}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := stream.Ensure(ctx, r.js, r.streams); err != nil {
		t.Fatalf("ensure stream: %v", err)
	}
	return r
}

// config is a relay configuration for tests: short timers, no coalescing.
func (r *rig) config() Config {
	return Config{
		AppID: "1", Key: "key", Secret: "secret",
		Host: r.pusher.Host(), Secure: false,
		BatchWindow: 20 * time.Millisecond,
		BatchSize:   500,
		MaxInFlight: 4,
		AckWait:     15 * time.Second, // no redelivery on a loaded machine unless a test wants one
		MaxDeliver:  5,
		// Long: a request that times out on a loaded machine is sent
		// again, and the duplicate fails tests that count events.
		Timeout:           15 * time.Second,
		BackoffBase:       20 * time.Millisecond,
		BackoffMax:        200 * time.Millisecond,
		AuthRetryInterval: 200 * time.Millisecond,
		IdleWait:          100 * time.Millisecond,
		LagInterval:       50 * time.Millisecond,
	}
}

// running is a relay started by a test.
type running struct {
	relay *Relay
	reg   *prometheus.Registry
	logs  *logtest.Hook
	stop  func()
}

// start runs a relay on its own connection until stop (or the test's end).
func (r *rig) start(cfg Config, js jetstream.JetStream) *running {
	r.t.Helper()
	return r.startWith(cfg, js, nil)
}

// startWith is start with a hook that adjusts the relay before it runs.
func (r *rig) startWith(cfg Config, js jetstream.JetStream, adjust func(*Relay)) *running {
	r.t.Helper()
	if js == nil {
		js = r.nats.JS(r.t)
	}
	reg := prometheus.NewRegistry()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	rl, err := New(cfg, Deps{JS: js, Stream: r.streams, Log: log, Registerer: reg})
	if err != nil {
		r.t.Fatalf("New: %v", err)
	}
	if adjust != nil {
		adjust(rl)
	}
	stop := testutil.RunUntilCancelled(r.t, "relay", rl.Run)
	return &running{relay: rl, reg: reg, logs: hook, stop: stop}
}

// change is one change to publish.
type change struct {
	eventID, typ, data, socketID string
}

// publish stores changes the way the producer does and returns their seqs
// and ids. It fails the test on error: call it from the test's goroutine,
// and publishErr from others.
func (r *rig) publish(changes ...change) (seqs []uint64, ids []string) {
	r.t.Helper()
	seqs, ids, err := r.publishErr(changes...)
	if err != nil {
		r.t.Fatal(err)
	}
	return seqs, ids
}

// publishErr is publish returning its error.
func (r *rig) publishErr(changes ...change) (seqs []uint64, ids []string, err error) {
	for _, c := range changes {
		id := "id-" + strconv.FormatInt(r.ids.Add(1), 10)
		m := &nats.Msg{Subject: wire.Subject(c.eventID, c.typ), Header: nats.Header{}, Data: []byte(c.data)}
		m.Header.Set(wire.HeaderMsgID, id)
		m.Header.Set(wire.HeaderAt, wire.FormatAt(time.Now()))
		if c.socketID != "" {
			m.Header.Set(wire.HeaderSocketID, c.socketID)
		}
		// One deadline per change: a loaded machine takes its time over
		// thousands of them.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		ack, err := r.js.PublishMsg(ctx, m)
		cancel()
		if err != nil {
			return seqs, ids, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		seqs = append(seqs, ack.Sequence)
		ids = append(ids, id)
	}
	return seqs, ids, nil
}

// publishRaw stores a message as is (to test what the producer would refuse).
func (r *rig) publishRaw(m *nats.Msg) uint64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := r.js.PublishMsg(ctx, m)
	if err != nil {
		r.t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// delivered decodes every envelope Pusher accepted, in acceptance order.
func (r *rig) delivered() []received {
	r.t.Helper()
	var out []received
	for _, ev := range r.pusher.Events() {
		var env wire.Envelope
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil {
			r.t.Fatalf("event on %s is not an envelope: %v: %s", ev.Channel, err, ev.Data)
		}
		out = append(out, received{Event: ev, env: env})
	}
	return out
}

type received struct {
	pushercompat.Event
	env wire.Envelope
}

// waitIDs waits until every id was delivered at least once.
func (r *rig) waitIDs(timeout time.Duration, ids []string) {
	r.t.Helper()
	testutil.EventuallyErr(r.t, timeout, func() error {
		seen := map[string]bool{}
		for _, ev := range r.delivered() {
			seen[ev.env.ID] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return fmt.Errorf("change %s not delivered (%d distinct seen of %d)", id, len(seen), len(ids))
			}
		}
		return nil
	})
}

// consumerInfo reads the relay consumer's state; before the relay created
// the consumer it reports an empty state.
func (r *rig) consumerInfo() *jetstream.ConsumerInfo {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.js.Consumer(ctx, wire.StreamName, Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return &jetstream.ConsumerInfo{}
	}
	if err != nil {
		r.t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		r.t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitSettled waits until the consumer has nothing pending or unacked.
func (r *rig) waitSettled(timeout time.Duration) {
	r.t.Helper()
	testutil.EventuallyErr(r.t, timeout, func() error {
		info := r.consumerInfo()
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("consumer has %d pending and %d unacked", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// dlq returns every dead letter (none before the relay created LIVE_DLQ).
func (r *rig) dlq() []*jetstream.RawStreamMsg {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.js.Stream(ctx, wire.DLQStreamName); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return testutil.ReadAll(r.t, r.js, wire.DLQStreamName)
}

func mustJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func jetstreamMaxWait(d time.Duration) jetstream.FetchOpt { return jetstream.FetchMaxWait(d) }

func jsonUnmarshalString(raw []byte, s *string) error { return json.Unmarshal(raw, s) }

// lagDialer connects through a net.Conn whose every read from the server
// arrives lag late, as on a loaded machine where the client's goroutines
// run late: what the server sent reaches the client's code afterwards.
type lagDialer struct{ lag time.Duration }

func (d lagDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	lc := &lagConn{Conn: c, lag: d.lag, chunks: make(chan lagChunk, 4096)}
	go lc.pump()
	return lc, nil
}

type lagChunk struct {
	due  time.Time
	data []byte
	err  error
}

type lagConn struct {
	net.Conn
	lag    time.Duration
	chunks chan lagChunk
	rest   []byte
	err    error
}

// pump reads the server's bytes as they come and stamps them due lag later.
func (c *lagConn) pump() {
	for {
		buf := make([]byte, 32*1024)
		n, err := c.Conn.Read(buf)
		c.chunks <- lagChunk{due: time.Now().Add(c.lag), data: buf[:n], err: err}
		if err != nil {
			return
		}
	}
}

func (c *lagConn) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		ch := <-c.chunks
		if d := time.Until(ch.due); d > 0 {
			t := time.NewTimer(d) // the simulated lag itself, not a wait for a condition
			<-t.C
		}
		c.rest, c.err = ch.data, ch.err
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// handOverHeld runs a relay with cfg while Pusher is out until it holds
// some changes and probes, stops it, ends the outage, and runs another
// relay, which must deliver ids and leave nothing pending. The first
// failure closes the gate and stops fetching, so how many the first relay
// holds depends on timing; it holds some.
func (r *rig) handOverHeld(cfg Config, ids []string) {
	r.t.Helper()
	first := r.start(cfg, nil)
	testutil.Eventually(r.t, 20*time.Second, func() bool {
		return r.pusher.Requests() >= 2 && r.consumerInfo().NumAckPending > 0
	}, "first relay never held the changes")
	first.stop()
	r.pusher.SetOutage(false)
	r.start(cfg, nil)
	r.waitIDs(30*time.Second, ids)
	r.waitSettled(20 * time.Second)
}

// waitOwned waits until run owns n partitions.
func (r *rig) waitOwned(run *running, n float64) {
	r.t.Helper()
	testutil.EventuallyErr(r.t, 20*time.Second, func() error {
		if got := testutil.MetricSum(r.t, run.reg, "liveupdates_relay_partitions_owned"); got != n {
			return fmt.Errorf("replica owns %v partitions, want %v", got, n)
		}
		return nil
	})
}
