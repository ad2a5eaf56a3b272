package db

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// KDFParams are the Argon2id costs that turn a passphrase into the key
// that wraps the store key. They are stored with the salt, so a store
// keeps opening with the costs it was sealed with.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF follows RFC 9106's second recommendation (64 MiB, 3 passes),
// with the two threads of a small laptop.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

// Versions of the sealing row (sealing.version).
const (
	// sealingV1: secrets sealed under the passphrase key itself, bodies
	// and the search index in clear. Written before migration 0006; Open
	// upgrades it to v2.
	sealingV1 = 1
	// sealingV2: a random store key, wrapped by the passphrase key, seals
	// secrets and bodies; the word index is keyed by it.
	sealingV2 = 2
)

const (
	saltSize   = 16
	checkValue = "p2pmsg/db/v1 key check"
	// AD names of the sealing row's two values.
	checkAD    = "sealing"
	storeKeyAD = "store-key"
	// HKDF infos of the keys derived from the store key.
	valuesInfo = "p2pmsg/db/v2/values"
	wordsInfo  = "p2pmsg/db/v2/words"
)

// valueKey seals values with XChaCha20-Poly1305. Sealed form: version ||
// 24-byte random nonce || ciphertext and tag. The AD is prefix || ad,
// where ad names the row, so that a sealed value cannot be moved to
// another row (one peer's session to another peer, one message's body to
// another message). The version byte tells the sealings apart, so that a
// value of one never opens as the other's.
type valueKey struct {
	key     [32]byte
	version byte
	prefix  string
}

// v1Key is the sealing of a v1 store, kept to upgrade one.
func v1Key(k *[32]byte) *valueKey { return &valueKey{key: *k, version: 1, prefix: "p2pmsg/db/v1/"} }

func v2Key(k *[32]byte) *valueKey { return &valueKey{key: *k, version: 2, prefix: "p2pmsg/db/v2/"} }

func (k *valueKey) wipe() { clear(k.key[:]) }

// sealedOverhead is what sealing adds to a value's length.
const sealedOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

func (k *valueKey) seal(ad string, plaintext []byte) []byte {
	// A new AEAD per call: it copies the key, and a copy kept beyond the
	// call could not be wiped with the store's.
	aead, err := chacha20poly1305.NewX(k.key[:])
	if err != nil {
		panic("db: xchacha20poly1305: " + err.Error())
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, len(plaintext)+sealedOverhead)
	out[0] = k.version
	rand.Read(out[1:])
	return aead.Seal(out, out[1:], plaintext, []byte(k.prefix+ad))
}

var errUnseal = errors.New("db: a sealed value does not open: wrong key or damaged row")

// open is the decoder of sealed values (FuzzOpenSealed).
func (k *valueKey) open(ad string, sealed []byte) ([]byte, error) {
	if len(sealed) < sealedOverhead || sealed[0] != k.version {
		return nil, errUnseal
	}
	aead, err := chacha20poly1305.NewX(k.key[:])
	if err != nil {
		panic("db: xchacha20poly1305: " + err.Error())
	}
	n := 1 + chacha20poly1305.NonceSizeX
	pt, err := aead.Open(nil, sealed[1:n], sealed[n:], []byte(k.prefix+ad))
	if err != nil {
		return nil, errUnseal
	}
	return pt, nil
}

// Bounds on stored Argon2id costs: a damaged row must give an error, not an
// allocation of terabytes.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
	maxKDFThreads   = 64
)

// passphraseKey is Argon2id over the passphrase: the key that wraps the
// store key (v2), or that sealed everything itself (v1).
func passphraseKey(pass, salt []byte, p KDFParams) (*[32]byte, error) {
	if p.Time == 0 || p.Time > maxKDFTime || p.Threads == 0 || p.Threads > maxKDFThreads ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB || len(salt) < saltSize {
		return nil, fmt.Errorf("db: Argon2id parameters out of range: %+v", p)
	}
	var key [32]byte
	k := argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	copy(key[:], k)
	clear(k)
	// Argon2id's working memory (64 MiB by default) is garbage now, but a
	// program that idles after opening the store would keep it for about
	// 4 minutes: the GC that ran during the derivation set the heap goal
	// to twice that, so none comes before the runtime's forced one at 2
	// minutes, and the scavenger gave the memory back only after the
	// second (measured with gctrace: a sealed daemon at 97-100 MB of RSS
	// until then, 33 MB unsealed). A derivation is rare (open, passphrase
	// change): collect and hand it back at once (about 1 ms, and 10-35 ms
	// to return the pages).
	debug.FreeOSMemory()
	return &key, nil
}

