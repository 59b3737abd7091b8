package pushercompat

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxBodyBytes bounds what one request may send. Pusher does not document a
// body limit; this is far above any valid request (MaxBatch events whose
// data is fully \u-escaped, plus names) so only garbage hits it.
func (l limits) maxBodyBytes() int64 {
	return int64(1<<20) + int64(l.maxBatch)*int64(l.maxPayload)*6
}

// serveHTTP is the REST API: faults first (as a network or a proxy in front
// of Pusher would act), then routing, signature, body, rule, and recording.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	at := s.now()
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.mu.Unlock()
	ex := Exchange{Request: n, Method: r.Method, Path: r.URL.Path, At: at}

	if s.faults.outageNow() {
		s.finish(ex, 0, "dropped: outage")
		drop(w)
		return
	}
	// Read the body before waiting: only then does net/http watch the
	// connection and cancel the request context when the client leaves.
	body, readErr := readBody(r, s.lim.maxBodyBytes())
	if d := s.faults.latencyNow(); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			s.finish(ex, 0, "client went away during latency")
			return
		case <-s.done:
			timer.Stop()
			s.finish(ex, 0, "server closed during latency")
			return
		}
		// The outage may have begun while the request waited.
		if s.faults.outageNow() {
			s.finish(ex, 0, "dropped: outage")
			drop(w)
			return
		}
	}
	if f, ok := s.faults.take(at); ok {
		s.answerFault(w, ex, f)
		return
	}

	evs, apiErr := s.handle(r, body, readErr, n, at)
	if apiErr != nil {
		s.finish(ex, apiErr.status, apiErr.msg)
		writeText(w, apiErr.status, apiErr.msg)
		return
	}
	s.store.add(evs)
	ex.Events = len(evs)
	s.finish(ex, http.StatusOK, "")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "{}") //nolint:errcheck // the client going away is not the server's error
}

// readBody reads at most limit bytes; more is a 413.
func readBody(r *http.Request, limit int64) ([]byte, *apiError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, badRequest("Reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, msg: "Request body too large"}
	}
	return body, nil
}

// handle runs every check of a request and returns the events to record.
func (s *Server) handle(r *http.Request, body []byte, readErr *apiError, n int, at time.Time) ([]Event, *apiError) {
	ep, apiErr := s.route(r)
	if apiErr != nil {
		return nil, apiErr
	}
	if readErr != nil {
		return nil, readErr
	}
	if apiErr := verify(s.creds, r.Method, r.URL.Path, r.URL.RawQuery, body, at); apiErr != nil {
		return nil, apiErr
	}
	pubs, apiErr := parse(ep, body, s.lim)
	if apiErr != nil {
		return nil, apiErr
	}
	evs := make([]Event, len(pubs))
	for i, p := range pubs {
		evs[i] = Event{Channel: p.channel, Name: p.name, Data: p.data, SocketID: p.socketID, At: at, Request: n}
	}
	if rule := s.faults.rule(); rule != nil {
		for _, e := range evs {
			if status, msg := rule(e); status != 0 {
				if msg == "" {
					msg = http.StatusText(status)
				}
				return nil, &apiError{status: status, msg: msg}
			}
		}
	}
	return evs, nil
}

// route maps the path to an endpoint: 404 for other paths and other apps
// (Pusher looks the app up before it can check a signature), 405 for
// methods other than POST.
func (s *Server) route(r *http.Request) (endpoint, *apiError) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/apps/")
	app, tail, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return 0, &apiError{status: http.StatusNotFound, msg: "Not found"}
	}
	var ep endpoint
	switch tail {
	case "events":
		ep = endpointEvents
	case "batch_events":
		ep = endpointBatch
	default:
		return 0, &apiError{status: http.StatusNotFound, msg: "Not found"}
	}
	if app != s.appID {
		return 0, &apiError{status: http.StatusNotFound, msg: "Unknown app: " + app}
	}
	if r.Method != http.MethodPost {
		return 0, &apiError{status: http.StatusMethodNotAllowed, msg: "Method not allowed: use POST"}
	}
	return ep, nil
}

func (s *Server) answerFault(w http.ResponseWriter, ex Exchange, f Fault) {
	if f.Drop {
		s.finish(ex, 0, "dropped: fault")
		drop(w)
		return
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body := f.Body
	if body == "" {
		body = http.StatusText(status)
	}
	if f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	s.finish(ex, status, body)
	writeText(w, status, body)
}

// finish records the exchange (and counts a 200) before the answer is
// written, so a client that has its answer also sees it in Exchanges.
func (s *Server) finish(ex Exchange, status int, msg string) {
	ex.Status, ex.Message = status, msg
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == http.StatusOK {
		s.accepted++
	}
	s.exchanges = trimOldest(append(s.exchanges, ex), s.recordLimit)
	s.met.requests.WithLabelValues(statusLabel(status)).Inc()
}

// writeText answers like Pusher: a plain-text body.
func writeText(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg) //nolint:errcheck // the client going away is not the server's error
}

// drop closes the connection with no answer. Without a hijackable
// connection (HTTP/2), aborting the handler has the same effect.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			// Closing is the point; an error here means it is closed already.
			conn.Close() //nolint:errcheck
			return
		}
	}
	panic(http.ErrAbortHandler)
}
