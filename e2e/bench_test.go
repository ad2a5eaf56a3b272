package e2e

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// Benchmarks of the message path, the handshake and the rejection of
// forgeries. Each target is a ratio to a floor of the bare primitive calls
// measured in the same run, or an absolute bound; BENCHMARKS.md records the
// figures.

const benchMessage = 100

// BenchmarkFloor is exactly the primitive calls that one message needs,
// sender and receiver, with direct standard-library calls and no state,
// encoding or copying: each side's KDF_CK and message-key HKDF, the header
// seal and open, the SHA-256 that binds the header to the body, and
// AES-256-GCM seal and open of 100 bytes under a fresh key, with ADs of the
// sizes the design uses.
func BenchmarkFloor(b *testing.B) {
	var ck, hk [32]byte
	rand.Read(ck[:])
	rand.Read(hk[:])
	pt := make([]byte, benchMessage)
	ad := make([]byte, len(adPrefix)+4*32+envelopePrefix)
	prefix := make([]byte, envelopePrefix)
	hdr := make([]byte, headerSize)
	hn := make([]byte, headerNonceSize)
	bn := make([]byte, bodyNonceSize)
	sealedHdr := make([]byte, 0, sealedHeaderSize)
	body := make([]byte, 0, benchMessage+tagSize)
	openedHdr := make([]byte, 0, headerSize)
	opened := make([]byte, 0, benchMessage)
	hdrAD := make([]byte, 0, 32)
	bind := func() []byte {
		h := sha256.New()
		h.Write(prefix)
		h.Write(bn)
		h.Write(body)
		return h.Sum(hdrAD[:0])
	}
	step := func() (mk, next []byte) {
		m := hmac.New(sha256.New, ck[:])
		m.Write([]byte{1})
		mk = m.Sum(nil)
		m.Reset()
		m.Write([]byte{2})
		return mk, m.Sum(nil)
	}
	gcm := func(mk []byte) cipher.AEAD {
		key, _ := hkdf.Key(sha256.New, mk, nil, infoMessage, 32)
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCM(block)
		return aead
	}
	b.ReportAllocs()
	for b.Loop() {
		// Sender.
		mk, _ := step()
		body = gcm(mk).Seal(body[:0], bn, pt, ad)
		x, _ := chacha20poly1305.NewX(hk[:])
		sealedHdr = x.Seal(sealedHdr[:0], hn, hdr, bind())
		// Receiver.
		x, _ = chacha20poly1305.NewX(hk[:])
		if _, err := x.Open(openedHdr[:0], hn, sealedHdr, bind()); err != nil {
			b.Fatal(err)
		}
		mk, _ = step()
		if _, err := gcm(mk).Open(opened[:0], bn, body, ad); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOneWay is one 100-byte message, Encrypt then Decrypt, on the
// same sending chain. Target: at most 1.3 x BenchmarkFloor.
func BenchmarkOneWay(b *testing.B) {
	alice, bob := established(b)
	decrypt(b, bob, encrypt(b, alice, "open the chain"))
	pt := make([]byte, benchMessage)
	b.ReportAllocs()
	for b.Loop() {
		_, env, err := alice.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(env, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDHFloor is one X25519 key generation and two agreements: the
// public-key work of one DH ratchet step.
func BenchmarkDHFloor(b *testing.B) {
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if _, err := k.ECDH(peer.PublicKey()); err != nil {
			b.Fatal(err)
		}
		if _, err := other.ECDH(k.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPingPong alternates the direction of every message, so each one
// carries a DH ratchet step. ns/op is per message. Target: at most
// 1.2 x BenchmarkDHFloor.
func BenchmarkPingPong(b *testing.B) {
	alice, bob := established(b)
	pt := make([]byte, benchMessage)
	from, to := alice, bob
	b.ReportAllocs()
	for b.Loop() {
		_, env, err := from.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := to.Decrypt(env, t0); err != nil {
			b.Fatal(err)
		}
		from, to = to, from
	}
}

// BenchmarkPQXDH is a whole session set-up, both sides, to the first
// decrypted message: the initiator verifies the fetched bundle (with
// one-time prekeys), runs PQXDH and encrypts; the responder parses the
// prekey message, runs PQXDH and decrypts. The responder's prekeys are in
// memory. Target: at most 1.2 ms.
func BenchmarkPQXDH(b *testing.B) {
	pa, pb := newParty("alice"), newParty("bob")
	bundle := pb.bundle(b, true)
	bun, _ := VerifyBundle(bundle, t0)
	keys := ResponderKeys{SignedPrekey: pb.spk, OneTimePrekey: pb.opks[bun.OneTimePrekeyID], PQPrekey: pb.pqopks[bun.PQOneTimePrekeyID]}
	never := func(ReplayKey) bool { return false }
	pt := []byte("hello")
	b.ReportAllocs()
	for b.Loop() {
		bun, err := VerifyBundle(bundle, t0)
		if err != nil {
			b.Fatal(err)
		}
		alice, err := Initiate(pa.id, bun)
		if err != nil {
			b.Fatal(err)
		}
		_, env, err := alice.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		pm, err := ParsePrekeyMessage(env)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Respond(pb.id, pm, keys, never, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForged measures the rejection of forgeries. session: a random
// header and body on an established session (target: at most 5 us).
// prekey: a forged prekey message that names valid prekeys, so it goes as
// far as any forgery can, set against respond, one genuine responder
// handshake (target: forged at most respond).
func BenchmarkForged(b *testing.B) {
	b.Run("session", func(b *testing.B) {
		alice, bob := established(b)
		// A session with a full set of skipped-key chains is the worst case.
		for range MaxSkippedChains {
			decrypt(b, alice, encrypt(b, bob, "turn"))
			encrypt(b, alice, "lost")
			decrypt(b, bob, encrypt(b, alice, "seen"))
		}
		env := make([]byte, MessageOverhead+benchMessage)
		rand.Read(env)
		env[0], env[1] = envelopeVersion, kindMessage
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bob.Decrypt(env, t0); err == nil {
				b.Fatal("forgery accepted")
			}
		}
	})

	pa, pb := newParty("alice"), newParty("bob")
	genuine := encrypt(b, startSession(b, pa, pb, true), "x")
	m, _ := ParsePrekeyMessage(genuine)
	keys := ResponderKeys{SignedPrekey: pb.spk, OneTimePrekey: pb.opks[m.OneTimePrekeyID], PQPrekey: pb.pqopks[m.PQPrekeyID]}
	never := func(ReplayKey) bool { return false }
	b.Run("prekey", func(b *testing.B) {
		// Random keys, ciphertext and ratchet message, with the genuine
		// ids and a valid certificate (a replayed identity).
		forged := make([]byte, len(genuine))
		rand.Read(forged)
		copy(forged, genuine[:envelopePrefix+prekeyBaseKeyOffset])
		copy(forged[envelopePrefix+prekeyBaseKeyOffset+32:], genuine[envelopePrefix+prekeyBaseKeyOffset+32:envelopePrefix+prekeyBaseKeyOffset+45])
		b.ReportAllocs()
		for b.Loop() {
			fm, err := ParsePrekeyMessage(forged)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := Respond(pb.id, fm, keys, never, t0); err == nil {
				b.Fatal("forgery accepted")
			}
		}
	})
	b.Run("respond", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			gm, _ := ParsePrekeyMessage(genuine)
			if _, _, err := Respond(pb.id, gm, keys, never, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
