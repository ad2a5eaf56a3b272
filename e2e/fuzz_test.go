package e2e

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Fuzz targets for every decoder. Each checks that the decoder never
// panics and that a failure changes nothing. CI runs each for a few
// seconds; run one longer with
//
//	go test ./e2e -run '^$' -fuzz '^FuzzEnvelope$' -fuzztime 60s

// fuzzPair is an established session pair, saved, so that every input
// starts from the same state.
func fuzzPair(f *testing.F) (alice, bob []byte, envs [][]byte) {
	a, b := established(f)
	for _, m := range []string{"one", "two", ""} {
		envs = append(envs, encrypt(f, a, m))
	}
	pa, pb := newParty("alice"), newParty("bob")
	envs = append(envs, encrypt(f, startSession(f, pa, pb, true), "prekey"))
	return snapshot(f, a), snapshot(f, b), envs
}

func FuzzEnvelope(f *testing.F) {
	_, bobState, envs := fuzzPair(f)
	for _, e := range envs {
		f.Add(e)
	}
	f.Add([]byte{1, 1})
	f.Add([]byte{1, 2, 0, 0})
	responder := newParty("bob")
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := EnvelopeID(data); err == nil {
			if len(data) < MessageOverhead || len(data) > MaxEnvelopeSize {
				t.Fatal("EnvelopeID accepted a bad size")
			}
		}
		bob := restore(t, bobState)
		if _, err := bob.Decrypt(data, t0); err != nil {
			if !bytes.Equal(bobState, snapshot(t, bob)) {
				t.Fatalf("failed decrypt (%v) changed the session", err)
			}
		}
		if m, err := ParsePrekeyMessage(data); err == nil {
			// The responder's keys, whatever ids the input names.
			keys := ResponderKeys{SignedPrekey: responder.spk, PQPrekey: responder.pq}
			keys.SignedPrekey.ID, keys.PQPrekey.ID = m.SignedPrekeyID, m.PQPrekeyID
			keys.PQPrekey.OneTime = m.PQOneTime
			if m.HasOneTimePrekey {
				keys.OneTimePrekey = NewOneTimePrekeyFromKey(m.OneTimePrekeyID, seed32("fuzz"))
			}
			Respond(responder.id, m, keys, func(ReplayKey) bool { return false }, t0)
		}
	})
}

// FuzzHeader feeds arbitrary header plaintexts, sealed under the keys the
// peer holds, so that only a malicious peer could send them: the counters
// and ratchet key are attacker-chosen. Limits must hold whatever they say.
func FuzzHeader(f *testing.F) {
	_, bobState, _ := fuzzPair(f)
	f.Add(make([]byte, headerSize), false, []byte("body"))
	f.Add(append(bytes.Repeat([]byte{9}, 32), 0, 0, 0, 1, 0, 0, 0, 5), true, []byte{})
	f.Add(append(bytes.Repeat([]byte{9}, 32), 0xff, 0xff, 0xff, 0xff, 0, 0, 3, 0xe8), true, []byte{})
	f.Fuzz(func(t *testing.T, hdr []byte, next bool, body []byte) {
		if h, err := parseHeader(hdr); err == nil {
			if !bytes.Equal(h.append(nil), hdr) {
				t.Fatal("header does not round-trip")
			}
		}
		bob := restore(t, bobState)
		hk := &bob.hkr
		if next {
			hk = &bob.nhkr
		}
		env := sealedWithHeader(hk, hdr, body)
		_, err := bob.Decrypt(env, t0)
		if err == nil {
			t.Fatal("a body nobody sealed decrypted")
		}
		if !bytes.Equal(bobState, snapshot(t, bob)) {
			t.Fatalf("failed decrypt (%v) changed the session", err)
		}
		if len(hdr) != headerSize && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("bad header length gave %v", err)
		}
	})
}

