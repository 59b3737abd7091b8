// Package wire holds the names and shapes that every role of liveupdates
// agrees on: the planned event's id (eventId), the change type, the NATS
// subjects they map to, the stream names, the message headers, the envelope
// a browser receives, and the JSON error body of every HTTP API.
//
// Two words are kept apart on purpose: an "eventId" names a planned
// get-together (the thing browsers watch), a "change" is something that
// happened to it (vote.updated, phase.changed, ...). A change travels as one
// JetStream message and reaches browsers as one Envelope.
//
// The package is stdlib only and does no I/O, so every role and every test can
// import it without pulling in NATS or Pusher.
package wire
