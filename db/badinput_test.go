package db

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// refused opens dir, expects err, and checks that no file changed.
func refused(t *testing.T, dir string, want error) {
	t.Helper()
	before := dataBytes(t, dir)
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatalf("opened; want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	t.Logf("error: %v", err)
	if !bytes.Equal(before, dataBytes(t, dir)) {
		t.Fatal("a refused file was changed")
	}
}

func TestNonSQLiteFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, content := range [][]byte{[]byte("my notes, not a database\n"), bytes.Repeat([]byte("x"), 8192)} {
		os.WriteFile(filepath.Join(dir, FileName), content, 0o600)
		refused(t, dir, ErrNotP2PMsg)
	}
}

func TestAnotherProgramsDatabaseIsRefused(t *testing.T) {
	for _, journal := range []string{"DELETE", "WAL"} {
		dir := t.TempDir()
		other, err := sql.Open("sqlite3", filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		other.SetMaxOpenConns(1)
		if _, err := other.Exec("PRAGMA journal_mode = " + journal + "; CREATE TABLE photos (name TEXT); INSERT INTO photos VALUES ('cat.jpg')"); err != nil {
			t.Fatal(err)
		}
		if journal == "WAL" {
			// A copy taken while it is open, as after a crash of that
			// program: its WAL holds frames not yet in the file, which a
			// read-write open would check into the file.
			other.Exec("PRAGMA wal_autocheckpoint = 0; INSERT INTO photos VALUES ('dog.jpg')")
			crashed := t.TempDir()
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(filepath.Join(dir, FileName+suffix))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(crashed, FileName+suffix), b, 0o600)
			}
			other.Close()
			if len(dataBytes(t, crashed)) <= len(dataBytes(t, dir)) {
				t.Fatal("the copy has no WAL frames to replay")
			}
			refused(t, crashed, ErrNotP2PMsg)
			continue
		}
		other.Close()
		refused(t, dir, ErrNotP2PMsg)
	}
}

func TestNewerDatabaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	s.wdb.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations())+1))
	s.Close()
	refused(t, dir, ErrTooNew)
}

func TestDamagedDatabaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("peer", t0)
		for i := range 500 {
			if _, err := receive(tx, "peer", i, bytes.Repeat([]byte{1}, 500), t0); err != nil {
				return err
			}
		}
		return nil
	})
	s.Close()
	path := filepath.Join(dir, FileName)
	b, _ := os.ReadFile(path)
	if len(b) < 40*4096 {
		t.Fatalf("database of only %d bytes", len(b))
	}
	// Damage in many pages, then in the last two only (found by
	// quick_check, not on the way in).
	for _, r := range [][2]int{{10 * 4096, 30 * 4096}, {len(b) - 2*4096, len(b)}} {
		bad := bytes.Clone(b)
		for i := r[0]; i < r[1]; i++ {
			bad[i] = byte(i * 7)
		}
		os.WriteFile(path, bad, 0o600)
		refused(t, dir, ErrCorrupt)
	}
}

func TestReadOnlyDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	update(t, s, func(tx *Tx) error { return tx.PutSetting("k", []byte("v")) })
	s.Close()
	readOnly(t, dir)
	refused(t, dir, ErrReadOnly)

	fresh := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(fresh, 0o700)
	readOnly(t, fresh)
	if _, err := Open(fresh, Options{}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("empty read-only directory: %v", err)
	}
}

// readOnly makes dir read-only for this process: by its mode for a normal
// user; for root, who ignores modes, by a read-only bind mount.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		os.Chmod(dir, 0o500)
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("root ignores file modes, and a read-only bind mount failed: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("root ignores file modes, and a read-only remount failed: %v", err)
	}
}

// A data directory that other users can read or write is refused with
// the command that fixes it, and nothing is created in it.
func TestDirectoryOpenToOthersIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o755, 0o750, 0o702} {
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Options{KDF: fastKDF})
		if !errors.Is(err, ErrDirOpen) || !strings.Contains(err.Error(), "chmod 700 "+dir) {
			t.Fatalf("mode %04o: %v", mode, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("mode %04o: %d files created", mode, len(entries))
		}
	}
	// The directory the store makes itself is private whatever the umask
	// (the tests run under 077: here the common 022).
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "fresh", "data")
	s, err := Open(dir, Options{KDF: fastKDF})
	if err != nil {
		t.Fatalf("a new directory under umask 022: %v", err)
	}
	s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("a new data directory: %v %v, want 0700", fi.Mode(), err)
	}
}
