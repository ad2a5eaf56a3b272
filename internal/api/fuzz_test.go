package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzParams feeds arbitrary params to the strict decoder of every params
// type: it never panics, refuses with CodeInvalid, and what it accepts
// re-encodes to params that decode and encode the same again.
func FuzzParams(f *testing.F) {
	for _, seed := range []string{
		`{"peer":"bob","text":"hi","wait":true,"timeout":"1s"}`, `{"peer":"bob","txt":"x"}`, `null`, `[]`,
		`{"peer":"bob","before":"00","limit":3,"oldest":true}`, `{"since":4,"kinds":["message"]}`,
		`{"peer":"bob","verified":false}`, `{"peer":"\u0000"}`, `{"limit":1e400}`, `{"kinds":null}`, `{`,
	} {
		f.Add([]byte(seed))
	}
	types := []func() any{
		func() any { return new(SendParams) }, func() any { return new(MessageParams) },
		func() any { return new(HistoryParams) }, func() any { return new(PeerParams) },
		func() any { return new(ContactParams) }, func() any { return new(VerifiedParams) },
		func() any { return new(EventsParams) }, func() any { return new(SubscribeParams) },
		func() any { return new(None) },
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, mk := range types {
			p := mk()
			err := decodeStrict("m", raw, p)
			if err != nil {
				if CodeOf(err) != CodeInvalid {
					t.Fatalf("%T %q: code %d: %v", p, raw, CodeOf(err), err)
				}
				continue
			}
			again, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("%T %q: accepted, but does not encode: %v", p, raw, err)
			}
			q := mk()
			if err := decodeStrict("m", again, q); err != nil {
				t.Fatalf("%T %q: re-encoded as %s, refused: %v", p, raw, again, err)
			}
			// Compared encoded: an empty list and none are the same params.
			if third, _ := json.Marshal(q); !bytes.Equal(again, third) {
				t.Fatalf("%T %q: re-encoded as %s, then as %s", p, raw, again, third)
			}
		}
	})
}