// wrapping is a passphrase key with the salt and costs that made it: what
// the sealing row needs to wrap a store key.
type wrapping struct {
	key  *[32]byte
	salt []byte
	kdf  KDFParams
}

// newWrapping derives a passphrase key under a fresh salt.
func newWrapping(pass []byte, kdf KDFParams) (*wrapping, error) {
	if kdf == (KDFParams{}) {
		kdf = DefaultKDF
	}
	salt := make([]byte, saltSize)
	rand.Read(salt)
	key, err := passphraseKey(pass, salt, kdf)
	if err != nil {
		return nil, err
	}
	return &wrapping{key: key, salt: salt, kdf: kdf}, nil
}

func (w *wrapping) wipe() {
	if w != nil {
		clear(w.key[:])
	}
}

// sealer holds the keys of a sealed store: the store key and the two keys
// derived from it. The passphrase key is not kept: it serves only to
// unwrap the store key at Open and to wrap it again under a new
// passphrase.
type sealer struct {
	storeKey [32]byte
	values   *valueKey // seals secrets and bodies
	words    [32]byte  // keys the HMAC of the word index
}

func newSealer(storeKey *[32]byte) *sealer {
	sl := &sealer{storeKey: *storeKey}
	var values [32]byte
	deriveKey(storeKey, valuesInfo, &values)
	deriveKey(storeKey, wordsInfo, &sl.words)
	sl.values = v2Key(&values)
	clear(values[:])
	return sl
}

func deriveKey(storeKey *[32]byte, info string, out *[32]byte) {
	k, err := hkdf.Key(sha256.New, storeKey[:], nil, info, 32)
	if err != nil {
		panic("db: hkdf: " + err.Error())
	}
	copy(out[:], k)
	clear(k)
}

func randomSealer() *sealer {
	var k [32]byte
	rand.Read(k[:])
	defer clear(k[:])
	return newSealer(&k)
}

func (sl *sealer) wipe() {
	clear(sl.storeKey[:])
	sl.values.wipe()
	clear(sl.words[:])
}

// sealSecret seals b for the row named ad, or returns it as it is when the
// store is not sealed.
func (s *Store) sealSecret(ad string, b []byte) []byte {
	if sl := s.sealer.Load(); sl != nil {
		return sl.values.seal(ad, b)
	}
	return b
}

func (s *Store) openSecret(ad string, b []byte) ([]byte, error) {
	if sl := s.sealer.Load(); sl != nil {
		return sl.values.open(ad, b)
	}
	return b, nil
}

// messageAD binds a sealed body to its message id, which is unique in
// the store and never changes.
func messageAD(id []byte) string { return "message/" + hex.EncodeToString(id) }

// sealingRow is the sealing table's one row.
type sealingRow struct {
	version  int
	salt     []byte
	kdf      KDFParams
	check    []byte
	storeKey []byte // wrapped; v2 only
}

func (s *Store) readSealing() (*sealingRow, error) { return s.readSealingFrom(s.wdb) }

// readSealingFrom reads the sealing row through db: the writer's
// connection before the writer starts, a reader's after.
func (s *Store) readSealingFrom(db *sql.DB) (*sealingRow, error) {
	var r sealingRow
	err := db.QueryRow("SELECT version, salt, time, memory, threads, check_value, store_key FROM sealing WHERE id = 1").
		Scan(&r.version, &r.salt, &r.kdf.Time, &r.kdf.MemoryKiB, &r.kdf.Threads, &r.check, &r.storeKey)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.classify("read sealing", err)
	}
	return &r, nil
}

