package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/p2pmsg/p2pmsg/e2e"
)

func sampleGrant() Grant {
	return Grant{Mailbox: []byte("mailbox peer id bytes"), Inbox: [16]byte{4, 2}, Index: 77, Token: [16]byte{9, 9, 9}}
}

// Receipts, grants and retry requests come back as they went, and read
// as control content of their signal (so that older versions ignore them).
func TestControlRoundTrip(t *testing.T) {
	ids := []e2e.MessageID{{1}, {2}, {3}}
	r := Receipt{Kind: ReceiptRead, IDs: ids}
	b, err := EncodeReceipt(42, r)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeReceipt(b); err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("receipt: %+v, %v", got, err)
	}
	if c, ok := DecodeContent(b); !ok || c.Control != ControlReceipt || c.Sent != 42 {
		t.Fatalf("receipt as content: %+v", c)
	}
	if b, err = EncodeRetry(43, ids); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeRetry(b); err != nil || !reflect.DeepEqual(got, ids) {
		t.Fatalf("retry: %+v, %v", got, err)
	}
	g := sampleGrant()
	if b, err = EncodeGrant(44, g); err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeGrant(b); err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("grant: %+v, %v", got, err)
	}
	if _, err := DecodeReceipt(b); !errors.Is(err, ErrMalformedControl) {
		t.Fatalf("a grant read as a receipt: %v", err)
	}
	// The most ids that fit one envelope.
	many := make([]e2e.MessageID, MaxReceiptIDs)
	if b, err = EncodeReceipt(1, Receipt{Kind: ReceiptDelivered, IDs: many}); err != nil || len(b) > e2e.MaxPlaintextSize {
		t.Fatalf("%d ids: %d bytes, %v", len(many), len(b), err)
	}
	for name, f := range map[string]func() error{
		"no ids":       func() error { _, err := EncodeReceipt(1, Receipt{Kind: ReceiptRead}); return err },
		"too many ids": func() error { _, err := EncodeRetry(1, make([]e2e.MessageID, MaxReceiptIDs+1)); return err },
		"unknown kind": func() error { _, err := EncodeReceipt(1, Receipt{Kind: 3, IDs: ids}); return err },
		"no mailbox":   func() error { _, err := EncodeGrant(1, Grant{}); return err },
	} {
		if f() == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestControlMalformed(t *testing.T) {
	r, _ := EncodeReceipt(1, Receipt{Kind: ReceiptDelivered, IDs: []e2e.MessageID{{1}}})
	g, _ := EncodeGrant(1, sampleGrant())
	q, _ := EncodeRetry(1, []e2e.MessageID{{1}, {2}})
	for name, c := range map[string]struct {
		b   []byte
		dec func([]byte) error
	}{
		"receipt cut":       {r[:len(r)-1], decReceipt},
		"receipt longer":    {append(bytes.Clone(r), 0), decReceipt},
		"receipt kind 0":    {append(bytes.Clone(r[:ContentHeader+1]), append([]byte{0}, r[ContentHeader+2:]...)...), decReceipt},
		"receipt no count":  {r[:ContentHeader+2], decReceipt},
		"grant cut":         {g[:len(g)-1], decGrant},
		"grant empty peer":  {append(bytes.Clone(g[:ContentHeader+1]), 0), decGrant},
		"retry count wrong": {append(bytes.Clone(q[:ContentHeader+1]), append([]byte{0, 3}, q[ContentHeader+3:]...)...), decRetry},
		"retry zero ids":    {append(bytes.Clone(q[:ContentHeader+1]), 0, 0), decRetry},
		"text as a receipt": {EncodeContent(1, "hi"), decReceipt},
		"too short":         {[]byte{ContentControl}, decGrant},
	} {
		if err := c.dec(c.b); !errors.Is(err, ErrMalformedControl) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func decReceipt(b []byte) error { _, err := DecodeReceipt(b); return err }
func decGrant(b []byte) error   { _, err := DecodeGrant(b); return err }
func decRetry(b []byte) error   { _, err := DecodeRetry(b); return err }

// FuzzControl: the control decoders never panic, and what they accept
// encodes back to the same bytes.
func FuzzControl(f *testing.F) {
	r, _ := EncodeReceipt(1, Receipt{Kind: ReceiptDelivered, IDs: []e2e.MessageID{{1}, {2}}})
	g, _ := EncodeGrant(2, sampleGrant())
	q, _ := EncodeRetry(3, []e2e.MessageID{{7}})
	f.Add(r)
	f.Add(g)
	f.Add(q)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _ := DecodeContent(b)
		if r, err := DecodeReceipt(b); err == nil {
			if again, err := EncodeReceipt(c.Sent, r); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("receipt %x encodes to %x (%v)", b, again, err)
			}
		}
		if g, err := DecodeGrant(b); err == nil {
			if again, err := EncodeGrant(c.Sent, g); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("grant %x encodes to %x (%v)", b, again, err)
			}
		}
		if ids, err := DecodeRetry(b); err == nil {
			if again, err := EncodeRetry(c.Sent, ids); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("retry %x encodes to %x (%v)", b, again, err)
			}
		}
	})
}
