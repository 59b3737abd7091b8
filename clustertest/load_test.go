package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/nostressplanner/liveupdates/pushercompat"
)

// Load shape: modest by default, the suite runs on two busy cores beside
// three NATS nodes and six role processes: each eventId gets about 6
// changes a second. A scenario may ask for more (shape).
const (
	loadRate    = 150 // changes per second, all writers together
	loadWriters = 8
	loadEvents  = 24 // eventIds, each followed by a long-poll client per poller
)

// shape is a scenario's load: a rate, the writers that share it, and a
// total after which the writers stop on their own (zero: until stopped).
type shape struct {
	rate, writers, total int
}

// ack is what the ingest API answered 2xx for.
type ack struct {
	eventID string
	key     string
}

// load publishes changes through both api processes, retrying a change on
// 5xx and transport errors with the same Idempotency-Key until it is
// acknowledged, and records every acknowledged seq.
type load struct {
	c      *cluster
	events []string
	http   *http.Client
	lim    *rate.Limiter

	mu          sync.Mutex
	started     time.Time
	published   int
	acked       map[uint64]ack
	keySeq      map[string]uint64
	doubles     []string // a key acknowledged under two seqs
	fiveXX      int
	fiveXXLog   []string
	fiveXXBy    map[string]int
	transport   int
	refused     []string // 4xx: a bug in the suite or the api
	unacked     int
	maxAckDelay time.Duration // longest time one change took to be acknowledged, retries included
	slowest     string        // which change that was, where and when
	lastAck     time.Time

	total int // writers stop after publishing this many; zero: no bound

	stopWriting context.CancelFunc
	wg          sync.WaitGroup
}

func startLoad(ctx context.Context, c *cluster, sh shape) *load {
	if sh.rate == 0 {
		sh.rate, sh.writers = loadRate, loadWriters
	}
	l := &load{
		c:        c,
		http:     &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		lim:      rate.NewLimiter(rate.Limit(sh.rate), sh.writers),
		total:    sh.total,
		acked:    map[uint64]ack{},
		fiveXXBy: map[string]int{},
		keySeq:   map[string]uint64{},
	}
	for i := range loadEvents {
		l.events = append(l.events, fmt.Sprintf("c%02d", i))
	}
	l.started = time.Now()
	wctx, stop := context.WithCancel(ctx)
	l.stopWriting = stop
	for w := range sh.writers {
		l.wg.Go(func() { l.writer(wctx, ctx, w) })
	}
	return l
}

// stop ends the writers: no new change is started, and a change in flight
// is retried until acknowledged or ctx (the scenario) ends.
func (l *load) stop() {
	l.stopWriting()
	l.wg.Wait()
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *load) writer(wctx, ctx context.Context, w int) {
	for n := 0; ; n++ {
		if l.lim.Wait(wctx) != nil {
			return
		}
		eventID := l.events[rand.N(len(l.events))]
		key := fmt.Sprintf("w%d-%d", w, n)
		l.mu.Lock()
		if l.total > 0 && l.published >= l.total {
			l.mu.Unlock()
			return
		}
		l.published++
		l.mu.Unlock()
		l.publish(ctx, w+n, eventID, key)
	}
}