// openSealing loads the store key, seals a new store, or upgrades a
// store sealed by an earlier version. It runs before the writer starts.
func (s *Store) openSealing(opts Options) error {
	row, err := s.readSealing()
	if err != nil {
		return err
	}
	if row == nil {
		if len(opts.Passphrase) == 0 {
			return nil
		}
		var held int
		if err := s.wdb.QueryRow(`SELECT (SELECT count(*) FROM identity) + (SELECT count(*) FROM prekeys) +
			(SELECT count(*) FROM sessions) + (SELECT count(*) FROM messages)`).Scan(&held); err != nil {
			return s.classify("read", err)
		}
		if held > 0 {
			return fmt.Errorf("%w: %s holds unsealed keys and messages; open it without a passphrase and set one with ChangePassphrase", ErrNotSealed, s.path)
		}
		w, err := newWrapping(opts.Passphrase, opts.KDF)
		if err != nil {
			return err
		}
		defer w.wipe()
		return s.rewrite(nil, randomSealer(), w)
	}
	if len(opts.Passphrase) == 0 {
		return fmt.Errorf("%w: %s: give the passphrase (P2PMSG_PASSPHRASE)", ErrPassphraseRequired, s.path)
	}
	key, err := passphraseKey(opts.Passphrase, row.salt, row.kdf)
	if err != nil {
		return fmt.Errorf("%w: %s: sealing row: %v", ErrCorrupt, s.path, err)
	}
	defer clear(key[:])
	switch row.version {
	case sealingV1:
		old := v1Key(key)
		defer old.wipe()
		if v, err := old.open(checkAD, row.check); err != nil || string(v) != checkValue {
			return fmt.Errorf("%w for %s", ErrWrongPassphrase, s.path)
		}
		// The upgrade: a store key, wrapped under the same passphrase key
		// (no second Argon2id), every secret sealed again under it, the
		// bodies sealed, the full-text index replaced by the word index.
		if err := s.rewrite(old, randomSealer(), &wrapping{key: key, salt: row.salt, kdf: row.kdf}); err != nil {
			return fmt.Errorf("db: upgrade the sealing of %s: %w", s.path, err)
		}
		return nil
	case sealingV2:
		wrap := v2Key(key)
		defer wrap.wipe()
		if v, err := wrap.open(checkAD, row.check); err != nil || string(v) != checkValue {
			return fmt.Errorf("%w for %s", ErrWrongPassphrase, s.path)
		}
		sk, err := wrap.open(storeKeyAD, row.storeKey)
		if err != nil || len(sk) != 32 {
			return fmt.Errorf("%w: %s: the passphrase is right but the store key does not open", ErrCorrupt, s.path)
		}
		s.sealer.Store(newSealer((*[32]byte)(sk)))
		clear(sk)
		return nil
	default:
		return fmt.Errorf("%w: %s: sealing version %d", ErrCorrupt, s.path, row.version)
	}
}

// ChangePassphrase changes the passphrase (kdf's costs, DefaultKDF when
// zero, under a fresh salt). Between two passphrases only the store key is
// wrapped again: one row, whatever the size of the history; the old
// wrapping is then scrubbed from the file. Setting a passphrase on an
// unsealed store seals every secret and body and builds the word index;
// an empty passphrase unseals them and builds the full-text index again:
// both rewrite every message, in one transaction (a crash leaves either
// the old sealing or the new) that then is scrubbed from the WAL.
//
// A new passphrase keeps the store key, so a copy of the file taken
// before the change still opens with the old passphrase, and what it
// holds unwraps the key of the present file: when an old passphrase may
// be known to someone, use RotateStoreKey instead.
func (s *Store) ChangePassphrase(pass []byte, kdf KDFParams) error {
	var w *wrapping
	if len(pass) > 0 {
		// Argon2id before the job: the writer need not wait for it.
		var err error
		if w, err = newWrapping(pass, kdf); err != nil {
			return err
		}
		defer w.wipe()
	}
	return s.exclusiveJob(func() error {
		cur := s.sealer.Load()
		switch {
		case cur == nil && w == nil:
			return nil
		case cur == nil:
			return s.rewrite(nil, randomSealer(), w)
		case w == nil:
			return s.rewrite(cur.values, nil, nil)
		default:
			return s.rewrap(cur, w)
		}
	})
}

