package db

import (
	"bufio"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/chacha20poly1305"
)

// Backups: a consistent copy of the store (VACUUM INTO, which reads one
// snapshot while the daemon goes on writing), encrypted as a whole under
// a passphrase, so that nothing of it (not even who the contacts are)
// reads without the passphrase. The file:
//
//	magic "P2PMSGBK" || version 1 || Argon2id time (4) || memory KiB (4) ||
//	threads (1) || salt (16) || nonce prefix (16) || chunks
//
// The chunks are the STREAM construction (Hoang, Reyhanitabar, Rogaway,
// Vizár, 2015) over XChaCha20-Poly1305, as age uses it: the plaintext in
// pieces of 64 KiB, each sealed with the nonce prefix || its index (7
// bytes) || 1 for the last piece, else 0, and the header as additional
// data. The last piece is shorter than 64 KiB (empty when the plaintext
// fills the one before), so a cut file, reordered or dropped pieces all
// fail to open.

const (
	backupMagic   = "P2PMSGBK"
	backupVersion = 1
	backupHeader  = len(backupMagic) + 1 + 4 + 4 + 1 + saltSize + 16
	backupChunk   = 64 << 10
	// maxBackup bounds what a restore writes: a damaged length cannot
	// fill the disk.
	maxBackup = 64 << 30
)

// ErrBadBackup: the file is no backup of this format, or it is damaged.
var ErrBadBackup = errors.New("db: not a p2pmsg backup, or a damaged one")

// ErrWrongBackupPassphrase: the passphrase does not open the backup.
var ErrWrongBackupPassphrase = errors.New("db: the passphrase does not open this backup")

// CheckPassphrase reports whether pass is the passphrase of a sealed
// store (ErrWrongPassphrase when not); an unsealed store has none, and
// only an empty pass is its passphrase.
func (s *Store) CheckPassphrase(pass []byte) error {
	s.sealMu.RLock()
	defer s.sealMu.RUnlock()
	row, err := s.readSealingFrom(s.reader)
	if err != nil {
		return err
	}
	return s.checkPassphrase(row, pass)
}

// checkPassphrase checks pass against a sealing row (nil: unsealed).
func (s *Store) checkPassphrase(row *sealingRow, pass []byte) error {
	if row == nil {
		if len(pass) > 0 {
			return fmt.Errorf("%w: the store is not sealed by any passphrase", ErrWrongPassphrase)
		}
		return nil
	}
	key, err := passphraseKey(pass, row.salt, row.kdf)
	if err != nil {
		return fmt.Errorf("%w: %s: sealing row: %v", ErrCorrupt, s.path, err)
	}
	defer clear(key[:])
	k := v2Key(key)
	if row.version == sealingV1 {
		k = v1Key(key)
	}
	defer k.wipe()
	if v, err := k.open(checkAD, row.check); err != nil || string(v) != checkValue {
		return fmt.Errorf("%w for %s", ErrWrongPassphrase, s.path)
	}
	return nil
}

// backupPrefix names the snapshots a backup takes in the data
// directory; Open deletes those a crash left.
const backupPrefix = ".backup-"

