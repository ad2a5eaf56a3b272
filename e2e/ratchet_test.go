package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The basic properties of the protocol, one test each: both sides derive
// the same secrets, messages round-trip in both directions, equal
// plaintexts never give equal ciphertexts, old keys read neither earlier
// nor later messages (forward secrecy, post-compromise security), messages
// decrypt in any order, and every single-bit change to a normal or a
// prekey envelope is rejected without changing the session.

func TestX25519ExchangeGivesBothSidesTheSameSecret(t *testing.T) {
	a := mustX25519(bytes.Repeat([]byte{1}, 32))
	b := mustX25519(bytes.Repeat([]byte{2}, 32))
	aPub, bPub := dhPublic(a), dhPublic(b)
	s1, err := dh(a, (*[32]byte)(&bPub))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := dh(b, (*[32]byte)(&aPub))
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 || s1 == [32]byte{} {
		t.Fatalf("secrets differ: %x %x", s1, s2)
	}

	// And the whole PQXDH handshake gives both sides the same root state.
	for _, oneTime := range []bool{false, true} {
		pa, pb := newParty("alice"), newParty("bob")
		alice := startSession(t, pa, pb, oneTime)
		bob, _, err := pb.respond(encrypt(t, alice, "x"))
		if err != nil {
			t.Fatalf("oneTime=%v: %v", oneTime, err)
		}
		if alice.rk != bob.rk || alice.cks != bob.ckr || alice.nhkr != bob.nhks || alice.hks != bob.hkr {
			t.Fatalf("oneTime=%v: the two sides derived different keys", oneTime)
		}
	}
}

func TestMessagesEncryptAndDecryptBetweenTwoParties(t *testing.T) {
	alice, bob := established(t)
	for round := range 5 {
		for i := range round + 1 {
			msg := fmt.Sprintf("a->b %d/%d", round, i)
			if got := decrypt(t, bob, encrypt(t, alice, msg)); got != msg {
				t.Fatalf("got %q want %q", got, msg)
			}
		}
		for i := range 3 {
			msg := fmt.Sprintf("b->a %d/%d", round, i)
			if got := decrypt(t, alice, encrypt(t, bob, msg)); got != msg {
				t.Fatalf("got %q want %q", got, msg)
			}
		}
	}
	// Empty and maximal plaintexts.
	for _, size := range []int{0, MaxPlaintextSize} {
		msg := bytes.Repeat([]byte{'z'}, size)
		_, env, err := alice.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(env) > MaxEnvelopeSize {
			t.Fatalf("envelope of %d bytes", len(env))
		}
		pt, err := bob.Decrypt(env, t0)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Fatalf("size %d: %v", size, err)
		}
	}
	if _, _, err := alice.Encrypt(make([]byte, MaxPlaintextSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized plaintext: %v", err)
	}
}

func TestSamePlaintextGivesDifferentCiphertexts(t *testing.T) {
	alice, bob := established(t)
	e1 := encrypt(t, alice, "same")
	e2 := encrypt(t, alice, "same")
	p1, _ := parseEnvelope(e1)
	p2, _ := parseEnvelope(e2)
	if bytes.Equal(p1.body, p2.body) || bytes.Equal(p1.sealedHdr, p2.sealedHdr) || p1.id == p2.id {
		t.Fatal("two encryptions of the same plaintext share a body, header or id")
	}
	decrypt(t, bob, e1)
	decrypt(t, bob, e2)

	// Even a session rolled back to an old state (a crash before the
	// state was saved) never repeats a ciphertext: the nonces are random.
	before := snapshot(t, alice)
	e3 := encrypt(t, alice, "same")
	e4 := encrypt(t, restore(t, before), "same")
	p3, _ := parseEnvelope(e3)
	p4, _ := parseEnvelope(e4)
	if bytes.Equal(p3.body, p4.body) || bytes.Equal(p3.bodyNonce, p4.bodyNonce) {
		t.Fatal("rolled-back session repeated a ciphertext")
	}
}

