//go:build !linux

package poller

import (
	"net"
	"syscall"
)

// peerGone cannot look at the socket here; a gone client's parked
// connection is then found when its wait ends and the answer fails.
func peerGone(net.Conn) bool { return false }

// nonBlocking has no non-blocking writes here: every parked SSE write goes
// through its stream's flusher goroutine.
func nonBlocking(net.Conn) syscall.RawConn { return nil }

func writeNonBlocking(syscall.RawConn, []byte) (int, error) { return 0, nil }
