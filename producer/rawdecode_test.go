package producer

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nostressplanner/liveupdates/testutil"
	"github.com/nostressplanner/liveupdates/wire"
)

// Issue 8 item 5: changes written straight to NATS, past the ingest API,
// that the API would refuse are refused by wire.DecodeMessage, the one read
// path of the poller and the relay.
func TestDecodeMessageRefusesRawMessagesTheAPIWouldRefuse(t *testing.T) {
	t.Parallel()
	_, js := newStream(t)
	raw := []struct {
		name, id string
		data     []byte
	}{
		{"an id with a control character", "order\x01-42", []byte(`{"a":1}`)},
		{"a 60 KB id", strings.Repeat("x", 60<<10), []byte(`{"a":1}`)},
		{"data with invalid UTF-8", "ok-1", []byte("{\"a\":\"\xff\"}")},
	}
	for _, r := range raw {
		m := nats.NewMsg(wire.Subject("e1", wire.TypeVoteUpdated))
		m.Header.Set(wire.HeaderMsgID, r.id)
		m.Data = r.data
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatalf("raw publish of %s: %v", r.name, err)
		}
	}
	msgs := testutil.ReadAll(t, js, wire.StreamName)
	if len(msgs) != len(raw) {
		t.Fatalf("stored %d raw messages, want %d", len(msgs), len(raw))
	}
	for i, m := range msgs {
		if _, _, err := wire.DecodeMessage(m.Subject, m.Header, m.Data, m.Sequence, m.Time); !errors.Is(err, wire.ErrInvalidMessage) {
			t.Fatalf("DecodeMessage(%s)=%v, want ErrInvalidMessage", raw[i].name, err)
		}
	}
}
