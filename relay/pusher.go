package relay

import (
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	pusher "github.com/pusher/pusher-http-go/v5"
)

// outcome classifies one Pusher request by what its HTTP exchange said,
// never by the library's error text.
type outcome int

const (
	accepted  outcome = iota // 2xx: ack
	retryable                // 429, 5xx, 408, timeout, connection error: back off, hold
	rejected                 // 400, 413, other 4xx, or refused by the client library: dead-letter
	refused                  // 401, 403, 404: configuration; stop, hold, fail readiness
)

// statusClass is the closed label set of the request duration metric.
func statusClass(status int, transportErr bool) string {
	switch {
	case transportErr || status == 0:
		return "error"
	case status < 300:
		return "2xx"
	case status < 500:
		return "4xx"
	default:
		return "5xx"
	}
}

// exchange is what the recording transport saw of one request.
type exchange struct {
	called     bool
	status     int
	retryAfter time.Duration
	err        error
}

// recorder wraps a Transport and keeps what the last request answered.
// pusher-http-go takes no context and reports statuses only as text, so the
// relay gives each sequential lane its own recorder and reads it after each
// call.
type recorder struct {
	base http.RoundTripper
	now  func() time.Time
	mu   sync.Mutex
	last exchange
}

func (rec *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rec.base.RoundTrip(req)
	ex := exchange{called: true, err: err}
	if resp != nil {
		ex.status = resp.StatusCode
		ex.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), rec.now())
	}
	rec.mu.Lock()
	rec.last = ex
	rec.mu.Unlock()
	return resp, err
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	rec.last = exchange{}
	rec.mu.Unlock()
}

func (rec *recorder) get() exchange {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.last
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// classify turns a TriggerBatch result and the recorded exchange into an
// outcome. callErr is non-nil whenever the library reported a failure.
func classify(callErr error, ex exchange) outcome {
	switch {
	case callErr == nil:
		return accepted
	case !ex.called:
		// The library refused the batch before sending it (its own
		// validation): sending it again cannot help.
		return rejected
	case ex.err != nil || ex.status == 0:
		return retryable
	}
	switch s := ex.status; {
	case s >= 200 && s < 300:
		// The status was fine but reading the body failed (a timeout
		// mid-body): whether Pusher took it is unknown, so send again;
		// clients drop the duplicate by id.
		return retryable
	case s == http.StatusTooManyRequests, s == http.StatusRequestTimeout, s == http.StatusTooEarly, s >= 500:
		return retryable
	case s == http.StatusUnauthorized, s == http.StatusForbidden, s == http.StatusNotFound:
		return refused
	default:
		return rejected
	}
}

// laneClient is one lane's Pusher client with its own recorder. The base
// transport is shared, so connections are pooled across lanes.
type laneClient struct {
	client *pusher.Client
	rec    *recorder
}

func newLaneClient(cfg Config, base *http.Client, transport http.RoundTripper, now func() time.Time) *laneClient {
	rec := &recorder{base: transport, now: now}
	hc := &http.Client{
		Transport:     rec,
		Timeout:       base.Timeout,
		CheckRedirect: base.CheckRedirect,
		Jar:           base.Jar,
	}
	if hc.Timeout == 0 {
		hc.Timeout = cfg.Timeout
	}
	return &laneClient{
		rec: rec,
		client: &pusher.Client{
			AppID:                       cfg.AppID,
			Key:                         cfg.Key,
			Secret:                      cfg.Secret,
			Cluster:                     cfg.Cluster,
			Host:                        cfg.Host,
			Secure:                      cfg.Secure,
			HTTPClient:                  hc, // never nil: the library's lazy default races
			OverrideMaxMessagePayloadKB: cfg.MaxPayloadKB,
		},
	}
}

// result of one request.
type result struct {
	outcome  outcome
	exchange exchange
	err      error
	duration time.Duration
}

// send posts one batch (1 to 10 events, never empty) and classifies it.
func (lc *laneClient) send(events []*outEvent, now func() time.Time) result {
	batch := make([]pusher.Event, len(events))
	for i, ev := range events {
		batch[i] = pusher.Event{Channel: ev.channel, Name: ev.name, Data: ev.data}
		if ev.socketID != "" {
			s := ev.socketID
			batch[i].SocketID = &s
		}
	}
	lc.rec.reset()
	start := now()
	_, err := lc.client.TriggerBatch(batch)
	ex := lc.rec.get()
	ex.err = redact(ex.err)
	return result{outcome: classify(err, ex), exchange: ex, err: redact(err), duration: now().Sub(start)}
}

// signedParam matches the query parameters that sign a Pusher request (and
// name its key): a *url.Error from the HTTP client quotes the whole URL,
// and a signature in a log line is a replayable request for its timestamp's
// window.
var signedParam = regexp.MustCompile(`(?i)\b(auth_signature|auth_key|body_md5)=[^&\s"']*`)

// redactURLs hides the signing parameters of any Pusher URL in s.
func redactURLs(s string) string { return signedParam.ReplaceAllString(s, "${1}=REDACTED") }

// redact returns err with Pusher's signing parameters hidden from its text;
// errors.Is and errors.As still see the original.
func redact(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{err: err, msg: redactURLs(err.Error())}
}

type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