// publish sends one change until it is acknowledged. Attempts alternate
// between the two api processes, as a load balancer would retry elsewhere.
func (l *load) publish(ctx context.Context, pick int, eventID, key string) {
	start := time.Now()
	body := fmt.Appendf(nil, `{"key":%q}`, key)
	for attempt := 0; ; attempt++ {
		api := l.c.apis[(pick+attempt)%len(l.c.apis)]
		status, seq, msg, err := l.post(ctx, api, eventID, key, body)
		switch {
		case err != nil:
			l.mu.Lock()
			l.transport++
			l.mu.Unlock()
		case status >= 500:
			l.mu.Lock()
			l.fiveXX++
			l.fiveXXBy[api.name]++
			if len(l.fiveXXLog) < 8 {
				l.fiveXXLog = append(l.fiveXXLog, fmt.Sprintf("%s at +%.1fs: %d %s", api.name, time.Since(l.started).Seconds(), status, msg))
			}
			l.mu.Unlock()
		case status == http.StatusAccepted || status == http.StatusOK:
			l.mu.Lock()
			if prev, ok := l.keySeq[key]; ok && prev != seq {
				l.doubles = append(l.doubles, fmt.Sprintf("key %s stored as seq %d and %d", key, prev, seq))
			}
			l.keySeq[key] = seq
			l.acked[seq] = ack{eventID: eventID, key: key}
			if d := time.Since(start); d > l.maxAckDelay {
				l.maxAckDelay = d
				l.slowest = fmt.Sprintf("key %s, sent at +%.1fs, acknowledged by %s after %d attempts and %.2f s",
					key, start.Sub(l.started).Seconds(), api.name, attempt+1, d.Seconds())
			}
			l.lastAck = time.Now()
			l.mu.Unlock()
			return
		default:
			l.mu.Lock()
			l.refused = append(l.refused, fmt.Sprintf("%s: %d %s", api.name, status, msg))
			l.mu.Unlock()
			return
		}
		// A short pause before the retry, as a client would; the scenario's
		// end bounds the retries.
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.unacked++
			l.mu.Unlock()
			return
		case <-time.After(time.Duration(min(attempt+1, 5)) * 100 * time.Millisecond):
		}
	}
}

func (l *load) post(ctx context.Context, api *member, eventID, key string, body []byte) (status int, seq uint64, msg string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.base()+"/v1/events/"+eventID+"/vote.updated", bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, "", err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, 0, string(bytes.TrimSpace(b)), nil
	}
	var res struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Seq == 0 {
		return resp.StatusCode, 0, string(b), fmt.Errorf("2xx without a seq: %s", b)
	}
	return resp.StatusCode, res.Seq, "", nil
}

// envelopeHead is the part of an envelope the checks read.
type envelopeHead struct {
	Seq     uint64    `json:"seq"`
	EventID string    `json:"eventId"`
	At      time.Time `json:"at"`
}

// pusherWatch follows every event the Pusher-compatible server accepts, in
// acceptance order, and counts per channel: first arrivals, duplicates, and
// reorders (a first arrival below a seq its channel already received).
type pusherWatch struct {
	mu        sync.Mutex
	first     map[uint64]time.Time
	maxSeq    map[string]uint64
	dups      int
	reorders  int
	examples  []string
	bad       []string
	latencies []time.Duration
	last      time.Time
	maxGap    time.Duration
	gapEnd    time.Time

	cancel func()
	done   chan struct{}
}

func watchPusher(s *pushercompat.Server) *pusherWatch {
	pw := &pusherWatch{first: map[uint64]time.Time{}, maxSeq: map[string]uint64{}, done: make(chan struct{})}
	ch, cancel := s.Subscribe()
	pw.cancel = cancel
	go func() {
		defer close(pw.done)
		for ev := range ch {
			pw.add(ev)
		}
	}()
	return pw
}

func (pw *pusherWatch) stop() {
	pw.cancel()
	<-pw.done
}

func (pw *pusherWatch) add(ev pushercompat.Event) {
	var env envelopeHead
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if err := json.Unmarshal([]byte(ev.Data), &env); err != nil || env.Seq == 0 {
		pw.bad = append(pw.bad, fmt.Sprintf("%s: unreadable envelope %.80q", ev.Channel, ev.Data))
		return
	}
	if _, seen := pw.first[env.Seq]; seen {
		pw.dups++
		return
	}
	pw.first[env.Seq] = ev.At
	if top := pw.maxSeq[ev.Channel]; env.Seq < top {
		pw.reorders++
		if len(pw.examples) < 5 {
			pw.examples = append(pw.examples, fmt.Sprintf("%s got seq %d after %d", ev.Channel, env.Seq, top))
		}
	} else {
		pw.maxSeq[ev.Channel] = env.Seq
	}
	if !env.At.IsZero() {
		pw.latencies = append(pw.latencies, ev.At.Sub(env.At))
	}
	if !pw.last.IsZero() && ev.At.Sub(pw.last) > pw.maxGap {
		pw.maxGap, pw.gapEnd = ev.At.Sub(pw.last), ev.At
	}
	pw.last = ev.At
}