func TestForwardSecrecy(t *testing.T) {
	alice, bob := established(t)
	var sent [][]byte
	for i := range 3 {
		env := encrypt(t, alice, fmt.Sprint("early ", i))
		decrypt(t, bob, env)
		sent = append(sent, env)
	}
	// A snapshot of either side taken after the exchange cannot decrypt
	// the earlier messages: their keys are gone.
	for who, snap := range map[string][]byte{"bob": snapshot(t, bob), "alice": snapshot(t, alice)} {
		for i, env := range sent {
			if _, err := restore(t, snap).Decrypt(env, t0); err == nil {
				t.Fatalf("%s's later snapshot decrypted earlier message %d", who, i)
			}
		}
	}

	// Keys stolen now cannot decrypt messages sent after the peers have
	// exchanged new DH ratchet keys (post-compromise security).
	stolenBob, stolenAlice := snapshot(t, bob), snapshot(t, alice)
	for i := range 2 {
		decrypt(t, alice, encrypt(t, bob, fmt.Sprint("heal ", i)))
		decrypt(t, bob, encrypt(t, alice, fmt.Sprint("heal ", i)))
	}
	toBob, toAlice := encrypt(t, alice, "new to bob"), encrypt(t, bob, "new to alice")
	if _, err := restore(t, stolenBob).Decrypt(toBob, t0); err == nil {
		t.Fatal("old keys of bob decrypted a new message")
	}
	if _, err := restore(t, stolenAlice).Decrypt(toAlice, t0); err == nil {
		t.Fatal("old keys of alice decrypted a new message")
	}
	decrypt(t, bob, toBob)
	decrypt(t, alice, toAlice)
}

func TestOutOfOrderDelivery(t *testing.T) {
	alice, bob := established(t)

	// Within one chain.
	var envs [][]byte
	for i := range 5 {
		envs = append(envs, encrypt(t, alice, fmt.Sprint("m", i)))
	}
	for _, i := range []int{3, 0, 4, 2, 1} {
		if got := decrypt(t, bob, envs[i]); got != fmt.Sprint("m", i) {
			t.Fatalf("got %q", got)
		}
	}
	if n := bob.SkippedKeys(); n != 0 {
		t.Fatalf("%d skipped keys left", n)
	}

	// Across DH ratchet steps: messages of three chains of alice, delivered
	// newest chain first, interleaved with bob's replies.
	var chains [][][]byte
	for c := range 3 {
		var chain [][]byte
		for i := range 3 {
			chain = append(chain, encrypt(t, alice, fmt.Sprintf("c%d m%d", c, i)))
		}
		chains = append(chains, chain)
		// bob must see one message of the chain to answer it, which makes
		// alice start the next chain.
		decrypt(t, bob, chain[2])
		decrypt(t, alice, encrypt(t, bob, "ack"))
	}
	for c := 2; c >= 0; c-- {
		for i := 1; i >= 0; i-- {
			if got, want := decrypt(t, bob, chains[c][i]), fmt.Sprintf("c%d m%d", c, i); got != want {
				t.Fatalf("got %q want %q", got, want)
			}
		}
	}
	if n := bob.SkippedKeys(); n != 0 {
		t.Fatalf("%d skipped keys left", n)
	}

	// A lost first message of a new chain: bob learns the chain from its
	// second message, then gets the first.
	decrypt(t, alice, encrypt(t, bob, "turn"))
	m0, m1 := encrypt(t, alice, "n0"), encrypt(t, alice, "n1")
	if decrypt(t, bob, m1) != "n1" || decrypt(t, bob, m0) != "n0" {
		t.Fatal("wrong order result")
	}
}

func TestEveryBitFlipIsRejected(t *testing.T) {
	alice, bob := established(t)
	env := encrypt(t, alice, "a sample message of a few words")
	flipAll(t, env, func(bad []byte) { mustFailUnchanged(t, bob, bad) })
	if decrypt(t, bob, env) != "a sample message of a few words" {
		t.Fatal("the genuine envelope no longer decrypts")
	}

	// A prekey envelope, both to the responder that already has the
	// session and to one that must run the handshake.
	pa, pb := newParty("alice"), newParty("bob")
	a2 := startSession(t, pa, pb, true)
	first, second := encrypt(t, a2, "first"), encrypt(t, a2, "second")
	fresh := pb.clone() // a responder that has not yet seen first
	b2, _, err := pb.respond(first)
	if err != nil {
		t.Fatal(err)
	}
	flipAll(t, second, func(bad []byte) { mustFailUnchanged(t, b2, bad) })
	if decrypt(t, b2, second) != "second" {
		t.Fatal("the genuine prekey envelope no longer decrypts")
	}

	step := 1
	if testing.Short() {
		step = 7 // the handshake path, every seventh bit under -short
	}
	n := 0
	flipAll(t, first, func(bad []byte) {
		if n++; n%step != 0 {
			return
		}
		if _, _, err := fresh.respond(bad); err == nil {
			t.Fatalf("a tampered prekey envelope was accepted")
		}
	})
	if _, _, err := fresh.respond(first); err != nil {
		t.Fatalf("the genuine prekey envelope is refused after the tampered ones: %v", err)
	}
}

