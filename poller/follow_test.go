package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// A poller replica on the stream leader's node, when that node is cut off
// from its two peers, sees the stream stop at the cut while the majority
// elects another leader and goes on. A cursor handed out on the majority's
// side is beyond this replica's view; the replica must make it wait (503,
// retry), never answer it with reset, although the cut-off leader goes on
// answering stream info as leader, naming its replicas current, for 10-20
// s. Without the check of when the leader last heard from its replicas the
// replica reset such cursors (the cluster suite's leader partition:
// "poller-1 answered cursor 978 with reset (cursor 917)"). Once the cut
// heals, the same cursor is answered with the majority's changes.
//
// Along the way it shows that the cut-off leader serves no change the
// majority did not commit: a publish to it fails and its stream does not
// grow, so no cursor it hands out names a change the majority lacks.
func TestReplicaOnACutOffLeaderWaitsForCursorsOfTheMajority(t *testing.T) {
	t.Parallel()
	cl := startCluster3(t)
	cut := cl.nodes[2]
	jsA := cl.js(t, cl.nodes[0])
	jsCut := cl.js(t, cut)
	scfg := stream.Config{Replicas: 3}
	testutil.EventuallyErr(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, _, err := stream.Ensure(ctx, jsA, scfg)
		return err
	})
	cl.leadOn(t, jsA, cut)
	var before uint64
	for i := range 5 {
		before = publishRetrying(t, jsA, "e1", i)
	}

	h := newPollerOn(t, cut, jsCut, scfg, Config{BehindWait: 200 * time.Millisecond})
	h.waitApplied(before)
	// In touch with its replicas, the leader's word ends a made-up cursor.
	testutil.EventuallyErr(t, 30*time.Second, func() error {
		u, err := pollOnce(t.Context(), h.url, "e1", 999999)
		if err != nil {
			return err
		}
		if !u.Reset {
			return fmt.Errorf("cursor 999999 answered %+v, want reset", u)
		}
		return nil
	})

	cl.cutOff()
	testutil.EventuallyErr(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		leader, err := leaderSeenBy(ctx, jsA)
		if err != nil {
			return err
		}
		if leader == cut.Server().Name() {
			return fmt.Errorf("%s still leads on the majority's side", leader)
		}
		return nil
	})
	// Not committed by the majority: the cut-off node neither acknowledges
	// it nor stores it.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	if seq, err := testutil.PublishChangeErr(ctx, jsCut, "e1", wire.TypeVoteUpdated, `{"side":"cut"}`); err == nil {
		t.Errorf("publish to the cut-off leader acknowledged as seq %d", seq)
	}
	cancel()
	var after uint64
	for i := range 3 {
		after = publishRetrying(t, jsA, "e1", 100+i)
	}
	if after <= before {
		t.Fatalf("the majority stored seq %d after the cut, want beyond %d", after, before)
	}

	// Poll with the majority's cursor while the cut-off node still leads
	// in its own view, until it steps down.
	asLeader := 0
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		info, infoErr := streamInfo(ctx, jsCut)
		cancel()
		if infoErr == nil && info.State.LastSeq != before {
			t.Fatalf("the cut-off node's stream ends at seq %d, want %d: it stores nothing without a majority", info.State.LastSeq, before)
		}
		if infoErr == nil && (info.Cluster == nil || info.Cluster.Leader != cut.Server().Name()) {
			break // stepped down: it answers nobody as leader any more
		}
		st, body, err := pollRaw(t.Context(), h.url, "e1", after)
		if err != nil {
			t.Fatal(err)
		}
		if st == http.StatusOK {
			t.Fatalf("cursor %d of the majority answered %d %s by the replica on the cut-off node, want 503 (wait, retry)", after, st, body)
		}
		if st != http.StatusServiceUnavailable {
			t.Fatalf("cursor %d answered %d %s, want 503", after, st, body)
		}
		if infoErr == nil {
			asLeader++
		}
	}
	if asLeader == 0 {
		t.Fatal("no poll while the cut-off node named itself leader: the test checked nothing")
	}
	t.Logf("%d polls answered 503 while the cut-off node named itself leader", asLeader)

	cl.heal()
	h.waitApplied(after)
	u, err := pollOnce(t.Context(), h.url, "e1", before)
	if err != nil {
		t.Fatal(err)
	}
	// At least the 3 acknowledged (a publish retried after an ack lost in
	// the election may have been stored as well).
	got := seqs(u.Events)
	if u.Reset || len(got) < 3 || got[0] <= before || got[len(got)-1] != after || !slices.IsSorted(got) {
		t.Fatalf("after the heal, cursor %d answered %+v, want the majority's changes up to seq %d", before, u, after)
	}
}

// cluster3 is three embedded JetStream servers in one cluster. Every route
// of the third goes through cutRoutes, which can drop its traffic both
// ways (as a network partition does: no connection is closed).
type cluster3 struct {
	nodes []*testutil.JetStream
	link  *cutRoutes
}

