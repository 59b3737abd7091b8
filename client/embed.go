// Package client holds the browser client's files (the ES module, the React
// hook, the TypeScript declarations and the demo page) for the binary to
// serve: the poller at /v1/client.js and /v1/client/react.js, dev at
// /demo/{eventId}. The JavaScript has no build step, so what is embedded is
// the source itself.
package client

import "embed"

// Files holds client.js, react.js, client.d.ts, react.d.ts and demo.html at
// its root, and vendor/pusher.min.js (pusher-js 8.6.0, for the demo page).
//
//go:embed client.js react.js client.d.ts react.d.ts demo.html vendor/pusher.min.js vendor/pusher.min.js.LICENSE.txt
var Files embed.FS