// flipAll calls f with every single-bit corruption of env.
func flipAll(t *testing.T, env []byte, f func([]byte)) {
	t.Helper()
	bad := bytes.Clone(env)
	for i := range bad {
		for bit := range 8 {
			bad[i] ^= 1 << bit
			f(bad)
			bad[i] ^= 1 << bit
		}
	}
}

// What a hostile network or peer can try, and what must hold against it:
// replays and forgeries are rejected and leave the session as it was;
// counter jumps past MaxSkip and captured headers on forged bodies are
// rejected before any chain key is derived; a session survives being saved
// and loaded at any point; initial messages cannot be replayed nor
// one-time prekeys reused; prekey messages reach their own session; bad
// bundles and low-order points are refused; safety numbers agree on both
// sides; the skipped-key limits and expiry hold, idle sessions included;
// counters cannot wrap; nothing prints a secret; identities and prekeys
// survive storage.

func TestReplayedMessageIsRejected(t *testing.T) {
	alice, bob := established(t)
	env := encrypt(t, alice, "once")
	decrypt(t, bob, env)
	if err := mustFailUnchanged(t, bob, env); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// A replay of a message that was decrypted from a skipped key.
	e0, e1 := encrypt(t, alice, "0"), encrypt(t, alice, "1")
	decrypt(t, bob, e1)
	decrypt(t, bob, e0)
	for _, e := range [][]byte{e0, e1} {
		if err := mustFailUnchanged(t, bob, e); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: %v", err)
		}
	}
	// A replay from an old chain, after a ratchet step.
	decrypt(t, alice, encrypt(t, bob, "turn"))
	decrypt(t, bob, encrypt(t, alice, "new chain"))
	if err := mustFailUnchanged(t, bob, e0); err == nil {
		t.Fatal("old-chain replay accepted")
	}
}

func TestForgedMessageLeavesSessionUsable(t *testing.T) {
	alice, bob := established(t)
	genuine := encrypt(t, alice, "genuine")
	p, _ := parseEnvelope(genuine)

	random := make([]byte, len(genuine))
	rand.Read(random)
	random[0], random[1] = envelopeVersion, kindMessage
	wrongBody := bytes.Clone(genuine)
	wrongBody[len(wrongBody)-1] ^= 0x80
	headerOnly := bytes.Clone(genuine[:len(genuine)-len(p.body)])
	forgeries := map[string][]byte{
		"empty":         nil,
		"short":         genuine[:10],
		"random":        random,
		"wrong body":    wrongBody,
		"no body":       headerOnly,
		"bad version":   append([]byte{9}, genuine[1:]...),
		"bad kind":      append([]byte{1, 7}, genuine[2:]...),
		"oversized":     make([]byte, MaxEnvelopeSize+1),
		"prekey header": append([]byte{1, 2}, genuine[2:]...),
	}
	for name, f := range forgeries {
		t.Run(name, func(t *testing.T) { mustFailUnchanged(t, bob, f) })
	}
	if decrypt(t, bob, genuine) != "genuine" {
		t.Fatal("session broken by forgeries")
	}
	decrypt(t, alice, encrypt(t, bob, "still fine"))
}

