package producer

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nostressplanner/liveupdates/wire"
)

// Errors a caller branches on with errors.Is. Every error Publish and
// PublishBatch return wraps exactly one of ErrInvalid, ErrTooLarge,
// ErrUnavailable, ErrWrongStream and ErrConflict.
var (
	// ErrInvalid: the change itself is wrong (eventId, type, id, socket id or
	// data). The error also wraps the *wire.InputError with the wire code, so
	// errors.As(err, new(*wire.InputError)) works. Retrying cannot help.
	ErrInvalid = errors.New("invalid change")
	// ErrTooLarge: the data is over Options.MaxDataBytes, or over what the
	// stream or the server accepts. Retrying cannot help.
	ErrTooLarge = errors.New("change too large")
	// ErrUnavailable: JetStream did not confirm the store before the
	// context ended (no responders during a leader election, a timeout, a
	// disconnected client, or a refusal such as a full store). The change
	// may or may not be stored; publishing it again with the same ID is safe.
	// Also a duplicate whose stored copy could not be read back to compare
	// with it: it may be a conflict, so it is not answered as stored.
	ErrUnavailable = errors.New("jetstream unavailable")
	// ErrWrongStream: JetStream stored the change, but in a stream other
	// than wire.StreamName, so no relay or poller will see it. It means
	// another stream captures live.events.> : a deployment mistake.
	ErrWrongStream = errors.New("change stored in an unexpected stream")
	// ErrConflict: the change's ID was stored before, within the stream's
	// duplicate window, with another type or data, so this change was not
	// stored. The error also wraps a *wire.InputError with the code
	// wire.CodeIdempotencyConflict. Use a new ID for a new change.
	ErrConflict = errors.New("idempotency conflict")
	// ErrNoPollSecret is returned by MintPollToken when no secret is set.
	ErrNoPollSecret = errors.New("no poll secret configured (LIVE_POLL_SECRET)")
)

// Sentinels inside the *wire.InputError of an ErrInvalid, for the checks
// package wire has no sentinel for.
var (
	// ErrInvalidData and ErrInvalidSocketID are package wire's, which
	// every reader of the stream checks too.
	ErrInvalidData     = wire.ErrInvalidData
	ErrInvalidSocketID = wire.ErrInvalidSocketID
	ErrInvalidTTL      = errors.New("invalid ttl")
)

// errNotConnected is what an attempt fails with while the NATS client is
// reconnecting: we do not hand the message to the client's reconnect
// buffer, because nobody could wait for its ack after the context ends.
var errNotConnected = errors.New("nats client not connected")

// isTransient reports whether another attempt with the same id may succeed.
func isTransient(err error) bool {
	switch {
	case errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, errNotConnected):
		return true
	}
	// JetStream answers 503 while it has no quorum or is starting up, and
	// 409 "in process" to a retry whose earlier copy the leader is still
	// storing (an attempt that timed out while a new leader commits): the
	// next retry is answered as a duplicate with its seq, or stores it.
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.Code >= 500 || apiErr.ErrorCode == errCodeMsgIDInProcess)
}

// errCodeMsgIDInProcess is JetStream's JSStreamDuplicateMessageConflict
// ("duplicate message id is in process"), which nats.go has no sentinel
// for.
const errCodeMsgIDInProcess jetstream.ErrorCode = 10158

// classify wraps a publish error in the kind a caller branches on.
func (p *Publisher) classify(subject string, err error) error {
	switch {
	case errors.Is(err, ErrWrongStream), errors.Is(err, ErrConflict):
		return fmt.Errorf("publish %s: %w", subject, err)
	case errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum), errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("%w: publish %s: %w", ErrTooLarge, subject, err)
	default:
		return fmt.Errorf("%w: publish %s: %w", ErrUnavailable, subject, err)
	}
}

// uninformative reports whether err says only that an attempt was cut
// short (the deadline) or found the connection moving (a reconnect,
// failed's own move included), not why JetStream did not store the change.
func uninformative(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errNotConnected) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// explain is a call's last error, also wrapping cause (the last error that
// said why an attempt failed, such as no stream or no quorum) when the last
// error alone does not say it: that is the reason a caller should see.
func explain(err, cause error) error {
	if cause == nil || !uninformative(err) {
		return err
	}
	return fmt.Errorf("%w; before that: %w", err, cause)
}
