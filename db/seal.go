package db

import (
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// KDFParams are the Argon2id costs that turn a passphrase into the sealing
// key. They are stored with the salt, so a store keeps opening with the
// costs it was sealed with.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF follows RFC 9106's second recommendation (64 MiB, 3 passes),
// with the two threads of a small laptop.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

const (
	sealVersion = 1
	saltSize    = 16
	checkValue  = "p2pmsg/db/v1 key check"
	adPrefix    = "p2pmsg/db/v1/"
)

// sealer seals secrets with XChaCha20-Poly1305 under the key derived from
// the passphrase. Sealed form: version || 24-byte random nonce ||
// ciphertext. The AD names the row, so a sealed value cannot be moved to
// another row (one peer's session to another peer).
type sealer struct {
	key  [32]byte
	salt []byte
	kdf  KDFParams
}

// Bounds on stored Argon2id costs: a damaged row must give an error, not an
// allocation of terabytes.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
	maxKDFThreads   = 64
)

func newSealer(pass, salt []byte, p KDFParams) (*sealer, error) {
	if p.Time == 0 || p.Time > maxKDFTime || p.Threads == 0 || p.Threads > maxKDFThreads ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB || len(salt) < saltSize {
		return nil, fmt.Errorf("db: Argon2id parameters out of range: %+v", p)
	}
	sl := &sealer{salt: salt, kdf: p}
	k := argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	copy(sl.key[:], k)
	clear(k)
	return sl, nil
}

func (sl *sealer) wipe() { clear(sl.key[:]) }

func (sl *sealer) seal(ad string, plaintext []byte) []byte {
	aead, err := chacha20poly1305.NewX(sl.key[:])
	if err != nil {
		panic("db: xchacha20poly1305: " + err.Error())
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, 1+chacha20poly1305.NonceSizeX+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:])
	return aead.Seal(out, out[1:], plaintext, []byte(adPrefix+ad))
}

var errUnseal = errors.New("db: a sealed secret does not open: wrong key or damaged row")

func (sl *sealer) open(ad string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1+chacha20poly1305.NonceSizeX || sealed[0] != sealVersion {
		return nil, errUnseal
	}
	aead, err := chacha20poly1305.NewX(sl.key[:])
	if err != nil {
		panic("db: xchacha20poly1305: " + err.Error())
	}
	n := 1 + chacha20poly1305.NonceSizeX
	pt, err := aead.Open(nil, sealed[1:n], sealed[n:], []byte(adPrefix+ad))
	if err != nil {
		return nil, errUnseal
	}
	return pt, nil
}

// sealSecret seals b for the row named ad, or returns it as it is when the
// store is not sealed.
func (s *Store) sealSecret(ad string, b []byte) []byte {
	if sl := s.sealer.Load(); sl != nil {
		return sl.seal(ad, b)
	}
	return b
}

func (s *Store) openSecret(ad string, b []byte) ([]byte, error) {
	if sl := s.sealer.Load(); sl != nil {
		return sl.open(ad, b)
	}
	return b, nil
}

// openSealing loads the sealing key, or sets sealing up on a store that
// holds no secrets yet.
func (s *Store) openSealing(opts Options) error {
	var (
		salt, check []byte
		p           KDFParams
	)
	err := s.wdb.QueryRow("SELECT salt, time, memory, threads, check_value FROM sealing WHERE id = 1").
		Scan(&salt, &p.Time, &p.MemoryKiB, &p.Threads, &check)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if len(opts.Passphrase) == 0 {
			return nil
		}
		var secrets int
		if err := s.wdb.QueryRow(`SELECT (SELECT count(*) FROM identity) + (SELECT count(*) FROM prekeys) +
			(SELECT count(*) FROM sessions)`).Scan(&secrets); err != nil {
			return s.classify("read", err)
		}
		if secrets > 0 {
			return fmt.Errorf("%w: %s holds unsealed keys; open it without a passphrase and set one with ChangePassphrase", ErrNotSealed, s.path)
		}
		return s.reseal(opts.Passphrase, opts.KDF) // the writer does not run yet
	case err != nil:
		return s.classify("read sealing", err)
	}
	if len(opts.Passphrase) == 0 {
		return fmt.Errorf("%w: %s: give the passphrase (P2PMSG_PASSPHRASE)", ErrPassphraseRequired, s.path)
	}
	sl, err := newSealer(opts.Passphrase, salt, p)
	if err != nil {
		return fmt.Errorf("%w: %s: sealing row: %v", ErrCorrupt, s.path, err)
	}
	if v, err := sl.open("sealing", check); err != nil || string(v) != checkValue {
		sl.wipe()
		return fmt.Errorf("%w for %s", ErrWrongPassphrase, s.path)
	}
	s.sealer.Store(sl)
	return nil
}