func TestCounterJumpPastMaxSkipIsRejectedBeforeDerivation(t *testing.T) {
	alice, bob := established(t)

	// A genuine header from alice (who holds the header key) with N far
	// ahead on the current chain: only the peer could do it, and it must
	// still cost nothing.
	decrypt(t, bob, encrypt(t, alice, "start a chain"))
	alice.ns = bob.nr + MaxSkip + 1
	rejectedBeforeDerivation(t, bob, encrypt(t, alice, "too far"), ErrTooManySkipped)

	// N far ahead on a new chain.
	decrypt(t, alice, encrypt(t, bob, "turn"))
	alice.ns = MaxSkip + 1 // before the pending send step: the new chain's N
	rejectedBeforeDerivation(t, bob, encrypt(t, alice, "new chain"), ErrTooManySkipped)

	// PN far ahead: alice claims a long previous chain.
	alice2, bob2 := established(t)
	decrypt(t, bob2, encrypt(t, alice2, "start a chain"))
	alice2.ns = bob2.nr + MaxSkip + 1
	decrypt(t, alice2, encrypt(t, bob2, "turn"))
	rejectedBeforeDerivation(t, bob2, encrypt(t, alice2, "new chain"), ErrTooManySkipped)

	// A jump of exactly MaxSkip is allowed.
	alice3, bob3 := established(t)
	decrypt(t, bob3, encrypt(t, alice3, "start a chain"))
	lose(t, alice3, MaxSkip)
	if decrypt(t, bob3, encrypt(t, alice3, "edge")) != "edge" || bob3.SkippedKeys() != MaxSkip {
		t.Fatalf("a jump of exactly MaxSkip failed; %d skipped", bob3.SkippedKeys())
	}
}

