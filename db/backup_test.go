package db

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fill stores n messages from peer "a" (a contact).
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	update(t, s, func(tx *Tx) error {
		if err := tx.PutContact(Contact{PeerID: "a", Name: "Annabelle Quixotic-Zwerg", State: ContactAccepted}, t0); err != nil {
			return err
		}
		for i := range n {
			if _, err := receive(tx, "a", i, []byte("session"), t0); err != nil {
				return err
			}
		}
		return nil
	})
}

// A backup, taken while the store is open and written to, restores into
// a new directory the history as it was; the file reads as nothing
// without the passphrase: no message, no contact name.
func TestBackupRestore(t *testing.T) {
	for _, pass := range []string{"", "store passphrase"} {
		t.Run(fmt.Sprintf("sealed=%v", pass != ""), func(t *testing.T) {
			s := open(t, t.TempDir(), pass)
			fill(t, s, 300) // more than one 64 KiB piece
			backup := filepath.Join(t.TempDir(), "b.p2pmsg-backup")
			bpass := []byte("backup passphrase")
			if pass != "" {
				if err := s.Backup(backup, []byte("not it"), fastKDF); !errors.Is(err, ErrWrongPassphrase) {
					t.Fatalf("a sealed store's backup under another passphrase: %v", err)
				}
				bpass = []byte(pass)
			}
			if err := s.Backup(backup, nil, fastKDF); err == nil {
				t.Fatal("a backup without a passphrase")
			}
			// Never into the data directory, however it is named.
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(filepath.Dir(s.Path()), link); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{filepath.Join(filepath.Dir(s.Path()), "x.backup"), filepath.Join(link, "x.backup")} {
				if err := s.Backup(p, bpass, fastKDF); err == nil {
					t.Fatalf("a backup written into the data directory, as %s", p)
				}
			}
			if err := s.Backup(backup, bpass, fastKDF); err != nil {
				t.Fatal(err)
			}
			fill(t, s, 301) // after the backup: not in it
			raw, err := os.ReadFile(backup)
			if err != nil {
				t.Fatal(err)
			}
			// Long markers: a short one would turn up in random bytes.
			for _, secret := range []string{"message 123", "Annabelle Quixotic-Zwerg", "SQLite format 3"} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Fatalf("the backup holds %q in clear", secret)
				}
			}
			if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), ".backup-*")); len(leftovers) > 0 {
				t.Fatalf("the snapshot was left behind: %v", leftovers)
			}

			dir := filepath.Join(t.TempDir(), "restored")
			if err := Restore(backup, dir, []byte("wrong")); !errors.Is(err, ErrWrongBackupPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("a failed restore left a store")
			}
			if err := Restore(backup, dir, bpass); err != nil {
				t.Fatal(err)
			}
			if err := Restore(backup, dir, bpass); err == nil {
				t.Fatal("restored over a store")
			}
			r := open(t, dir, pass)
			view(t, r, func(rt *ReadTx) error {
				h, err := rt.History("a", Cursor{}, 1000)
				if err != nil {
					return err
				}
				if len(h) != 300 || h[299].Body != "message 299" {
					t.Fatalf("restored history: %d messages", len(h))
				}
				c, err := rt.Contact("a")
				if err != nil || c.Name != "Annabelle Quixotic-Zwerg" {
					t.Fatalf("restored contact: %+v, %v", c, err)
				}
				return nil
			})
		})
	}
}

