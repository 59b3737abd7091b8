package ops

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics counts and times a role's HTTP requests by route pattern and
// status code. It is the one instrumenting middleware: every role that
// serves routes registers them through its own HTTPMetrics, so the series
// are named for the role (liveupdates_api_…, liveupdates_poller_…) whether
// the role runs alone or inside `dev`.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// CodeHijacked is the code label of a request whose connection the handler
// took over (a parked long-poll, a WebSocket): its status, if any, is
// written later outside net/http, where the role counts it itself.
const CodeHijacked = "hijacked"

// NewHTTPMetrics returns the metrics of role's routes,
// liveupdates_<role>_http_requests_total{route,code} and
// liveupdates_<role>_http_request_duration_seconds{route}, registered on
// reg (nil registers nothing, for tests and tools).
func NewHTTPMetrics(reg prometheus.Registerer, role string) (*HTTPMetrics, error) {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: role, Name: "http_requests_total",
			Help: "HTTP requests by route pattern and status code (" + CodeHijacked + " when the connection was taken over).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: role, Name: "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern (hijacked requests are not timed).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
	}
	if err := Register(reg, m.requests, m.duration); err != nil {
		return nil, fmt.Errorf("%s http metrics: %w", role, err)
	}
	return m, nil
}

// Namespace prefixes every metric of the project.
const Namespace = "liveupdates"

// Register registers every collector on reg (nil registers nothing),
// returning the first error.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// Handle registers h on mux under pattern, instrumented with the pattern as
// its route label.
func (m *HTTPMetrics) Handle(mux *http.ServeMux, pattern string, h http.Handler) {
	mux.Handle(pattern, m.Wrap(pattern, h))
}

// HandleFunc is Handle for a function.
func (m *HTTPMetrics) HandleFunc(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	m.Handle(mux, pattern, h)
}

// Wrap instruments h under route, a label from a closed set (the pattern it
// is registered with, never the request's path).
func (m *HTTPMetrics) Wrap(route string, h http.Handler) http.Handler {
	timer := m.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, requests: m.requests, route: route}
		h.ServeHTTP(sw, r)
		if sw.hijacked {
			return // counted when hijacked
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		timer.Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
	})
}

// statusWriter records the status a handler answered with, and passes
// flushing, hijacking and deadlines (through Unwrap, for
// http.ResponseController) to the connection.
type statusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
	// A hijack is counted as it happens (the series is created then, not
	// for every route), before the handler can answer on the connection:
	// whoever got that answer finds it counted.
	requests *prometheus.CounterVec
	route    string
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush is here, not only behind Unwrap, because SSE handlers may check for
// http.Flusher directly.
func (s *statusWriter) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

// Hijack records that the handler took the connection over.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil {
		s.hijacked = true
		s.requests.WithLabelValues(s.route, CodeHijacked).Inc()
	} else if errors.Is(err, http.ErrNotSupported) {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	return c, rw, err
}
