package poller

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// The shared frame is byte for byte what a stream used to encode for
// itself, line breaks of every kind included, and a cached frame is
// served only for its own seq.
func TestSharedSSEFrameEqualsThePerStreamEncoding(t *testing.T) {
	datas := []string{
		`{"a":1}`,
		"{\n  \"a\": 1\n}",
		"{\r\n\"a\":\r1}",
		"{\"a\":1}\n",
		"\r\n",
		"",
	}
	var fc frameCache
	for i, d := range datas {
		seq := uint64(i + 1)
		rec := newRecorder()
		sw := &sseWriter{w: rec, c: &sseConn{rc: http.NewResponseController(rec)}, timeout: time.Second}
		sw.addEvent(seq, "vote.updated", []byte(d))
		if err := sw.flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		got := fc.frame(item{seq: seq, typ: "vote.updated", json: []byte(d)})
		if !bytes.Equal(got, rec.Body.Bytes()) {
			t.Fatalf("data %q: shared frame %q, per-stream %q", d, got, rec.Body.Bytes())
		}
		// The same slot, a later seq: re-encoded, not the cached frame.
		later := seq + sseFrameSlots
		if f := fc.frame(item{seq: later, typ: "x", json: []byte(`{}`)}); !bytes.HasPrefix(f, []byte("id: "+itoa(later)+"\n")) {
			t.Fatalf("slot reuse: frame %q, want seq %d", f, later)
		}
	}
}

func itoa(n uint64) string { return string(formatSeq(nil, n)) }
