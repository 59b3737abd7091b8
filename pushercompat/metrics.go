package pushercompat

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveupdates_pushercompat_requests_total",
			Help: "HTTP API requests by answered status (dropped: no answer).",
		}, []string{"code"}),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "liveupdates_pushercompat_sockets",
			Help: "Open WebSocket connections past the handshake.",
		}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveupdates_pushercompat_sockets_opened_total",
			Help: "WebSocket connections that got connection_established.",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveupdates_pushercompat_sockets_closed_total",
			Help: "WebSocket connections ended, by reason (client, shutdown, slow_consumer, pong_timeout, write_error, fault, refused).",
		}, []string{"reason"}),
		subscriptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveupdates_pushercompat_subscriptions_total",
			Help: "Subscribe requests by result (ok, auth_error, invalid).",
		}, []string{"result"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveupdates_pushercompat_frames_sent_total",
			Help: "Frames written to sockets (events, protocol messages).",
		}),
	}
	reg.MustRegister(m.requests, m.sockets, m.opened, m.closed, m.subscriptions, m.sent)
	return m
}

func statusLabel(status int) string {
	if status == 0 {
		return "dropped"
	}
	return strconv.Itoa(status)
}
