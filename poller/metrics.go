package poller

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a request: a closed set, used as a label.
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

// Routes, also a label.
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
	requests         *prometheus.CounterVec
	reqByRoute       map[string]map[string]prometheus.Counter
	waiting          prometheus.Gauge
	streams          prometheus.Gauge
	sseSlowClosed    prometheus.Counter
	consumerRestarts prometheus.Counter
	invalid          prometheus.Counter
	busiest          [busiestRanks]prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, p *Poller) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveupdates_poller_requests_total",
			Help: "Poller HTTP requests by route and outcome.",
		}, []string{"route", "outcome"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "liveupdates_poller_long_polls_waiting",
			Help: "Long-poll requests currently waiting for a change.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "liveupdates_poller_sse_streams",
			Help: "Server-Sent Events streams currently open.",
		}),
		sseSlowClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveupdates_poller_sse_slow_closed_total",
			Help: "Server-Sent Events streams closed because a write missed LIVE_POLLER_SSE_WRITE_TIMEOUT (the client stopped reading).",
		}),
		consumerRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveupdates_poller_consumer_restarts_total",
			Help: "Times the ordered consumer was re-created from the applied seq.",
		}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveupdates_poller_invalid_messages_total",
			Help: "Stream messages skipped because they are not well-formed changes.",
		}),
	}
	busiest := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "liveupdates_poller_busiest_event_clients",
		Help: "Estimated polling clients of the most polled eventIds, by rank (1 is the busiest): requests per poll interval. The eventIds themselves are logged at debug level.",
	}, []string{"rank"})
	for i := range m.busiest {
		m.busiest[i] = busiest.WithLabelValues(strconv.Itoa(i + 1))
	}
	m.reqByRoute = make(map[string]map[string]prometheus.Counter, len(allRoutes))
	for _, r := range allRoutes {
		m.reqByRoute[r] = make(map[string]prometheus.Counter, len(allOutcomes))
		for _, o := range allOutcomes {
			m.reqByRoute[r][o] = m.requests.WithLabelValues(r, o)
		}
	}
	idx := p.idx
	gf := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	evictions := prometheus.NewDesc("liveupdates_poller_index_evictions_total",
		"Changes or eventIds dropped from the index, by reason.", []string{"reason"}, nil)
	cs := []prometheus.Collector{
		m.requests, m.waiting, m.streams, m.sseSlowClosed, m.consumerRestarts, m.invalid, busiest,
		gf("liveupdates_poller_index_event_ids", "EventIds held in memory.", func() float64 { return float64(idx.nEntries.Load()) }),
		gf("liveupdates_poller_index_max_event_ids", "Cap on eventIds held in memory (LIVE_POLLER_MAX_EVENTS).", func() float64 { return float64(p.cfg.MaxEvents) }),
		gf("liveupdates_poller_index_envelopes", "Changes held in memory.", func() float64 { return float64(idx.nEnvelopes.Load()) }),
		gf("liveupdates_poller_index_bytes", "Approximate bytes held by the index (envelopes and bookkeeping).", func() float64 { return float64(idx.nBytes.Load()) }),
		gf("liveupdates_poller_long_polls_parked", "Waiting long-polls held as parked connections (hijacked, no goroutine); the rest of liveupdates_poller_long_polls_waiting wait on the plain net/http path.", func() float64 { return float64(p.waits.nParked.Load()) }),
		gf("liveupdates_poller_applied_seq", "Stream seq of the last applied message.", func() float64 { return float64(idx.appliedSeq()) }),
		gf("liveupdates_poller_lag_messages", "Stream messages after the last applied one (stream last seq minus applied seq).", func() float64 { return float64(p.lag.Load()) }),
		gf("liveupdates_poller_active_clients", "Distinct clients (token or remote IP) seen in the last two poll intervals.", func() float64 {
			return float64(p.lim.active(p.now().Add(-2 * p.cfg.PollInterval).UnixNano()))
		}),
		collectorFunc{desc: evictions, collect: func(ch chan<- prometheus.Metric) {
			for r := range numEvictReasons {
				ch <- prometheus.MustNewConstMetric(evictions, prometheus.CounterValue, float64(idx.evictions[r].Load()), evictReasonNames[r])
			}
		}},
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) count(route, outcome string) { m.reqByRoute[route][outcome].Inc() }

func (m *metrics) setBusiest(top []busy) {
	for i := range m.busiest {
		v := 0.0
		if i < len(top) {
			v = float64(top[i].polls)
		}
		m.busiest[i].Set(v)
	}
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
