package producer

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// CodeNotConfigured answers POST /v1/tokens (status 501) when no poll
// secret is configured: the deployment chose not to offer poll tokens, so
// retrying will not help, unlike "unavailable".
const CodeNotConfigured = "not_configured"

// Route labels of the liveupdates_api_* metrics: a closed set.
const (
	routeEvent   = "event"
	routePublish = "publish"
	routeTokens  = "tokens"
	routeOther   = "other"
)

// maxTokenBody bounds a POST /v1/tokens body.
const maxTokenBody = 4 << 10

// APIDeps are the API's collaborators.
type APIDeps struct {
	// Publisher stores changes. Required.
	Publisher *Publisher
	// Log receives the API's logs. Nil means none.
	Log logrus.FieldLogger
	// Registerer gets the liveupdates_api_* metrics. Nil means none.
	Registerer prometheus.Registerer
	// Now is the clock for rate limits and token expiry. Nil means time.Now.
	Now func() time.Time
}

// API is the ingest HTTP API:
//
//	POST /v1/events/{eventId}/{type}  body = data JSON            -> 202 {"id","seq"}
//	POST /v1/publish                  body = [{"eventId","type","data","id"?,"socketId"?}] -> {"results":[...]}
//	POST /v1/tokens                   body = {"eventId","ttl"?}   -> 200 {"token","expiresAt"}
//
// Every route needs Authorization: Bearer <key>; a request without a valid
// one is answered 401 before its body is read, and its connection closed.
// Errors are {"error":{"code","message"}}: 400 invalid input, 401 no or
// unknown key, 408 a body not received within APIConfig.BodyTimeout, 409
// idempotency_conflict for an id stored before with another type or data,
// 413 over a size limit, 429 over the key's rate (Retry-After), 503 when
// JetStream could not store (Retry-After), 501 not_configured for tokens
// without LIVE_POLL_SECRET.
//
// Change ids are scoped per (API key, eventId): the dedup key is
// wire.DedupID(keyScope(key), eventId, id), so no two keys or eventIds ever
// share one. Idempotency holds within the stream's duplicate window only.
//
// The batch is all or nothing at the door: it answers 200 only when every
// change was stored. Any invalid change makes it 400 (413 when the only
// problem is size) and nothing is published. When JetStream could not store
// some changes it answers 503 with Retry-After (500 for an internal error):
// those stored are listed with their seq, and a retry of the whole batch
// with the same ids stores only the rest. When the only failures are ids
// reused with another body it answers 409 (the others are stored). Each
// result is {"id","seq"(,"duplicate":true)} or {"id"?,"error":{...}}.
type API struct {
	cfg  APIConfig
	pub  *Publisher
	log  logrus.FieldLogger
	now  func() time.Time
	keys [][sha256.Size]byte
	// fps are the keys' fingerprints for logs: an HMAC under a key drawn
	// at start, so a log reader cannot test guesses of a weak key.
	fps []string
	// scopes are the keys' dedup scopes (keyScope): the same in every
	// replica, so a retry through another replica is still a duplicate.
	scopes   []string
	limiters []*rate.Limiter
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewAPI checks cfg and builds the API. It does no I/O.
func NewAPI(cfg APIConfig, deps APIDeps) (*API, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ingest api config: %w", err)
	}
	if deps.Publisher == nil {
		return nil, errors.New("ingest api: APIDeps.Publisher is required")
	}
	a := &API{cfg: cfg, pub: deps.Publisher, log: deps.Log, now: deps.Now}
	if a.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		a.log = l
	}
	a.log = a.log.WithField("component", "api")
	if a.now == nil {
		a.now = time.Now
	}
	fpKey := make([]byte, 32)
	if _, err := rand.Read(fpKey); err != nil {
		return nil, fmt.Errorf("ingest api: draw the fingerprint key: %w", err)
	}
	for _, k := range cfg.Keys {
		sum := sha256.Sum256([]byte(k))
		a.keys = append(a.keys, sum)
		a.fps = append(a.fps, keyFingerprint(fpKey, k))
		a.scopes = append(a.scopes, keyScope(k))
		a.limiters = append(a.limiters, rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Burst))
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "liveupdates_api_requests_total",
		Help: "Ingest API requests by route (event, publish, tokens, other) and HTTP status code.",
	}, []string{"route", "code"})
	a.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "liveupdates_api_request_duration_seconds",
		Help:    "Ingest API request handling time by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	if deps.Registerer != nil {
		for _, c := range []prometheus.Collector{a.requests, a.duration} {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ingest api: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Register mounts the /v1/ routes on mux (an ops.Mux).
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("POST /v1/events/{eventId}/{type}", a.instrument(routeEvent, a.authed(a.handleEvent)))
	mux.Handle("POST /v1/publish", a.instrument(routePublish, a.authed(a.handlePublish)))
	mux.Handle("POST /v1/tokens", a.instrument(routeTokens, a.authed(a.handleTokens)))
	// The same paths with another method, and unknown /v1/ paths, get the
	// JSON error body instead of the mux's plain text.
	mux.Handle("/v1/events/{eventId}/{type}", a.instrument(routeEvent, methodNotAllowed))
	mux.Handle("/v1/publish", a.instrument(routePublish, methodNotAllowed))
	mux.Handle("/v1/tokens", a.instrument(routeTokens, methodNotAllowed))
	mux.Handle("/v1/", a.instrument(routeOther, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "no such route; see POST /v1/events/{eventId}/{type}, POST /v1/publish, POST /v1/tokens")
	})))
}

var methodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	wire.WriteError(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "use POST")
})

// keyFingerprint names key in logs: 32 bits of HMAC-SHA256 under the
// process's fpKey. Stable within a process, so one key's lines can be
// grouped; meaningless outside it.
func keyFingerprint(fpKey []byte, key string) string {
	m := hmac.New(sha256.New, fpKey)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// keyScope is the dedup scope of an API key (wire.DedupID): "k." and 72 bits
// of HMAC-SHA256 keyed with the API key itself over a fixed label. Every
// replica derives the same scope without sharing another secret; the raw key
// never reaches a header, and the scope cannot be turned back into it.
func keyScope(key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("liveupdates idempotency scope v1"))
	return "k." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:9])
}

// keyHandler is a handler that knows which configured key authenticated it.
type keyHandler func(w http.ResponseWriter, r *http.Request, key int)

// authed checks Authorization: Bearer <key> against every configured key in
// constant time (comparing SHA-256 sums, so lengths leak nothing either).
func (a *API) authed(next keyHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, presented, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || presented == "" {
			a.unauthorized(w, "missing Authorization: Bearer <key> header")
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(presented)))
		key := -1
		for i := range a.keys {
			if subtle.ConstantTimeCompare(sum[:], a.keys[i][:]) == 1 {
				key = i
			}
		}
		if key < 0 {
			a.unauthorized(w, "unknown API key")
			return
		}
		// The body's deadline starts here, so it bounds the handler's
		// own read and also what net/http reads of a body a handler left
		// unread (a 400 on the path, a 429) before it answers. A server
		// that cannot set deadlines (a test recorder) has no connection
		// to hold.
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.cfg.BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			a.log.WithError(err).Debug("set the body read deadline")
		}
		next(w, r, key)
	})
}

// unauthorized answers 401 without reading the body and closes the
// connection: an unauthenticated client gets no server time for a body it
// may never finish sending. net/http reads what is left of a body before it
// writes the answer (to reuse the connection; Connection: close stops that)
// and again when the handler returns (an expired read deadline stops that).
func (a *API) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("Connection", "close")
	w.Header().Set("WWW-Authenticate", `Bearer realm="liveupdates"`)
	wire.WriteError(w, http.StatusUnauthorized, wire.CodeUnauthorized, msg)
	// A server that cannot set deadlines (a test recorder) has no
	// connection to hold; nothing is lost if this fails.
	if err := http.NewResponseController(w).SetReadDeadline(time.Now()); err != nil && !errors.Is(err, http.ErrNotSupported) {
		a.log.WithError(err).Debug("expire the read deadline of an unauthenticated request")
	}
}

// allow takes n changes from key's bucket, or answers 429 with Retry-After
// and reports false.
func (a *API) allow(w http.ResponseWriter, key, n int) bool {
	now := a.now()
	res := a.limiters[key].ReserveN(now, n)
	delay := res.DelayFrom(now)
	if res.OK() && delay == 0 {
		return true
	}
	res.CancelAt(now)
	secs := int(math.Ceil(delay.Seconds()))
	if !res.OK() || secs < 1 {
		secs = 1
	}
	a.log.WithFields(logrus.Fields{"key_fp": a.fps[key], "changes": n, "retry_after": secs}).Info("rate limited")
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	wire.WriteError(w, http.StatusTooManyRequests, wire.CodeRateLimited,
		fmt.Sprintf("over this key's rate of %v changes per second; retry after %d s", a.cfg.Rate, secs))
	return false
}

