package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/nostressplanner/liveupdates/bench/internal/measure"
)

// raiseFileLimit lifts the soft limit on open files to the hard one: 5,000
// subscribers are 5,000 sockets here.
func raiseFileLimit() error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("getrlimit nofile: %w", err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("setrlimit nofile %d: %w", l.Max, err)
	}
	return nil
}

// httpClient keeps up to conns connections alive and dials at most 64 at
// once, so opening thousands does not overflow the server's listen backlog.
func httpClient(conns int) *http.Client {
	dials := make(chan struct{}, 64)
	d := &net.Dialer{Timeout: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case dials <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-dials }()
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// drain reads an answer whole into buf's space and closes it, so its
// connection goes back to the pool.
func drain(res *http.Response, buf []byte) {
	for {
		if _, err := res.Body.Read(buf); err != nil {
			break
		}
	}
	res.Body.Close()
}

// server knows each target's routes and bodies.
type server struct {
	c config
}

// pad makes every change about as large as a vote update (the producer's
// benchmarks use 47 bytes).
const pad = "0123456789abcdefghij"

func (s server) data(n int) string { return `{"r":` + strconv.Itoa(n) + `,"pad":"` + pad + `"}` }

// batchBody is one ingest request: n changes over channels first..first+n-1
// (mod chs).
func (s server) batchBody(first, n, chs, tag int) []byte {
	var b bytes.Buffer
	if s.c.target == "ours" {
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"eventId":"e%d","type":"vote.updated","data":%s}`, (first+i)%chs, s.data(tag))
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	b.WriteString(`{"commands":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"publish":{"channel":"e%d","data":%s}}`, (first+i)%chs, s.data(tag))
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func (s server) batchRequest(ctx context.Context, body []byte) *http.Request {
	path := "/v1/publish"
	if s.c.target == "centrifugo" {
		path = "/api/batch"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.c.publishBase+path, bytes.NewReader(body))
	s.auth(req)
	return req
}

// publishRequest publishes one change to one eventId (channel).
func (s server) publishRequest(ctx context.Context, channel string, n int) *http.Request {
	var req *http.Request
	if s.c.target == "ours" {
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.c.publishBase+"/v1/events/"+channel+"/vote.updated", bytes.NewReader([]byte(s.data(n))))
	} else {
		body := `{"channel":"` + channel + `","data":` + s.data(n) + `}`
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.c.publishBase+"/api/publish", bytes.NewReader([]byte(body)))
	}
	s.auth(req)
	return req
}

func (s server) auth(req *http.Request) {
	req.Header.Set("Content-Type", "application/json")
	if s.c.target == "ours" {
		req.Header.Set("Authorization", "Bearer "+s.c.apiKey)
	} else {
		req.Header.Set("X-API-Key", s.c.apiKey)
	}
}

// updatesURL is ours' poll of one eventId, with the query q ("" for none).
func (s server) updatesURL(eventID, q string) string {
	u := s.c.base + "/v1/events/" + eventID + "/updates"
	if q != "" {
		u += "?" + q
	}
	return u
}

// longPollURL waits up to wait seconds for a change after since.
func (s server) longPollURL(eventID string, since uint64, wait int) string {
	return s.updatesURL(eventID, "since="+strconv.FormatUint(since, 10)+"&wait="+strconv.Itoa(wait))
}

// streamRequest opens an SSE subscription to one channel: ours at
// /v1/events/{id}/stream, Centrifugo's uni_sse with a connection token that
// subscribes it server-side.
func (s server) streamRequest(ctx context.Context, channel string) (*http.Request, error) {
	if s.c.target == "ours" {
		return http.NewRequestWithContext(ctx, http.MethodGet, s.c.base+"/v1/events/"+channel+"/stream", nil)
	}
	tok, err := measure.HS256(map[string]any{
		"sub": "bench", "channels": []string{channel}, "exp": time.Now().Add(time.Hour).Unix(),
	}, s.c.tokenSecret)
	if err != nil {
		return nil, err
	}
	connect, _ := json.Marshal(map[string]string{"token": tok})
	return http.NewRequestWithContext(ctx, http.MethodGet, s.c.base+"/connection/uni_sse?cf_connect="+url.QueryEscape(string(connect)), nil)
}

// ok reads a publish answer whole and says whether every change in it was
// accepted: a 2xx, and for Centrifugo no error among the replies.
func (s server) ok(res *http.Response) bool {
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode/100 != 2 {
		return false
	}
	return s.c.target == "ours" || !bytes.Contains(body, []byte(`"error"`))
}
