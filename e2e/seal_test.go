package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

var inboxA, inboxB = [InboxIDSize]byte{1, 2, 3}, [InboxIDSize]byte{9}

// A seal opens only for its recipient and its inbox, gives back the
// sender and the envelope exactly, and its length tells only the step.
func TestSealRoundTripAndPadding(t *testing.T) {
	bob, alice := newParty("bob"), newParty("alice")
	sizes := map[int]int{ // envelope length -> padded inner length
		0:                                   1 << 10,
		1 << 10:                             4 << 10,
		1<<10 - sealInnerHead:               1 << 10,
		1<<10 - sealInnerHead + 1:           4 << 10,
		5000:                                16 << 10,
		16<<10 - sealInnerHead + 1:          32 << 10,
		40000:                               48 << 10,
		MaxEnvelopeSize - sealInnerHead:     64 << 10,
		MaxEnvelopeSize - sealInnerHead + 1: 64<<10 + sealInnerHead,
		MaxEnvelopeSize:                     64<<10 + sealInnerHead,
	}
	for n, padded := range sizes {
		env := bytes.Repeat([]byte{0xa5}, n)
		sealed, err := Seal(bob.id.Public().DH, inboxA, alice.id.Public().Key, env)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(sealed) != SealOverhead+padded {
			t.Errorf("%d bytes sealed into %d, want %d", n, len(sealed), SealOverhead+padded)
		}
		from, got, err := bob.id.OpenSealed(inboxA, sealed)
		if err != nil {
			t.Fatalf("%d bytes: open: %v", n, err)
		}
		if from != alice.id.Public().Key || !bytes.Equal(got, env) {
			t.Fatalf("%d bytes: opened to another sender or envelope", n)
		}
		if _, _, err := bob.id.OpenSealed(inboxB, sealed); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%d bytes: opened for another inbox: %v", n, err)
		}
		if _, _, err := alice.id.OpenSealed(inboxA, sealed); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%d bytes: opened by someone else: %v", n, err)
		}
	}
	if _, err := Seal(bob.id.Public().DH, inboxA, alice.id.Public().Key, make([]byte, MaxEnvelopeSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sealed an envelope over MaxEnvelopeSize: %v", err)
	}
	if _, err := Seal(DHPublicKey{}, inboxA, alice.id.Public().Key, nil); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("sealed to a low-order point: %v", err)
	}
}

// SealOnce is a seal like any other, the same bytes for the same
// envelope, inbox and recipient (a repeated deposit is recognised), and
// unrelated bytes when any of them, or the sender, differs.
func TestSealOnce(t *testing.T) {
	bob, carol, alice, dave := newParty("bob"), newParty("carol"), newParty("alice"), newParty("dave")
	env := []byte("an envelope")
	s1, err := alice.id.SealOnce(bob.id.Public().DH, inboxA, env)
	if err != nil {
		t.Fatal(err)
	}
	from, got, err := bob.id.OpenSealed(inboxA, s1)
	if err != nil || from != alice.id.Public().Key || !bytes.Equal(got, env) {
		t.Fatalf("open: %v", err)
	}
	s2, _ := alice.id.SealOnce(bob.id.Public().DH, inboxA, env)
	if !bytes.Equal(s1, s2) {
		t.Fatal("the same envelope sealed twice differs")
	}
	others := map[string][]byte{}
	others["another envelope"], _ = alice.id.SealOnce(bob.id.Public().DH, inboxA, []byte("an envelopf"))
	others["another inbox"], _ = alice.id.SealOnce(bob.id.Public().DH, inboxB, env)
	others["another recipient"], _ = alice.id.SealOnce(carol.id.Public().DH, inboxA, env)
	others["another sender"], _ = dave.id.SealOnce(bob.id.Public().DH, inboxA, env)
	for what, o := range others {
		// The ephemeral key and the nonce must differ, not only the
		// ciphertext.
		if bytes.Equal(o[1:1+KeySize], s1[1:1+KeySize]) || bytes.Equal(o[1+KeySize:1+KeySize+chacha20poly1305.NonceSizeX], s1[1+KeySize:1+KeySize+chacha20poly1305.NonceSizeX]) {
			t.Errorf("%s: the same randomness", what)
		}
	}
	if _, err := alice.id.SealOnce(bob.id.Public().DH, inboxA, make([]byte, MaxEnvelopeSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sealed an envelope over MaxEnvelopeSize: %v", err)
	}
}

// Every byte of a seal is authenticated: flipping any one, or cutting or
// extending it, fails with ErrDecrypt (or ErrTooLarge past the limit).
func TestSealTamper(t *testing.T) {
	bob, alice := newParty("bob"), newParty("alice")
	sealed, err := Seal(bob.id.Public().DH, inboxA, alice.id.Public().Key, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, _, err := bob.id.OpenSealed(inboxA, bad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for _, bad := range [][]byte{sealed[:len(sealed)-1], append(bytes.Clone(sealed), 0), nil, sealed[:SealOverhead]} {
		if _, _, err := bob.id.OpenSealed(inboxA, bad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%d bytes: %v", len(bad), err)
		}
	}
	if _, _, err := bob.id.OpenSealed(inboxA, make([]byte, MaxSealedSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxSealedSize: %v", err)
	}
}

// A seal that authenticates but whose layout is not one Seal makes (a
// sender's own bug, or a sender probing the recipient's parser) is
// refused: a length past the content, a padding step that does not match
// it, padding that is not zero.
func TestSealRefusesAuthenticLayoutErrors(t *testing.T) {
	bob, alice := newParty("bob"), newParty("alice")
	seal := func(inner []byte) []byte {
		var r SealRandom
		r.Ephemeral = seed32("ek")
		ek := mustX25519(r.Ephemeral[:])
		ekPub := dhPublic(ek)
		to := bob.id.Public().DH
		key, err := sealKey(ek, (*[32]byte)(&to), (*[32]byte)(&ekPub), (*[32]byte)(&to), inboxA)
		if err != nil {
			t.Fatal(err)
		}
		aead, _ := chacha20poly1305.NewX(key)
		out := append([]byte{sealVersion}, ekPub[:]...)
		out = append(out, r.Nonce[:]...)
		return aead.Seal(out, r.Nonce[:], inner, sealAD(inboxA))
	}
	inner := func(size, n int) []byte {
		b := make([]byte, size)
		key := alice.id.Public().Key
		copy(b, key[:])
		binary.BigEndian.PutUint32(b[32:], uint32(n))
		return b
	}
	if _, _, err := bob.id.OpenSealed(inboxA, seal(inner(1<<10, 10))); err != nil {
		t.Fatalf("a well-formed inner content: %v", err)
	}
	nonZero := inner(1<<10, 10)
	nonZero[len(nonZero)-1] = 1
	for name, in := range map[string][]byte{
		"length past the content":  inner(1<<10, 1<<10),
		"length over the maximum":  inner(1<<10, MaxEnvelopeSize+1),
		"padded to the wrong step": inner(4<<10, 10),
		"padding not zero":         nonZero,
		"shorter than a step":      inner(1000, 10),
	} {
		if _, _, err := bob.id.OpenSealed(inboxA, seal(in)); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
