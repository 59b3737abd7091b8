package poller

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether the client of a parked connection has closed or
// reset it, without consuming anything and without blocking: a
// non-blocking MSG_PEEK on the socket. Data waiting (a pipelined request)
// counts as alive. It uses Control, not Read, so it never waits for the
// read lock of a connection some other goroutine is reading.
func peerGone(c net.Conn) bool {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			gone = n == 0 // orderly shutdown: EOF
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		default:
			gone = true // reset or another socket error
		}
	})
	return gone
}

// nonBlocking returns c's raw connection for writeNonBlocking, or nil when
// c has none (TLS, a pipe): its writes then block in a goroutine.
func nonBlocking(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNonBlocking writes what the socket takes now, in one syscall: n <
// len(b) with a nil error means the socket buffer is full. Go's sockets
// are non-blocking, and the callback returning true never waits for room.
func writeNonBlocking(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}
