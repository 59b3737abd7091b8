package pushercompat

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nostressplanner/liveupdates/ops"
)

// metrics of the server. Labels come from closed sets: status codes, the
// close reasons below, subscribe results.
type metrics struct {
	requests      *prometheus.CounterVec
	sockets       prometheus.Gauge
	opened        prometheus.Counter
	closed        *prometheus.CounterVec
	subscriptions *prometheus.CounterVec
	sent          prometheus.Counter
}

// Why a socket ended, the reason label of sockets_closed_total.
const (
	reasonClient       = "client"        // the client closed or went away
	reasonShutdown     = "shutdown"      // Close: 4200
	reasonSlowConsumer = "slow_consumer" // send queue full: 4100
	reasonPongTimeout  = "pong_timeout"  // no answer to the server's ping: 4201
	reasonWriteError   = "write_error"   // a write failed or timed out
	reasonFault        = "fault"         // CloseSockets
	reasonRefused      = "refused"       // unknown app or protocol: 40xx at the handshake
)

// subsystem names the role in every metric: liveupdates_pushercompat_….
const subsystem = "pushercompat"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "requests_total",
			Help: "HTTP API requests by answered status (dropped: no answer).",
		}, []string{"code"}),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "sockets",
			Help: "Open WebSocket connections past the handshake.",
		}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "sockets_opened_total",
			Help: "WebSocket connections that got connection_established.",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "sockets_closed_total",
			Help: "WebSocket connections ended, by reason (client, shutdown, slow_consumer, pong_timeout, write_error, fault, refused).",
		}, []string{"reason"}),
		subscriptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "subscriptions_total",
			Help: "Subscribe requests by result (ok, auth_error, invalid).",
		}, []string{"result"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: subsystem, Name: "frames_sent_total",
			Help: "Frames written to sockets (events, protocol messages).",
		}),
	}
	if err := ops.Register(reg, m.requests, m.sockets, m.opened, m.closed, m.subscriptions, m.sent); err != nil {
		return nil, err
	}
	return m, nil
}

func statusLabel(status int) string {
	if status == 0 {
		return "dropped"
	}
	return strconv.Itoa(status)
}
