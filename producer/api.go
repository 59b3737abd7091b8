package producer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nostressplanner/liveupdates/ops"
	"github.com/nostressplanner/liveupdates/retry"
	"github.com/nostressplanner/liveupdates/stream"
	"github.com/nostressplanner/liveupdates/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// This file holds the API itself and its lifecycle; auth.go checks keys and
// rates, routes.go handles the requests, answers.go writes the answers.

// CodeNotConfigured answers POST /v1/tokens (status 501) when no poll
// secret is configured: the deployment chose not to offer poll tokens, so
// retrying will not help, unlike "unavailable".
const CodeNotConfigured = "not_configured"

// The API's routes: ServeMux patterns, and so the route labels of
// liveupdates_api_http_requests_total and
// liveupdates_api_http_request_duration_seconds (a closed set, with the
// patterns Register mounts for other methods and unknown paths).
const (
	routeEvent   = "POST /v1/events/{eventId}/{type}"
	routePublish = "POST /v1/publish"
	routeTokens  = "POST /v1/tokens"
)

// maxTokenBody bounds a POST /v1/tokens body.
const maxTokenBody = 4 << 10

// APIDeps are the API's collaborators.
type APIDeps struct {
	// Publisher stores changes. Required.
	Publisher *Publisher
	// Log receives the API's logs. Nil means none.
	Log logrus.FieldLogger
	// Registerer gets the liveupdates_api_http_* metrics. Nil means none.
	Registerer prometheus.Registerer
	// Stream is the stream Run ensures. Zero means stream.Config's
	// defaults (LIVE_EVENTS); it must name the stream the Publisher
	// publishes to.
	Stream stream.Config
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
	http     *ops.HTTPMetrics
	stream   stream.Config
}

// NewAPI checks cfg and builds the API. It does no I/O.
func NewAPI(cfg APIConfig, deps APIDeps) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest api config: %w", err)
	}
	cfg = cfg.withDefaults()
	if deps.Publisher == nil {
		return nil, errors.New("ingest api: APIDeps.Publisher is required")
	}
	a := &API{cfg: cfg, pub: deps.Publisher, log: deps.Log, now: deps.Now, stream: deps.Stream}
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
	m, err := ops.NewHTTPMetrics(deps.Registerer, "api")
	if err != nil {
		return nil, fmt.Errorf("ingest api: %w", err)
	}
	a.http = m
	return a, nil
}

// Register mounts the /v1/ routes on mux (an ops.Mux), each counted and
// timed under its pattern.
func (a *API) Register(mux *http.ServeMux) {
	a.http.Handle(mux, routeEvent, a.authed(a.handleEvent))
	a.http.Handle(mux, routePublish, a.authed(a.handlePublish))
	a.http.Handle(mux, routeTokens, a.authed(a.handleTokens))
	// The same paths with another method, and unknown /v1/ paths, get the
	// JSON error body instead of the mux's plain text.
	a.http.Handle(mux, "/v1/events/{eventId}/{type}", methodNotAllowed)
	a.http.Handle(mux, "/v1/publish", methodNotAllowed)
	a.http.Handle(mux, "/v1/tokens", methodNotAllowed)
	a.http.HandleFunc(mux, "/v1/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, wire.CodeNotFound, "no such route; see POST /v1/events/{eventId}/{type}, POST /v1/publish, POST /v1/tokens")
	})
}

var methodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	wire.WriteError(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, "use POST")
})

// Run ensures the stream the API publishes to (APIDeps.Stream), then waits
// for ctx: it creates the stream or brings its limits back to the
// configuration (logging each change), retrying while NATS or JetStream is
// not there yet, since an api may start before its cluster. Requests are
// served meanwhile; until the stream exists they are answered 503 and
// Publisher.Ready fails. Run returns nil when ctx ends, and an error only
// when the existing stream conflicts with the configuration
// (stream.ErrConflict), which retrying cannot fix: it needs an operator.
func (a *API) Run(ctx context.Context) error {
	name := a.stream.WithDefaults().Name
	log := a.log.WithField("stream", name)
	err := retry.Do(ctx, retry.New(100*time.Millisecond, 5*time.Second), log, "stream not ready, retrying", func(ctx context.Context) error {
		_, changes, err := stream.Ensure(ctx, a.pub.js, a.stream)
		if errors.Is(err, stream.ErrConflict) {
			return retry.Permanent(err)
		}
		if err != nil {
			return err
		}
		stream.LogChanges(a.log, name, changes)
		return nil
	})
	if errors.Is(err, stream.ErrConflict) {
		return fmt.Errorf("ingest api: ensure stream %s: %w", name, err)
	}
	// Any other error is ctx's end, before the stream was there.
	if err == nil {
		<-ctx.Done()
	}
	return nil
}
