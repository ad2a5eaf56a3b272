package e2e

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealed envelopes: an envelope wrapped for a recipient's mailbox, which
// must not learn who wrote it nor how long it is (the package
// documentation, section Sealed envelopes).

const (
	// InboxIDSize is the size of a mailbox inbox's identifier, which the
	// seal binds (a deposit moved to another inbox does not open).
	InboxIDSize = 16
	// SealOverhead is what a seal adds to its padded content: version,
	// ephemeral key, nonce, tag.
	SealOverhead = 1 + KeySize + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	// MaxSealedSize is the largest seal: a MaxEnvelopeSize envelope,
	// padded to the last step.
	MaxSealedSize = SealOverhead + sealMaxInner

	sealVersion = 1
	sealInfo    = "p2pmsg/v1/mbox-seal"
	sealADDom   = "p2pmsg/v1/mbox"
	// sealOnceInfo: the HKDF info of SealOnce's randomness.
	sealOnceInfo = "p2pmsg/v1/mbox-seal-once"
	// sealInnerHead is the inner content before the envelope: the sender's
	// identity key and the envelope's length.
	sealInnerHead = 32 + 4
	sealMaxInner  = sealInnerHead + MaxEnvelopeSize
	sealStep      = 16 << 10
)

// sealSizes are the sizes an inner content is padded to, below sealStep;
// above it, the next multiple of sealStep, and at most sealMaxInner.
var sealSizes = [...]int{1 << 10, 4 << 10}

// sealPadded is the padded size of an inner content of n bytes.
func sealPadded(n int) int {
	for _, s := range sealSizes {
		if n <= s {
			return s
		}
	}
	return min((n+sealStep-1)/sealStep*sealStep, sealMaxInner)
}

// SealRandom is the randomness of a seal: the ephemeral X25519 key and
// the XChaCha20 nonce. Seal draws it; SealWith takes it, for known-answer
// tests.
type SealRandom struct {
	Ephemeral [32]byte
	Nonce     [chacha20poly1305.NonceSizeX]byte
}

// Format prints only the type, whatever the verb: a SealRandom is secret.
func (r SealRandom) Format(f fmt.State, _ rune) { fmt.Fprint(f, "e2e.SealRandom{}") }

// Seal wraps an envelope from sender for the owner of the identity DH key
// to, as a deposit into the inbox: only to's owner can open it, and it
// learns the sender's identity key from inside. Its length says only
// which padding step the envelope falls in.
func Seal(to DHPublicKey, inbox [InboxIDSize]byte, sender IdentityKey, envelope []byte) ([]byte, error) {
	var r SealRandom
	rand.Read(r.Ephemeral[:])
	rand.Read(r.Nonce[:])
	defer clear(r.Ephemeral[:])
	return SealWith(to, inbox, sender, envelope, &r)
}

// SealOnce is Seal from this identity, with its randomness derived from
// the identity's secret, the recipient, the inbox and the envelope: the
// same envelope sealed again for the same inbox is the same seal, so that
// a deposit repeated after a lost reply is a duplicate the mailbox
// recognises, not a second copy. Nobody without the identity's secret can
// derive the randomness, and a different envelope or inbox gives
// unrelated randomness.
func (id *Identity) SealOnce(to DHPublicKey, inbox [InboxIDSize]byte, envelope []byte) ([]byte, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, ErrTooLarge
	}
	digest := sha256.Sum256(envelope)
	info := make([]byte, 0, len(sealOnceInfo)+32+32)
	info = append(append(append(info, sealOnceInfo...), to[:]...), digest[:]...)
	secret := id.dh.Bytes()
	defer clear(secret)
	out, err := hkdf.Key(sha256.New, secret, inbox[:], string(info), 32+chacha20poly1305.NonceSizeX)
	if err != nil {
		panic("e2e: hkdf: " + err.Error())
	}
	defer clear(out)
	var r SealRandom
	copy(r.Ephemeral[:], out)
	copy(r.Nonce[:], out[32:])
	defer clear(r.Ephemeral[:])
	return SealWith(to, inbox, id.pub.Key, envelope, &r)
}

