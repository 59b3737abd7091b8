// Package pushercompat is a Pusher-compatible server: the Channels HTTP API
// (signatures and limits checked as Pusher does, with fault injection) and
// the WebSocket protocol 7 that pusher-js speaks. `liveupdates dev` serves it
// when no Pusher account is configured, and tests publish to it through the
// real pusher-http-go client (v5.1.1) instead of a mock: Start(t, Options{})
// listens on 127.0.0.1; Client returns a pusher.Client pointed at it.
//
// # Endpoints
//
// POST /apps/{appId}/events with {"name","data","channels":[..]|"channel",
// "socket_id"?,"info"?} and POST /apps/{appId}/batch_events with
// {"batch":[{"channel","name","data","socket_id"?,"info"?},..]}. Success is
// 200 with the body {} (info is accepted and ignored). A trigger on N
// channels records N events.
//
// # What is checked, in order, and the answers
//
// Error bodies are plain text, as Pusher's are; pusher-http-go turns them
// into "Status Code: <n> - <body>".
//
//	path other than the two above        404 Not found
//	app id other than Options.AppID      404 Unknown app
//	method other than POST               405
//	body over a generous bound           413 Request body too large
//	auth_key, auth_timestamp,            401 Missing parameter / Unknown auth_key /
//	auth_version (1.0), body_md5,            Timestamp expired (outside ±600 s of Options.Now) /
//	auth_signature                           Invalid body_md5 / Invalid signature
//	body not UTF-8                       400
//	malformed JSON, wrong types,         400
//	  trailing data
//	no channels, both channels and       400
//	  channel, over MaxChannels (100)
//	channel name empty, over 164 bytes,  400
//	  or outside [A-Za-z0-9_\-=@,.;]
//	event name missing, over 200 bytes,  400
//	  or starting pusher: / pusher_internal:
//	data missing                         400
//	data over MaxPayloadBytes (10240)    413 The data content of this event exceeds
//	  bytes of the unescaped string          the allowed maximum (10240 bytes). ...
//	socket_id not digits.digits          400
//	batch missing, empty, over           400
//	  MaxBatch (10)
//	RejectWhen rule                      the rule's status
//
// In a batch the first bad event decides, and the message names it
// ("Event #3 in batch: ..."). The signature is HMAC-SHA256 with the secret
// of "POST\n<path>\n<query>", the query being every parameter but
// auth_signature, keys lower-cased and sorted, joined k=v&k=v unescaped.
//
// A request is all-or-nothing: one refused for any reason records nothing.
//
// # Faults
//
// Before any check, in this order: SetOutage drops the connection (no
// answer; the client sees a *url.Error); the body is read (so a client that
// gives up during the latency is noticed and nothing is handled);
// SetLatency delays (the outage is checked again afterwards); then FailNext
// and FailFor answer a Fault: a status with optional Retry-After and body,
// or a dropped connection. FailFor windows and auth_timestamp use
// Options.Now, so a test can move time instead of sleeping; latency is
// real time.
// Every request, whatever its fate, counts in Requests and appears in
// Exchanges; only 200s count in Accepted.
//
// # Record
//
// Events, EventsOn and Exchanges keep everything unless RecordLimit
// bounds them, as a long-running server must.
package pushercompat
