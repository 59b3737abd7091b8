package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nostressplanner/liveupdates/ops"
)

// Dead-letter reason classes (the label values of dead_lettered_total).
const (
	reasonInvalid    = "invalid"     // not a valid change
	reasonRejected   = "rejected"    // Pusher (or its client) refused the event: 400, 413
	reasonMaxDeliver = "max_deliver" // delivered max-deliver times without success
)

type metrics struct {
	received       prometheus.Counter
	delivered      prometheus.Counter
	pusherEvents   prometheus.Counter
	batchSize      prometheus.Histogram
	coalesced      prometheus.Counter
	compressed     prometheus.Counter
	referenced     prometheus.Counter
	deadLettered   *prometheus.CounterVec
	dlqRefused     prometheus.Counter
	requestSeconds *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	pending        prometheus.Gauge
	ackPending     prometheus.Gauge
	held           prometheus.Gauge
	partitions     prometheus.Gauge
	latency        prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = ops.Namespace, "relay"
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "changes_received_total", Help: "Changes fetched from the stream (redeliveries included)."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "changes_delivered_total", Help: "Changes acked after Pusher accepted them (coalesced ones included)."}),
		pusherEvents: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "pusher_events_total", Help: "Events Pusher accepted."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_events", Help: "Events per Pusher batch request sent.",
			Buckets: []float64{1, 2, 3, 5, 8, 10}}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "coalesced_changes_total", Help: "Changes folded into a newer change of the same channel and type."}),
		compressed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "compressed_events_total", Help: "Events sent gzip+base64 because they were over Pusher's limit."}),
		referenced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "referenced_events_total", Help: "Events sent as a reference to the poller because even compressed they were over the limit."}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dead_lettered_total", Help: "Changes put on the dead-letter stream, by reason class."}, []string{"reason"}),
		dlqRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dead_letters_refused_total", Help: "Changes terminated without a dead letter because the dead-letter stream refused it (a JetStream 4xx answer)."}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "pusher_request_duration_seconds", Help: "Pusher request duration by status class (2xx, 4xx, 5xx, error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10)}, []string{"class"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "retries_total", Help: "Pusher requests to be sent again, by status class."}, []string{"class"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "consumer_pending_messages", Help: "Changes in the stream the relay consumer has not fetched yet (lag), sampled; in partitioned mode, the changes stored after the lowest partition checkpoint."}),
		ackPending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "consumer_ack_pending_messages", Help: "Changes fetched by any replica and not acked yet, sampled."}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "held_changes", Help: "Changes this process holds unacked."}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "partitions_owned", Help: "Partitions this replica owns (partitioned mode)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "publish_to_pusher_seconds", Help: "From a change's publish time (at) to Pusher accepting it.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	if err := ops.Register(reg, m.received, m.delivered, m.pusherEvents, m.batchSize, m.coalesced,
		m.compressed, m.referenced, m.deadLettered, m.dlqRefused, m.requestSeconds, m.retries, m.pending,
		m.ackPending, m.held, m.partitions, m.latency); err != nil {
		return nil, fmt.Errorf("relay metrics: %w", err)
	}
	for _, r := range []string{reasonInvalid, reasonRejected, reasonMaxDeliver} {
		m.deadLettered.WithLabelValues(r)
	}
	for _, c := range []string{"2xx", "4xx", "5xx", "error"} {
		m.requestSeconds.WithLabelValues(c)
		m.retries.WithLabelValues(c)
	}
	return m, nil
}