// Backup writes an encrypted copy of the store to path (replacing it only
// once the copy is whole), under pass: the store's own passphrase when it
// is sealed (checked against the copy's sealing), else one chosen for the
// backup. The copy is taken on the writer, as one job: writes wait for it
// (a store of 100,000 messages copies in a fraction of a second), reads
// go on, and no checkpoint (a purge, a passphrase change) can be held
// back by a long read beside it. Encrypting the copy waits for nothing.
func (s *Store) Backup(path string, pass []byte, kdf KDFParams) error {
	if len(pass) == 0 {
		return errors.New("db: a backup is encrypted under a passphrase: give one")
	}
	dir, err := realDir(filepath.Dir(s.path))
	if err != nil {
		return fmt.Errorf("db: backup: %w", err)
	}
	if target, err := realDir(filepath.Dir(path)); err != nil || target == dir {
		return fmt.Errorf("db: backup: write it outside the data directory %s", dir)
	}
	// A wrong passphrase is told before the copy is made (and checked
	// against the copy's own sealing after).
	if s.sealer.Load() != nil {
		if err := s.CheckPassphrase(pass); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(dir, backupPrefix+"*.db")
	if err != nil {
		return fmt.Errorf("db: backup: %w", err)
	}
	snapshot := tmp.Name()
	tmp.Close()
	os.Remove(snapshot) // VACUUM INTO writes a file that does not exist
	defer os.Remove(snapshot)
	if err := s.exclusiveJob(func() error {
		_, err := s.wdb.Exec("VACUUM INTO ?", snapshot)
		return err
	}); err != nil {
		return s.classify("backup: snapshot", err)
	}
	// The copy's own sealing says which passphrase opens it: a change
	// of passphrase just before the copy is what counts.
	copied, err := sql.Open("sqlite3", sqliteURI(snapshot)+"?mode=ro")
	if err != nil {
		return fmt.Errorf("db: backup: %w", err)
	}
	row, err := s.readSealingFrom(copied)
	copied.Close()
	if err != nil {
		return err
	}
	if row != nil {
		if err := s.checkPassphrase(row, pass); err != nil {
			return err
		}
	}
	in, err := os.Open(snapshot)
	if err != nil {
		return fmt.Errorf("db: backup: %w", err)
	}
	defer in.Close()
	partial := path + ".partial"
	out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("db: backup: %w", err)
	}
	err = encryptBackup(out, in, pass, kdf)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(partial, path)
	}
	if err != nil {
		os.Remove(partial)
		return fmt.Errorf("db: backup: %w", err)
	}
	return nil
}

// realDir is dir, absolute, with its symbolic links resolved.
func realDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// backupKey is the key of a backup: Argon2id of the passphrase under the
// header's salt and costs.
func backupKey(pass []byte, h []byte) (*[32]byte, error) {
	kdf, salt, err := parseBackupHeader(h)
	if err != nil {
		return nil, err
	}
	return passphraseKey(pass, salt, kdf)
}

func encryptBackup(w io.Writer, r io.Reader, pass []byte, kdf KDFParams) error {
	if kdf == (KDFParams{}) {
		kdf = DefaultKDF
	}
	h := make([]byte, 0, backupHeader)
	h = append(h, backupMagic...)
	h = append(h, backupVersion)
	h = binary.BigEndian.AppendUint32(h, kdf.Time)
	h = binary.BigEndian.AppendUint32(h, kdf.MemoryKiB)
	h = append(h, kdf.Threads)
	h = append(h, make([]byte, saltSize+16)...)
	rand.Read(h[len(h)-saltSize-16:])
	key, err := backupKey(pass, h)
	if err != nil {
		return err
	}
	defer clear(key[:])
	if _, err := w.Write(h); err != nil {
		return err
	}
	return sealChunks(w, r, key, h)
}

// sealChunks is STREAM's encryption of r to w.
func sealChunks(w io.Writer, r io.Reader, key *[32]byte, h []byte) error {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	buf := make([]byte, backupChunk, backupChunk+aead.Overhead())
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(r, buf)
		last := false
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			last = true
		case err != nil:
			return err
		}
		if _, err := w.Write(aead.Seal(buf[:0], chunkNonce(h, i, last), buf[:n], h)); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// chunkNonce is the nonce of piece i: the header's prefix (16 bytes), i
// (7 bytes), and 1 for the last piece, else 0.
func chunkNonce(h []byte, i uint64, last bool) []byte {
	n := make([]byte, chacha20poly1305.NonceSizeX)
	copy(n, h[backupHeader-16:])
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], i)
	copy(n[16:23], idx[1:])
	if last {
		n[23] = 1
	}
	return n
}