// MaxSkip bounds the keys one envelope makes the receiver derive in all: at
// a DH ratchet step the rest of the old chain and the start of the new one
// count together, where the Signal specification checks each chain alone
// and so lets one envelope cost 2 × MaxSkip (docs/e2e-decisions.md, 11).
func TestSkipBoundIsPerMessageAcrossARatchetStep(t *testing.T) {
	for _, tc := range []struct {
		oldGap, newGap int // messages lost at the end of the old chain, at the start of the new
		ok             bool
	}{
		{MaxSkip / 2, MaxSkip - MaxSkip/2, true}, // exactly MaxSkip in all
		{MaxSkip, 0, true},
		{0, MaxSkip, true},
		{1, MaxSkip - 1, true},
		{MaxSkip / 2, MaxSkip - MaxSkip/2 + 1, false},
		{MaxSkip, 1, false},
		{1, MaxSkip, false},
		{MaxSkip, MaxSkip, false}, // what per-chain checks let through
	} {
		t.Run(fmt.Sprintf("%d+%d", tc.oldGap, tc.newGap), func(t *testing.T) {
			alice, bob := established(t)
			decrypt(t, bob, encrypt(t, alice, "start a chain"))
			var late [][]byte // in the order alice sent them
			for i := range tc.oldGap {
				late = append(late, encrypt(t, alice, fmt.Sprint("old ", i)))
			}
			decrypt(t, alice, encrypt(t, bob, "turn"))
			for i := range tc.newGap {
				late = append(late, encrypt(t, alice, fmt.Sprint("new ", i)))
			}
			env := encrypt(t, alice, "after both gaps")

			if !tc.ok {
				err := rejectedBeforeDerivation(t, bob, env, ErrTooManySkipped)
				if want := fmt.Sprintf("%d keys to derive for one message, at most %d", tc.oldGap+tc.newGap, MaxSkip); !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
				// Refused, not broken: the old chain's late messages still
				// open, each within the bound on its own.
				if tc.oldGap > 0 && decrypt(t, bob, late[tc.oldGap-1]) != fmt.Sprint("old ", tc.oldGap-1) {
					t.Fatal("old chain broken by the refusal")
				}
				return
			}
			if decrypt(t, bob, env) != "after both gaps" {
				t.Fatal("wrong plaintext")
			}
			if n := bob.SkippedKeys(); n != tc.oldGap+tc.newGap {
				t.Fatalf("%d skipped keys stored, want %d", n, tc.oldGap+tc.newGap)
			}
			// The lost messages arrive after all, newest first.
			for i := len(late) - 1; i >= 0; i-- {
				want := fmt.Sprint("old ", i)
				if i >= tc.oldGap {
					want = fmt.Sprint("new ", i-tc.oldGap)
				}
				if got := decrypt(t, bob, late[i]); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			if n := bob.SkippedKeys(); n != 0 {
				t.Fatalf("%d skipped keys left", n)
			}
			decrypt(t, alice, encrypt(t, bob, "still fine"))
		})
	}
}

// rejectedBeforeDerivation checks that env fails with want, leaves s as it
// was, and made s derive no chain key; it returns the error.
func rejectedBeforeDerivation(t *testing.T, s *Session, env []byte, want error) error {
	t.Helper()
	steps := 0
	testHookChainStep = func() { steps++ }
	defer func() { testHookChainStep = nil }()
	err := mustFailUnchanged(t, s, env)
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	if steps != 0 {
		t.Fatalf("%d chain-key derivations before the rejection", steps)
	}
	return err
}

// A header captured from an undelivered envelope (say by a relay), put on a
// forged body or id, must be rejected by the header check alone: nothing
// may make the receiver derive the keys of a gap for a forgery.
func TestCapturedHeaderOnForgedBodyIsRejectedBeforeDerivation(t *testing.T) {
	alice, bob := established(t)
	lose(t, alice, MaxSkip-1)
	genuine := encrypt(t, alice, "behind a gap")
	e, _ := parseEnvelope(genuine)
	bodyAt := len(genuine) - len(e.body)
	for _, at := range []int{5, bodyAt - 1, bodyAt + 3, len(genuine) - 1} { // id, body nonce, body, tag
		bad := bytes.Clone(genuine)
		bad[at] ^= 0x40
		rejectedBeforeDerivation(t, bob, bad, ErrDecrypt)
	}
	if decrypt(t, bob, genuine) != "behind a gap" {
		t.Fatal("genuine message lost")
	}
}

func TestSessionSerialisedMidConversationContinues(t *testing.T) {
	alice, bob := established(t)
	var pending [][]byte
	for i := range 4 {
		pending = append(pending, encrypt(t, alice, fmt.Sprint("p", i)))
	}
	decrypt(t, bob, pending[3]) // three skipped keys pending
	if bob.SkippedKeys() != 3 {
		t.Fatalf("%d skipped", bob.SkippedKeys())
	}
	snap := snapshot(t, bob)
	bob = restore(t, snap)
	if !bytes.Equal(snap, snapshot(t, bob)) {
		t.Fatal("re-encoding differs")
	}
	alice = restore(t, snapshot(t, alice))
	for i := 2; i >= 0; i-- {
		if decrypt(t, bob, pending[i]) != fmt.Sprint("p", i) {
			t.Fatal("wrong plaintext after restore")
		}
	}
	// Both directions and further ratchet steps still work, through
	// repeated save and load.
	for i := range 3 {
		bob = restore(t, snapshot(t, bob))
		decrypt(t, alice, encrypt(t, bob, fmt.Sprint("b", i)))
		alice = restore(t, snapshot(t, alice))
		decrypt(t, bob, encrypt(t, alice, fmt.Sprint("a", i)))
	}

	// A responder saved before its first reply and an initiator saved
	// before it was answered, as a node would right after the handshake.
	pa, pb := newParty("alice"), newParty("bob")
	a2 := startSession(t, pa, pb, false)
	a2 = restore(t, snapshot(t, a2))
	b2, _, err := pb.respond(encrypt(t, a2, "x"))
	if err != nil {
		t.Fatal(err)
	}
	b2 = restore(t, snapshot(t, b2))
	a2 = restore(t, snapshot(t, a2))
	decrypt(t, b2, encrypt(t, a2, "still prekey"))
	decrypt(t, a2, encrypt(t, b2, "reply"))
	if !a2.Confirmed() {
		t.Fatal("initiator still sends prekey messages after the reply")
	}
	if IsPrekeyMessage(encrypt(t, a2, "normal")) {
		t.Fatal("prekey message after the reply")
	}
}

func TestInitialMessageReplayAndOneTimePrekeyReuseAreRejected(t *testing.T) {
	pa, pb := newParty("alice"), newParty("bob")

	// Without one-time prekeys, only the seen check stops a replay.
	alice := startSession(t, pa, pb, false)
	first := encrypt(t, alice, "hi")
	if _, _, err := pb.respond(first); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pb.respond(first); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed initial message: %v", err)
	}

	// With one: the key is gone after first use.
	alice = startSession(t, pa, pb, true)
	first = encrypt(t, alice, "hi")
	if _, _, err := pb.respond(first); err != nil {
		t.Fatal(err)
	}
	pb.seen = map[ReplayKey]bool{} // even if the seen record were lost
	if _, _, err := pb.respond(first); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("reused one-time prekey: %v", err)
	}
	// A second initiator handed the same one-time prekey (a broken or
	// malicious server of bundles) fails too.
	bun, _ := VerifyBundle(pb.bundle(t, true), t0)
	c1, _ := Initiate(pa.id, bun)
	c2, _ := Initiate(newParty("carol").id, bun)
	if _, _, err := pb.respond(encrypt(t, c1, "1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pb.respond(encrypt(t, c2, "2")); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("second use of a one-time prekey: %v", err)
	}
}