func startCluster3(t *testing.T) *cluster3 {
	t.Helper()
	link := &cutRoutes{}
	t.Cleanup(link.close)
	cl := &cluster3{link: link}
	// Route ports are picked before the servers start: a clustered
	// JetStream server will not start without routes to name.
	ports := []int{testutil.FreePort(t), testutil.FreePort(t), testutil.FreePort(t)}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	// Each node advertises its proxy, so the third learns the others (and
	// they learn it) only through the proxies; the first two are routed to
	// each other directly, before the third starts.
	proxies := []string{link.proxy(t, addr(0)), link.proxy(t, addr(1)), link.proxy(t, addr(2))}
	routes := [][]string{{addr(1)}, {addr(0)}, {proxies[0], proxies[1]}}
	for i := range 3 {
		n := testutil.RunJetStreamWith(t, func(o *server.Options) {
			o.ServerName = "n" + strconv.Itoa(i)
			o.Cluster = server.ClusterOpts{Name: "poller-test", Host: "127.0.0.1", Port: ports[i], Advertise: proxies[i], PoolSize: -1}
			for _, r := range routes[i] {
				o.Routes = append(o.Routes, server.RoutesFromStr("nats://"+r)...)
			}
		})
		cl.nodes = append(cl.nodes, n)
		if i == 1 {
			testutil.Eventually(t, 30*time.Second, func() bool {
				return cl.nodes[0].Server().NumRoutes() > 0 && cl.nodes[1].Server().NumRoutes() > 0
			}, "the first two nodes routed to each other")
		}
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range cl.nodes {
			if n.Server().NumRoutes() < 2 {
				return false
			}
		}
		return true
	}, "a full mesh of routes")
	return cl
}

// js connects to n alone: during the cut each side answers with its own
// view.
func (c *cluster3) js(t *testing.T, n *testutil.JetStream) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(n.Conn(t, nats.IgnoreDiscoveredServers()))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (c *cluster3) cutOff() { c.link.set(true) }

// heal ends the cut: the connections that lost traffic are closed (their
// streams have holes) and the servers route again.
func (c *cluster3) heal() { c.link.set(false) }

// leadOn moves the stream's leader to n by step-downs that prefer it.
func (c *cluster3) leadOn(t *testing.T, js jetstream.JetStream, n *testutil.JetStream) {
	t.Helper()
	want := n.Server().Name()
	testutil.EventuallyErr(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		leader, err := leaderSeenBy(ctx, js)
		if err != nil {
			return err
		}
		if leader == want {
			st, err := js.Stream(ctx, wire.StreamName)
			if err != nil {
				return err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return fmt.Errorf("replica %s not current yet", r.Name)
				}
			}
			return nil
		}
		req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": want}})
		if err != nil {
			return err
		}
		msg, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+wire.StreamName, req)
		if err != nil {
			return fmt.Errorf("step down to %s: %w", want, err)
		}
		return fmt.Errorf("stepped down to %s (%s); checking", want, msg.Data)
	})
}

func leaderSeenBy(ctx context.Context, js jetstream.JetStream) (string, error) {
	info, err := streamInfo(ctx, js)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("no stream leader")
	}
	return info.Cluster.Leader, nil
}

func streamInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		return nil, err
	}
	return st.Info(ctx)
}

// publishRetrying publishes a change of eventID, retrying while the
// stream elects a leader, and returns its seq.
func publishRetrying(t *testing.T, js jetstream.JetStream, eventID string, i int) uint64 {
	t.Helper()
	var seq uint64
	testutil.EventuallyErr(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		var err error
		seq, err = testutil.PublishChangeErr(ctx, js, eventID, wire.TypeVoteUpdated, fmt.Sprintf(`{"i":%d}`, i))
		return err
	})
	return seq
}

// newPollerOn runs a poller on js, a connection to node n alone.
func newPollerOn(t *testing.T, n *testutil.JetStream, js jetstream.JetStream, scfg stream.Config, cfg Config) *harness {
	t.Helper()
	return startPoller(t, n, cfg, func(d *Deps) { d.JS, d.Stream = js, scfg })
}

func pollRaw(ctx context.Context, base, eventID string, since uint64) (int, []byte, error) {
	r, err := getURL(ctx, fmt.Sprintf("%s/v1/events/%s/updates?since=%d", base, eventID, since))
	return r.status, r.body, err
}

func pollOnce(ctx context.Context, base, eventID string, since uint64) (updates, error) {
	st, body, err := pollRaw(ctx, base, eventID, since)
	if err != nil {
		return updates{}, err
	}
	if st != http.StatusOK {
		return updates{}, fmt.Errorf("cursor %d answered %d %s", since, st, body)
	}
	var u updates
	if err := json.Unmarshal(body, &u); err != nil {
		return updates{}, fmt.Errorf("decode %s: %w", body, err)
	}
	return u, nil
}

// cutRoutes forwards TCP connections to route ports and, while cut, drops
// every byte both ways and leaves new connections unanswered, as dropped
// packets would.
type cutRoutes struct {
	mu     sync.Mutex
	cut    bool
	lns    []net.Listener
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func (c *cutRoutes) proxy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.lns = append(c.lns, ln)
	c.mu.Unlock()
	c.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.serve(in, target)
		}
	})
	return ln.Addr().String()
}

func (c *cutRoutes) serve(in net.Conn, target string) {
	if !c.track(in) || c.isCut() {
		return // unanswered; closed by heal or close
	}
	out, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		_ = in.Close()
		return
	}
	if !c.track(out) {
		return
	}
	c.wg.Go(func() { c.pipe(out, in) })
	c.wg.Go(func() { c.pipe(in, out) })
}

// track keeps conn to close later; false when the proxy is closed.
func (c *cutRoutes) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return false
	}
	c.conns = append(c.conns, conn)
	return true
}

func (c *cutRoutes) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.isCut() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			return
		}
	}
}

func (c *cutRoutes) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

// set cuts or heals. Healing closes every connection the cut touched:
// bytes were dropped from their middle.
func (c *cutRoutes) set(cut bool) {
	c.mu.Lock()
	c.cut = cut
	var conns []net.Conn
	if !cut {
		conns, c.conns = c.conns, nil
	}
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
}

func (c *cutRoutes) close() {
	c.mu.Lock()
	c.closed = true
	lns, conns := c.lns, c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
	c.wg.Wait()
}
