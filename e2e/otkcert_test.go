package e2e

import (
	"bytes"
	"errors"
	"testing"
)

var mailboxM, mailboxN = []byte("mailbox M peer id"), []byte("mailbox N peer id")

// mailboxKeys makes one-time prekeys of both kinds for bob, keeps their
// private halves as bob's node would, and certifies them for mailbox.
func mailboxKeys(t *testing.T, bob *party, mailbox []byte) (x, pq []byte) {
	t.Helper()
	bob.nextID++
	opk := NewOneTimePrekeyFromKey(bob.nextID, seed32("otk/x"+string(rune(bob.nextID))))
	bob.opks[opk.ID] = opk
	bob.nextID++
	pqopk := NewPQPrekeyFromSeed(bob.nextID, true, seed64("otk/pq"+string(rune(bob.nextID))))
	bob.pqopks[pqopk.ID] = pqopk
	x, err := bob.id.SignOneTimeCert(mailbox, opk)
	if err != nil {
		t.Fatal(err)
	}
	pq, err = bob.id.SignPQOneTimeCert(mailbox, pqopk)
	if err != nil {
		t.Fatal(err)
	}
	return x, pq
}

// A first contact made through a mailbox's certificates uses both one-time
// keys (DH4 and the one-time ML-KEM key), and bob's node, looking them up
// by id, answers it; a second use of the same keys is refused, as any used
// one-time key is.
func TestOneTimeCertsHandshake(t *testing.T) {
	alice, bob, carol := newParty("alice"), newParty("bob"), newParty("carol")
	bun, err := VerifyBundle(bob.bundle(t, false), t0)
	if err != nil {
		t.Fatal(err)
	}
	x, pq := mailboxKeys(t, bob, mailboxM)
	withOTK, err := bun.WithOneTimeCerts(mailboxM, x, pq)
	if err != nil {
		t.Fatal(err)
	}
	if bun.HasOneTimePrekey || bun.HasPQOneTime {
		t.Fatal("WithOneTimeCerts changed the bundle it was called on")
	}
	s, err := Initiate(alice.id, withOTK)
	if err != nil {
		t.Fatal(err)
	}
	env := encrypt(t, s, "through the mailbox")
	m, err := ParsePrekeyMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasOneTimePrekey || !m.PQOneTime {
		t.Fatalf("the handshake did not use both one-time keys: %+v", m)
	}
	if _, pt, err := bob.respond(env); err != nil || string(pt) != "through the mailbox" {
		t.Fatalf("respond: %q, %v", pt, err)
	}
	// A mailbox that hands the same keys to carol: bob refuses her.
	s2, err := Initiate(carol.id, withOTK)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bob.respond(encrypt(t, s2, "same keys")); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("a reused one-time key: %v", err)
	}
}

// A certificate counts only from the bundle's owner, for the mailbox that
// hands it out, once per kind, intact.
func TestOneTimeCertsRefused(t *testing.T) {
	bob, mallory := newParty("bob"), newParty("mallory")
	bun, err := VerifyBundle(bob.bundle(t, false), t0)
	if err != nil {
		t.Fatal(err)
	}
	x, pq := mailboxKeys(t, bob, mailboxM)
	mx, _ := mailboxKeys(t, mallory, mailboxM)
	x2, _ := mailboxKeys(t, bob, mailboxM)
	flipped := bytes.Clone(x)
	flipped[7] ^= 1
	for name, c := range map[string]struct {
		mailbox []byte
		certs   [][]byte
		want    error
	}{
		"for another mailbox":  {mailboxN, [][]byte{x}, ErrOneTimeCert},
		"by someone else":      {mailboxM, [][]byte{mx}, ErrOneTimeCert},
		"a key flipped":        {mailboxM, [][]byte{flipped}, ErrOneTimeCert},
		"two of a kind":        {mailboxM, [][]byte{x, x2}, ErrMalformed},
		"cut short":            {mailboxM, [][]byte{x[:len(x)-1]}, ErrMalformed},
		"unknown kind":         {mailboxM, [][]byte{append([]byte{3}, x[1:]...)}, ErrMalformed},
		"empty":                {mailboxM, [][]byte{nil}, ErrMalformed},
		"no mailbox":           {nil, [][]byte{x}, ErrMalformed},
		"PQ for other mailbox": {mailboxN, [][]byte{pq}, ErrOneTimeCert},
	} {
		if _, err := bun.WithOneTimeCerts(c.mailbox, c.certs...); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := bob.id.SignPQOneTimeCert(mailboxM, bob.pq); err == nil {
		t.Error("certified the last-resort PQ prekey as one-time")
	}
	if _, err := bob.id.SignOneTimeCert(bytes.Repeat([]byte{1}, MaxMailboxIDSize+1), NewOneTimePrekey(1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("certified for an oversized mailbox id: %v", err)
	}
}
