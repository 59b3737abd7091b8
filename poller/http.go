package poller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/wire"
)

// Register mounts the read API on mux:
//
//	GET /v1/events/{eventId}/updates?since=<seq>&wait=<s>   poll and long-poll
//	GET /v1/events/{eventId}/stream                         Server-Sent Events
//	GET /v1/events/{eventId}/messages/{seq}                 one change by seq
//	GET /v1/config                                          what a browser needs to connect
//	POST /v1/pusher/auth                                    private-channel signatures for a poll token
//	GET /v1/client.js, /v1/client/{react.js,…}              the browser client (Deps.Client)
//
// plus OPTIONS for CORS preflight and a JSON 405 for other methods.
func (p *Poller) Register(mux *http.ServeMux) {
	// Every route is counted and timed by its pattern
	// (liveupdates_poller_http_…).
	handle := func(pattern string, h http.HandlerFunc) { p.m.http.HandleFunc(mux, pattern, h) }
	handle("GET /v1/config", p.handleConfig)
	handle("OPTIONS /v1/config", p.handlePreflight)
	handle("POST /v1/pusher/auth", p.handleAuth)
	handle("OPTIONS /v1/pusher/auth", p.handlePreflight)
	for path := range clientFiles {
		handle("GET "+path, p.handleAsset)
		handle("OPTIONS "+path, p.handlePreflight)
	}
	routes := []struct {
		path string
		h    http.HandlerFunc
	}{
		{"/v1/events/{eventId}/updates", p.handleUpdates},
		{"/v1/events/{eventId}/stream", p.handleStream},
		{"/v1/events/{eventId}/messages/{seq}", p.handleMessage},
	}
	for _, rt := range routes {
		handle("GET "+rt.path, rt.h)
		handle("OPTIONS "+rt.path, p.handlePreflight)
		// Methods are listed, not left open: an open pattern here would
		// conflict with the ingest API's POST /v1/events/{eventId}/{type}
		// when both are mounted on one mux (dev). POST is left to that
		// route; alone, the mux answers it 405 with an Allow header.
		for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			handle(m+" "+rt.path, methodNotAllowed)
		}
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD, OPTIONS")
	wire.WriteError(w, http.StatusMethodNotAllowed, wire.CodeMethodNotAllowed, r.Method+" is not allowed here; use GET")
}

// begin runs what every read does first: path and query validation, CORS,
// the token check and the rate limit. It answers the error itself and
// returns ok=false when the request must stop.
func (p *Poller) begin(w http.ResponseWriter, r *http.Request, route string) (id string, q query, ok bool) {
	p.cors(w, r)
	id = r.PathValue("eventId")
	if err := wire.ValidateEventID(id); err != nil {
		p.fail(w, route, outBadRequest, http.StatusBadRequest, wire.CodeInvalidEventID, err.Error())
		return "", q, false
	}
	q, err := parseQuery(r.URL.RawQuery, p.cfg.MaxWait)
	if err != nil {
		var ie *wire.InputError
		errors.As(err, &ie)
		p.fail(w, route, outBadRequest, http.StatusBadRequest, ie.Code, ie.Msg)
		return "", q, false
	}
	tok := q.token
	if tok == "" {
		tok = bearerToken(r)
	}
	if !p.admit(w, r, route, id, tok, "a poll token is required: query token= or Authorization: Bearer") {
		return "", q, false
	}
	q.token = tok // as verified, from the query or the header
	if !p.isReady() {
		w.Header().Set("Retry-After", "1")
		p.fail(w, route, outUnavailable, http.StatusServiceUnavailable, wire.CodeUnavailable, "the poller is still loading the stream; retry shortly")
		return "", q, false
	}
	return id, q, true
}

// admit checks the poll token tok for eventId id, when reads need one,
// and the client's rate (by token, else by address). It answers the error
// itself and returns false when the request must stop; missing is the
// message of a request without a token.
func (p *Poller) admit(w http.ResponseWriter, r *http.Request, route, id, tok, missing string) bool {
	client := tok
	if p.cfg.Open() {
		client = r.RemoteAddr
		if h, _, err := net.SplitHostPort(client); err == nil {
			client = h
		}
	} else {
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="liveupdates"`)
			p.fail(w, route, outUnauth, http.StatusUnauthorized, wire.CodeUnauthorized, missing)
			return false
		}
		if err := polltoken.Verify(p.cfg.Secret, tok, id, p.now()); err != nil {
			if errors.Is(err, polltoken.ErrWrongEvent) {
				p.fail(w, route, outForbidden, http.StatusForbidden, wire.CodeForbidden, "the poll token is for another event")
				return false
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="liveupdates", error="invalid_token"`)
			p.fail(w, route, outUnauth, http.StatusUnauthorized, wire.CodeUnauthorized, err.Error())
			return false
		}
	}
	if allowed, retry := p.lim.allow(client, p.now().UnixNano()); !allowed {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry))))
		p.fail(w, route, outRateLimited, http.StatusTooManyRequests, wire.CodeRateLimited, "too many requests from this client; retry after the Retry-After seconds")
		return false
	}
	return true
}