// SealWith is Seal with its randomness given.
func SealWith(to DHPublicKey, inbox [InboxIDSize]byte, sender IdentityKey, envelope []byte, r *SealRandom) ([]byte, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, ErrTooLarge
	}
	ek := mustX25519(r.Ephemeral[:])
	ekPub := dhPublic(ek)
	key, err := sealKey(ek, (*[32]byte)(&to), (*[32]byte)(&ekPub), (*[32]byte)(&to), inbox)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	inner := make([]byte, sealPadded(sealInnerHead+len(envelope)))
	copy(inner, sender[:])
	binary.BigEndian.PutUint32(inner[32:], uint32(len(envelope)))
	copy(inner[sealInnerHead:], envelope)

	out := make([]byte, 0, SealOverhead+len(inner))
	out = append(out, sealVersion)
	out = append(out, ekPub[:]...)
	out = append(out, r.Nonce[:]...)
	aead, _ := chacha20poly1305.NewX(key)
	return aead.Seal(out, r.Nonce[:], inner, sealAD(inbox)), nil
}

// OpenSealed opens a seal made for this identity's DH key and the inbox,
// and returns the sender's identity key, as claimed, and the envelope. The
// claim is only as good as the envelope that comes with it: the caller
// must decrypt the envelope under its session with that sender, or, for a
// prekey message, check that it names the same identity key. Every
// failure is ErrDecrypt or ErrTooLarge, and the input is not retained.
func (id *Identity) OpenSealed(inbox [InboxIDSize]byte, sealed []byte) (IdentityKey, []byte, error) {
	var sender IdentityKey
	if len(sealed) > MaxSealedSize {
		return sender, nil, ErrTooLarge
	}
	if len(sealed) < SealOverhead+sealSizes[0] || sealed[0] != sealVersion {
		return sender, nil, ErrDecrypt
	}
	ekPub := (*[32]byte)(sealed[1 : 1+KeySize])
	nonce := sealed[1+KeySize : 1+KeySize+chacha20poly1305.NonceSizeX]
	key, err := sealKey(id.dh, ekPub, ekPub, (*[32]byte)(&id.pub.DH), inbox)
	if err != nil {
		return sender, nil, ErrDecrypt
	}
	defer clear(key)
	aead, _ := chacha20poly1305.NewX(key)
	inner, err := aead.Open(nil, nonce, sealed[1+KeySize+len(nonce):], sealAD(inbox))
	if err != nil {
		return sender, nil, ErrDecrypt
	}
	// Authentic, so made by someone who knew our DH key: a malformed
	// layout is a faulty sender's, and refused all the same.
	n := int(binary.BigEndian.Uint32(inner[32:]))
	if n > MaxEnvelopeSize || sealInnerHead+n > len(inner) || sealPadded(sealInnerHead+n) != len(inner) {
		return sender, nil, ErrDecrypt
	}
	for _, b := range inner[sealInnerHead+n:] {
		if b != 0 {
			return sender, nil, ErrDecrypt
		}
	}
	copy(sender[:], inner)
	return sender, inner[sealInnerHead : sealInnerHead+n : sealInnerHead+n], nil
}

// sealKey is HKDF-SHA256(salt = inbox, DH || EK || IKdh, info), DH being
// priv's with peer (the sender: EK with IKdh; the recipient: IKdh with
// EK): both keys are in the input, so that the key is bound to them.
func sealKey(priv *ecdh.PrivateKey, peer, ekPub, ikdh *[32]byte, inbox [InboxIDSize]byte) ([]byte, error) {
	shared, err := dh(priv, peer)
	if err != nil {
		return nil, err
	}
	ikm := make([]byte, 0, 3*32)
	ikm = append(append(append(ikm, shared[:]...), ekPub[:]...), ikdh[:]...)
	clear(shared[:])
	key, err := hkdf.Key(sha256.New, ikm, inbox[:], sealInfo, chacha20poly1305.KeySize)
	clear(ikm)
	if err != nil {
		panic("e2e: hkdf: " + err.Error())
	}
	return key, nil
}

func sealAD(inbox [InboxIDSize]byte) []byte {
	return append([]byte(sealADDom), inbox[:]...)
}
