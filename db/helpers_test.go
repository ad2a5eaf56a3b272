package db

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fastKDF keeps the suite quick; the costs do not change what is tested.
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func open(t testing.TB, dir string, pass string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Passphrase: []byte(pass), KDF: fastKDF})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func update(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func view(t testing.TB, s *Store, fn func(*ReadTx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatal(err)
	}
}

func msgID(i int) (id [16]byte) {
	copy(id[:], fmt.Sprintf("msg-%012d", i))
	return id
}

// receive is the node's receive transaction: load the session, store the
// new session, the message and an event.
func receive(tx *Tx, peer string, i int, blob []byte, at time.Time) (bool, error) {
	if _, err := tx.Read().Session(peer); err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	inserted, err := tx.InsertMessage(Message{ID: msgID(i), Peer: peer, Direction: Incoming,
		Body: fmt.Sprintf("message %d", i), State: Received, Sent: at, Received: at})
	if err != nil || !inserted {
		return inserted, err
	}
	if err := tx.PutSession(peer, blob, at); err != nil {
		return false, err
	}
	id := msgID(i)
	_, err = tx.AppendEvent("message", id[:], at)
	return true, err
}

// fileBytes returns the contents of every file of the store in dir.
func fileBytes(t testing.TB, dir string) []byte {
	t.Helper()
	return filesBytes(t, dir, "", "-wal", "-shm", "-journal")
}

// dataBytes returns the contents of the files that hold data: not the -shm
// index, which SQLite creates for any reader of a WAL database, even a
// read-only one, and which holds no rows.
func dataBytes(t testing.TB, dir string) []byte {
	t.Helper()
	return filesBytes(t, dir, "", "-wal", "-journal")
}

func filesBytes(t testing.TB, dir string, suffixes ...string) []byte {
	t.Helper()
	var all []byte
	for _, suffix := range suffixes {
		b, err := os.ReadFile(filepath.Join(dir, FileName+suffix))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func mustContain(t testing.TB, haystack, needle []byte, want bool, what string) {
	t.Helper()
	if bytes.Contains(haystack, needle) != want {
		t.Fatalf("%s: contained = %v, want %v", what, !want, want)
	}
}

// TestMain runs the tests with a private umask, as a careful user's: the
// directories t.TempDir makes are then 0700, as Open wants a data
// directory to be (TestDirectoryOpenToOthersIsRefused sets its own).
func TestMain(m *testing.M) {
	syscall.Umask(0o077)
	os.Exit(m.Run())
}
