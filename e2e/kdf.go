package e2e

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"

	"golang.org/x/crypto/chacha20poly1305"
)

// The primitives of the key schedule (the package documentation, sections
// Handshake and Ratchet). Each function is a straight call into the
// standard library or x/crypto, so that BenchmarkFloor can be built from
// exactly the same calls.

const (
	infoPQXDH   = "p2pmsg/v1/pqxdh"
	infoRoot    = "p2pmsg/v1/root"
	infoMessage = "p2pmsg/v1/message"
)

// kdfRK is KDF_RK: HKDF-SHA256 keyed by the root key over a DH output,
// giving the next root key, a chain key and the next header key.
func kdfRK(rk, dh *[32]byte) (newRK, ck, nhk [32]byte) {
	out, err := hkdf.Key(sha256.New, dh[:], rk[:], infoRoot, 96)
	if err != nil {
		panic("e2e: hkdf: " + err.Error()) // only for lengths over 255 blocks
	}
	copy(newRK[:], out[0:32])
	copy(ck[:], out[32:64])
	copy(nhk[:], out[64:96])
	clear(out)
	return
}

// kdfCK is KDF_CK: the message key is HMAC(ck, 0x01), the next chain key
// HMAC(ck, 0x02). One HMAC object serves both (Reset keeps the keyed
// state), and both land in one block: mk = out[:32], next = out[32:].
func kdfCK(ck *[32]byte) *[64]byte {
	if testHookChainStep != nil {
		testHookChainStep()
	}
	out := new([64]byte)
	m := hmac.New(sha256.New, ck[:])
	m.Write(ckMessage)
	m.Sum(out[:0])
	m.Reset()
	m.Write(ckNext)
	m.Sum(out[32:32])
	return out
}

var ckMessage, ckNext = []byte{0x01}, []byte{0x02}

// testHookChainStep lets tests count chain-key derivations; nil otherwise.
var testHookChainStep func()

// messageKey stretches a ratchet message key into the AES-256-GCM key.
func messageKey(mk *[32]byte) [32]byte {
	out, err := hkdf.Key(sha256.New, mk[:], nil, infoMessage, 32)
	if err != nil {
		panic("e2e: hkdf: " + err.Error())
	}
	var k [32]byte
	copy(k[:], out)
	clear(out)
	return k
}

// sealBody appends the AES-256-GCM sealing of plaintext to dst.
func sealBody(dst []byte, mk *[32]byte, nonce, plaintext, ad []byte) []byte {
	key := messageKey(mk)
	aead := newGCM(&key)
	clear(key[:])
	return aead.Seal(dst, nonce, plaintext, ad)
}

// openBody appends the opened body to dst; ok is false on any failure.
func openBody(dst []byte, mk *[32]byte, nonce, ciphertext, ad []byte) ([]byte, bool) {
	key := messageKey(mk)
	aead := newGCM(&key)
	clear(key[:])
	out, err := aead.Open(dst, nonce, ciphertext, ad)
	return out, err == nil
}

func newGCM(key *[32]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("e2e: aes: " + err.Error()) // the key size is fixed
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("e2e: gcm: " + err.Error())
	}
	return aead
}

// headerAD is the associated data of a sealed header: SHA-256 of every
// envelope byte but the header nonce and the header itself (prefix is the
// version, kind, id and prekey block; tail the body nonce and body). It
// binds the header to its body, so a captured header on a forged body is
// rejected by the header trial, before any chain key is derived.
func headerAD(prefix, tail []byte, out *[32]byte) {
	h := sha256.New()
	h.Write(prefix)
	h.Write(tail)
	h.Sum(out[:0])
}

// sealHeader appends the XChaCha20-Poly1305 sealing of a header to dst.
func sealHeader(dst []byte, hk *[32]byte, nonce, header, ad []byte) []byte {
	aead, err := chacha20poly1305.NewX(hk[:])
	if err != nil {
		panic("e2e: xchacha20poly1305: " + err.Error())
	}
	return aead.Seal(dst, nonce, header, ad)
}

// openHeader opens a sealed header into dst; ok is false on any failure.
func openHeader(dst []byte, hk *[32]byte, nonce, sealed, ad []byte) ([]byte, bool) {
	aead, err := chacha20poly1305.NewX(hk[:])
	if err != nil {
		panic("e2e: xchacha20poly1305: " + err.Error())
	}
	out, err := aead.Open(dst, nonce, sealed, ad)
	return out, err == nil
}