// gapWithin is the longest time during [from, to] without a change
// reaching Pusher for the first time: a gap that began in the window counts
// in full, up to the first delivery after it, even past to.
func (pw *pusherWatch) gapWithin(from, to time.Time) time.Duration {
	pw.mu.Lock()
	at := make([]time.Time, 0, len(pw.first))
	for _, t := range pw.first {
		at = append(at, t)
	}
	pw.mu.Unlock()
	slices.SortFunc(at, time.Time.Compare)
	var gap time.Duration
	prev := from
	for _, t := range at {
		if t.Before(from) {
			continue
		}
		gap = max(gap, t.Sub(prev))
		if t.After(to) {
			return gap
		}
		prev = t
	}
	// Nothing reached Pusher after the window (yet): the gap runs to now.
	return max(gap, time.Since(prev))
}

// poller clients: one per (eventId, poller) pair, each long-polling from
// its cursor and alternating between the two poller processes on every
// request, so every cursor is answered by both replicas in turn.
type pollClient struct {
	eventID string
	home    int

	mu       sync.Mutex
	seen     map[uint64]bool
	last     uint64
	dups     int
	reorders int
	examples []string
	resets   int
	errors   int // transport errors and 5xx, after which the other replica is asked
}

type pollers struct {
	c       *cluster
	http    *http.Client
	clients []*pollClient
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func startPollers(ctx context.Context, c *cluster, events []string) *pollers {
	ctx, cancel := context.WithCancel(ctx)
	ps := &pollers{
		c:      c,
		http:   &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
		cancel: cancel,
	}
	for _, e := range events {
		for home := range c.pollers {
			pc := &pollClient{eventID: e, home: home, seen: map[uint64]bool{}}
			ps.clients = append(ps.clients, pc)
			ps.wg.Go(func() { ps.follow(ctx, pc) })
		}
	}
	return ps
}

func (ps *pollers) stop() {
	ps.cancel()
	ps.wg.Wait()
}

type updates struct {
	Reset  bool           `json:"reset"`
	Cursor string         `json:"cursor"`
	Events []envelopeHead `json:"events"`
}

func (ps *pollers) follow(ctx context.Context, pc *pollClient) {
	cursor := "0"
	for i := pc.home; ctx.Err() == nil; i++ {
		p := ps.c.pollers[i%len(ps.c.pollers)]
		u, err := ps.get(ctx, p, pc.eventID, cursor)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			pc.mu.Lock()
			pc.errors++
			pc.mu.Unlock()
			// The next request goes to the other replica; pause briefly so
			// a replica that is down is not hammered.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		pc.mu.Lock()
		if u.Reset {
			pc.resets++
			if len(pc.examples) < 3 {
				pc.examples = append(pc.examples, fmt.Sprintf("poll client %s/%d: %s answered cursor %s with reset (cursor %s) at %s",
					pc.eventID, pc.home, p.name, cursor, u.Cursor, time.Now().Format("15:04:05.000")))
			}
		}
		for _, e := range u.Events {
			switch {
			case pc.seen[e.Seq]:
				pc.dups++
			case e.Seq < pc.last:
				pc.reorders++
				if len(pc.examples) < 3 {
					pc.examples = append(pc.examples, fmt.Sprintf("poll client %s/%d got seq %d after %d", pc.eventID, pc.home, e.Seq, pc.last))
				}
			}
			pc.seen[e.Seq] = true
			pc.last = max(pc.last, e.Seq)
		}
		pc.mu.Unlock()
		if u.Cursor != "" {
			cursor = u.Cursor
		}
	}
}

func (ps *pollers) get(ctx context.Context, p *member, eventID, cursor string) (updates, error) {
	var u updates
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base()+"/v1/events/"+eventID+"/updates?since="+cursor+"&wait=10", nil)
	if err != nil {
		return u, err
	}
	resp, err := ps.http.Do(req)
	if err != nil {
		return u, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return u, err
	}
	if resp.StatusCode != http.StatusOK {
		return u, fmt.Errorf("%s: %s %s", p.name, resp.Status, b)
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return u, fmt.Errorf("%s: %w: %s", p.name, err, b)
	}
	return u, nil
}

