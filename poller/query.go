package poller

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nostressplanner/liveupdates/polltoken"
	"github.com/nostressplanner/liveupdates/wire"
)

// ErrInvalidQuery is wrapped by the *wire.InputError that parseQuery and
// parseSeq return.
var ErrInvalidQuery = errors.New("invalid query")

// query is a parsed read request. It is parsed by hand from the raw query
// so the hot 304 path does not build a url.Values map.
type query struct {
	since    uint64
	hasSince bool
	wait     time.Duration
	token    string
	// sse: the client can move to the SSE stream (transport=sse), so a
	// long-poll of a hot eventId is answered at once with the hint instead
	// of waiting for the next change (see hot.go).
	sse bool
}

// maxTransportLen bounds the transport key's value: a short list of names.
const maxTransportLen = 64

// parseQuery reads since, wait, token and transport (a comma-separated
// list of the transports the client can move to; names other than sse are
// ignored, so a newer client's list is no error); other keys (cache busters such as
// _=123) are ignored. An empty since means none. wait is whole seconds;
// more than maxWait is clamped to it. A key given twice is an error.
func parseQuery(raw string, maxWait time.Duration) (query, error) {
	var q query
	var seenSince, seenWait, seenToken, seenTransport bool
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			uk, err := url.QueryUnescape(k)
			if err != nil {
				return query{}, badQuery(wire.CodeInvalidRequest, "query key is not valid URL encoding")
			}
			k = uk
		}
		switch k {
		case "since", "wait", "token", "transport":
		default:
			continue
		}
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return query{}, badQuery(wire.CodeInvalidRequest, fmt.Sprintf("query %s is not valid URL encoding", k))
			}
			v = uv
		}
		switch k {
		case "since":
			if seenSince {
				return query{}, badQuery(wire.CodeInvalidCursor, "since given more than once")
			}
			seenSince = true
			if v == "" {
				continue
			}
			s, err := parseSeq(v, "since")
			if err != nil {
				return query{}, err
			}
			q.since, q.hasSince = s, true
		case "wait":
			if seenWait {
				return query{}, badQuery(wire.CodeInvalidRequest, "wait given more than once")
			}
			seenWait = true
			if v == "" {
				continue
			}
			if len(v) > 6 || !allDigits(v) {
				return query{}, badQuery(wire.CodeInvalidRequest, fmt.Sprintf("wait must be whole seconds from 0 to %d", int(maxWait/time.Second)))
			}
			n, _ := strconv.Atoi(v)
			q.wait = min(time.Duration(n)*time.Second, maxWait)
		case "token":
			if seenToken {
				return query{}, badQuery(wire.CodeInvalidRequest, "token given more than once")
			}
			seenToken = true
			if len(v) > polltoken.MaxTokenLen {
				return query{}, badQuery(wire.CodeInvalidRequest, fmt.Sprintf("token is longer than %d bytes", polltoken.MaxTokenLen))
			}
			q.token = v
		case "transport":
			if seenTransport {
				return query{}, badQuery(wire.CodeInvalidRequest, "transport given more than once")
			}
			seenTransport = true
			if len(v) > maxTransportLen {
				return query{}, badQuery(wire.CodeInvalidRequest, fmt.Sprintf("transport is longer than %d bytes", maxTransportLen))
			}
			for v != "" {
				var t string
				t, v, _ = strings.Cut(v, ",")
				q.sse = q.sse || strings.TrimSpace(t) == "sse"
			}
		}
	}
	return q, nil
}

// parseSeq reads a stream seq: 1 to 20 decimal digits, no sign.
func parseSeq(v, what string) (uint64, error) {
	if len(v) == 0 || len(v) > 20 || !allDigits(v) {
		return 0, badQuery(wire.CodeInvalidCursor, fmt.Sprintf("%s must be a stream seq: 1 to 20 decimal digits", what))
	}
	s, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, badQuery(wire.CodeInvalidCursor, fmt.Sprintf("%s is larger than any stream seq", what))
	}
	return s, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func badQuery(code, msg string) error {
	return &wire.InputError{Code: code, Msg: msg, Err: ErrInvalidQuery}
}

// etagMatch reports whether an If-None-Match header names the ETag of seq
// newest ("<seq>", weak or strong, in a list, or *). It allocates nothing.
func etagMatch(inm string, newest uint64) bool {
	var buf [24]byte
	tag := appendETag(buf[:0], newest)
	if inm == string(tag) {
		return true
	}
	for inm != "" {
		var t string
		t, inm, _ = strings.Cut(inm, ",")
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		if t == "*" || t == string(tag) {
			return true
		}
	}
	return false
}

func appendETag(b []byte, seq uint64) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '"')
}
