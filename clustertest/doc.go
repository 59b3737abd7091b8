// Package clustertest is the fault suite of real processes behind
// `make cluster-test`: three nats-server processes (built from the module,
// each in its own network namespace behind a bridge, so a node can be cut
// off from its peers), R3 LIVE_EVENTS, two api, two relay (partitioned
// mode) and two poller processes of the liveupdates binary, the
// Pusher-compatible test server, a load generator and long-poll clients.
//
// Each scenario runs on a fresh cluster and injects one fault under load:
// a relay SIGKILLed three times (issue 9's relay target: 20,000 changes at
// 500/s), the stream leader SIGKILLed and restarted, the leader cut off from
// its peers for 15 s (first moved to a node an api process is connected to:
// that api must leave the cut-off node within its publish timeout; both
// relays and one poller are restarted with that node as their only seed
// URL, the other poller with a node of the majority: the relays must leave
// it, so Pusher goes at most 11 s without a change, or the election plus
// 4 s, and the poller there must make the other's cursors wait), a
// rolling restart of every process (SIGTERM), a 10 s Pusher outage. The
// NATS nodes run at nice -10, as nodes with CPUs of their own. The load
// generator posts to both api processes with an Idempotency-Key and
// retries 5xx and transport errors with the same key; each eventId has a
// long-poll client per poller that alternates between the two replicas on
// every request, following the cursor.
//
// Each scenario prints a row: published, acked (2xx), delivered (distinct
// changes at Pusher), lost (acknowledged, never at Pusher), lost_poll
// (acknowledged, missing at a poll client of its eventId), dups (repeat
// deliveries to Pusher), reorders (a first arrival at Pusher below a seq
// its channel already received), poll_reorders, resets (a poller answering
// a valid cursor with reset), 5xx (api answers), conn_err (transport errors
// the load generator retried, e.g. an api restarting), gap (longest time
// between two Pusher deliveries), p99 and max_lat (publish to Pusher),
// max_ack (longest time one change took to be acknowledged, retries
// included), took. Notes under the table say where the leaders and
// connections were, how long elections took (from the nodes' own logs), and
// the first examples of each problem.
//
// It asserts, per scenario: lost = 0 at Pusher and at every poll client,
// no reorders, no resets, no 5xx, every change acknowledged, and no process
// exiting on its own under load. It needs root (network namespaces) and
// the `ip` command from iproute2; `make test` leaves it out for that
// reason, and .ci/run runs it as its own step.
package clustertest
