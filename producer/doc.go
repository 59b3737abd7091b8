// Package producer is how changes enter liveupdates: a library for Go
// backends (Publisher) and the ingest HTTP API for backends written in
// anything else (API, mounted by `liveupdates api`).
//
// Both promise the same thing: a publish returns success only after
// JetStream stored the change in wire.StreamName, and the same change id
// (Nats-Msg-Id) published twice within the stream's duplicate window is stored
// once and answers with the first seq. Retries of transient failures re-use
// the id, so a retry can never store a change twice.
//
// Errors are kinds a caller can branch on with errors.Is: ErrInvalid (the
// caller's mistake; it also wraps the *wire.InputError with the wire code),
// ErrTooLarge, and ErrUnavailable (JetStream could not confirm the store;
// publishing again with the same id is safe).
package producer