func FuzzBundle(f *testing.F) {
	p := newParty("bob")
	f.Add(p.bundle(f, true))
	f.Add(p.bundle(f, false))
	f.Add([]byte{1})
	v2, err := p.id.SignBundle(BundleParams{Seq: 1, Expires: t0.Add(time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq,
		Extensions: []Extension{{Type: 7, Value: []byte("x")}, {Type: 8}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v2)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, signed, err := parseBundle(data)
		if err == nil {
			n := bundleFixed + SignatureSize
			if b.HasOneTimePrekey {
				n += 4 + KeySize
			}
			if b.HasPQOneTime {
				n += 4 + PQPublicSize
			}
			if data[0] == bundleVersionExt {
				n++
				for _, e := range b.Extensions {
					n += 4 + len(e.Value)
				}
			}
			if len(data) != n || len(signed) != n-SignatureSize {
				t.Fatalf("parsed a bundle of %d bytes, layout says %d", len(data), n)
			}
		}
		// Only bob ever signed a bundle: anything else that verifies is a
		// forgery.
		if bb, err := VerifyBundle(data, t0); err == nil && bb.Identity != p.id.Public().Key {
			t.Fatal("a bundle not signed by its identity verified")
		}
	})
}

func FuzzSessionState(f *testing.F) {
	aliceState, bobState, envs := fuzzPair(f)
	f.Add(aliceState)
	f.Add(bobState)
	pa, pb := newParty("alice"), newParty("bob")
	f.Add(snapshot(f, startSession(f, pa, pb, false)))
	// A state with skipped keys in two chains.
	a, b := established(f)
	encrypt(f, a, "lost")
	decrypt(f, b, encrypt(f, a, "seen"))
	decrypt(f, a, encrypt(f, b, "turn"))
	encrypt(f, a, "lost")
	decrypt(f, b, encrypt(f, a, "seen"))
	f.Add(snapshot(f, b))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Session
		if err := s.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := s.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatal("state does not round-trip")
		}
		if s.SkippedKeys() > MaxSkippedKeys || len(s.skipped) > MaxSkippedChains {
			t.Fatal("limits not enforced on load")
		}
		// Whatever the state, using it must not panic.
		s.Encrypt([]byte("x"))
		for _, e := range envs {
			s.Decrypt(e, t0)
		}
	})
}

// FuzzOpenSealed: OpenSealed never panics, accepts only what Seal made
// (sealing the output again gives a seal of the same length), and never
// returns more than MaxEnvelopeSize.
func FuzzOpenSealed(f *testing.F) {
	bob, alice := newParty("bob"), newParty("alice")
	for _, n := range []int{0, 10, 2000, 20000} {
		s, err := Seal(bob.id.Public().DH, inboxA, alice.id.Public().Key, bytes.Repeat([]byte{7}, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Add([]byte{sealVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		from, env, err := bob.id.OpenSealed(inboxA, data)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(env) > MaxEnvelopeSize {
			t.Fatalf("opened %d bytes", len(env))
		}
		again, err := Seal(bob.id.Public().DH, inboxA, from, env)
		if err != nil || len(again) != len(data) {
			t.Fatalf("opened a seal Seal would not make: %d bytes, resealed %d (%v)", len(data), len(again), err)
		}
	})
}

// FuzzOneTimeCert: VerifyOneTimeCert never panics, and what it accepts
// is exactly a certificate bob signed (signing its key again gives the
// same bytes: Ed25519 is deterministic).
func FuzzOneTimeCert(f *testing.F) {
	bob := newParty("bob")
	mailbox := []byte("fuzz mailbox")
	x, err := bob.id.SignOneTimeCert(mailbox, NewOneTimePrekeyFromKey(5, seed32("fuzz/otk")))
	if err != nil {
		f.Fatal(err)
	}
	pq, err := bob.id.SignPQOneTimeCert(mailbox, NewPQPrekeyFromSeed(6, true, seed64("fuzz/pqotk")))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(x)
	f.Add(pq)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := VerifyOneTimeCert(bob.id.Public().Key, mailbox, data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrOneTimeCert) && !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if !bytes.Equal(data, x) && !bytes.Equal(data, pq) {
			t.Fatalf("accepted a certificate bob never signed: kind %d id %d", c.Kind, c.ID)
		}
	})
}
