package mailbox

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// testCerts makes one certificate of each kind.
func testCerts(t testing.TB) (x, pq []byte) {
	id := e2e.NewIdentity()
	x, err := id.SignOneTimeCert([]byte("mailbox"), e2e.NewOneTimePrekey(1))
	if err != nil {
		t.Fatal(err)
	}
	pq, err = id.SignPQOneTimeCert([]byte("mailbox"), e2e.NewPQPrekey(2, true))
	if err != nil {
		t.Fatal(err)
	}
	return x, pq
}

func sampleMsgs(t testing.TB) []Msg {
	x, pq := testCerts(t)
	inbox := [e2e.InboxIDSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	return []Msg{
		Status{},
		SetPolicy{Policy{TTL: 14 * 86400, Strangers: true, PowBits: 22, StrangersPerHour: 20, TokenKey: [32]byte{7}, Revoked: []uint32{3, 9}}},
		SetPolicy{Policy{TTL: 60}},
		PutBundle{Bundle: []byte("a bundle")},
		PutOTKs{Certs: [][]byte{x, pq, x}},
		Subscribe{After: 1 << 40, PageBytes: 64 << 10},
		Ack{Seqs: []uint64{1, 2, 1 << 60}},
		Redeem{Secret: [32]byte{9, 9}},
		Unregister{},
		GetPrekeys{Inbox: inbox},
		Deposit{Inbox: inbox, Auth: AuthToken, Index: 7, Token: [16]byte{1}, TTL: 3600, Seal: []byte("sealed")},
		Deposit{Inbox: inbox, Auth: AuthWork, Hour: 493000, Nonce: 1 << 50, TTL: 3600, Seal: []byte("sealed by a stranger")},
		OK{},
		&Error{Code: ErrCodeNotAdmitted, Text: "not an owner here"},
		Page{More: true, Deposits: []Stored{{Seq: 1, Received: 1700000000000, Seal: []byte("one")}, {Seq: 5, Received: 1, Seal: []byte("two")}}},
		Page{},
		StatusReply{Inbox: inbox, Stored: 3, StoredBytes: 3000, Quota: 10000, QuotaBytes: 50 << 20, TTL: 1, TTLMax: 2, Strangers: true, PowBits: 22, StrangersPerHour: 20, OTKsX25519: 99, OTKsMLKEM: 98},
		Prekeys{Bundle: []byte("bundle"), Certs: [][]byte{x, pq}},
		Prekeys{Bundle: []byte("bundle")},
		Result{Status: ResultDuplicate},
	}
}

// Every frame decodes to what was encoded, and encodes back to the same
// bytes.
func TestWireRoundTrip(t *testing.T) {
	for _, m := range sampleMsgs(t) {
		b := m.Append(nil)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(normal(got), normal(m)) {
			t.Errorf("%T: decoded to %+v, want %+v", m, got, m)
		}
		if again := got.Append(nil); !bytes.Equal(again, b) {
			t.Errorf("%T: re-encoded differently", m)
		}
	}
}

// normal makes empty and nil slices compare equal.
func normal(m Msg) Msg {
	switch v := m.(type) {
	case Page:
		if len(v.Deposits) == 0 {
			v.Deposits = nil
		}
		return v
	case Prekeys:
		if len(v.Certs) == 0 {
			v.Certs = nil
		}
		return v
	case SetPolicy:
		if len(v.Revoked) == 0 {
			v.Revoked = nil
		}
		return v
	}
	return m
}

// Each malformation gets ErrMalformed: a cut or extended frame, counts
// over their limits or past the end, values out of range.
func TestWireMalformed(t *testing.T) {
	for _, m := range sampleMsgs(t) {
		b := m.Append(nil)
		if restIsField(b[0]) {
			continue // a byte more or less is another valid frame
		}
		if _, err := Decode(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%T with a byte more: %v", m, err)
		}
		if len(b) > 1 {
			if _, err := Decode(b[:len(b)-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%T cut by a byte: %v", m, err)
			}
		}
	}
	x, _ := testCerts(t)
	for name, b := range map[string][]byte{
		"empty":                 nil,
		"unknown type":          {0x7f},
		"flag not 0 or 1":       append(SetPolicy{}.Append(nil)[:5], 2),
		"no certificates":       {TypePutOTKs, 0, 0},
		"unknown certificate":   append([]byte{TypePutOTKs, 0, 1, 9}, x[1:]...),
		"too many certificates": append([]byte{TypePutOTKs, 0, MaxOTKsPerFrame + 1}, x...),
		"no acks":               {TypeAck, 0, 0},
		"acks past the end":     {TypeAck, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1},
		"unknown auth":          append(append([]byte{TypeDeposit}, make([]byte, 16)...), 3),
		"deposit without seal":  Deposit{Auth: AuthWork}.Append(nil),
		"empty bundle":          {TypePutBundle},
		"bundle too large":      append([]byte{TypePutBundle}, make([]byte, e2e.MaxBundleSize+1)...),
		"error code zero":       {TypeError, 0},
		"error not UTF-8":       {TypeError, 1, 0xff},
		"page count past end":   {TypePage, 0, 0xff, 0xff},
		"page seal of zero":     Page{Deposits: []Stored{{Seq: 1}}}.Append(nil),
		"result unknown":        {TypeResult, 8},
		"three prekey certs":    append(append([]byte{TypePrekeys, 0, 1, 'b', 3}, x...), append(x, x...)...),
		"frame over MaxFrame":   append([]byte{TypePutBundle}, make([]byte, MaxFrame)...),
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// restIsField: frames whose last field is the rest of the frame (a
// bundle, a seal, an error's text).
func restIsField(typ byte) bool {
	return typ == TypePutBundle || typ == TypeDeposit || typ == TypeError
}

// FuzzDecode: Decode never panics, and what it accepts encodes back to
// the same bytes (one encoding per message).
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMsgs(f) {
		f.Add(m.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if again := m.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("%T decoded from %x encodes to %x", m, b, again)
		}
	})
}

// An error's text is cut to MaxErrorText on a character's boundary, so
// that the frame still decodes.
func TestErrorTextCut(t *testing.T) {
	long := strings.Repeat("é", MaxErrorText) // 2 bytes each
	m, err := Decode((&Error{Code: 1, Text: long}).Append(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.(*Error).Text; len(got) > MaxErrorText || !strings.HasPrefix(long, got) || len(got) < MaxErrorText-1 {
		t.Fatalf("cut to %d bytes", len(got))
	}
}
