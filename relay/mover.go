// Leaving a NATS server that cannot serve the relay.

package relay

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// mover moves the relay's NATS connection to the next server of its pool
// when requests through it have failed for a while. A node cut off from its
// peers keeps its client connections up while nothing it is asked can be
// served (its leaders cannot commit, and once they step down nothing on its
// side answers), and the client never leaves it by itself: in the cluster
// suite both relays sat on the cut-off node and nothing reached Pusher for
// 13.9 s of a 15 s partition. The producer's publisher does the same for
// the api (producer.Publisher.failed).
//
// Only errors count: fetches that fail or time out, lease renewals and
// announcements that fail, readers that cannot be created. An empty fetch
// is no signal, since an idle stream fetches nothing too; a change fetched
// or a lease written (which needs the bucket's quorum) is a success and
// ends the failing streak.
type mover struct {
	conn *nats.Conn
	log  logrus.FieldLogger
	// after is how long requests must fail, with no success between, before
	// the connection moves; every is the least time between two moves.
	after, every time.Duration
	now          func() time.Time

	mu sync.Mutex
	// since is when the current failing streak began, last its latest
	// failure (zero: no streak); moved is the time of the last move.
	since, last, moved time.Time
}

// newMover moves conn after failures for twice window, at most once per
// window. A nil conn never moves.
func newMover(conn *nats.Conn, log logrus.FieldLogger, window time.Duration) *mover {
	return &mover{conn: conn, log: log, after: 2 * window, every: window, now: time.Now}
}

// succeeded ends the failing streak: the server serves the relay.
func (m *mover) succeeded() {
	m.mu.Lock()
	m.since, m.last = time.Time{}, time.Time{}
	m.mu.Unlock()
}

// failed notes a request that failed for a reason other than the relay's
// own cancellation, and moves the connection when the streak is long
// enough. Failures further apart than after do not make a streak: between
// them the relay went on without an error (an idle stream's empty fetches),
// so they say nothing of the server's state now. The healthy nodes fail too
// while they elect a leader, and the relay cannot tell them from a cut-off
// node, so the first move waits part of an election out; a move that lands
// on the cut-off node moves on a window later, and a success stops the
// moves. Never with a single server, where it would only reconnect to the
// same node.
func (m *mover) failed() {
	if m.conn == nil {
		return
	}
	now := m.now()
	m.mu.Lock()
	if m.since.IsZero() || now.Sub(m.last) > m.after {
		m.since = now
	}
	m.last = now
	if now.Sub(m.since) < m.after || now.Sub(m.moved) < m.every {
		m.mu.Unlock()
		return
	}
	if !m.conn.IsConnected() || len(m.conn.Servers()) < 2 {
		m.mu.Unlock()
		return // a reconnect is under way, or there is nowhere else to go
	}
	failing := now.Sub(m.since)
	m.moved = now
	m.mu.Unlock()
	m.log.WithFields(logrus.Fields{"server": m.conn.ConnectedUrlRedacted(), "failing": failing.Round(time.Millisecond).String()}).
		Warn("NATS server cannot serve the relay; moving to another server of the pool")
	// An error means the connection closed or began reconnecting
	// meanwhile: either way the next request finds out.
	_ = m.conn.ForceReconnect()
}
