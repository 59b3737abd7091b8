package deploy

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// TestClusterSurvivesTheLossOfOneNode shows the promise "a publish that
// returned success survives the loss of one NATS node in a three-node
// cluster" with three real nats-servers, shaped like nats.yaml: JetStream,
// full-mesh routes, LIVE_EVENTS with three replicas. It kills the stream
// leader, keeps publishing through the election with the same Nats-Msg-Id on
// every retry, and checks that every acknowledged change is stored exactly
// once on the survivors.
func TestClusterSurvivesTheLossOfOneNode(t *testing.T) {
	t.Parallel()
	// Generous: elections on a loaded 2-core machine take seconds.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	servers := runCluster(t, 3)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}

	// The cluster elects its meta leader and learns its peers before it
	// can place an R3 stream; Ensure fails cleanly until then.
	cfg, err := stream.LoadConfig(func(k string) string {
		return map[string]string{"LIVE_STREAM_REPLICAS": "3"}[k]
	})
	if err != nil {
		t.Fatalf("stream.LoadConfig: %v", err)
	}
	var st jetstream.Stream
	testutil.EventuallyErr(t, 15*time.Second, func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, _, err = stream.Ensure(actx, js, cfg)
		return err
	})
	// A new R3 stream elects its leader and reports its peers a moment
	// after the create answers; on a busy machine that moment is seconds.
	var info *jetstream.StreamInfo
	testutil.EventuallyErr(t, 20*time.Second, func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err = st.Info(actx)
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("stream is not R3 across the cluster with a leader: replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
		}
		return nil
	})

	const n = 200
	publish := func(i int) *jetstream.PubAck {
		t.Helper()
		return publishUntilStored(ctx, t, js, i)
	}
	for i := range n {
		publish(i)
	}

	// Lose the node that leads the stream: the worst of the three to lose.
	leader := info.Cluster.Leader
	var survivors []*server.Server
	for _, s := range servers {
		if s.Name() == leader {
			s.Shutdown()
			s.WaitForShutdown()
			continue
		}
		survivors = append(survivors, s)
	}
	if len(survivors) != 2 {
		t.Fatalf("leader %q is not one of the servers", leader)
	}

	// Publishing goes on while the survivors elect a new leader; a change
	// that timed out is retried with its id, so it is stored once.
	for i := n; i < 2*n; i++ {
		publish(i)
	}
	// A publisher retrying changes that were already stored before the
	// loss gets duplicates, not second copies: the dedup state survived.
	for i := range 20 {
		if ack := publish(i); !ack.Duplicate {
			t.Errorf("re-publishing change %d after the failover stored it again (seq %d)", i, ack.Sequence)
		}
	}

	testutil.EventuallyErr(t, 20*time.Second, func() error {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err = st.Info(actx)
		if err != nil {
			return fmt.Errorf("stream info after the failover: %w", err)
		}
		if info.Cluster == nil || info.Cluster.Leader == leader || info.Cluster.Leader == "" {
			return fmt.Errorf("no new leader among the survivors: %+v", info.Cluster)
		}
		return nil
	})
	if info.State.Msgs != 2*n {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, 2*n)
	}
	seen := map[string]int{}
	for _, m := range testutil.ReadAll(t, js, wire.StreamName) {
		seen[m.Header.Get(wire.HeaderMsgID)]++
	}
	for i := range 2 * n {
		if id := changeID(i); seen[id] != 1 {
			t.Errorf("change %s is stored %d times, want once", id, seen[id])
		}
	}
	if len(seen) != 2*n {
		t.Errorf("stream holds %d distinct ids, want %d", len(seen), 2*n)
	}
}

func changeID(i int) string { return fmt.Sprintf("change-%04d", i) }

// publishUntilStored publishes change i and retries, with the same
// Nats-Msg-Id, until JetStream acknowledges it or ctx ends. During an
// election a publish fails with no responders or times out; either way the
// change may or may not be stored, and the id makes the retry safe.
func publishUntilStored(ctx context.Context, t *testing.T, js jetstream.JetStream, i int) *jetstream.PubAck {
	t.Helper()
	msg := &nats.Msg{
		Subject: wire.Subject(fmt.Sprintf("e%d", i%7), wire.TypeVoteUpdated),
		Header: nats.Header{
			wire.HeaderMsgID: []string{changeID(i)},
			wire.HeaderAt:    []string{wire.FormatAt(time.Now())},
		},
		Data: fmt.Appendf(nil, `{"n":%d}`, i),
	}
	var lastErr error
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		ack, err := js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return ack
		}
		lastErr = err
		// Wait for the client's connection to settle before trying again,
		// without sleeping: a failed attempt already waited up to a second.
		if nc := js.Conn(); !nc.IsConnected() {
			testutil.Eventually(t, 5*time.Second, nc.IsConnected, "client reconnects to a survivor")
		}
	}
	t.Fatalf("change %d not stored before the deadline: %v", i, lastErr)
	return nil
}

// runCluster starts size JetStream servers on loopback with full-mesh routes,
// as nats.conf lists every pod of the StatefulSet.
func runCluster(t *testing.T, size int) []*server.Server {
	t.Helper()
	ports := make([]int, size)
	routes := make([]*url.URL, size)
	for i := range size {
		ports[i] = testutil.FreePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, size)
	for i := range size {
		opts := &server.Options{
			ServerName: fmt.Sprintf("nats-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "liveupdates",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("new server %d: %v", i, err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server %d not ready", i)
		}
		servers[i] = s
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		for _, s := range servers {
			if s.NumRoutes() < size-1 {
				return false
			}
		}
		return true
	}, "routes between all %d servers", size)
	return servers
}
