package e2e

import (
	"bytes"
	"crypto/sha256"
	"maps"
	"testing"
	"time"
)

// t0 is the fixed clock of the tests.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// seed32 derives a fixed 32-byte seed from a label, so every test key is
// reproducible.
func seed32(label string) (s [32]byte) { return sha256.Sum256([]byte(label)) }

func seed64(label string) (s [64]byte) {
	a, b := seed32(label+"/0"), seed32(label+"/1")
	copy(s[:32], a[:])
	copy(s[32:], b[:])
	return s
}

// party is one user with its prekeys and the bookkeeping that node and db
// do in the product: one-time keys deleted after use, seen initial messages.
type party struct {
	name   string
	id     *Identity
	spk    *SignedPrekey
	pq     *PQPrekey
	opks   map[uint32]*OneTimePrekey
	pqopks map[uint32]*PQPrekey
	seen   map[ReplayKey]bool
	nextID uint32
}

func newParty(name string) *party {
	return &party{
		name:   name,
		id:     NewIdentityFromSeeds(seed32(name+"/ik"), seed32(name+"/ikdh")),
		spk:    NewSignedPrekeyFromKey(1, seed32(name+"/spk")),
		pq:     NewPQPrekeyFromSeed(2, false, seed64(name+"/pqspk")),
		opks:   map[uint32]*OneTimePrekey{},
		pqopks: map[uint32]*PQPrekey{},
		seen:   map[ReplayKey]bool{},
		nextID: 100,
	}
}

// clone copies the party's key store, as a backup of its database would.
func (p *party) clone() *party {
	c := *p
	c.opks, c.pqopks, c.seen = maps.Clone(p.opks), maps.Clone(p.pqopks), maps.Clone(p.seen)
	return &c
}

// bundle signs a bundle; with oneTime it adds fresh one-time prekeys, as a
// direct fetch from the owner does.
func (p *party) bundle(t testing.TB, oneTime bool) []byte {
	t.Helper()
	params := BundleParams{Seq: 1, Expires: t0.Add(7 * 24 * time.Hour), SignedPrekey: p.spk, PQPrekey: p.pq}
	if oneTime {
		p.nextID++
		opk := NewOneTimePrekeyFromKey(p.nextID, seed32(p.name+"/opk"+string(rune(p.nextID))))
		p.opks[opk.ID] = opk
		params.OneTimePrekey = opk
		p.nextID++
		pqopk := NewPQPrekeyFromSeed(p.nextID, true, seed64(p.name+"/pqopk"+string(rune(p.nextID))))
		p.pqopks[pqopk.ID] = pqopk
		params.PQOneTimePrekey = pqopk
	}
	b, err := p.id.SignBundle(params)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// respond plays the responder's node: look up the named keys, run Respond,
// and on success delete the one-time keys and remember the replay key.
func (p *party) respond(env []byte) (*Session, []byte, error) {
	m, err := ParsePrekeyMessage(env)
	if err != nil {
		return nil, nil, err
	}
	keys := ResponderKeys{}
	if m.SignedPrekeyID == p.spk.ID {
		keys.SignedPrekey = p.spk
	}
	if m.PQOneTime {
		keys.PQPrekey = p.pqopks[m.PQPrekeyID]
	} else if m.PQPrekeyID == p.pq.ID {
		keys.PQPrekey = p.pq
	}
	if m.HasOneTimePrekey {
		keys.OneTimePrekey = p.opks[m.OneTimePrekeyID]
	}
	s, pt, err := Respond(p.id, m, keys, func(k ReplayKey) bool { return p.seen[k] }, t0)
	if err != nil {
		return nil, nil, err
	}
	p.seen[m.ReplayKey()] = true
	delete(p.opks, m.OneTimePrekeyID)
	if m.PQOneTime {
		delete(p.pqopks, m.PQPrekeyID)
	}
	return s, pt, nil
}

// initiate verifies b's bundle and starts a session from a to b.
func startSession(t testing.TB, a, b *party, oneTime bool) *Session {
	t.Helper()
	bun, err := VerifyBundle(b.bundle(t, oneTime), t0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Initiate(a.id, bun)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// established returns a session pair after one message each way, so both
// sides have done a DH ratchet step.
func established(t testing.TB) (alice, bob *Session) {
	t.Helper()
	a, b := newParty("alice"), newParty("bob")
	alice = startSession(t, a, b, true)
	env := encrypt(t, alice, "hello bob")
	bob, pt, err := b.respond(env)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "hello bob" {
		t.Fatalf("first message = %q", pt)
	}
	if got := decrypt(t, alice, encrypt(t, bob, "hello alice")); got != "hello alice" {
		t.Fatalf("reply = %q", got)
	}
	return alice, bob
}

func encrypt(t testing.TB, s *Session, msg string) []byte {
	t.Helper()
	_, env, err := s.Encrypt([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func decrypt(t testing.TB, s *Session, env []byte) string {
	t.Helper()
	pt, err := s.Decrypt(env, t0)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return string(pt)
}

func snapshot(t testing.TB, s *Session) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func restore(t testing.TB, b []byte) *Session {
	t.Helper()
	var s Session
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &s
}

// mustFailUnchanged checks that decrypting env fails and leaves s exactly as
// it was.
func mustFailUnchanged(t testing.TB, s *Session, env []byte) error {
	t.Helper()
	before := snapshot(t, s)
	pt, err := s.Decrypt(env, t0)
	if err == nil {
		t.Fatalf("decrypt succeeded: %q", pt)
	}
	if !bytes.Equal(before, snapshot(t, s)) {
		t.Fatalf("failed decrypt (%v) changed the session", err)
	}
	return err
}