// RotateStoreKey seals every secret and body again under a fresh store
// key, wrapped by pass, and rebuilds the word index under it: a copy of
// the file and a passphrase from before then open nothing of what the
// file holds after. It costs what sealing an unsealed store costs.
func (s *Store) RotateStoreKey(pass []byte, kdf KDFParams) error {
	if len(pass) == 0 {
		return errors.New("db: a store key is wrapped by a passphrase: give one (an empty one unseals: ChangePassphrase)")
	}
	w, err := newWrapping(pass, kdf)
	if err != nil {
		return err
	}
	defer w.wipe()
	return s.exclusiveJob(func() error {
		var from *valueKey
		if cur := s.sealer.Load(); cur != nil {
			from = cur.values
		}
		return s.rewrite(from, randomSealer(), w)
	})
}

// ErrNotScrubbed: the passphrase was changed, but values sealed under the
// old one (or clear) may stay in the WAL file until its next checkpoint.
var ErrNotScrubbed = errors.New("db: passphrase changed, but old values are not yet scrubbed from the WAL")

// rewrap writes the sealing row anew: the same store key under a new
// passphrase key. It runs on the writer goroutine, alone.
func (s *Store) rewrap(sl *sealer, w *wrapping) error {
	tx, err := s.wdb.Begin()
	if err != nil {
		return s.classify("begin", err)
	}
	defer tx.Rollback()
	if err := s.putSealing(tx, sl, w); err != nil {
		return err
	}
	return s.commitSealing(tx, sl)
}

func (s *Store) putSealing(tx *sql.Tx, sl *sealer, w *wrapping) error {
	wrap := v2Key(w.key)
	defer wrap.wipe()
	_, err := tx.Exec(`INSERT INTO sealing (id, version, salt, time, memory, threads, check_value, store_key)
		VALUES (1, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, salt = excluded.salt, time = excluded.time,
			memory = excluded.memory, threads = excluded.threads, check_value = excluded.check_value, store_key = excluded.store_key`,
		sealingV2, w.salt, w.kdf.Time, w.kdf.MemoryKiB, w.kdf.Threads,
		wrap.seal(checkAD, []byte(checkValue)), wrap.seal(storeKeyAD, sl.storeKey[:]))
	return s.classify("write sealing", err)
}

// commitSealing commits a change of sealing, swaps the keys in memory,
// and scrubs the WAL of the old values.
func (s *Store) commitSealing(tx *sql.Tx, next *sealer) error {
	// No read may run across the commit and the key swap: it would open
	// values of one sealing with the keys of the other.
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	if err := tx.Commit(); err != nil {
		return s.classify("commit", err)
	}
	if old := s.sealer.Swap(next); old != nil && old != next {
		old.wipe()
	}
	// The old values are gone from the database pages (secure_delete);
	// move the new ones out of the WAL and empty it, so that no frame of
	// the old values stays in the file either. With no reader running
	// (sealMu), nothing holds the checkpoint back. A crash before it
	// leaves the old frames until the next Open, which checkpoints.
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotScrubbed, err)
	}
	return nil
}

// checkpoint copies the whole WAL into the database and truncates it.
func (s *Store) checkpoint() error {
	var busy, logFrames, done int
	if err := s.wdb.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return s.classify("checkpoint", err)
	}
	if busy != 0 {
		return errors.New("db: checkpoint: a reader holds the WAL")
	}
	return nil
}

