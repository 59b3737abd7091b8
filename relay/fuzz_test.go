package relay

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nostressplanner/liveupdates/wire"
)

// fakeMsg is the part of a fetched message decode reads.
type fakeMsg struct {
	jetstream.Msg
	subject string
	header  nats.Header
	data    []byte
}

func (m fakeMsg) Subject() string      { return m.subject }
func (m fakeMsg) Headers() nats.Header { return m.header }
func (m fakeMsg) Data() []byte         { return m.data }

// FuzzDecodeAndEncode checks that whatever is stored, the relay either
// refuses it as invalid or sends Pusher valid UTF-8 JSON within the limit
// that carries the change's seq.
func FuzzDecodeAndEncode(f *testing.F) {
	f.Add("live.events.e1.vote.updated", "01JD", "1.2", []byte(`{"a":1}`), 1)
	f.Add("live.events.e1.Bad", "", "", []byte(`{}`), 1)
	f.Add("live.events.e1.vote.updated", "id with space", "x", []byte("\"\xff\""), 1)
	f.Add("live.events.e-1_x.final.date.set", "id", "", []byte(`"`+string(make([]byte, 0))+`"`), 1)
	cfg := Config{}.withDefaults()
	f.Fuzz(func(t *testing.T, subject, id, socket string, data []byte, limitKB int) {
		limitKB = 1 + (limitKB&0x7fffffff)%4
		h := nats.Header{}
		h.Set(wire.HeaderMsgID, id)
		h.Set(wire.HeaderSocketID, socket)
		env, sock, err := decode(fakeMsg{subject: subject, header: h, data: data}, 7, time.Unix(0, 0))
		if err != nil {
			return
		}
		if sock != "" && wire.ValidateSocketID(sock) != nil {
			t.Fatalf("decode kept socket id %q", sock)
		}
		it := &item{seq: 7, env: env, socketID: sock, channel: cfg.channel(env.EventID)}
		ev := newEncoder(limitKB).event([]*item{it})
		if !utf8.ValidString(ev.data) || !json.Valid([]byte(ev.data)) {
			t.Fatalf("event data is not valid UTF-8 JSON: %q", ev.data)
		}
		if len(ev.data) > limitKB*1024 && ev.shape != shapeReference {
			t.Fatalf("event data of %d bytes over the %d KiB limit", len(ev.data), limitKB)
		}
		var back wire.Envelope
		if err := json.Unmarshal([]byte(ev.data), &back); err != nil || back.Seq != 7 || back.ID != env.ID {
			t.Fatalf("envelope does not round-trip: %v %s", err, ev.data)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("3")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add("-1")
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 {
			t.Fatalf("parseRetryAfter(%q)=%v, want never negative", v, d)
		}
	})
}