// handleEvent is POST /v1/events/{eventId}/{type}.
func (a *API) handleEvent(w http.ResponseWriter, r *http.Request, key int) {
	c := Change{
		EventID:  r.PathValue("eventId"),
		Type:     r.PathValue("type"),
		ID:       r.Header.Get("Idempotency-Key"),
		SocketID: r.Header.Get("X-Socket-Id"),
		scope:    a.scopes[key],
	}
	// Check what costs nothing before reading the body.
	if err := checkNames(c); err != nil {
		wire.WriteInputError(w, err)
		return
	}
	if !a.allow(w, key, 1) {
		return
	}
	limit := min(a.cfg.MaxEventBytes, a.cfg.MaxRequestBytes)
	body, err := readBody(w, r, limit)
	if err != nil {
		a.writeBodyError(w, err, limit)
		return
	}
	c.Data = body
	if c.ID == "" {
		// Named here, not in Publish, so a failed answer can tell the
		// client which id to retry with: a change JetStream stored just
		// before the timeout is then not stored twice.
		c.ID = wire.NewID(a.now())
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
	defer cancel()
	res, err := a.pub.Publish(ctx, c)
	if err != nil {
		status, code, msg := a.errorAnswer(err)
		a.logFailure(err, status, routeEvent)
		if status >= 500 {
			if status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			// The id travels as a header too, so a client can retry with
			// Idempotency-Key set to it without parsing the body.
			w.Header().Set("Idempotency-Key", c.ID)
			msg += "; retry with Idempotency-Key: " + c.ID
		}
		wire.WriteError(w, status, code, msg)
		return
	}
	b := appendResult(make([]byte, 0, 96), res)
	writeJSON(w, http.StatusAccepted, append(b, '\n'))
}

// checkNames validates the path and headers of a single publish.
func checkNames(c Change) error {
	if err := wire.ValidateEventID(c.EventID); err != nil {
		return err
	}
	if err := wire.ValidateType(c.Type); err != nil {
		return err
	}
	if c.ID != "" {
		if err := wire.ValidateID(c.ID); err != nil {
			return err
		}
	}
	if c.SocketID != "" {
		return ValidateSocketID(c.SocketID)
	}
	return nil
}

// handlePublish is POST /v1/publish.
func (a *API) handlePublish(w http.ResponseWriter, r *http.Request, key int) {
	if r.Header.Get("Idempotency-Key") != "" {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidRequest,
			"Idempotency-Key applies to POST /v1/events/...; give each batch item its own \"id\"")
		return
	}
	socketID := r.Header.Get("X-Socket-Id")
	if socketID != "" {
		if err := ValidateSocketID(socketID); err != nil {
			wire.WriteInputError(w, err)
			return
		}
	}
	body, err := readBody(w, r, a.cfg.MaxRequestBytes)
	if err != nil {
		a.writeBodyError(w, err, a.cfg.MaxRequestBytes)
		return
	}
	items, err := parseBatch(body, MaxBatchItems)
	if err != nil {
		var ie *wire.InputError
		if errors.As(err, &ie) && ie.Code == wire.CodeTooLarge {
			wire.WriteError(w, http.StatusRequestEntityTooLarge, ie.Code, ie.Msg)
			return
		}
		wire.WriteInputError(w, err)
		return
	}
	if !a.allow(w, key, len(items)) {
		return
	}

	// The whole batch is checked before anything is published: bad input
	// changes nothing, so a client fixes its batch and sends it again whole.
	errs := make([]error, len(items))
	results := make([]Result, len(items))
	changes := make([]Change, len(items))
	invalid, tooLarge := 0, 0
	for i, it := range items {
		c := Change{EventID: it.EventID, Type: it.Type, Data: it.Data, ID: it.ID, SocketID: it.SocketID, scope: a.scopes[key]}
		if c.SocketID == "" {
			c.SocketID = socketID
		}
		changes[i] = c
		if len(it.Data) > a.cfg.MaxEventBytes {
			// Echoed in the answer, so only when valid.
			if wire.ValidateID(it.ID) == nil {
				results[i].ID = it.ID
			}
			errs[i] = fmt.Errorf("%w: data is %d bytes, the limit is %d", ErrTooLarge, len(it.Data), a.cfg.MaxEventBytes)
			tooLarge++
			continue
		}
		data, id, err := a.pub.check(c)
		changes[i].Data = data
		if err != nil {
			results[i].ID, errs[i] = id, err
			if errors.Is(err, ErrTooLarge) {
				tooLarge++
			} else {
				invalid++
			}
		}
	}

	status := http.StatusOK
	var top *wire.ErrorDetail
	if invalid+tooLarge > 0 {
		status = http.StatusBadRequest
		top = &wire.ErrorDetail{Code: wire.CodeInvalidRequest, Message: fmt.Sprintf(
			"%d of %d changes are invalid and nothing was stored; see results, fix them and send the batch again", invalid+tooLarge, len(items))}
		if invalid == 0 {
			status = http.StatusRequestEntityTooLarge
			top.Code = wire.CodeTooLarge
		}
		for i := range errs {
			if errs[i] == nil {
				results[i].ID = changes[i].ID
				errs[i] = &wire.InputError{Code: wire.CodeBatchRejected, Err: ErrBatchRejected,
					Msg: "valid, but not stored because other changes in the batch are invalid"}
			}
		}
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
		defer cancel()
		for i, br := range a.pub.publishChecked(ctx, changes) {
			results[i], errs[i] = br.Result, br.Err
		}
		unavailable, internal, conflicts := 0, 0, 0
		var firstFailure error
		for _, err := range errs {
			switch {
			case err == nil:
			case errors.Is(err, ErrConflict):
				conflicts++
			case errors.Is(err, ErrUnavailable):
				unavailable++
				firstFailure = cmpOr(firstFailure, err)
			default:
				internal++
				firstFailure = cmpOr(firstFailure, err)
			}
		}
		if firstFailure != nil {
			st, _, _ := a.errorAnswer(firstFailure)
			a.logFailure(firstFailure, st, routePublish)
		}
		// Never 2xx unless every change is stored. Those that were stored
		// are listed with their seq; a retry of the whole batch with the
		// same ids stores only the rest (JetStream drops the duplicates).
		switch {
		case internal > 0:
			status = http.StatusInternalServerError
			top = &wire.ErrorDetail{Code: wire.CodeInternal, Message: fmt.Sprintf(
				"%d of %d changes were not stored because of an internal error; retry the batch with the same ids", internal+unavailable, len(items))}
		case unavailable > 0:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
			top = &wire.ErrorDetail{Code: wire.CodeUnavailable, Message: fmt.Sprintf(
				"%d of %d changes were not stored: JetStream is unavailable; retry the batch with the same ids within the stream's duplicate window (LIVE_STREAM_DUPLICATES, 2m by default), inside which an id is never stored twice", unavailable, len(items))}
		case conflicts > 0:
			status = http.StatusConflict
			top = &wire.ErrorDetail{Code: wire.CodeIdempotencyConflict, Message: fmt.Sprintf(
				"%d of %d changes reuse an id stored before with another type or data and were not stored; the others were stored; give a new change a new id", conflicts, len(items))}
		}
	}

	b := make([]byte, 0, 64+48*len(items))
	b = append(b, '{')
	if top != nil {
		b = append(b, `"error":{"code":`...)
		b = strconv.AppendQuote(b, top.Code)
		b = append(b, `,"message":`...)
		b = strconv.AppendQuote(b, top.Message)
		b = append(b, "},"...)
	}
	b = append(b, `"results":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		if errs[i] == nil {
			b = appendResult(b, results[i])
			continue
		}
		_, code, msg := a.errorAnswer(errs[i])
		b = append(b, '{')
		if id := results[i].ID; id != "" {
			b = append(b, `"id":`...)
			b = strconv.AppendQuote(b, id)
			b = append(b, ',')
		}
		b = append(b, `"error":{"code":`...)
		b = strconv.AppendQuote(b, code)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, msg)
		b = append(b, "}}"...)
	}
	b = append(b, "]}\n"...)
	writeJSON(w, status, b)
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// tokenRequest is the POST /v1/tokens body.
type tokenRequest struct {
	EventID string `json:"eventId"`
	// TTL in seconds; absent means DefaultPollTTL.
	TTL *int64 `json:"ttl"`
}

// handleTokens is POST /v1/tokens.
func (a *API) handleTokens(w http.ResponseWriter, r *http.Request, key int) {
	if len(a.cfg.PollSecret) == 0 {
		wire.WriteError(w, http.StatusNotImplemented, CodeNotConfigured,
			"poll tokens are not configured on this server (LIVE_POLL_SECRET is unset)")
		return
	}
	if !a.allow(w, key, 1) {
		return
	}
	body, err := readBody(w, r, maxTokenBody)
	if err != nil {
		a.writeBodyError(w, err, maxTokenBody)
		return
	}
	var req tokenRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidJSON,
			`body must be {"eventId":"...","ttl":seconds?}: `+jsonProblem(err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidJSON, "body holds data after the JSON object")
		return
	}
	var ttl time.Duration
	if req.TTL != nil {
		if *req.TTL < 1 || *req.TTL > int64(MaxPollTTL/time.Second) {
			wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidRequest,
				fmt.Sprintf("ttl must be 1 to %d seconds", int64(MaxPollTTL/time.Second)))
			return
		}
		ttl = time.Duration(*req.TTL) * time.Second
	}
	tok, exp, err := mintPollToken(a.cfg.PollSecret, req.EventID, ttl, a.now())
	if err != nil {
		status, code, msg := a.errorAnswer(err)
		if status >= 500 {
			a.logFailure(err, status, routeTokens)
		}
		wire.WriteError(w, status, code, msg)
		return
	}
	b := []byte(`{"token":`)
	b = strconv.AppendQuote(b, tok)
	b = append(b, `,"expiresAt":"`...)
	b = exp.AppendFormat(b, time.RFC3339)
	b = append(b, "\"}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// errorAnswer maps a publish error to its status, wire code and a message
// safe to show the caller.
func (a *API) errorAnswer(err error) (int, string, string) {
	var ie *wire.InputError
	switch {
	case errors.Is(err, ErrConflict) && errors.As(err, &ie):
		return http.StatusConflict, ie.Code, ie.Msg
	case errors.As(err, &ie):
		return http.StatusBadRequest, ie.Code, ie.Msg
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, wire.CodeTooLarge,
			fmt.Sprintf("data is over the limit of %d bytes", min(a.cfg.MaxEventBytes, a.pub.MaxDataBytes()))
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable, wire.CodeUnavailable,
			"JetStream did not confirm the store; retry with the same id (Idempotency-Key): a retry within the stream's duplicate window (LIVE_STREAM_DUPLICATES, 2m by default) is never stored twice"
	default:
		return http.StatusInternalServerError, wire.CodeInternal, "internal error; the change may not be stored"
	}
}

func (a *API) logFailure(err error, status int, route string) {
	l := a.log.WithError(err).WithFields(logrus.Fields{"route": route, "http_status": status})
	if status < 500 {
		// The client's mistake, answered with its reason; at error level
		// it would page someone for another team's bad request.
		l.Debug("publish refused")
		return
	}
	if status == http.StatusServiceUnavailable {
		l.Warn("publish unavailable")
		return
	}
	l.Error("publish failed")
}

// errBodyTooLarge is what readBody returns past its limit.
var errBodyTooLarge = errors.New("request body too large")

// readBody reads at most limit bytes of r's body, within the read deadline
// authed set (APIConfig.BodyTimeout): a client that stops sending mid-body
// holds its connection and this goroutine no longer. The server's
// ReadTimeout bounds it too where it is set; this holds whatever server
// mounts the API.
func readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, errBodyTooLarge
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errBodyTooLarge
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	// Cleared, or the server's watch for a closed connection would time
	// out mid-handler and cancel the request's context.
	if err := http.NewResponseController(w).SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("clear the body read deadline: %w", err)
	}
	return buf.Bytes(), nil
}

func (a *API) writeBodyError(w http.ResponseWriter, err error, limit int) {
	if errors.Is(err, errBodyTooLarge) {
		wire.WriteError(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge,
			fmt.Sprintf("request body is over the limit of %d bytes", limit))
		return
	}
	// What is left of the body cannot be told from the next request.
	w.Header().Set("Connection", "close")
	if errors.Is(err, os.ErrDeadlineExceeded) {
		wire.WriteError(w, http.StatusRequestTimeout, wire.CodeInvalidRequest,
			fmt.Sprintf("request body not received within %v", a.cfg.BodyTimeout))
		return
	}
	wire.WriteError(w, http.StatusBadRequest, wire.CodeInvalidRequest, "could not read the request body")
}

func appendResult(b []byte, r Result) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendQuote(b, r.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string; messages may hold
// encoding/json's own text, so strconv.Quote's Go escapes are not enough.
func appendJSONString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		return append(b, `""`...)
	}
	return append(b, q...)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// A write error means the client went away; there is nobody to tell.
	_, _ = w.Write(body)
}

// statusWriter records the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
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

func (a *API) instrument(route string, next http.Handler) http.Handler {
	obs := a.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		a.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		obs.Observe(time.Since(start).Seconds())
	})
}