// rewrite moves every secret and body from one sealing to another (nil:
// clear), in one transaction, and rebuilds the search index that the new
// one uses: FTS4 in clear, the word index under the new key. w wraps the
// new store key. It runs on the writer goroutine, alone (or before it
// starts).
func (s *Store) rewrite(from *valueKey, to *sealer, w *wrapping) error {
	defer func() {
		if to != nil && s.sealer.Load() != to {
			to.wipe() // not committed: the new keys go
		}
	}()
	tx, err := s.wdb.Begin()
	if err != nil {
		return s.classify("begin", err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec("DELETE FROM sealing"); err != nil {
		return s.classify("rewrite", err)
	}
	for _, c := range secretColumns {
		if err := s.resealColumn(tx, c, from, to); err != nil {
			return err
		}
	}
	// Neither index may survive: FTS4 segments hold the words in clear
	// (and a delete only adds a tombstone segment), the word index is
	// keyed by the old store key. With the mark at 0 the triggers leave
	// both alone while the bodies change.
	for _, q := range []string{
		"UPDATE fts_state SET indexed = 0",
		"DELETE FROM message_words",
		"DROP TABLE messages_fts",
		createFTS,
	} {
		if _, err := tx.Exec(q); err != nil {
			return s.classify("rewrite: reset the search index", err)
		}
	}
	if err := s.rewriteMessages(tx, from, to); err != nil {
		return err
	}
	if to == nil {
		if _, err := tx.Exec("INSERT INTO messages_fts (docid, body) SELECT seq, body FROM messages"); err != nil {
			return s.classify("rewrite: full-text index", err)
		}
	}
	if _, err := tx.Exec("UPDATE fts_state SET indexed = (SELECT coalesce(max(seq), 0) FROM messages)"); err != nil {
		return s.classify("rewrite", err)
	}
	if to != nil {
		if err := s.putSealing(tx, to, w); err != nil {
			return err
		}
	}
	return s.commitSealing(tx, to)
}

// createFTS is migration 0001's full-text table, made again empty by
// rewrite.
const createFTS = `CREATE VIRTUAL TABLE messages_fts USING fts4 (body, content="messages", tokenize=unicode61)`

// rewriteBatch bounds the messages rewrite holds in memory at once.
const rewriteBatch = 1000

func (s *Store) rewriteMessages(tx *sql.Tx, from *valueKey, to *sealer) error {
	update := "UPDATE messages SET body = ?, body_sealed = NULL WHERE seq = ?"
	if to != nil {
		update = "UPDATE messages SET body = '', body_sealed = ? WHERE seq = ?"
	}
	up, err := tx.Prepare(update)
	if err != nil {
		return s.classify("rewrite messages", err)
	}
	defer up.Close()
	type row struct {
		seq    int64
		id     []byte
		body   string
		sealed []byte
	}
	var (
		last    int64
		batch   []row
		entries []wordEntry
		h       *wordHasher
	)
	if to != nil {
		h = to.hasher()
	}
	for {
		batch = batch[:0]
		rows, err := tx.Query("SELECT seq, id, body, body_sealed FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", last, rewriteBatch)
		if err != nil {
			return s.classify("rewrite messages", err)
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.seq, &r.id, &r.body, &r.sealed); err != nil {
				rows.Close()
				return s.classify("rewrite messages", err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.classify("rewrite messages", err)
		}
		if len(batch) == 0 {
			return nil
		}
		entries = entries[:0]
		for _, r := range batch {
			text := r.body
			if r.sealed != nil {
				if from == nil {
					return fmt.Errorf("%w: %s: message %d has a sealed body in an unsealed store", ErrCorrupt, s.path, r.seq)
				}
				b, err := from.open(messageAD(r.id), r.sealed)
				if err != nil {
					return fmt.Errorf("rewrite message %d: %w", r.seq, err)
				}
				text = string(b)
				clear(b)
			}
			if to == nil {
				_, err = up.Exec(text, r.seq)
			} else {
				_, err = up.Exec(to.values.seal(messageAD(r.id), []byte(text)), r.seq)
				entries = to.appendWords(entries, h, r.seq, text)
			}
			if err != nil {
				return s.classify("rewrite messages", err)
			}
		}
		if err := insertWords(tx.Exec, entries); err != nil {
			return s.classify("rewrite messages: word index", err)
		}
		last = batch[len(batch)-1].seq
	}
}

// secretColumns lists every sealed column but the bodies, with the AD
// each row's value is sealed under.
var secretColumns = []struct {
	table, column, key, ad string
}{
	{"identity", "secret", "id", "'identity'"},
	{"prekeys", "secret", "rowid", "'prekey/' || kind || '/' || id"},
	{"sessions", "blob", "peer_id", "'session/' || peer_id"},
	{"mailboxes", "token_key", "peer_id", "'mailbox-key/' || peer_id"},
	{"mailbox_grants", "token", "rowid", "'grant/' || peer_id || '/' || mailbox"},
}

func (s *Store) resealColumn(tx *sql.Tx, t struct{ table, column, key, ad string }, from *valueKey, to *sealer) error {
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
		plain := value
		if from != nil {
			if plain, err = from.open(ad, value); err != nil {
				rows.Close()
				return fmt.Errorf("reseal %s: %w", t.table, err)
			}
		}
		if to != nil {
			value = to.values.seal(ad, plain)
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
