package producer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nostressplanner/liveupdates/wire"
)

// batchItem is one element of the POST /v1/publish body.
type batchItem struct {
	EventID  string          `json:"eventId"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
	ID       string          `json:"id"`
	SocketID string          `json:"socketId"`
}

// Sentinels in the *wire.InputError parseBatch returns.
var (
	ErrInvalidBody  = errors.New("invalid request body")
	ErrTooManyItems = errors.New("too many changes in one request")
	// ErrBatchRejected marks a valid change of a batch that was refused
	// because other changes in it are invalid: it was not stored.
	ErrBatchRejected = errors.New("batch rejected")
	errBodyNotArray  = errors.New("body is not a JSON array")
	errTrailingBytes = errors.New("trailing data after the JSON array")
)

// parseBatch reads a batch body: a JSON array of 1 to maxItems objects
// {"eventId","type","data","id"?,"socketId"?}. It checks the shape only;
// each item's fields are validated when it is published, so one bad item
// does not fail the others. The error is a *wire.InputError.
func parseBatch(body []byte, maxItems int) ([]batchItem, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, &wire.InputError{Code: wire.CodeInvalidJSON, Err: errBodyNotArray,
			Msg: `body must be a JSON array of {"eventId","type","data","id"?}`}
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	var items []batchItem
	if err := dec.Decode(&items); err != nil {
		return nil, &wire.InputError{Code: wire.CodeInvalidJSON, Err: fmt.Errorf("%w: %w", ErrInvalidBody, err),
			Msg: "body is not a valid batch: " + jsonProblem(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &wire.InputError{Code: wire.CodeInvalidJSON, Err: errTrailingBytes,
			Msg: "body holds data after the JSON array"}
	}
	if len(items) == 0 {
		return nil, &wire.InputError{Code: wire.CodeInvalidRequest, Err: ErrInvalidBody,
			Msg: "batch is empty; send 1 to " + fmt.Sprint(maxItems) + " changes"}
	}
	if len(items) > maxItems {
		return nil, &wire.InputError{Code: wire.CodeTooLarge, Err: ErrTooManyItems,
			Msg: fmt.Sprintf("batch holds %d changes, at most %d are allowed per request", len(items), maxItems)}
	}
	return items, nil
}

// jsonProblem describes a decoding error without echoing the caller's
// bytes beyond what encoding/json puts in its own messages (field names,
// offsets, types).
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %s must be a %s, got %s", te.Field, te.Type, te.Value)
		}
		return fmt.Sprintf("want a JSON array of objects, got %s", te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "unexpected end of body"
	default:
		// encoding/json's unknown-field error names the field: useful, and
		// bounded by the body size.
		return err.Error()
	}
}