// parseBackupHeader reads a backup's header: its Argon2id costs and salt.
func parseBackupHeader(h []byte) (KDFParams, []byte, error) {
	if len(h) < backupHeader || string(h[:len(backupMagic)]) != backupMagic {
		return KDFParams{}, nil, fmt.Errorf("%w: no backup header", ErrBadBackup)
	}
	p := h[len(backupMagic):]
	if p[0] != backupVersion {
		return KDFParams{}, nil, fmt.Errorf("%w: backup version %d (this p2pmsg reads %d: upgrade it)", ErrBadBackup, p[0], backupVersion)
	}
	kdf := KDFParams{Time: binary.BigEndian.Uint32(p[1:]), MemoryKiB: binary.BigEndian.Uint32(p[5:]), Threads: p[9]}
	if kdf.Time == 0 || kdf.Time > maxKDFTime || kdf.Threads == 0 || kdf.Threads > maxKDFThreads ||
		kdf.MemoryKiB < 8*uint32(kdf.Threads) || kdf.MemoryKiB > maxKDFMemoryKiB {
		return KDFParams{}, nil, fmt.Errorf("%w: Argon2id costs out of range", ErrBadBackup)
	}
	return kdf, p[10 : 10+saltSize], nil
}

// openChunks is STREAM's decryption of r (after the header h) to w: the
// first piece that does not open ends it with an error, whatever w got.
func openChunks(w io.Writer, r io.Reader, key *[32]byte, h []byte, first bool) error {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return err
	}
	br := bufio.NewReaderSize(r, backupChunk+aead.Overhead())
	buf := make([]byte, backupChunk+aead.Overhead())
	var total int64
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(br, buf)
		switch {
		case errors.Is(err, io.EOF) || n < aead.Overhead():
			return fmt.Errorf("%w: cut short", ErrBadBackup)
		case errors.Is(err, io.ErrUnexpectedEOF):
		case err != nil:
			return err
		}
		// A full piece is never the last; a short one always is, and must
		// end the file.
		last := n < len(buf)
		pt, err := aead.Open(buf[:0], chunkNonce(h, i, last), buf[:n], h)
		if err != nil {
			if first && i == 0 {
				return ErrWrongBackupPassphrase
			}
			return fmt.Errorf("%w: piece %d does not open", ErrBadBackup, i)
		}
		if total += int64(len(pt)); total > maxBackup {
			return fmt.Errorf("%w: larger than %d bytes", ErrBadBackup, int64(maxBackup))
		}
		if _, err := w.Write(pt); err != nil {
			return err
		}
		if last {
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: bytes after the last piece", ErrBadBackup)
			}
			return nil
		}
	}
}

// Restore writes the store that backup holds into dir, which must hold
// no store: the caller opens it next (with pass, when the store in the
// backup is sealed: its passphrase is the backup's). A backup that does
// not open leaves nothing in dir.
func Restore(backup, dir string, pass []byte) error {
	target := filepath.Join(dir, FileName)
	if _, err := os.Stat(target); err == nil {
		return fmt.Errorf("db: restore: %s holds a store already; restore into a new directory", dir)
	}
	if err := prepareDir(dir); err != nil {
		return err
	}
	in, err := os.Open(backup)
	if err != nil {
		return fmt.Errorf("db: restore: %w", err)
	}
	defer in.Close()
	h := make([]byte, backupHeader)
	if _, err := io.ReadFull(in, h); err != nil {
		return fmt.Errorf("%w: no backup header", ErrBadBackup)
	}
	key, err := backupKey(pass, h)
	if err != nil {
		return err
	}
	defer clear(key[:])
	partial := target + ".partial"
	os.Remove(partial) // what a restore that was killed left: no store yet
	out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("db: restore: %w", err)
	}
	err = openChunks(out, in, key, h, true)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(partial, target)
	}
	if err != nil {
		os.Remove(partial)
		return err
	}
	return nil
}
