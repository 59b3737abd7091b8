package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/pushercompat"
	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

const (
	apiKey = "cluster-test-key"
	// Ports inside each node's namespace; the addresses differ.
	clientPort  = 4222
	clusterPort = 6222
	monitorPort = 8222
)

// node is one nats-server process in its own network namespace.
type node struct {
	*proc
	index int
	name  string // server_name, as stream info reports the leader
	ip    string
}

// member is one liveupdates process of a role, on its own HTTP address.
type member struct {
	*proc
	role string
	addr string // 127.0.0.1:port, kept across restarts
}

func (m *member) base() string { return "http://" + m.addr }

// cluster is everything one scenario runs: three NATS nodes, two processes
// of each role, the Pusher-compatible server, and the test's own NATS
// connection used only to observe the stream (its leader and replicas).
type cluster struct {
	t                     *testing.T
	net                   *topo
	nodes                 []*node
	apis, relays, pollers []*member
	pusher                *pushercompat.Server
	js                    jetstream.JetStream
	// via has an observer connection per node, to that node only: during
	// a partition each side answers stream info with its own view, and
	// the cut-off leader goes on naming itself for a while.
	via  map[*node]jetstream.JetStream
	http *http.Client
	// startup notes processes that exited while the system started.
	startup []string
}

// startCluster brings the whole system up and returns once every role
// answers /readyz 200 and the stream is R3 with a leader.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{t: t, http: &http.Client{Timeout: 5 * time.Second}}
	c.net = newTopo(t, 3)
	var routes, urls []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats://%s:%d", c.net.nodeIP(i), clusterPort))
		urls = append(urls, fmt.Sprintf("nats://%s:%d", c.net.nodeIP(i), clientPort))
	}
	for i := range 3 {
		n := &node{index: i, name: "n" + strconv.Itoa(i), ip: c.net.nodeIP(i)}
		conf := filepath.Join(dir, n.name+".conf")
		if err := os.WriteFile(conf, []byte(natsConf(n, filepath.Join(dir, n.name), routes)), 0o644); err != nil {
			t.Fatal(err)
		}
		// Niced up: in production the NATS nodes have CPUs of their own;
		// here they share two busy cores with six role processes, the load
		// and whatever else the machine runs, and a starved follower
		// applies its log late and so campaigns late (raft waits until it
		// has applied what it committed), which stretched a leader
		// election to 13 s at load 19, past the api's publish timeout (12 s then, 15 s now).
		n.proc = newProc(t, dir, n.name, nil, "nice", "-n", "-10", "ip", "netns", "exec", c.net.ns(i), bins.nats, "-c", conf)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.start(t)
	}

	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name("clustertest-observer"),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connect observer: %v", err)
	}
	t.Cleanup(nc.Close)
	c.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.via = map[*node]jetstream.JetStream{}
	for i, n := range c.nodes {
		nc, err := nats.Connect(urls[i], nats.Name("clustertest-observer-"+n.name), nats.IgnoreDiscoveredServers(),
			nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
		if err != nil {
			t.Fatalf("connect observer of %s: %v", n.name, err)
		}
		t.Cleanup(nc.Close)
		if c.via[n], err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	// The roles create both streams too, but on a cluster that has just
	// formed, placing an R3 stream can take longer than a relay waits for
	// LIVE_DLQ at start (it exits: see the report). Creating both here
	// first makes sure they are R3 with a leader before any role starts.
	scfg, err := stream.LoadConfig(func(k string) string { return map[string]string{"LIVE_STREAM_REPLICAS": "3"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	// A JetStream API request sent before the nodes have elected a meta
	// leader goes unanswered until its timeout (5 s, for every client
	// that asks then): wait for the meta leader with short requests.
	waitErr(t, 60*time.Second, "a JetStream meta leader", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := c.js.AccountInfo(ctx)
		return err
	})
	metaAt := time.Since(begun)
	var tries []string
	var lastErr error
	waitErr(t, 90*time.Second, "R3 streams with a leader", func() error {
		if lastErr != nil {
			tries = append(tries, fmt.Sprintf("%.1fs %v", time.Since(begun).Seconds(), lastErr))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		for _, cfg := range []stream.Config{scfg, scfg.DLQ()} {
			if _, _, err := stream.Ensure(ctx, c.js, cfg); err != nil {
				lastErr = fmt.Errorf("ensure %s: %w", cfg.WithDefaults().Name, err)
				return lastErr
			}
		}
		lastErr = c.streamHealthy(ctx)
		return lastErr
	})
	streamsAt := time.Since(begun)
	// The relay's two buckets likewise, as relay.setUpPartitions makes
	// them: on a fresh cluster both replicas creating the checkpoint
	// bucket at once each waited out their 5 s request timeout (see the
	// report), which is start-up time every scenario paid.
	waitErr(t, 60*time.Second, "the relay's buckets", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		for _, kv := range []jetstream.KeyValueConfig{
			{Bucket: relay.LeaseBucket, Description: "liveupdates relay: which replica owns which partition",
				TTL: 2 * time.Second, Storage: jetstream.MemoryStorage, Replicas: 3},
			{Bucket: relay.CheckpointBucket, Description: "liveupdates relay: per partition, the seq up to which Pusher has every change",
				Storage: jetstream.FileStorage, Replicas: 3},
		} {
			if _, err := c.js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
				return fmt.Errorf("bucket %s: %w", kv.Bucket, err)
			}
		}
		return nil
	})
	bucketsAt := time.Since(begun)

	c.pusher = pushercompat.Start(t, pushercompat.Options{})
	common := []string{
		"LIVE_NATS_URL=" + strings.Join(urls, ","),
		"LIVE_STREAM_REPLICAS=3",
		"LIVE_LOG_FORMAT=json",
		"LIVE_LOG_LEVEL=info",
	}
	roleEnv := map[string][]string{
		// The rate limit is per key and the load generator has one key.
		"api": {"LIVE_API_KEYS=" + apiKey, "LIVE_API_RATE=100000"},
		"relay": {
			"PUSHER_APP_ID=1", "PUSHER_KEY=key", "PUSHER_SECRET=secret",
			"PUSHER_HOST=" + c.pusher.Host(), "PUSHER_SECURE=false",
			// Every change must reach Pusher on its own to be counted;
			// coalescing would fold changes away by design.
			"LIVE_RELAY_COALESCE=off",
			// Two replicas keep per-channel order only in partitioned mode;
			// several partitions per replica, as the README advises.
			"LIVE_RELAY_PARTITIONS=8",
		},
		// All clients come from 127.0.0.1: the per-client limit would
		// throttle the whole suite. The ring holds a node cut off for 15 s
		// at this suite's rate (deep resume past the ring is issue 9 item 2).
		"poller": {"LIVE_POLLER_RATE=off", "LIVE_POLLER_RING_SIZE=4096"},
	}
	for _, role := range []string{"api", "relay", "poller"} {
		for i := range 2 {
			m := &member{role: role, addr: testutil.FreeAddr(t)}
			env := append(append([]string{"LIVE_HTTP_ADDR=" + m.addr}, common...), roleEnv[role]...)
			m.proc = newProc(t, dir, fmt.Sprintf("%s-%d", role, i), env, bins.live, role)
			switch role {
			case "api":
				c.apis = append(c.apis, m)
			case "relay":
				c.relays = append(c.relays, m)
			case "poller":
				c.pollers = append(c.pollers, m)
			}
		}
	}
	for _, m := range c.members() {
		m.start(t)
	}
	var ready []string
	for _, m := range c.members() {
		c.waitStarted(m)
		ready = append(ready, fmt.Sprintf("%s %.1f s", m.name, (time.Since(begun)-bucketsAt).Seconds()))
	}
	c.startup = append(c.startup, fmt.Sprintf("startup: meta leader after %.1f s, streams R3 after %.1f s (failed tries: %s), buckets after %.1f s, then ready: %s",
		metaAt.Seconds(), streamsAt.Seconds(), strings.Join(tries, "; "), bucketsAt.Seconds(), strings.Join(ready, ", ")))
	return c
}

func (c *cluster) members() []*member {
	return append(append(append([]*member(nil), c.apis...), c.relays...), c.pollers...)
}

// natsConf is deploy/nats.yaml's nats.conf with this node's addresses: the
// same JetStream, payload and cluster settings, no lame duck (a rolling
// restart here sends SIGTERM, which is what Kubernetes sends after preStop).
func natsConf(n *node, store string, routes []string) string {
	return fmt.Sprintf(`server_name: %s
listen: %s:%d
http: %s:%d
max_payload: 1MB
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 2GB
}
cluster {
  name: liveupdates
  listen: %s:%d
  routes: [
    %s
  ]
  connect_retries: 120
}
`, n.name, n.ip, clientPort, n.ip, monitorPort, store, n.ip, clusterPort, strings.Join(routes, "\n    "))
}

// waitReady polls the member's /readyz until 200; it fails at once if the
// process exited meanwhile.
func (c *cluster) waitReady(m *member) {
	c.t.Helper()
	if err := c.ready(m, 60*time.Second); err != nil {
		c.t.Fatalf("%s ready: %v", m.name, err)
	}
}

// errExited is returned by ready when the process is gone.
var errExited = errors.New("process exited")

func (c *cluster) ready(m *member, timeout time.Duration) error {
	return poll(c.t, timeout, func() error {
		if !m.running() {
			return fmt.Errorf("%w: %s", errExited, m.lastLine())
		}
		resp, err := c.http.Get(m.base() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s /readyz: %s", m.name, resp.Status)
		}
		return nil
	})
}

// waitStarted is waitReady for the first start of the system: a process
// that exits while starting is started again, up to twice, as a
// Kubernetes Deployment would, and the exit is noted for the report (it
// is not counted as a crash under load).
func (c *cluster) waitStarted(m *member) {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		err := c.ready(m, 60*time.Second)
		if err == nil {
			return
		}
		if !errors.Is(err, errExited) || attempt == 3 {
			c.t.Fatalf("%s ready: %v", m.name, err)
		}
		c.startup = append(c.startup, fmt.Sprintf("startup: %s exited while starting (%s); started again", m.name, m.lastLine()))
		m.forgetCrashes()
		m.start(c.t)
	}
}

// leader returns the node leading LIVE_EVENTS.
func (c *cluster) leader(ctx context.Context) (*node, error) {
	return c.leaderSeenBy(ctx, c.js)
}

// leaderSeenBy is leader as the node js is connected to sees it.
func (c *cluster) leaderSeenBy(ctx context.Context, js jetstream.JetStream) (*node, error) {
	st, err := js.Stream(ctx, wire.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, errors.New("stream has no leader")
	}
	for _, n := range c.nodes {
		if n.name == info.Cluster.Leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %q is not a node", info.Cluster.Leader)
}

// streamHealthy reports nil when the stream has a leader and two current
// replicas: R3 at full strength.
func (c *cluster) streamHealthy(ctx context.Context) error {
	st, err := c.js.Stream(ctx, wire.StreamName)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.Config.Replicas != 3 {
		return fmt.Errorf("stream has %d replicas, want 3", info.Config.Replicas)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return errors.New("stream has no leader")
	}
	if len(info.Cluster.Replicas) != 2 {
		return fmt.Errorf("stream has %d followers, want 2", len(info.Cluster.Replicas))
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Current || r.Offline {
			return fmt.Errorf("replica %s is not current (offline %v, lag %d)", r.Name, r.Offline, r.Lag)
		}
	}
	return nil
}

// waitLeader waits until a node other than old leads the stream and
// returns it.
func (c *cluster) waitLeader(old *node, timeout time.Duration) *node {
	c.t.Helper()
	var got *node
	waitErr(c.t, timeout, "a new stream leader", func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), time.Second)
		defer cancel()
		n, err := c.leader(ctx)
		if err != nil {
			return err
		}
		if n == old {
			return fmt.Errorf("%s still leads", n.name)
		}
		got = n
		return nil
	})
	return got
}

