package db

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A transaction function that ends its goroutine (as t.Fatal does) must
// not take the store with it: its group fails, later writes work.
func TestGoexitInATransactionDoesNotStopTheStore(t *testing.T) {
	s := open(t, t.TempDir(), "")
	done := make(chan error, 1)
	go func() {
		defer func() { done <- errors.New("goexit") }()
		s.Update(func(tx *Tx) error {
			tx.PutSetting("lost", []byte("x"))
			runtime.Goexit()
			return nil
		})
	}()
	<-done
	finished := make(chan error, 1)
	go func() { finished <- s.Update(func(tx *Tx) error { return tx.PutSetting("after", []byte("y")) }) }()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the store stopped writing after a Goexit")
	}
	view(t, s, func(r *ReadTx) error {
		if _, err := r.Setting("lost"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the Goexit transaction was kept: %v", err)
		}
		return nil
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// Reads running while the passphrase changes see each secret whole: under
// the old sealing or the new, never a sealed value as if it were clear,
// never a false "damaged".
func TestReadsDuringPassphraseChangeStayConsistent(t *testing.T) {
	s := open(t, t.TempDir(), "")
	identity, prekey, session := secrets()
	putSecrets(t, s, identity, prekey, session)
	insertConversation(t, s, 0, 50)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				err := s.View(func(r *ReadTx) error {
					blob, err := r.Session("peer")
					if err != nil {
						return err
					}
					if !bytes.Equal(blob, session) {
						t.Error("a read returned a value that is not the secret")
					}
					m, err := r.Message(msgID(7))
					if err != nil {
						return err
					}
					if m.Body != fmt.Sprintf("message 7: %s", secretWords[7]) {
						t.Errorf("a read returned a body that is not the text: %q", m.Body)
					}
					if found, err := r.Search("pterodactyl", 100); err != nil || len(found) != 3 {
						t.Errorf("a search during a change found %d, %v", len(found), err)
					}
					return nil
				})
				if err != nil {
					t.Errorf("read during re-seal: %v", err)
					return
				}
				reads.Add(1)
			}
		}()
	}
	for i, pass := range []string{"one", "two", "", "three", "four", ""} {
		var err error
		if pass == "four" {
			err = s.RotateStoreKey([]byte(pass), fastKDF)
		} else {
			err = s.ChangePassphrase([]byte(pass), fastKDF)
		}
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no read ran")
	}
}

// Close waits for a running read, and only then releases the directory.
func TestCloseWaitsForReads(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	inRead, release := make(chan struct{}), make(chan struct{})
	go s.View(func(r *ReadTx) error {
		close(inRead)
		<-release
		_, err := r.Contacts()
		if err != nil {
			t.Errorf("read cut short by Close: %v", err)
		}
		return nil
	})
	<-inRead
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close did not wait for the read")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("directory released before the read ended: %v", err)
	}
	close(release)
	<-closed
	if err := s.View(func(*ReadTx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("view after close: %v", err)
	}
}

func TestDamagedSealingRowIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "pass")
	s.wdb.Exec("UPDATE sealing SET memory = 4294967295")
	s.Close()
	_, err := Open(dir, Options{Passphrase: []byte("pass")})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
}

func TestPathsWithURICharacters(t *testing.T) {
	for _, name := range []string{"a%41b", "what?", "#1", "sp ace"} {
		dir := filepath.Join(t.TempDir(), name)
		s := open(t, dir, "")
		update(t, s, func(tx *Tx) error { return tx.PutSetting("k", []byte(name)) })
		s.Close()
		if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
			t.Fatalf("%q: the database is not where it should be: %v", name, err)
		}
		s = open(t, dir, "")
		view(t, s, func(r *ReadTx) error {
			v, err := r.Setting("k")
			if err != nil || string(v) != name {
				t.Fatalf("%q: %q %v", name, v, err)
			}
			return nil
		})
	}
}

func TestOnlyOneTimePrekeysAreIssuedOrUsed(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		tx.PutPrekey(Prekey{Kind: SignedPrekey, ID: 1, Public: []byte("p"), Secret: []byte("s"), Created: t0})
		if _, _, err := tx.IssueOneTimePrekey(SignedPrekey, t0, t0); err == nil {
			t.Fatal("issued a signed prekey as one-time")
		}
		if _, err := tx.UseOneTimePrekey(SignedPrekey, 1, t0); err == nil {
			t.Fatal("used up a signed prekey")
		}
		return nil
	})
}