// A backup that was cut, changed or extended does not restore, and
// leaves nothing behind.
func TestBackupTampered(t *testing.T) {
	s := open(t, t.TempDir(), "")
	fill(t, s, 1000)
	backup := filepath.Join(t.TempDir(), "b")
	pass := []byte("pw")
	if err := s.Backup(backup, pass, fastKDF); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(backup)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	full := backupChunk + 16
	piece := func(i int) []byte { return good[backupHeader+i*full : backupHeader+(i+1)*full] }
	swapped := append(append(append(append([]byte{}, good[:backupHeader]...), piece(0)...), piece(2)...), piece(1)...)
	swapped = append(swapped, good[backupHeader+3*full:]...)
	if len(good) < backupHeader+3*full+16 {
		t.Fatalf("the test wants at least four pieces: %d bytes", len(good))
	}
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"cut in a piece":         {good[:len(good)-5], ErrBadBackup},
		"last piece dropped":     {good[:backupHeader+3*full], ErrBadBackup},
		"a byte changed":         {flip(backupHeader + full + 100), ErrBadBackup},
		"pieces 1 and 2 swapped": {swapped, ErrBadBackup},
		"bytes appended":         {append(bytes.Clone(good), 0), ErrBadBackup},
		"another version":        {flip(len(backupMagic)), ErrBadBackup},
		"header only":            {good[:backupHeader], ErrBadBackup},
		"not a backup at all":    {[]byte("SQLite format 3\x00"), ErrBadBackup},
		"huge Argon2id memory":   {append(append(bytes.Clone(good[:13]), 0xff, 0xff, 0xff, 0xff), good[17:]...), ErrBadBackup},
		// The salt or the first piece changed: indistinguishable from a
		// wrong passphrase, and said so.
		"the salt changed": {flip(backupHeader - 20), ErrWrongBackupPassphrase},
	} {
		path := filepath.Join(t.TempDir(), "bad")
		os.WriteFile(path, c.b, 0o600)
		dir := filepath.Join(t.TempDir(), "restored")
		if err := Restore(path, dir, pass); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			t.Errorf("%s: left %d files", name, len(entries))
		}
	}
}

// Plaintexts of every shape round-trip, a whole number of pieces
// included (its last piece is empty).
func TestBackupChunks(t *testing.T) {
	key := &[32]byte{7}
	h := make([]byte, backupHeader)
	copy(h, backupMagic)
	for _, n := range []int{0, 1, backupChunk - 1, backupChunk, backupChunk + 1, 2 * backupChunk, 3*backupChunk + 5} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		var sealed, opened bytes.Buffer
		if err := sealChunks(&sealed, bytes.NewReader(pt), key, h); err != nil {
			t.Fatal(err)
		}
		if want := (n/backupChunk + 1) * 16; sealed.Len() != n+want {
			t.Fatalf("%d bytes sealed to %d, want %d", n, sealed.Len(), n+want)
		}
		if err := openChunks(&opened, bytes.NewReader(sealed.Bytes()), key, h, false); err != nil || !bytes.Equal(opened.Bytes(), pt) {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if n%backupChunk == 0 && n > 0 {
			// Without its empty last piece it is cut short.
			cut := sealed.Bytes()[:sealed.Len()-16]
			if err := openChunks(io.Discard, bytes.NewReader(cut), key, h, false); !errors.Is(err, ErrBadBackup) {
				t.Fatalf("%d bytes without the empty last piece: %v", n, err)
			}
		}
	}
}

// FuzzOpenBackup: any bytes after a header either open whole or give an
// error, never a panic.
func FuzzOpenBackup(f *testing.F) {
	key := &[32]byte{1}
	h := make([]byte, backupHeader)
	copy(h, backupMagic)
	var sealed bytes.Buffer
	sealChunks(&sealed, bytes.NewReader(bytes.Repeat([]byte("x"), 100)), key, h)
	f.Add(h, sealed.Bytes())
	f.Add([]byte(backupMagic+"\x01\x00\x00\x00\x01\x00\x00\x00\x40\x01"), []byte{})
	f.Fuzz(func(t *testing.T, header, body []byte) {
		parseBackupHeader(header)
		if len(header) < backupHeader {
			return
		}
		var out bytes.Buffer
		if err := openChunks(&out, bytes.NewReader(body), key, header[:backupHeader], false); err == nil && !bytes.Equal(header[:backupHeader], h) {
			t.Fatalf("opened under another header")
		}
	})
}
