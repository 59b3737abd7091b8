package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nostressplanner/liveupdates/relay"
	"github.com/nostressplanner/liveupdates/wire"
)

// scenario is one fault injected under load.
type scenario struct {
	name string
	load shape // zero: the default shape, until the fault is over and 8 s more
	// maxP99 bounds the p99 publish-to-Pusher latency where an issue sets a
	// target; zero: reported, not asserted.
	maxP99 time.Duration
	// fault runs while the load goes on and returns when the system should
	// have recovered from it.
	fault func(s *run)
}

// run is one scenario in progress.
type run struct {
	t     *testing.T
	c     *cluster
	l     *load
	pw    *pusherWatch
	notes []string
}

func (s *run) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// moreAcks waits until n more changes were acknowledged, so a fault lands
// on a system under load and the load goes on between faults.
func (s *run) moreAcks(n int) {
	s.t.Helper()
	base := s.l.ackedCount()
	waitErr(s.t, 60*time.Second, fmt.Sprintf("%d more acknowledged changes", n), func() error {
		if got := s.l.ackedCount() - base; got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
}

// untilAcked waits until n changes in all were acknowledged.
func (s *run) untilAcked(n int) {
	s.t.Helper()
	waitErr(s.t, 2*time.Minute, fmt.Sprintf("%d acknowledged changes", n), func() error {
		if got := s.l.ackedCount(); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
}

// hold lets a fault last d: the fault's duration is what it is, not a wait
// for a condition.
func (s *run) hold(d time.Duration) {
	select {
	case <-time.After(d):
	case <-s.t.Context().Done():
	}
}

func scenarios() []scenario {
	return []scenario{
		{"relay-sigkill", shape{rate: 500, writers: 16, total: 20000}, 5 * time.Second, func(s *run) {
			// Issue 9's relay target: 20,000 changes over 40 s, one of the
			// two relay replicas SIGKILLed three times (about every 10 s),
			// restarted at once.
			r := s.c.relays[0]
			for k := range 3 {
				s.untilAcked(5000 * (k + 1))
				r.kill()
				r.start(s.t)
				start := time.Now()
				s.c.waitReady(r)
				s.note("kill %d: %s ready again in %v", k+1, r.name, time.Since(start).Round(10*time.Millisecond))
			}
		}},
		{"leader-sigkill", shape{}, 0, func(s *run) {
			s.moreAcks(300)
			old := s.leader()
			s.notePlacement()
			start := time.Now()
			old.kill()
			nl := s.c.waitLeader(old, 30*time.Second)
			s.note("stream leader %s SIGKILLed; %s leads after %v (seen by polling stream info)", old.name, nl.name, time.Since(start).Round(10*time.Millisecond))
			s.noteElection(start)
			s.moreAcks(300)
			old.start(s.t)
			start = time.Now()
			s.c.waitHealthy(90 * time.Second)
			s.note("%s restarted; stream at three current replicas after %v", old.name, time.Since(start).Round(10*time.Millisecond))
		}},
		{"leader-partition", shape{}, 0, func(s *run) {
			s.moreAcks(300)
			// The api connected to the cut-off node is what the fault
			// tests (it must move to the majority within its publish
			// timeout), so the node cut off is one with an api.
			old, err := s.c.leadWhereAnAPIIs()
			if err != nil {
				s.t.Fatalf("move the stream leader to a node with an api: %v", err)
			}
			// Both relays and one poller start on the node to be cut off
			// (it is their only seed URL), the other poller on the
			// majority's side: each relay must leave the cut-off node
			// within its move window, and the poller there, whose view of
			// the stream stops at the cut, must make the cursors the other
			// poller hands out wait, never reset them (left to chance,
			// both pollers were on one side in some runs and nothing
			// tested that).
			s.seedOn(old, append(append([]*member(nil), s.c.relays...), s.c.pollers[0]))
			s.seedOn(s.c.nodes[(old.index+1)%len(s.c.nodes)], s.c.pollers[1:])
			s.moreAcks(300)
			if cur := s.leader(); cur != old {
				s.t.Fatalf("the stream leader moved on its own from %s to %s before the fault", old.name, cur.name)
			}
			s.notePlacement()
			if err := s.c.net.cut(old.index); err != nil {
				s.t.Fatal(err)
			}
			start := time.Now()
			healed := false
			heal := func() {
				if !healed {
					healed = true
					if err := s.c.net.heal(old.index); err != nil {
						s.t.Error(err)
					}
				}
			}
			defer heal()
			// The majority elects a leader within the partition, or that is
			// itself the finding; either way the cut lasts its 15 s. Asked
			// on the majority's side: the cut-off leader goes on naming
			// itself until it notices it lost its quorum.
			majority := s.c.nodes[(old.index+1)%len(s.c.nodes)]
			err = poll(s.t, 14*time.Second, func() error {
				ctx, cancel := context.WithTimeout(s.t.Context(), time.Second)
				defer cancel()
				n, err := s.c.leaderSeenBy(ctx, s.c.via[majority])
				if err == nil && n == old {
					err = fmt.Errorf("%s still leads", n.name)
				}
				return err
			})
			if err != nil {
				s.t.Errorf("no new stream leader during the partition: %v", err)
			} else {
				s.note("stream leader %s cut off from its peers at +%.1fs of the load; a new leader after %v (seen by polling stream info)",
					old.name, start.Sub(s.l.started).Seconds(), time.Since(start).Round(10*time.Millisecond))
			}
			s.hold(time.Until(start.Add(15 * time.Second)))
			s.noteReconnects(start)
			heal()
			healedAt := time.Now()
			s.c.waitHealthy(90 * time.Second)
			s.note("healed after 15 s; stream at three current replicas after %v", time.Since(healedAt).Round(10*time.Millisecond))
			// The relays left the cut-off node within their move window
			// (2x max(IdleWait, LeaseTTL) of failures, then a reconnect
			// elsewhere): measured 5.2-6.2 s; 13.1 s before they moved.
			// Nothing can reach Pusher before the majority has a leader
			// of the stream and of the relays' lease and checkpoint
			// buckets (each its own R3 stream, led by the cut-off node
			// too when it led them), so a slow election (12.7 s seen: the
			// first candidate's log was behind the other follower's)
			// extends the bound, from the last of those elections in the
			// majority before the heal (an election after it, or the
			// cut-off node's own, is no cause). Read after the heal, so a
			// gap still open then ends.
			s.moreAcks(100)
			gap, limit := s.pw.gapWithin(start, healedAt), maxCutGap
			for _, name := range []string{wire.StreamName, "KV_" + relay.LeaseBucket, "KV_" + relay.CheckpointBucket} {
				if at, who, ok := s.c.electedAt(start, healedAt, name, old); ok {
					s.note("election: %s logged itself leader of %s %v after the fault", who, name, at.Sub(start).Round(10*time.Millisecond))
					limit = max(limit, at.Sub(start)+afterElection)
				}
			}
			s.note("longest time without a change reaching Pusher during the cut: %v (at most %v)", gap.Round(10*time.Millisecond), limit.Round(10*time.Millisecond))
			if gap > limit {
				s.t.Errorf("%v without a change reaching Pusher during the cut, want at most %v", gap.Round(10*time.Millisecond), limit.Round(10*time.Millisecond))
			}
		}},
		{"rolling-restart", shape{}, 0, func(s *run) {
			// Every role process in turn, then every NATS node, each
			// stopped with SIGTERM, started again and waited for.
			for _, m := range append(append(append([]*member(nil), s.c.relays...), s.c.pollers...), s.c.apis...) {
				s.moreAcks(100)
				start := time.Now()
				if err := m.stop(20 * time.Second); err != nil {
					s.t.Error(err)
				}
				stopped := time.Since(start)
				m.start(s.t)
				s.c.waitReady(m)
				s.note("%s stopped in %v, ready %v later", m.name, stopped.Round(10*time.Millisecond), (time.Since(start) - stopped).Round(10*time.Millisecond))
			}
			for _, n := range s.c.nodes {
				s.moreAcks(100)
				start := time.Now()
				if err := n.stop(30 * time.Second); err != nil {
					s.t.Error(err)
				}
				stopped := time.Since(start)
				n.start(s.t)
				s.c.waitHealthy(90 * time.Second)
				s.note("%s stopped in %v, stream current %v later", n.name, stopped.Round(10*time.Millisecond), (time.Since(start) - stopped).Round(10*time.Millisecond))
			}
		}},
		{"pusher-outage", shape{}, 0, func(s *run) {
			s.moreAcks(300)
			s.c.pusher.SetOutage(true)
			s.hold(10 * time.Second)
			s.c.pusher.SetOutage(false)
			back := time.Now()
			waitErr(s.t, 60*time.Second, "a delivery after the outage", func() error {
				s.pw.mu.Lock()
				defer s.pw.mu.Unlock()
				if !s.pw.last.After(back) {
					return fmt.Errorf("nothing reached Pusher since it came back")
				}
				return nil
			})
			s.note("Pusher dropped every request for 10 s; first delivery %v after it came back", time.Since(back).Round(10*time.Millisecond))
		}},
	}
}

// maxCutGap bounds the time without a change reaching Pusher while the
// node both relays started on is cut off: the relays' move window plus an
// election and a lease takeover, on a loaded machine. afterElection is
// how long after a slower election the relays may take.
const (
	maxCutGap     = 11 * time.Second
	afterElection = 4 * time.Second
)

// seedOn restarts each member with n as its only seed URL, so it connects
// to n (it still learns the other nodes from n, to reconnect to), and
// waits until it is ready again.
func (s *run) seedOn(n *node, ms []*member) {
	s.t.Helper()
	url := fmt.Sprintf("nats://%s:%d", n.ip, clientPort)
	var names []string
	for _, m := range ms {
		if err := m.stop(20 * time.Second); err != nil {
			s.t.Error(err)
		}
		m.env = slices.DeleteFunc(slices.Clone(m.env), func(e string) bool { return strings.HasPrefix(e, "LIVE_NATS_URL=") })
		m.env = append(m.env, "LIVE_NATS_URL="+url)
		m.start(s.t)
		s.c.waitReady(m)
		names = append(names, m.name)
	}
	s.note("%s restarted with %s as their only seed URL", strings.Join(names, ", "), n.name)
}

// notePlacement notes where the stream leader, the relay's consumer leader
// and the role connections are before a NATS fault.
func (s *run) notePlacement() {
	ctx, cancel := context.WithTimeout(s.t.Context(), 3*time.Second)
	defer cancel()
	if n, err := s.c.leader(ctx); err == nil {
		s.note("before the fault: stream led by %s; %s", n.name, s.c.placement(ctx))
	}
}

// noteReconnects notes when each api process reconnected to NATS since
// the fault, from its own log: the api on a cut-off node must move.
func (s *run) noteReconnects(since time.Time) {
	for _, m := range s.c.apis {
		var at []string
		for _, line := range m.tail(5000) {
			var l struct {
				Msg    string    `json:"msg"`
				Time   time.Time `json:"time"`
				Server string    `json:"server"`
			}
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "nats reconnected" || l.Time.Before(since) {
				continue
			}
			at = append(at, fmt.Sprintf("+%.1fs to %s", l.Time.Sub(since).Seconds(), l.Server))
		}
		if len(at) > 0 {
			s.note("%s reconnected to NATS %s", m.name, strings.Join(at, ", "))
		}
	}
}

// noteElection notes how long the election took by the nodes' own logs.
func (s *run) noteElection(since time.Time) {
	if at, who, ok := s.c.electedAt(since, time.Now(), wire.StreamName, nil); ok {
		s.note("election: %s logged itself leader of %s %v after the fault", who, wire.StreamName, at.Sub(since).Round(10*time.Millisecond))
	}
}

func (s *run) leader() *node {
	s.t.Helper()
	var n *node
	waitErr(s.t, 30*time.Second, "the stream leader", func() error {
		ctx, cancel := context.WithTimeout(s.t.Context(), 2*time.Second)
		defer cancel()
		var err error
		n, err = s.c.leader(ctx)
		return err
	})
	return n
}

// TestClusterFaults runs every scenario on a fresh cluster of real
// processes and prints the table: published / acknowledged / delivered to
// Pusher / lost (at Pusher, at the poll clients) / duplicates / reorders /
// 5xx from the api / transport errors the load generator retried / the
// longest gap between two Pusher deliveries / p99 publish-to-Pusher / the
// longest time one change took to be acknowledged (retries included).
func TestClusterFaults(t *testing.T) {
	var (
		mu   sync.Mutex
		rows []row
	)
	t.Cleanup(func() {
		var b strings.Builder
		b.WriteString("\n" + tableHeader() + "\n")
		for _, r := range rows {
			b.WriteString(r.String() + "\n")
		}
		for _, r := range rows {
			for _, n := range r.notes {
				fmt.Fprintf(&b, "%s: %s\n", r.name, n)
			}
		}
		t.Log(b.String())
	})
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			r := runScenario(t, sc)
			mu.Lock()
			rows = append(rows, r)
			mu.Unlock()
			check(t, r)
			if sc.maxP99 > 0 && r.p99 > sc.maxP99 {
				t.Errorf("%s: p99 publish to Pusher %v, want at most %v", r.name, r.p99, sc.maxP99)
			}
		})
	}
}

// runScenario starts a cluster, puts it under load, injects the fault,
// lets the load run on, stops it, waits until every acknowledged change
// reached Pusher and every poll client of its eventId, and tallies.
func runScenario(t *testing.T, sc scenario) row {
	start := time.Now()
	c := startCluster(t)
	started := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	pw := watchPusher(c.pusher)
	var stopOnce sync.Once
	var l *load
	var ps *pollers
	stopAll := func() {
		stopOnce.Do(func() {
			cancel()
			l.stop()
			ps.stop()
			pw.stop()
		})
	}
	l = startLoad(ctx, c, sc.load)
	ps = startPollers(ctx, c, l.events)
	// Before the processes are killed at cleanup (registered earlier, so
	// run later).
	t.Cleanup(stopAll)

	s := &run{t: t, c: c, l: l, pw: pw}
	s.moreAcks(300)
	sc.fault(s)
	if sc.load.total > 0 {
		// The writers stop on their own after the total.
		waitErr(t, 5*time.Minute, "the load's total published and acknowledged", func() error {
			l.mu.Lock()
			defer l.mu.Unlock()
			if done := len(l.acked) + l.unacked + len(l.refused); done < l.total {
				return fmt.Errorf("%d of %d", done, l.total)
			}
			return nil
		})
	} else {
		// The load goes on for about 8 s after the system recovered.
		s.moreAcks(loadRate * 8)
	}
	l.stopWriting()
	l.wg.Wait()

	loaded := time.Now()
	drainErr := poll(t, 120*time.Second, func() error { return delivered(l, pw, ps) })
	drained := time.Now()
	stopAll()
	r := tally(sc.name, l, pw, ps)
	r.took = time.Since(start)
	r.notes = append(append(c.startup, s.notes...), r.notes...)
	r.notes = append(r.notes, fmt.Sprintf("phases: start %.1f s, load with the fault %.1f s, until every acknowledged change was delivered %.1f s",
		started.Sub(start).Seconds(), loaded.Sub(started).Seconds(), drained.Sub(loaded).Seconds()))
	if drainErr != nil {
		r.notes = append(r.notes, "drain: "+drainErr.Error())
	}
	crashes := c.crashes()
	r.crashes = len(crashes)
	r.notes = append(r.notes, crashes...)
	t.Logf("\n%s\n%s\n  %s", tableHeader(), r, strings.Join(r.notes, "\n  "))
	return r
}

// delivered reports nil once every acknowledged change reached Pusher and
// every poll client following its eventId.
func delivered(l *load, pw *pusherWatch, ps *pollers) error {
	byEvent := map[string][]uint64{}
	l.mu.Lock()
	for seq, a := range l.acked {
		byEvent[a.eventID] = append(byEvent[a.eventID], seq)
	}
	l.mu.Unlock()
	var missPusher, missPoll int
	var example string
	pw.mu.Lock()
	for e, seqs := range byEvent {
		for _, seq := range seqs {
			if _, ok := pw.first[seq]; !ok {
				missPusher++
				example = fmt.Sprintf("seq %d of %s not at Pusher", seq, e)
			}
		}
	}
	pw.mu.Unlock()
	for _, pc := range ps.clients {
		pc.mu.Lock()
		for _, seq := range byEvent[pc.eventID] {
			if !pc.seen[seq] {
				missPoll++
				if example == "" {
					example = fmt.Sprintf("seq %d of %s not at poll client %d", seq, pc.eventID, pc.home)
				}
			}
		}
		pc.mu.Unlock()
	}
	if missPusher+missPoll > 0 {
		return fmt.Errorf("%d acknowledged changes not at Pusher, %d missing at poll clients (%s)", missPusher, missPoll, example)
	}
	return nil
}

// check asserts the promises on a scenario's row.
func check(t *testing.T, r row) {
	t.Helper()
	if r.lostPusher != 0 || r.lostPoll != 0 {
		t.Errorf("%s: %d acknowledged changes never reached Pusher and %d never reached a poll client, want 0", r.name, r.lostPusher, r.lostPoll)
	}
	if r.reorders != 0 {
		t.Errorf("%s: %d changes reached Pusher after a higher seq of their channel, want 0", r.name, r.reorders)
	}
	if r.pollResets != 0 {
		t.Errorf("%s: poller replicas answered %d valid cursors with reset, want 0 (a replica behind a cursor waits)", r.name, r.pollResets)
	}
	if r.pollReorders != 0 {
		t.Errorf("%s: poll clients got %d changes after a higher seq, want 0", r.name, r.pollReorders)
	}
	if r.fiveXX != 0 {
		t.Errorf("%s: the api answered %d 5xx, want 0", r.name, r.fiveXX)
	}
	if r.unacked != 0 {
		t.Errorf("%s: %d changes were never acknowledged despite retries", r.name, r.unacked)
	}
	if r.refused+r.doubles+r.bad+r.crashes != 0 {
		t.Errorf("%s: %d changes refused with a 4xx, %d keys stored twice, %d unreadable envelopes at Pusher, %d processes exited on their own (see the notes); want none",
			r.name, r.refused, r.doubles, r.bad, r.crashes)
	}
}