func TestPrekeyMessagesRouteToTheirSession(t *testing.T) {
	pa, pb := newParty("alice"), newParty("bob")
	alice := startSession(t, pa, pb, true)
	m1, m2, m3 := encrypt(t, alice, "1"), encrypt(t, alice, "2"), encrypt(t, alice, "3")
	if !IsPrekeyMessage(m2) {
		t.Fatal("unanswered initiator sent a normal message")
	}
	// m2 arrives first: it starts the session; m3 and m1 then go to it.
	bob, pt, err := pb.respond(m2)
	if err != nil || string(pt) != "2" {
		t.Fatalf("%q %v", pt, err)
	}
	if decrypt(t, bob, m3) != "3" || decrypt(t, bob, m1) != "1" {
		t.Fatal("wrong plaintext")
	}
	// A prekey message of another handshake is not this session's.
	other := startSession(t, newParty("carol"), pb, false)
	if err := mustFailUnchanged(t, bob, encrypt(t, other, "x")); !errors.Is(err, ErrWrongSession) {
		t.Fatalf("got %v", err)
	}
	if err := mustFailUnchanged(t, alice, m1); !errors.Is(err, ErrWrongSession) {
		t.Fatalf("initiator accepted a prekey message: %v", err)
	}
}

func TestBundleVerification(t *testing.T) {
	p := newParty("bob")
	good := p.bundle(t, true)
	b, err := VerifyBundle(good, t0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Identity != p.id.Public().Key || b.Seq != 1 || !b.HasOneTimePrekey || !b.HasPQOneTime {
		t.Fatalf("decoded %+v", b)
	}
	dhtForm := p.bundle(t, false)
	if len(dhtForm) >= len(good) {
		t.Fatal("a DHT bundle carries one-time keys")
	}

	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 1
	otherKey := bytes.Clone(good)
	otherKey[1] ^= 1 // the signature then names another identity
	field := bytes.Clone(good)
	field[100] ^= 1
	mallory := newParty("mallory")
	forged, _ := mallory.id.SignBundle(BundleParams{Seq: 9, Expires: t0.Add(time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq})
	copy(forged[1:33], good[1:33]) // claims bob's identity, signed by mallory
	farFuture, _ := p.id.SignBundle(BundleParams{Seq: 2, Expires: t0.Add(MaxBundleLifetime + BundleClockSkew + time.Second), SignedPrekey: p.spk, PQPrekey: p.pq})

	cases := []struct {
		name string
		data []byte
		now  time.Time
		want error
	}{
		{"bad signature", badSig, t0, ErrBundleSignature},
		{"changed field", field, t0, ErrBundleSignature},
		{"other identity", otherKey, t0, ErrBundleSignature},
		{"forged by another key", forged, t0, ErrBundleSignature},
		{"expired", good, t0.Add(7 * 24 * time.Hour), ErrBundleExpired},
		{"too far ahead", farFuture, t0, ErrBundleMalformed},
		{"truncated", good[:len(good)-1], t0, ErrBundleMalformed},
		{"extended", append(bytes.Clone(good), 0), t0, ErrBundleMalformed},
		{"empty", nil, t0, ErrBundleMalformed},
		{"wrong version", append([]byte{3}, good[1:]...), t0, ErrBundleMalformed},
		{"too large", make([]byte, MaxBundleSize+1), t0, ErrBundleTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := VerifyBundle(c.data, c.now); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// lowOrder lists the X25519 points of small order and their non-canonical
// encodings (the list libsodium rejects).
var lowOrder = [][32]byte{
	{},
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
}

func TestLowOrderPointsAreRejected(t *testing.T) {
	p := newParty("bob")
	for i, pt := range lowOrder {
		if _, err := dh(p.spk.priv, &pt); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("point %d: dh gave %v", i, err)
		}
		// In a bundle (validly signed by a careless or hostile owner).
		b, err := VerifyBundle(p.bundle(t, true), t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []*DHPublicKey{&b.SignedPrekey, &b.IdentityDH, &b.OneTimePrekey} {
			saved := *k
			*k = pt
			if _, err := Initiate(newParty("alice").id, b); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("point %d in a bundle: %v", i, err)
			}
			*k = saved
		}
	}

	// As the ephemeral key of a prekey message, and as the ratchet key in
	// an authenticated header from the peer.
	pa, pb := newParty("alice"), newParty("bob")
	first := encrypt(t, startSession(t, pa, pb, false), "x")
	m, _ := ParsePrekeyMessage(first)
	for i, pt := range lowOrder {
		bad := bytes.Clone(first)
		copy(bad[envelopePrefix+prekeyBaseKeyOffset:], pt[:])
		if _, _, err := pb.respond(bad); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("point %d as EK: %v", i, err)
		}
		_ = m
	}
	alice, bob := established(t)
	for i, pt := range lowOrder {
		h := header{dh: pt, pn: alice.ns, n: 0}
		env := forgeWithHeaderKey(alice, &bob.nhkr, h)
		if err := mustFailUnchanged(t, bob, env); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("point %d as ratchet key: %v", i, err)
		}
	}
	decrypt(t, bob, encrypt(t, alice, "fine"))
}

// lose encrypts n messages that are never delivered.
func lose(t *testing.T, s *Session, n int) {
	t.Helper()
	for range n {
		encrypt(t, s, "lost")
	}
}

// forgeWithHeaderKey builds an envelope with a header of the attacker's
// choosing, sealed under hk, and a random body.
func forgeWithHeaderKey(s *Session, hk *[32]byte, h header) []byte {
	body := make([]byte, 40)
	rand.Read(body)
	return sealedWithHeader(hk, h.append(nil), body)
}

// sealedWithHeader builds a normal envelope around a header plaintext of any
// length, sealed under hk as the sender would, and the given body bytes.
func sealedWithHeader(hk *[32]byte, hdr, body []byte) []byte {
	prefix := make([]byte, envelopePrefix)
	prefix[0], prefix[1] = envelopeVersion, kindMessage
	tail := append(make([]byte, bodyNonceSize), body...)
	var ad [32]byte
	headerAD(prefix, tail, &ad)
	nonce := make([]byte, headerNonceSize)
	env := append(prefix, nonce...)
	env = sealHeader(env, hk, nonce, hdr, ad[:])
	return append(env, tail...)
}

func TestSafetyNumber(t *testing.T) {
	a, b, c := newParty("alice").id.Public().Key, newParty("bob").id.Public().Key, newParty("carol").id.Public().Key
	ab, ba := SafetyNumber(a, b), SafetyNumber(b, a)
	if ab != ba {
		t.Fatalf("sides differ: %s / %s", ab, ba)
	}
	if len(ab) != 60 || len(FormatSafetyNumber(ab)) != 71 {
		t.Fatalf("bad length: %q", FormatSafetyNumber(ab))
	}
	for _, r := range ab {
		if r < '0' || r > '9' {
			t.Fatalf("not digits: %s", ab)
		}
	}
	if SafetyNumber(a, c) == ab || SafetyNumber(c, b) == ab {
		t.Fatal("safety number did not change with an identity")
	}
}

func TestSkippedKeyLimits(t *testing.T) {
	alice, bob := established(t)

	// At most MaxSkippedKeys: the oldest are evicted.
	oldest := encrypt(t, alice, "oldest")
	for range 3 {
		lose(t, alice, MaxSkip-1)
		decrypt(t, bob, encrypt(t, alice, "jump"))
	}
	if n := bob.SkippedKeys(); n != MaxSkippedKeys {
		t.Fatalf("%d skipped keys stored, want %d", n, MaxSkippedKeys)
	}
	if err := mustFailUnchanged(t, bob, oldest); !errors.Is(err, ErrReplay) {
		t.Fatalf("evicted key: %v", err)
	}

	// At most MaxSkippedChains chains hold keys.
	for range MaxSkippedChains + 2 {
		decrypt(t, alice, encrypt(t, bob, "turn"))
		encrypt(t, alice, "lost") // leaves one skipped key in its chain
		decrypt(t, bob, encrypt(t, alice, "seen"))
	}
	if len(bob.skipped) > MaxSkippedChains {
		t.Fatalf("%d chains", len(bob.skipped))
	}

	// Skipped keys expire after SkippedKeyMaxAge.
	lost := encrypt(t, alice, "late")
	decrypt(t, bob, encrypt(t, alice, "on time"))
	late := t0.Add(SkippedKeyMaxAge)
	if _, err := bob.Decrypt(lost, late); !errors.Is(err, ErrReplay) {
		t.Fatalf("expired skipped key: %v", err)
	}
	decrypt(t, alice, encrypt(t, bob, "x"))
	if _, err := bob.Decrypt(encrypt(t, alice, "y"), late); err != nil {
		t.Fatal(err)
	}
	if n := bob.SkippedKeys(); n != 0 {
		t.Fatalf("%d expired keys kept", n)
	}
}

func TestPruneDeletesExpiredKeysOfIdleSessions(t *testing.T) {
	alice, bob := established(t)
	lose(t, alice, 3)
	decrypt(t, bob, encrypt(t, alice, "after a gap"))
	if n := bob.Prune(t0.Add(SkippedKeyMaxAge - time.Second)); n != 0 || bob.SkippedKeys() != 3 {
		t.Fatalf("pruned %d keys before their time", n)
	}
	if n := bob.Prune(t0.Add(SkippedKeyMaxAge)); n != 3 || bob.SkippedKeys() != 0 {
		t.Fatalf("pruned %d, %d left", n, bob.SkippedKeys())
	}
	decrypt(t, bob, encrypt(t, alice, "still works"))
}

func TestCounterAtTheTopIsRejected(t *testing.T) {
	alice, bob := established(t)
	decrypt(t, bob, encrypt(t, alice, "start a chain"))
	// A malicious peer that moved both counters to the top.
	alice.ns, bob.nr = math.MaxUint32-1, math.MaxUint32-1
	bob.ckr = alice.cks
	decrypt(t, bob, encrypt(t, alice, "last usable"))
	if _, _, err := alice.Encrypt([]byte("x")); err == nil {
		t.Fatal("sender used the last counter")
	}
	// A header with N = MaxUint32 (Nr would wrap to 0) is refused before
	// any key is derived for it.
	env := forgeWithHeaderKey(alice, &bob.hkr, header{dh: alice.dhsPub, pn: alice.pn, n: math.MaxUint32})
	rejectedBeforeDerivation(t, bob, env, ErrDecrypt)
}

func TestKeysAndSessionsNeverPrintSecrets(t *testing.T) {
	alice, _ := established(t)
	p := newParty("x")
	seed := p.id.Ed25519Seed()
	var loaded Session // as a caller holds it after loading from storage
	if err := loaded.UnmarshalBinary(snapshot(t, alice)); err != nil {
		t.Fatal(err)
	}
	type row struct{ S Session } // a caller's struct holding a session
	er := EncryptRandom{RatchetKey: alice.rk}
	ir := InitiatorRandom{Ephemeral: alice.rk}
	for _, v := range []any{alice, *alice, loaded, row{loaded}, p.id, *p.id, p.spk, *p.spk, p.pq, *p.pq, er, ir} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
			out := fmt.Sprintf(verb, v)
			if bytes.Contains([]byte(out), []byte(fmt.Sprintf("%x", seed[:4]))) ||
				bytes.Contains([]byte(out), []byte(fmt.Sprintf("%x", alice.rk[:4]))) || len(out) > 80 {
				t.Fatalf("%s printed %q", verb, out)
			}
		}
	}
}

