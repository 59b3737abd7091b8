package producer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/nostressplanner/liveupdates/wire"
	"github.com/sirupsen/logrus"
)

// This file maps errors to the API's wire contract and writes the answers:
// by hand on the hot path (one change), with encoding/json elsewhere.

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

// appendResult writes the answer of POST /v1/events/...: the hot path, so
// written by hand (encoding/json costs its reflection on every change).
func appendResult(b []byte, r Result) []byte {
	b = append(b, `{"id":`...)
	b = wire.AppendJSONString(b, r.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// writeJSON answers status with body, a JSON document.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// A write error means the client went away; there is nobody to tell.
	_, _ = w.Write(body)
}

// writeJSONValue answers status with v encoded by encoding/json: the cold
// paths (a batch, a token), where clarity beats a few microseconds.
func writeJSONValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// The answers are plain structs of strings and numbers.
		wire.WriteError(w, http.StatusInternalServerError, wire.CodeInternal, "internal error: the answer could not be encoded")
		return
	}
	writeJSON(w, status, append(b, '\n'))
}

// tokenAnswer is the POST /v1/tokens answer; expiresAt is whole seconds,
// so it is written as RFC 3339 without a fraction.
type tokenAnswer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// batchAnswer is the POST /v1/publish answer: the error is there when not
// every change was stored.
type batchAnswer struct {
	Error   *wire.ErrorDetail `json:"error,omitempty"`
	Results []batchResult     `json:"results"`
}

// batchResult is one change's result: {"id","seq"(,"duplicate":true)} when
// stored, else {"id"?,"error":{...}}.
type batchResult struct {
	ID        string            `json:"id,omitempty"`
	Seq       uint64            `json:"seq,omitempty"`
	Duplicate bool              `json:"duplicate,omitempty"`
	Error     *wire.ErrorDetail `json:"error,omitempty"`
}

// writeBatch answers a batch with status, the batch's error top (nil when
// every change was stored) and a result per change.
func (a *API) writeBatch(w http.ResponseWriter, status int, top *wire.ErrorDetail, results []Result, errs []error) {
	ans := batchAnswer{Error: top, Results: make([]batchResult, len(results))}
	for i, r := range results {
		if errs[i] == nil {
			ans.Results[i] = batchResult{ID: r.ID, Seq: r.Seq, Duplicate: r.Duplicate}
			continue
		}
		_, code, msg := a.errorAnswer(errs[i])
		ans.Results[i] = batchResult{ID: r.ID, Error: &wire.ErrorDetail{Code: code, Message: msg}}
	}
	writeJSONValue(w, status, ans)
}
