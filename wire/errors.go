package wire

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Stable error codes of the HTTP APIs. They are a wire contract: clients
// branch on them, so a code is never renamed or reused.
const (
	CodeInvalidEventID  = "invalid_event_id"
	CodeInvalidType     = "invalid_type"
	CodeInvalidID       = "invalid_id"
	CodeInvalidJSON     = "invalid_json"
	CodeInvalidSocketID = "invalid_socket_id"
	// CodeIdempotencyConflict (409): the id was stored before with a
	// different type or data; the new change was not stored.
	CodeIdempotencyConflict = "idempotency_conflict"
	CodeInvalidRequest      = "invalid_request"
	CodeBatchRejected       = "batch_rejected"
	CodeInvalidCursor       = "invalid_cursor"
	CodeTooLarge            = "payload_too_large"
	CodeUnauthorized        = "unauthorized"
	CodeForbidden           = "forbidden"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeRateLimited         = "rate_limited"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// InputError is a client mistake: it carries the stable wire code and a
// message safe to show to the caller. It unwraps to a sentinel such as
// ErrInvalidEventID so Go callers can use errors.Is.
type InputError struct {
	Code string
	Msg  string
	Err  error
}

func (e *InputError) Error() string { return e.Msg }
func (e *InputError) Unwrap() error { return e.Err }

// ErrorBody is the JSON body of every error answer:
// {"error":{"code":"...","message":"..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteError answers with status and the JSON error body. Callers set any
// extra headers (Retry-After, WWW-Authenticate) before calling it.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// Encoding a struct of two strings cannot fail; a write error means the
	// client went away and there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// WriteInputError answers 400 with the code of an *InputError found in err,
// or invalid_request when err carries none.
func WriteInputError(w http.ResponseWriter, err error) {
	var ie *InputError
	if errors.As(err, &ie) {
		WriteError(w, http.StatusBadRequest, ie.Code, ie.Msg)
		return
	}
	WriteError(w, http.StatusBadRequest, CodeInvalidRequest, err.Error())
}