// waitHealthy waits until the stream is R3 at full strength again.
func (c *cluster) waitHealthy(timeout time.Duration) {
	c.t.Helper()
	waitErr(c.t, timeout, "the stream back at three current replicas", func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
		defer cancel()
		return c.streamHealthy(ctx)
	})
}

// crashes lists every process exit the scenario did not cause.
func (c *cluster) crashes() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.crashed()...)
	}
	for _, m := range c.members() {
		out = append(out, m.crashed()...)
	}
	return out
}

// waitErr polls cond until it returns nil and fails the test with the last
// error after timeout. Coarser than testutil.EventuallyErr (see poll).
func waitErr(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(t, timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// poll calls cond every 50 ms until it returns nil, an errExited error
// (waiting longer cannot help), or timeout passes, and returns its last
// error. testutil.EventuallyErr polls every 5 ms, which is
// right in-process; here each try is an HTTP or NATS round trip to busy
// processes, and stream-info requests every 5 ms during an election would
// add to the load being measured.
func poll(t *testing.T, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil || errors.Is(err, errExited) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			return t.Context().Err()
		}
	}
}

// electedAt reads the nodes' logs (but except's, when not nil) for the
// first "new stream leader" line of stream written between since and until:
// when the election ended, as the cluster itself saw it (polling stream
// info only sees it later).
func (c *cluster) electedAt(since, until time.Time, stream string, except *node) (time.Time, string, bool) {
	var best time.Time
	var who string
	for _, n := range c.nodes {
		if n == except {
			continue
		}
		f, err := os.Open(n.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			// The new leader logs "[pid] 2026/12/01 02:21:40.291192 [INF]
			// JetStream cluster new stream leader for '$G > LIVE_EVENTS'".
			if !strings.Contains(line, "new stream leader for '$G > "+stream+"'") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", fields[1]+" "+fields[2], time.Local)
			if err != nil || !at.After(since) || !at.Before(until) {
				continue
			}
			if best.IsZero() || at.Before(best) {
				best, who = at, n.name
			}
		}
		f.Close()
	}
	return best, who, !best.IsZero()
}

