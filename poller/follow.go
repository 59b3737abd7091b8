package poller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/sirupsen/logrus"
)

// Following the stream: where the replay starts, the ordered consumer that
// feeds the index, and the watch for a consumer that went silent.

// replayStart reads the stream's state and positions the index at the
// replay start. It reports true when the replay target is known.
func (p *Poller) replayStart(ctx context.Context, st jetstream.Stream) (bool, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("info %s: %w", p.scfg.Name, err)
	}
	s := info.State
	first := s.FirstSeq
	if s.LastSeq >= p.cfg.ReplayDepth && s.LastSeq-p.cfg.ReplayDepth+1 > first {
		first = s.LastSeq - p.cfg.ReplayDepth + 1
	}
	if s.Msgs == 0 {
		first = s.LastSeq + 1
	}
	if first == 0 {
		first = 1
	}
	p.idx.reset(first - 1)
	p.replayTarget.Store(s.LastSeq)
	p.log.WithFields(logrus.Fields{"first_seq": first, "last_seq": s.LastSeq}).Info("replaying stream")
	if s.LastSeq < first {
		p.markReady()
	}
	return true, nil
}

func (p *Poller) markReady() {
	p.readyOnce.Do(func() {
		p.log.WithField("seq", p.idx.appliedSeq()).Info("replay done, ready")
		close(p.ready)
	})
}

// follow consumes from the applied seq on until the consumer fails or ctx
// is done.
func (p *Poller) follow(ctx context.Context, st jetstream.Stream) error {
	from := p.idx.appliedSeq() + 1
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer on %s from seq %d: %w", p.scfg.Name, from, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("messages of %s from seq %d: %w", p.scfg.Name, from, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	p.following.Store(true)
	p.log.WithField("seq", from).Debug("following stream")
	stalled := make(chan uint64, 1)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { p.watchStall(wctx, st, it, stalled) })
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			select {
			case last := <-stalled:
				return fmt.Errorf("consumer of %s stalled at seq %d while the stream holds seq %d", p.scfg.Name, p.idx.appliedSeq(), last)
			default:
			}
			return fmt.Errorf("next message of %s after seq %d: %w", p.scfg.Name, p.idx.appliedSeq(), err)
		}
		p.applyMsg(msg)
	}
}

// stallCheck is how often follow compares what it applied with the stream.
const stallCheck = 5 * time.Second

// watchStall stops it when the stream holds changes past the applied seq
// and two checks in a row saw no progress: after a NATS node is lost an
// ordered consumer was seen to stay silent for good (the cluster suite: a
// replica at applied seq 0 for 45 s), and the lag taken from the last
// message it delivered then said 0. follow then re-creates the consumer
// from the applied seq. Each check also refreshes the lag from the
// stream's own last seq.
func (p *Poller) watchStall(ctx context.Context, st jetstream.Stream, it jetstream.MessagesContext, stalled chan<- uint64) {
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	prev, idle := p.idx.appliedSeq(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, stallCheck)
		info, err := st.Info(ictx)
		cancel()
		if err != nil {
			continue // NATS itself is unreachable: the consumer reports that
		}
		applied := p.idx.appliedSeq()
		last := info.State.LastSeq
		if last > applied {
			p.lag.Store(last - applied)
		}
		if last > applied && applied == prev {
			idle++
		} else {
			idle = 0
		}
		prev = applied
		if idle >= 2 {
			stalled <- last
			it.Stop()
			return
		}
	}
}

// cursorBeyondStream reports whether the stream's leader holds no change
// up to since: only then is a cursor this replica has not reached made up
// (or from a stream since recreated). A replica's own view can be stale;
// when the leader cannot be asked, the answer is no (retry, never reset).
func (p *Poller) cursorBeyondStream(ctx context.Context, since uint64) bool {
	stp := p.st.Load()
	if stp == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := (*stp).Info(ctx)
	if err != nil {
		return false
	}
	return leaderHasQuorum(info.Cluster) && info.State.LastSeq < since
}

// peerSeenWithin is how recently a leader must have heard from a replica
// to count it as in touch: nats-server's own rule for a follower that
// names its leader current (two heartbeat intervals of 1 s).
const peerSeenWithin = 2 * time.Second

// leaderHasQuorum reports whether the leader that answered a stream info
// was in touch with a majority of the replicas when it answered, so its
// state is the stream's. A leader cut off from its peers goes on answering
// as leader, from a state that stopped, and names its replicas current
// until it has not heard from them for 10 s (its log has nothing they
// lack); it steps down only after 10-20 s. Meanwhile the majority elects
// another leader (4-9 s after its last heartbeat) and goes on, and a
// replica on the cut-off node reset the cursors handed out on the majority
// side (the cluster suite's leader partition: "poller-1 answered cursor
// 978 with reset (cursor 917)"). A replica the leader heard from within
// peerSeenWithin had not yet timed out on it, so no other leader existed.
// A stream without replicas (R1) has nobody to lose touch with.
func leaderHasQuorum(c *jetstream.ClusterInfo) bool {
	if c == nil || len(c.Replicas) == 0 {
		return true
	}
	if c.Leader == "" {
		return false
	}
	inTouch := 1 // the leader
	for _, r := range c.Replicas {
		if r != nil && r.Current && !r.Offline && r.Active <= peerSeenWithin {
			inTouch++
		}
	}
	return 2*inTouch > len(c.Replicas)+1
}

func (p *Poller) applyMsg(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		p.m.invalid.Inc()
		p.log.WithError(err).Warn("message without metadata skipped")
		return
	}
	seq := md.Sequence.Stream
	env, _, err := wire.DecodeMessage(msg.Subject(), msg.Headers(), msg.Data(), seq, md.Timestamp)
	if err != nil {
		p.m.invalid.Inc()
		p.log.WithError(err).WithField("seq", seq).Warn("invalid change skipped")
		p.idx.skip(seq)
	} else {
		p.idx.apply(env, md.Timestamp)
	}
	p.lag.Store(md.NumPending)
	if md.NumPending == 0 || seq >= p.replayTarget.Load() {
		p.markReady()
	}
}
