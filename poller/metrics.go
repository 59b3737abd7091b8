package poller

import (
	"strconv"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an answer: a closed set, used as a label.
const (
	outOK          = "ok"
	outNotModified = "not_modified"
	outReset       = "reset"
	outDeep        = "deep_resume"
	outTimeout     = "long_poll_timeout"
	outBadRequest  = "bad_request"
	outUnauth      = "unauthorized"
	outForbidden   = "forbidden"
	outNotFound    = "not_found"
	outRateLimited = "rate_limited"
	outUnavailable = "unavailable"
)

// Routes of the answers counter, also a label (short names: the HTTP
// metrics carry the patterns).
const (
	routeUpdates   = "updates"
	routeStream    = "stream"
	routeMessage   = "message"
	routePreflight = "preflight"
	routeConfig    = "config"
	routeAuth      = "pusher_auth"
	routeClient    = "client"
)

var allOutcomes = []string{outOK, outNotModified, outReset, outDeep, outTimeout, outBadRequest, outUnauth, outForbidden, outNotFound, outRateLimited, outUnavailable}
var allRoutes = []string{routeUpdates, routeStream, routeMessage, routePreflight, routeConfig, routeAuth, routeClient}

// busiestRanks is how many of the most polled eventIds get a gauge, by rank
// (never by eventId, which would be an unbounded label).
const busiestRanks = 10

type metrics struct {
	// http counts and times every request by route pattern and status
	// code (liveupdates_poller_http_…, from ops).
	http *ops.HTTPMetrics
	// answers counts what the poller answered, by route and outcome: what
	// the status code does not tell (a 304 from the cheap path or after a
	// wait, a deep page, a reset) and the answers to parked long-polls,
	// which http counts as hijacked when they park.
	answers          *prometheus.CounterVec
	answerByRoute    map[string]map[string]prometheus.Counter
	waiting          prometheus.Gauge
	streams          prometheus.Gauge
	parkedStreams    prometheus.Gauge
	sseSlowClosed    prometheus.Counter
	consumerRestarts prometheus.Counter
	invalid          prometheus.Counter
	busiest          [busiestRanks]prometheus.Gauge
}

const subsystem = "poller"

func newMetrics(reg prometheus.Registerer, p *Poller) (*metrics, error) {
	hm, err := ops.NewHTTPMetrics(reg, subsystem)
	if err != nil {
		return nil, err
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ops.Namespace, Subsystem: subsystem, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ops.Namespace, Subsystem: subsystem, Name: name, Help: help})
	}
	gaugeFunc := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ops.Namespace, Subsystem: subsystem, Name: name, Help: help}, f)
	}
	m := &metrics{
		http: hm,
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "answers_total",
			Help: "Poller answers by route and outcome, parked long-polls included (liveupdates_poller_http_requests_total has the status codes).",
		}, []string{"route", "outcome"}),
		waiting:          gauge("long_polls_waiting", "Long-poll requests currently waiting for a change."),
		streams:          gauge("sse_streams", "Server-Sent Events streams currently open."),
		parkedStreams:    gauge("sse_streams_parked", "Open Server-Sent Events streams held as parked connections (hijacked, no goroutine); the rest of liveupdates_poller_sse_streams hold a handler goroutine."),
		sseSlowClosed:    counter("sse_slow_closed_total", "Server-Sent Events streams closed because a write missed LIVE_POLLER_SSE_WRITE_TIMEOUT (the client stopped reading)."),
		consumerRestarts: counter("consumer_restarts_total", "Times the ordered consumer was re-created from the applied seq."),
		invalid:          counter("invalid_messages_total", "Stream messages skipped because they are not well-formed changes."),
	}
	busiest := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ops.Namespace, Subsystem: subsystem, Name: "busiest_event_clients",
		Help: "Estimated polling clients of the most polled eventIds, by rank (1 is the busiest): requests per poll interval. The eventIds themselves are logged at debug level.",
	}, []string{"rank"})
	for i := range m.busiest {
		m.busiest[i] = busiest.WithLabelValues(strconv.Itoa(i + 1))
	}
	m.answerByRoute = make(map[string]map[string]prometheus.Counter, len(allRoutes))
	for _, r := range allRoutes {
		m.answerByRoute[r] = make(map[string]prometheus.Counter, len(allOutcomes))
		for _, o := range allOutcomes {
			m.answerByRoute[r][o] = m.answers.WithLabelValues(r, o)
		}
	}
	idx := p.idx
	cs := []prometheus.Collector{
		m.answers, m.waiting, m.streams, m.parkedStreams, m.sseSlowClosed, m.consumerRestarts, m.invalid, busiest,
		gaugeFunc("index_event_ids", "EventIds held in memory.", func() float64 { return float64(idx.nEntries.Load()) }),
		gaugeFunc("index_max_event_ids", "Cap on eventIds held in memory (LIVE_POLLER_MAX_EVENTS).", func() float64 { return float64(p.cfg.MaxEvents) }),
		gaugeFunc("index_envelopes", "Changes held in memory.", func() float64 { return float64(idx.nEnvelopes.Load()) }),
		gaugeFunc("index_bytes", "Approximate bytes held by the index (envelopes and bookkeeping).", func() float64 { return float64(idx.nBytes.Load()) }),
		gaugeFunc("long_polls_parked", "Waiting long-polls held as parked connections (hijacked, no goroutine); the rest of liveupdates_poller_long_polls_waiting wait on the plain net/http path.", func() float64 { return float64(p.waits.nParked.Load()) }),
		gaugeFunc("applied_seq", "Stream seq of the last applied message.", func() float64 { return float64(idx.appliedSeq()) }),
		gaugeFunc("lag_messages", "Stream messages after the last applied one (stream last seq minus applied seq).", func() float64 { return float64(p.lag.Load()) }),
		gaugeFunc("active_clients", "Distinct clients (token or remote IP) seen in the last two poll intervals.", func() float64 {
			return float64(p.lim.active(p.now().Add(-2 * p.cfg.PollInterval).UnixNano()))
		}),
	}
	for r := range numEvictReasons {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "index_evictions_total",
			Help:        "Changes or eventIds dropped from the index, by reason.",
			ConstLabels: prometheus.Labels{"reason": evictReasonNames[r]},
		}, func() float64 { return float64(idx.evictions[r].Load()) }))
	}
	if err := ops.Register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) count(route, outcome string) { m.answerByRoute[route][outcome].Inc() }

func (m *metrics) setBusiest(top []busy) {
	for i := range m.busiest {
		v := 0.0
		if i < len(top) {
			v = float64(top[i].polls)
		}
		m.busiest[i].Set(v)
	}
}
