// Package testutil holds what integration tests need to run against real
// parts: an embedded nats-server with JetStream per test, a way to wait for a
// condition without sleeping, and a promlint check of a registry. The
// Pusher-compatible server lives in pushercompat.
//
// Only tests import this package.
package testutil
