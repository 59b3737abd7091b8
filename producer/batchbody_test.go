package producer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nostressplanner/liveupdates/wire"
)

func TestParseBatchReadsTheDocumentedShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		items int
		code  string
	}{
		{"one change", `[{"eventId":"e1","type":"vote.updated","data":{"a":1}}]`, 1, ""},
		{"every field and surrounding space", " \n[{\"eventId\":\"e1\",\"type\":\"t\",\"data\":null,\"id\":\"i\",\"socketId\":\"1.2\"}]\n", 1, ""},
		{"items whose fields are checked later", `[{"eventId":"bad id"},{}]`, 2, ""},
		{"no body", ``, 0, wire.CodeInvalidJSON},
		{"null", `null`, 0, wire.CodeInvalidJSON},
		{"an object", `{}`, 0, wire.CodeInvalidJSON},
		{"an empty array", `[]`, 0, wire.CodeInvalidRequest},
		{"a number in the array", `[1]`, 0, wire.CodeInvalidJSON},
		{"a wrong field type", `[{"eventId":5}]`, 0, wire.CodeInvalidJSON},
		{"an unknown field", `[{"event":"e1"}]`, 0, wire.CodeInvalidJSON},
		{"a cut-off body", `[{"eventId":"e1"`, 0, wire.CodeInvalidJSON},
		{"two arrays", `[{}][{}]`, 0, wire.CodeInvalidJSON},
		{"too many items", "[" + strings.Repeat("{},", 3) + "{}]", 0, wire.CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			items, err := parseBatch([]byte(tt.body), 3)
			if tt.code == "" {
				if err != nil || len(items) != tt.items {
					t.Fatalf("parseBatch()=%d items, %v; want %d", len(items), err, tt.items)
				}
				return
			}
			var ie *wire.InputError
			if !errors.As(err, &ie) || ie.Code != tt.code {
				t.Fatalf("parseBatch()=%v, want code %s", err, tt.code)
			}
		})
	}
}

func TestParseBatchKeepsDataByteForByte(t *testing.T) {
	t.Parallel()
	items, err := parseBatch([]byte(`[{"eventId":"e1","type":"t","data": {"b" : [1, 2.50]} }]`), 1)
	if err != nil {
		t.Fatalf("parseBatch()=%v", err)
	}
	if got := string(items[0].Data); got != `{"b" : [1, 2.50]}` {
		t.Fatalf("data=%q", got)
	}
}

// FuzzParseBatch checks that the batch parser never panics, answers every
// failure with an *wire.InputError, and returns only items whose data is
// valid JSON or absent, within the item limit.
func FuzzParseBatch(f *testing.F) {
	f.Add([]byte(`[{"eventId":"e1","type":"vote.updated","data":{"a":1},"id":"x"}]`))
	f.Add([]byte(`[{"eventId":"e1","type":"vote.updated"}, {"data":null,"socketId":"1.2"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"eventId":"e1"}`))
	f.Add([]byte("[\"\xff\"]"))
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := parseBatch(body, 5)
		if err != nil {
			var ie *wire.InputError
			if !errors.As(err, &ie) || ie.Code == "" || ie.Msg == "" {
				t.Fatalf("parseBatch()=%v, not an *wire.InputError with code and message", err)
			}
			return
		}
		if len(items) == 0 || len(items) > 5 {
			t.Fatalf("parseBatch() returned %d items", len(items))
		}
		for i, it := range items {
			if len(it.Data) > 0 && !json.Valid(it.Data) {
				t.Fatalf("item %d data %q is not valid JSON", i, it.Data)
			}
		}
	})
}