// apisByNode counts the api processes connected to each node (from each
// node's /connz); a node that does not answer counts none.
func (c *cluster) apisByNode(ctx context.Context) map[*node]int {
	out := map[*node]int{}
	for _, n := range c.nodes {
		for _, name := range c.clientNames(ctx, n) {
			if name == "liveupdates-api" {
				out[n]++
			}
		}
	}
	return out
}

// clientNames lists the names of the clients connected to n (its /connz).
func (c *cluster) clientNames(ctx context.Context, n *node) []string {
	var connz struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/connz?limit=1024", n.ip, monitorPort), nil)
	if err != nil {
		return nil
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&connz) != nil {
		return nil
	}
	names := make([]string, 0, len(connz.Connections))
	for _, cn := range connz.Connections {
		names = append(names, cn.Name)
	}
	return names
}

// leadWhereAnAPIIs makes a node that an api process is connected to lead
// the stream (a stream leader step-down with that node preferred) and
// returns it: the fault that matters for the api is its own node cut off,
// and left to chance it is only about half the time.
func (c *cluster) leadWhereAnAPIIs() (*node, error) {
	var target *node
	err := poll(c.t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Second)
		defer cancel()
		cur, err := c.leader(ctx)
		if err != nil {
			return err
		}
		byNode := c.apisByNode(ctx)
		if byNode[cur] > 0 {
			target = cur
			return nil
		}
		for _, n := range c.nodes {
			if byNode[n] > 0 && (target == nil || byNode[n] > byNode[target]) {
				target = n
			}
		}
		if target == nil {
			return errors.New("no node serves an api")
		}
		req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": target.name}})
		if err != nil {
			return err
		}
		msg, err := c.js.Conn().RequestWithContext(ctx, fmt.Sprintf("$JS.API.STREAM.LEADER.STEPDOWN.%s", wire.StreamName), req)
		if err != nil {
			return fmt.Errorf("step down to %s: %w", target.name, err)
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return fmt.Errorf("step down to %s: %w", target.name, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("step down to %s: %w", target.name, resp.Error)
		}
		return fmt.Errorf("stepped down to %s; checking", target.name)
	})
	if err != nil {
		return nil, err
	}
	return target, c.streamHealthyWithin(60 * time.Second)
}

// streamHealthyWithin is waitHealthy that returns the error.
func (c *cluster) streamHealthyWithin(timeout time.Duration) error {
	return poll(c.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Second)
		defer cancel()
		return c.streamHealthy(ctx)
	})
}

// placement says where things are before a NATS fault, so a row can be read:
// which node leads the relay's consumer, and which role processes are
// connected to each node (from each node's /connz).
func (c *cluster) placement(ctx context.Context) string {
	var parts []string
	if cons, err := c.js.Consumer(ctx, wire.StreamName, relay.Consumer); err == nil {
		if info, err := cons.Info(ctx); err == nil && info.Cluster != nil {
			parts = append(parts, "relay consumer led by "+info.Cluster.Leader)
		}
	}
	for _, n := range c.nodes {
		var names []string
		for _, name := range c.clientNames(ctx, n) {
			if r, ok := strings.CutPrefix(name, "liveupdates-"); ok {
				names = append(names, r)
			}
		}
		slices.Sort(names)
		parts = append(parts, fmt.Sprintf("%s serves %s", n.name, strings.Join(names, ",")))
	}
	return strings.Join(parts, "; ")
}
