// Package producer is how changes enter liveupdates: a library for Go
// backends (Publisher) and the ingest HTTP API for backends written in
// anything else (API, mounted by `liveupdates api`).
//
// Both promise the same thing: a publish returns success only after
// JetStream stored the change in wire.StreamName, and the same change id
// published twice within the stream's duplicate window (LIVE_STREAM_DUPLICATES)
// is stored once and answers with the first seq. An id is scoped per eventId
// (and per API key in the HTTP API: wire.DedupID), and reusing it with another
// type or data is ErrConflict, not a silent duplicate. Retries of transient
// failures re-use the id, so a retry can never store a change twice. Past the
// window, idempotency is not promised.
//
// Errors are kinds a caller can branch on with errors.Is: ErrInvalid (the
// caller's mistake; it also wraps the *wire.InputError with the wire code),
// ErrTooLarge, ErrConflict, and ErrUnavailable (JetStream could not confirm
// the store; publishing again with the same id is safe).
package producer
