package producer

import (
	"errors"
	"fmt"
	"time"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// subsystem names the library's metrics: liveupdates_producer_….
const subsystem = "producer"

// Result labels of liveupdates_producer_changes_total: a closed set.
const (
	resultStored      = "stored"
	resultDuplicate   = "duplicate"
	resultInvalid     = "invalid"
	resultTooLarge    = "too_large"
	resultUnavailable = "unavailable"
	resultConflict    = "conflict"
	resultError       = "error"
)

var results = []string{resultStored, resultDuplicate, resultInvalid, resultTooLarge, resultUnavailable, resultConflict, resultError}

// typeOther labels every type outside wire.KnownTypes, so a publisher
// inventing types cannot grow the label set.
const typeOther = "other"

// Op labels of liveupdates_producer_publish_duration_seconds.
const (
	opSingle = "single"
	opBatch  = "batch"
)

// Metrics are the library's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	changes  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  prometheus.Counter
	// counters caches every (type, result) child, so counting a change
	// does no label lookup on the hot path.
	counters map[string][]prometheus.Counter
	single   prometheus.Observer
	batch    prometheus.Observer
}

// NewMetrics returns the producer metrics (liveupdates_producer_…),
// registered on reg (nil registers nothing). Registering them twice on one
// registry is an error: build them once per registry.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "changes_total",
			Help: "Changes published, by type (the known types, or other) and result (stored, duplicate, invalid, too_large, unavailable, conflict, error).",
		}, []string{"type", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "publish_duration_seconds",
			Help:    "Time from a Publish (op=single) or PublishBatch (op=batch) call to its return, retries included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "retries_total",
			Help: "Publish attempts repeated after a transient JetStream failure (per change).",
		}),
		counters: map[string][]prometheus.Counter{},
	}
	if err := ops.Register(reg, m.changes, m.duration, m.retries); err != nil {
		return nil, fmt.Errorf("producer metrics: %w", err)
	}
	for _, t := range append(wire.KnownTypes(), typeOther) {
		cs := make([]prometheus.Counter, len(results))
		for i, r := range results {
			cs[i] = m.changes.WithLabelValues(t, r)
		}
		m.counters[t] = cs
	}
	m.single = m.duration.WithLabelValues(opSingle)
	m.batch = m.duration.WithLabelValues(opBatch)
	return m, nil
}

func (m *Metrics) count(typ, result string, n int) {
	if m == nil {
		return
	}
	cs, ok := m.counters[typ]
	if !ok {
		cs = m.counters[typeOther]
	}
	for i, r := range results {
		if r == result {
			cs[i].Add(float64(n))
			return
		}
	}
}

func (m *Metrics) observe(op string, d time.Duration) {
	if m == nil {
		return
	}
	if op == opBatch {
		m.batch.Observe(d.Seconds())
		return
	}
	m.single.Observe(d.Seconds())
}

func (m *Metrics) retried(n int) {
	if m == nil {
		return
	}
	m.retries.Add(float64(n))
}

func resultOf(err error, duplicate bool) string {
	switch {
	case err == nil && duplicate:
		return resultDuplicate
	case err == nil:
		return resultStored
	case errors.Is(err, ErrInvalid):
		return resultInvalid
	case errors.Is(err, ErrTooLarge):
		return resultTooLarge
	case errors.Is(err, ErrUnavailable):
		return resultUnavailable
	case errors.Is(err, ErrConflict):
		return resultConflict
	default:
		return resultError
	}
}