// ChangePassphrase re-seals every secret under a new passphrase (a fresh
// salt, and kdf's costs, DefaultKDF when zero), in one transaction: a crash
// leaves either the old sealing or the new. An empty passphrase unseals the
// secrets.
func (s *Store) ChangePassphrase(pass []byte, kdf KDFParams) error {
	return s.exclusiveJob(func() error { return s.reseal(pass, kdf) })
}

// ErrNotScrubbed: the passphrase was changed, but values sealed under the
// old one (or clear) may stay in the WAL file until its next checkpoint.
var ErrNotScrubbed = errors.New("db: passphrase changed, but old values are not yet scrubbed from the WAL")

// reseal runs on the writer goroutine, alone (or before it starts).
func (s *Store) reseal(pass []byte, kdf KDFParams) error {
	var next *sealer
	if len(pass) > 0 {
		if kdf == (KDFParams{}) {
			kdf = DefaultKDF
		}
		salt := make([]byte, saltSize)
		rand.Read(salt)
		var err error
		if next, err = newSealer(pass, salt, kdf); err != nil {
			return err
		}
	}
	tx, err := s.wdb.Begin()
	if err != nil {
		return s.classify("begin", err)
	}
	defer tx.Rollback()
	for _, t := range secretColumns {
		if err := s.resealColumn(tx, t, next); err != nil {
			return err
		}
	}
	if _, err := tx.Exec("DELETE FROM sealing"); err != nil {
		return s.classify("reseal", err)
	}
	if next != nil {
		if _, err := tx.Exec("INSERT INTO sealing (id, salt, time, memory, threads, check_value) VALUES (1, ?, ?, ?, ?, ?)",
			next.salt, next.kdf.Time, next.kdf.MemoryKiB, next.kdf.Threads, next.seal("sealing", []byte(checkValue))); err != nil {
			return s.classify("reseal", err)
		}
	}
	// No read may run across the commit and the key swap: it would open
	// values of one sealing with the key of the other.
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	if err := tx.Commit(); err != nil {
		return s.classify("commit", err)
	}
	if old := s.sealer.Swap(next); old != nil {
		old.wipe()
	}
	// The old values are gone from the database pages (secure_delete);
	// move the new ones out of the WAL and empty it, so that no frame of
	// the old values stays in the file either. With no reader running
	// (sealMu), nothing holds the checkpoint back.
	var busy, logFrames, done int
	err = s.wdb.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done)
	if err != nil || busy != 0 {
		return fmt.Errorf("%w (busy %d): %v", ErrNotScrubbed, busy, err)
	}
	return nil
}

// secretColumns lists every sealed column, with the AD each row's value is
// sealed under.
var secretColumns = []struct {
	table, column, key, ad string
}{
	{"identity", "secret", "id", "'identity'"},
	{"prekeys", "secret", "rowid", "'prekey/' || kind || '/' || id"},
	{"sessions", "blob", "peer_id", "'session/' || peer_id"},
}

func (s *Store) resealColumn(tx *sql.Tx, t struct{ table, column, key, ad string }, next *sealer) error {
	rows, err := tx.Query(fmt.Sprintf("SELECT %s, %s, %s FROM %s WHERE %s IS NOT NULL", t.key, t.ad, t.column, t.table, t.column))
	if err != nil {
		return s.classify("reseal", err)
	}
	type row struct {
		key   any
		value []byte
	}
	var out []row
	for rows.Next() {
		var (
			key   any
			ad    string
			value []byte
		)
		if err := rows.Scan(&key, &ad, &value); err != nil {
			rows.Close()
			return s.classify("reseal", err)
		}
		plain, err := s.openSecret(ad, value)
		if err != nil {
			rows.Close()
			return fmt.Errorf("reseal %s: %w", t.table, err)
		}
		if next != nil {
			value = next.seal(ad, plain)
			clear(plain)
		} else {
			value = plain
		}
		out = append(out, row{key, value})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.classify("reseal", err)
	}
	for _, r := range out {
		if _, err := tx.Exec(fmt.Sprintf("UPDATE %s SET %s = ? WHERE %s = ?", t.table, t.column, t.key), r.value, r.key); err != nil {
			return s.classify("reseal", err)
		}
	}
	return nil
}
