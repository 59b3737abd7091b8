package poller

import (
	"net"
	"net/http"
	"sync"
)

// Handing back. After a parked long-poll's answer its connection goes to an
// inner http.Server with the outer server's handler and timeouts, through a
// listener whose connections are the ones handed back, so the browser keeps
// its keep-alive connection (ParkKeepAlive).

// serverFor returns the inner server serving connections handed back from
// outer's requests, starting it on first use. It returns nil once parking
// is closed.
func (k *parking) serverFor(outer *http.Server) *innerServer {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || outer.Handler == nil {
		return nil
	}
	if is := k.servers[outer]; is != nil {
		return is
	}
	is := &innerServer{
		l: &handoff{ch: make(chan net.Conn, 256), done: make(chan struct{})},
		srv: &http.Server{
			Handler:           outer.Handler,
			ReadTimeout:       outer.ReadTimeout,
			ReadHeaderTimeout: outer.ReadHeaderTimeout,
			WriteTimeout:      outer.WriteTimeout,
			IdleTimeout:       outer.IdleTimeout,
			MaxHeaderBytes:    outer.MaxHeaderBytes,
			ErrorLog:          outer.ErrorLog,
		},
	}
	if k.servers == nil {
		k.servers = make(map[*http.Server]*innerServer)
	}
	// Requests re-served by the inner server park and come back to it.
	k.servers[outer] = is
	k.servers[is.srv] = is
	k.wg.Go(func() { _ = is.srv.Serve(is.l) }) // ErrServerClosed at shutdown
	return is
}

type innerServer struct {
	srv *http.Server
	l   *handoff
}

// handoff is a net.Listener whose connections are the ones handed back
// after a parked answer.
type handoff struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return handoffAddr{} }

func (h *handoff) give(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "poller-handoff" }