// row is one scenario's line of the table.
type row struct {
	name                     string
	published, acked         int
	delivered                int
	lostPusher, lostPoll     int
	dups, reorders           int
	pollReorders, pollResets int
	fiveXX, transport        int
	unacked                  int
	// problems that fail the scenario whatever else it shows: 4xx
	// answers, a key stored twice, unreadable envelopes, processes that
	// exited on their own.
	refused, doubles, bad, crashes int
	gap, p99, maxLatency           time.Duration
	maxAck                         time.Duration
	took                           time.Duration
	notes                          []string
}

func tableHeader() string {
	return fmt.Sprintf("%-16s %9s %6s %9s %5s %9s %5s %8s %13s %6s %4s %8s %8s %8s %8s %8s %5s",
		"scenario", "published", "acked", "delivered", "lost", "lost_poll", "dups", "reorders", "poll_reorders", "resets", "5xx", "conn_err", "gap", "p99", "max_lat", "max_ack", "took")
}

func (r row) String() string {
	return fmt.Sprintf("%-16s %9d %6d %9d %5d %9d %5d %8d %13d %6d %4d %8d %8s %8s %8s %8s %5s",
		r.name, r.published, r.acked, r.delivered, r.lostPusher, r.lostPoll, r.dups, r.reorders, r.pollReorders,
		r.pollResets, r.fiveXX, r.transport, secs(r.gap), secs(r.p99), secs(r.maxLatency), secs(r.maxAck), secs(r.took.Truncate(time.Second)))
}

// secs prints a duration as seconds with two decimals: the table's columns
// stay aligned whatever the magnitude.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// tally builds the row from what the load, the Pusher watch and the poll
// clients saw. Call it after all three stopped.
func tally(name string, l *load, pw *pusherWatch, ps *pollers) row {
	l.mu.Lock()
	defer l.mu.Unlock()
	pw.mu.Lock()
	defer pw.mu.Unlock()
	r := row{
		name: name, published: l.published, acked: len(l.acked), delivered: len(pw.first),
		dups: pw.dups, reorders: pw.reorders, fiveXX: l.fiveXX, transport: l.transport, unacked: l.unacked,
		gap: pw.maxGap, maxAck: l.maxAckDelay,
		refused: len(l.refused), doubles: len(l.doubles), bad: len(pw.bad),
	}
	for seq := range l.acked {
		if _, ok := pw.first[seq]; !ok {
			r.lostPusher++
		}
	}
	for _, pc := range ps.clients {
		pc.mu.Lock()
		for seq, a := range l.acked {
			if a.eventID == pc.eventID && !pc.seen[seq] {
				r.lostPoll++
			}
		}
		r.pollReorders += pc.reorders
		r.pollResets += pc.resets
		r.notes = append(r.notes, pc.examples...)
		pc.mu.Unlock()
	}
	if n := len(pw.latencies); n > 0 {
		lat := slices.Clone(pw.latencies)
		slices.Sort(lat)
		r.p99 = lat[min(n-1, n*99/100)]
		r.maxLatency = lat[n-1]
	}
	if d := l.lastAck.Sub(l.started); d > 0 {
		r.notes = append(r.notes, fmt.Sprintf("load: %d changes acknowledged in %.1f s (%.0f/s); the slowest: %s", len(l.acked), d.Seconds(), float64(len(l.acked))/d.Seconds(), l.slowest))
	}
	r.notes = append(r.notes, pw.examples...)
	if l.fiveXX > 0 {
		r.notes = append(r.notes, fmt.Sprintf("5xx by process: %v (first ones below)", l.fiveXXBy))
	}
	r.notes = append(r.notes, l.fiveXXLog...)
	r.notes = append(r.notes, l.doubles...)
	r.notes = append(r.notes, l.refused...)
	r.notes = append(r.notes, pw.bad...)
	return r
}
