// Package clustertest is the fault suite of real processes behind
// `make cluster-test`: three nats-server processes (built from the module,
// each in its own network namespace so a node can be cut off), an R3
// LIVE_EVENTS stream, two api, two relay and two poller processes of the
// liveupdates binary, the Pusher-compatible test server, a load generator
// and long-poll clients. Each scenario injects one fault under load (a relay
// SIGKILLed, the stream leader SIGKILLed and restarted, the leader cut off
// from its peers, a rolling restart of every role, a Pusher outage) and
// checks the promises of DESIGN.md: no acknowledged change lost, order per
// channel by seq, no 5xx from the api during a leader election.
//
// The package holds only tests; it needs root (network namespaces) and the
// `ip` command from iproute2.
package clustertest
