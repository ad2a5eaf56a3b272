package db

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func secrets() (identity, prekey, session []byte) {
	identity, prekey, session = make([]byte, 65), make([]byte, 36), make([]byte, 2048)
	rand.Read(identity)
	rand.Read(prekey)
	rand.Read(session)
	return
}

func putSecrets(t *testing.T, s *Store, identity, prekey, session []byte) {
	t.Helper()
	update(t, s, func(tx *Tx) error {
		if err := tx.PutIdentity([]byte("public"), identity, t0); err != nil {
			return err
		}
		if err := tx.PutPrekey(Prekey{Kind: SignedPrekey, ID: 1, Public: []byte("p"), Secret: prekey, Created: t0}); err != nil {
			return err
		}
		tx.EnsureContact("peer", t0)
		return tx.PutSession("peer", session, t0)
	})
}

func checkSecrets(t *testing.T, s *Store, identity, prekey, session []byte) {
	t.Helper()
	view(t, s, func(r *ReadTx) error {
		_, id, err := r.Identity()
		if err != nil || !bytes.Equal(id, identity) {
			t.Fatalf("identity: %v", err)
		}
		p, err := r.Prekey(SignedPrekey, 1)
		if err != nil || !bytes.Equal(p.Secret, prekey) {
			t.Fatalf("prekey: %v", err)
		}
		blob, err := r.Session("peer")
		if err != nil || !bytes.Equal(blob, session) {
			t.Fatalf("session: %v", err)
		}
		return nil
	})
}

func TestSealedSecretsNeverAppearInTheFile(t *testing.T) {
	dir := t.TempDir()
	identity, prekey, session := secrets()
	s := open(t, dir, "correct horse")
	if !s.SecretsSealed() {
		t.Fatal("not sealed")
	}
	putSecrets(t, s, identity, prekey, session)
	check := func(when string) {
		raw := fileBytes(t, dir)
		mustContain(t, raw, []byte("public"), true, when+": a public value (the grep works)")
		for name, secret := range map[string][]byte{"identity": identity, "prekey": prekey, "session": session} {
			mustContain(t, raw, secret[:16], false, when+": "+name+" secret")
		}
	}
	check("open, in the WAL")
	s.Close()
	check("closed, checkpointed")

	s = open(t, dir, "correct horse")
	checkSecrets(t, s, identity, prekey, session)
	s.Close()

	if _, err := Open(dir, Options{Passphrase: []byte("wrong horse")}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrPassphraseRequired) {
		t.Fatalf("no passphrase: %v", err)
	}
}

func TestChangePassphraseResealsEverything(t *testing.T) {
	dir := t.TempDir()
	identity, prekey, session := secrets()

	// Unsealed first: the store works and says so.
	s := open(t, dir, "")
	putSecrets(t, s, identity, prekey, session)
	s.Close()
	mustContain(t, fileBytes(t, dir), session[:16], true, "unsealed session")
	if _, err := Open(dir, Options{Passphrase: []byte("x")}); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("passphrase on an unsealed store: %v", err)
	}

	// Sealing it leaves no copy of the old clear values in the files.
	s = open(t, dir, "")
	if err := s.ChangePassphrase([]byte("first"), fastKDF); err != nil {
		t.Fatal(err)
	}
	checkSecrets(t, s, identity, prekey, session)
	s.Close()
	raw := fileBytes(t, dir)
	for name, secret := range map[string][]byte{"identity": identity, "prekey": prekey, "session": session} {
		mustContain(t, raw, secret[:16], false, "after sealing: "+name)
	}

	// A new passphrase replaces the old one.
	s = open(t, dir, "first")
	if err := s.ChangePassphrase([]byte("second"), fastKDF); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(dir, Options{Passphrase: []byte("first"), KDF: fastKDF}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("old passphrase: %v", err)
	}
	s = open(t, dir, "second")
	checkSecrets(t, s, identity, prekey, session)

	// And an empty one unseals.
	if err := s.ChangePassphrase(nil, KDFParams{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, "")
	if s.SecretsSealed() {
		t.Fatal("still sealed")
	}
	checkSecrets(t, s, identity, prekey, session)
}

func TestSealedValueCannotMoveToAnotherRow(t *testing.T) {
	s := open(t, t.TempDir(), "pass")
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("alice", t0)
		tx.EnsureContact("mallory", t0)
		tx.PutSession("alice", []byte("alice's session"), t0)
		return tx.PutSession("mallory", []byte("mallory's"), t0)
	})
	if _, err := s.wdb.Exec("UPDATE sessions SET blob = (SELECT blob FROM sessions WHERE peer_id = 'alice') WHERE peer_id = 'mallory'"); err != nil {
		t.Fatal(err)
	}
	err := s.View(func(r *ReadTx) error { _, err := r.Session("mallory"); return err })
	if err == nil {
		t.Fatal("a sealed session opened in another peer's row")
	}
}

// FuzzOpenSealed feeds the decoder of sealed values (secrets, bodies, the
// sealing row's) anything: it returns an error, never panics, and opens
// only what was sealed for that row, whole.
func FuzzOpenSealed(f *testing.F) {
	var key [32]byte
	copy(key[:], "a fixed key for the fuzz target!")
	k := v2Key(&key)
	for _, pt := range []string{"", "hello", strings.Repeat("x", 300)} {
		f.Add(k.seal("message/01", []byte(pt)), "message/01", -1)
		f.Add(k.seal("session/peer", []byte(pt)), "session/peer", 30)
	}
	f.Add([]byte{2}, "", 0)
	f.Fuzz(func(t *testing.T, sealed []byte, ad string, flip int) {
		if pt, err := k.open(ad, sealed); err == nil {
			if again, err := k.open(ad, sealed); err != nil || !bytes.Equal(again, pt) {
				t.Fatal("a sealed value opens differently twice")
			}
		} else if !errors.Is(err, errUnseal) {
			t.Fatalf("unexpected error %v", err)
		}
		// What seal makes opens, for its row only, and no byte of it can
		// change.
		s := k.seal(ad, sealed)
		if pt, err := k.open(ad, s); err != nil || !bytes.Equal(pt, sealed) {
			t.Fatalf("round trip: %v", err)
		}
		if _, err := k.open(ad+"x", s); err == nil {
			t.Fatal("opened for another row")
		}
		if _, err := v1Key(&key).open(ad, s); err == nil {
			t.Fatal("a v2 value opened as v1")
		}
		if flip >= 0 {
			i := flip % len(s)
			s[i] ^= 1 << (flip % 8)
			if _, err := k.open(ad, s); err == nil {
				t.Fatalf("opened with byte %d changed", i)
			}
		}
	})
}
