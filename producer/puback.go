package producer

import (
	"encoding/json"
	"math"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file reads JetStream's answer to a publish (a PubAck) without
// nats.go's asynchronous publisher: PublishBatch takes its acks on an inbox
// of its own (sendWindow), because PublishMsgAsync's future, map, lock and
// reflection-based decode per ack cost 7-10 µs of client CPU per change
// (issue 10).

// parsePubAck is what nats.go's PublishMsgAsync makes of an answer, with
// its no-responders retry off: an empty 503 is jetstream.ErrNoStreamResponse,
// an error answer its *jetstream.APIError (so classify and isTransient see
// the same errors as before), an answer without a stream
// jetstream.ErrInvalidJSAck. The server writes every ack of a plain publish
// as {"stream":"S"[,"domain":"D"],"seq":N[,"duplicate": true]}; that shape
// is read by hand, anything else (errors, counters, unexpected escapes) by
// encoding/json, which FuzzParsePubAck holds the hand reading to.
func parsePubAck(m *nats.Msg) (*jetstream.PubAck, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return nil, jetstream.ErrNoStreamResponse
	}
	if ack, ok := scanPubAck(m.Data); ok {
		return ack, nil
	}
	return decodePubAck(m.Data)
}

// decodePubAck reads an answer as nats.go does (jetstream.handleAsyncReply).
func decodePubAck(data []byte) (*jetstream.PubAck, error) {
	var resp struct {
		*jetstream.PubAck
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if resp.PubAck == nil || resp.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return resp.PubAck, nil
}

// scanPubAck reads the server's ack shape exactly, and reports false for
// anything else, which decodePubAck then reads.
func scanPubAck(d []byte) (*jetstream.PubAck, bool) {
	s := scanner{d: d}
	ack := &jetstream.PubAck{}
	var ok bool
	if !s.lit(`{"stream":`) {
		return nil, false
	}
	if ack.Stream, ok = s.str(); !ok || ack.Stream == "" {
		return nil, false
	}
	if s.lit(`,"domain":`) {
		if ack.Domain, ok = s.str(); !ok {
			return nil, false
		}
	}
	if !s.lit(`,"seq":`) {
		return nil, false
	}
	if ack.Sequence, ok = s.uint(); !ok {
		return nil, false
	}
	if s.lit(`,"duplicate":`) {
		s.lit(" ")
		if !s.lit("true") {
			return nil, false
		}
		ack.Duplicate = true
	}
	if !s.lit("}") || s.i != len(d) {
		return nil, false
	}
	return ack, true
}

// scanner reads a byte slice from left to right.
type scanner struct {
	d []byte
	i int
}

// lit consumes l when the input continues with it.
func (s *scanner) lit(l string) bool {
	if len(s.d)-s.i < len(l) || string(s.d[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// str consumes a JSON string of printable ASCII without escapes: what
// stream and domain names are. Anything else is left to encoding/json,
// which, for one, replaces invalid UTF-8.
func (s *scanner) str() (string, bool) {
	if !s.lit(`"`) {
		return "", false
	}
	for j := s.i; j < len(s.d); j++ {
		switch c := s.d[j]; {
		case c == '"':
			v := string(s.d[s.i:j])
			s.i = j + 1
			return v, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", false
		}
	}
	return "", false
}

// uint consumes a JSON number that is a uint64 without leading zeros.
func (s *scanner) uint() (uint64, bool) {
	start := s.i
	var v uint64
	for ; s.i < len(s.d) && s.d[s.i] >= '0' && s.d[s.i] <= '9'; s.i++ {
		c := uint64(s.d[s.i] - '0')
		if v > (math.MaxUint64-c)/10 {
			return 0, false
		}
		v = v*10 + c
	}
	n := s.i - start
	return v, n > 0 && (n == 1 || s.d[start] != '0')
}