func TestIdentityAndPrekeysRoundTrip(t *testing.T) {
	p := newParty("x")
	blob, _ := p.id.MarshalBinary()
	var id Identity
	if err := id.UnmarshalBinary(blob); err != nil || id.Public() != p.id.Public() {
		t.Fatalf("identity: %v", err)
	}
	blob[70] ^= 1
	before := id.Public()
	if err := id.UnmarshalBinary(blob); !errors.Is(err, ErrMalformed) {
		t.Fatalf("corrupted identity: %v", err)
	}
	if id.Public() != before {
		t.Fatal("a failed load changed the identity")
	}
	spkBlob, _ := p.spk.MarshalBinary()
	var spk SignedPrekey
	if err := spk.UnmarshalBinary(spkBlob); err != nil || spk.Public() != p.spk.Public() || spk.ID != 1 {
		t.Fatalf("spk: %v", err)
	}
	pqBlob, _ := p.pq.MarshalBinary()
	var pq PQPrekey
	if err := pq.UnmarshalBinary(pqBlob); err != nil || !bytes.Equal(pq.Public(), p.pq.Public()) {
		t.Fatalf("pq: %v", err)
	}
	if PublicIdentityCheck := p.id.Public(); PublicIdentityCheck.Verify() != nil {
		t.Fatal("own certificate does not verify")
	}
}
