package pushercompat

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"
)

// answer is what a raw request got back.
type answer struct {
	status int
	body   string
	header http.Header
}

// rawPost sends body to path on s with a signature made with c at ts, the
// way pusher-http-go would, but without its client-side checks.
func rawPost(t *testing.T, s *Server, c credentials, ts time.Time, path string, body []byte) answer {
	t.Helper()
	q := signedQuery(c, http.MethodPost, path, ts.Unix(), body)
	return rawDo(t, s, http.MethodPost, path+"?"+q, body)
}

// rawDo sends a request with the query given as is.
func rawDo(t *testing.T, s *Server, method, pathAndQuery string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL()+pathAndQuery, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// defaultCreds are the credentials of Options{}.
var defaultCreds = credentials{key: "key", secret: "secret"}
