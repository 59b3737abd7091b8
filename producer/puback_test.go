package producer

import (
	"errors"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The answers a nats-server v2.15 writes to a publish, and what nats.go's
// PublishMsgAsync made of them: parsePubAck must read them the same.
func TestParsePubAckReadsWhatTheServerWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		data   string
		status string
		want   *jetstream.PubAck
		err    error
		code   jetstream.ErrorCode
	}{
		{name: "stored", data: `{"stream":"LIVE_EVENTS","seq":42}`, want: &jetstream.PubAck{Stream: "LIVE_EVENTS", Sequence: 42}},
		{name: "domain", data: `{"stream":"LIVE_EVENTS","domain":"hub","seq":7}`, want: &jetstream.PubAck{Stream: "LIVE_EVENTS", Domain: "hub", Sequence: 7}},
		{name: "duplicate as the server writes it", data: `{"stream":"LIVE_EVENTS","seq":9,"duplicate": true}`, want: &jetstream.PubAck{Stream: "LIVE_EVENTS", Sequence: 9, Duplicate: true}},
		{name: "duplicate without the space", data: `{"stream":"LIVE_EVENTS","seq":9,"duplicate":true}`, want: &jetstream.PubAck{Stream: "LIVE_EVENTS", Sequence: 9, Duplicate: true}},
		{name: "duplicate false", data: `{"stream":"S","seq":9,"duplicate":false}`, want: &jetstream.PubAck{Stream: "S", Sequence: 9}},
		{name: "other stream", data: `{"stream":"OTHER","seq":1}`, want: &jetstream.PubAck{Stream: "OTHER", Sequence: 1}},
		{name: "counter", data: `{"stream":"S","seq":3,"val":"5"}`, want: &jetstream.PubAck{Stream: "S", Sequence: 3, Value: "5"}},
		{name: "escaped stream", data: `{"stream":"A\u0042","seq":3}`, want: &jetstream.PubAck{Stream: "AB", Sequence: 3}},
		{name: "no quorum", data: `{"stream":"LIVE_EVENTS","error":{"code":503,"err_code":10008,"description":"jetstream system temporarily unavailable"}}`, code: 10008},
		{name: "in process", data: `{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`, code: 10158},
		{name: "too large", data: `{"stream":"LIVE_EVENTS","error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`, code: 10054},
		{name: "no responders", status: "503", err: jetstream.ErrNoStreamResponse},
		{name: "empty", err: jetstream.ErrInvalidJSAck},
		{name: "no stream", data: `{"seq":5}`, err: jetstream.ErrInvalidJSAck},
		{name: "not json", data: `{"stream":"S","seq":5`, err: jetstream.ErrInvalidJSAck},
		{name: "seq overflows", data: `{"stream":"S","seq":18446744073709551616}`, err: jetstream.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &nats.Msg{Data: []byte(tc.data)}
			if tc.status != "" {
				m.Header = nats.Header{"Status": {tc.status}}
			}
			ack, err := parsePubAck(m)
			switch {
			case tc.want != nil:
				if err != nil || !reflect.DeepEqual(ack, tc.want) {
					t.Fatalf("parsePubAck(%s)=%+v, %v, want %+v", tc.data, ack, err, tc.want)
				}
			case tc.code != 0:
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.code {
					t.Fatalf("parsePubAck(%s)=%+v, %v, want the *jetstream.APIError %d", tc.data, ack, err, tc.code)
				}
			default:
				if !errors.Is(err, tc.err) {
					t.Fatalf("parsePubAck(%s)=%+v, %v, want %v", tc.data, ack, err, tc.err)
				}
			}
			// The hand reading agrees with nats.go's own (encoding/json).
			if tc.status == "" {
				ref, refErr := decodePubAck(m.Data)
				if !reflect.DeepEqual(ack, ref) || (err == nil) != (refErr == nil) {
					t.Fatalf("parsePubAck(%s)=%+v, %v; encoding/json reads %+v, %v", tc.data, ack, err, ref, refErr)
				}
			}
		})
	}
}

// Whatever the hand reading accepts, encoding/json reads the same way:
// the fast path may decline an answer (decodePubAck then reads it), never
// read it differently. Seeds in testdata/fuzz/FuzzParsePubAck.
func FuzzParsePubAck(f *testing.F) {
	f.Add([]byte(`{"stream":"LIVE_EVENTS","seq":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ack, ok := scanPubAck(data)
		if _, err := parsePubAck(&nats.Msg{Data: data}); err != nil && ok {
			t.Fatalf("parsePubAck(%q) failed (%v) although scanPubAck read %+v", data, err, ack)
		}
		if !ok {
			return
		}
		ref, err := decodePubAck(data)
		if err != nil {
			t.Fatalf("scanPubAck(%q)=%+v, but encoding/json fails: %v", data, ack, err)
		}
		if !reflect.DeepEqual(ack, ref) {
			t.Fatalf("scanPubAck(%q)=%+v, encoding/json reads %+v", data, ack, ref)
		}
	})
}
