package producer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
)

// This file handles the API's requests: read, check, publish; the answers
// are written by answers.go.

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
		return wire.ValidateSocketID(c.SocketID)
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
		if err := wire.ValidateSocketID(socketID); err != nil {
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

	a.writeBatch(w, status, top, results, errs)
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
	writeJSONValue(w, http.StatusOK, tokenAnswer{Token: tok, ExpiresAt: exp})
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