// bearerToken returns the token of an Authorization: Bearer header.
func bearerToken(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (p *Poller) fail(w http.ResponseWriter, route, outcome string, status int, code, msg string) {
	p.m.count(route, outcome)
	wire.WriteError(w, status, code, msg)
}

func (p *Poller) draining() bool {
	select {
	case <-p.drain:
		return true
	default:
		return false
	}
}

// handleMessage answers one change by seq: from memory when held, else by a
// direct get on the stream. A seq of another eventId is a 404 like a
// missing one, so nothing leaks across eventIds.
func (p *Poller) handleMessage(w http.ResponseWriter, r *http.Request) {
	id, _, ok := p.begin(w, r, routeMessage)
	if !ok {
		return
	}
	seq, err := parseSeq(r.PathValue("seq"), "seq")
	if err != nil || seq == 0 {
		p.fail(w, routeMessage, outBadRequest, http.StatusBadRequest, wire.CodeInvalidCursor, "seq must be a stream seq: 1 to 20 decimal digits, not 0")
		return
	}
	body, held := p.idx.get(id, seq)
	if !held {
		body, err = p.fetch(r.Context(), id, seq)
		if errors.Is(err, errNoSuchChange) {
			p.fail(w, routeMessage, outNotFound, http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no change with seq %d for this event", seq))
			return
		}
		if err != nil {
			p.log.WithError(err).WithField("seq", seq).Warn("fetch change failed")
			w.Header().Set("Retry-After", "1")
			p.fail(w, routeMessage, outUnavailable, http.StatusServiceUnavailable, wire.CodeUnavailable, "the stream is not reachable; retry shortly")
			return
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	// A seq names one change forever; the browser may keep it.
	h["Cache-Control"] = []string{"private, max-age=3600, immutable"}
	h["Content-Length"] = []string{strconv.Itoa(len(body) + 1)}
	w.WriteHeader(http.StatusOK)
	p.m.count(routeMessage, outOK)
	if _, err := w.Write(body); err == nil {
		_, _ = w.Write([]byte{'\n'})
	}
}

var errNoSuchChange = errors.New("no such change")

func (p *Poller) fetch(ctx context.Context, id string, seq uint64) ([]byte, error) {
	stp := p.st.Load()
	if stp == nil {
		return nil, errors.New("stream not opened yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := (*stp).GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, errNoSuchChange
	}
	if err != nil {
		return nil, fmt.Errorf("get %s seq %d: %w", p.scfg.Name, seq, err)
	}
	env, _, err := wire.DecodeMessage(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
	if err != nil || env.EventID != id {
		return nil, errNoSuchChange
	}
	return env.AppendJSON(nil), nil
}

// cors sets the CORS answer headers when the request's Origin is allowed.
func (p *Poller) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(p.cfg.CORSOrigins) == 0 {
		return false
	}
	origin := r.Header.Get("Origin")
	h := w.Header()
	h.Add("Vary", "Origin")
	if origin == "" {
		return false
	}
	allow := ""
	if slices.Contains(p.cfg.CORSOrigins, "*") {
		allow = "*"
	} else if slices.Contains(p.cfg.CORSOrigins, origin) {
		allow = origin
	}
	if allow == "" {
		return false
	}
	h.Set("Access-Control-Allow-Origin", allow)
	h.Set("Access-Control-Expose-Headers", "ETag, Retry-After, "+headerTransport)
	return true
}

func (p *Poller) handlePreflight(w http.ResponseWriter, r *http.Request) {
	if !p.cors(w, r) {
		p.fail(w, routePreflight, outForbidden, http.StatusForbidden, wire.CodeForbidden, "origin not allowed")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-None-Match, Last-Event-ID, Cache-Control")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	p.m.count(routePreflight, outOK)
}
