package db

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// The mailbox store: what a node serving as a mailbox keeps for the
// owners it admits (docs/mailbox.md), in a SQLite file of its own beside
// the store: hosted data never mixes with the operator's history, and has
// its own size. Deposits are sealed by their senders, so the file is not
// sealed again; it is written with synchronous=FULL, since a deposit
// answered "stored" is one its sender may stop retrying through this
// mailbox. No row records who deposited.

// MailboxFileName is the mailbox store's file in the data directory.
const MailboxFileName = "mailbox.sqlite"

const (
	mailboxAppID   = 0x70326d62 // "p2mb"
	mailboxVersion = 1
	mailboxReaders = 2
	// MaxDepositGroup is the most deposits one commit holds.
	MaxDepositGroup = 256
	// InboxSize is an inbox identifier's size.
	InboxSize = 16
)

const mailboxSchema = `
CREATE TABLE owners (
	peer               TEXT PRIMARY KEY,
	inbox              BLOB NOT NULL UNIQUE CHECK (length(inbox) = 16),
	quota              INTEGER NOT NULL,  -- deposits kept at most
	quota_bytes        INTEGER NOT NULL,  -- bytes of seals kept at most
	ttl_max            INTEGER NOT NULL,  -- seconds, set by the operator
	ttl                INTEGER NOT NULL,  -- seconds, set by the owner, at most ttl_max
	strangers          INTEGER NOT NULL DEFAULT 0 CHECK (strangers IN (0, 1)),
	pow_bits           INTEGER NOT NULL DEFAULT 0,
	strangers_per_hour INTEGER NOT NULL DEFAULT 0,
	token_key          BLOB,              -- the key of the contacts' tokens
	bundle             BLOB,              -- served to first contacts
	used               INTEGER NOT NULL DEFAULT 0,
	used_bytes         INTEGER NOT NULL DEFAULT 0,
	strangers_waiting  INTEGER NOT NULL DEFAULT 0,
	created            INTEGER NOT NULL
) STRICT;
CREATE TABLE revoked (
	inbox BLOB NOT NULL REFERENCES owners (inbox) ON DELETE CASCADE,
	idx   INTEGER NOT NULL,
	PRIMARY KEY (inbox, idx)
) STRICT, WITHOUT ROWID;
CREATE TABLE deposits (
	seq      INTEGER PRIMARY KEY AUTOINCREMENT, -- the order of arrival; never reused
	inbox    BLOB NOT NULL REFERENCES owners (inbox) ON DELETE CASCADE,
	digest   BLOB NOT NULL,                     -- SHA-256 of the seal: a retried deposit is found
	received INTEGER NOT NULL,                  -- unix ms
	expires  INTEGER NOT NULL,                  -- unix ms
	stranger INTEGER NOT NULL CHECK (stranger IN (0, 1)),
	seal     BLOB NOT NULL,
	UNIQUE (inbox, digest)
) STRICT;
CREATE INDEX deposits_page ON deposits (inbox, seq);
CREATE INDEX deposits_expiry ON deposits (expires);
CREATE TABLE otks (
	inbox BLOB NOT NULL REFERENCES owners (inbox) ON DELETE CASCADE,
	kind  INTEGER NOT NULL,
	id    INTEGER NOT NULL,
	cert  BLOB NOT NULL,                        -- deleted when handed out
	PRIMARY KEY (inbox, kind, id)
) STRICT, WITHOUT ROWID;
CREATE TABLE invites (
	hash        BLOB PRIMARY KEY,               -- SHA-256 of the secret; deleted when redeemed
	quota       INTEGER NOT NULL,
	quota_bytes INTEGER NOT NULL,
	ttl_max     INTEGER NOT NULL,
	expires     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`

// Mailbox store errors.
var (
	ErrNoInbox     = errors.New("db: no such mailbox owner")
	ErrOwnerExists = errors.New("db: already a mailbox owner")
	ErrBadInvite   = errors.New("db: invitation unknown, used or expired")
	ErrFull        = errors.New("db: the mailbox admits no more owners")
	ErrTooMany     = errors.New("db: too many revoked token indexes")
)

// DefaultMailboxTTL is how long a deposit is kept until the owner sets
// its own TTL (at most its TTLMax).
const DefaultMailboxTTL = 14 * 24 * time.Hour

// MaxRevoked bounds the revoked token indexes kept per owner: past it the
// owner rotates its token key instead.
const MaxRevoked = 4096

// MailboxOwner is an owner as the mailbox keeps it.
type MailboxOwner struct {
	Peer             string
	Inbox            [InboxSize]byte
	Quota            int
	QuotaBytes       int64
	TTLMax, TTL      time.Duration
	Strangers        bool
	PowBits          int
	StrangersPerHour int
	TokenKey         []byte
	Bundle           []byte
	Used             int
	UsedBytes        int64
	StrangersWaiting int
	Created          time.Time
}

// Mailbox is the mailbox store: one writer connection (deposits share its
// commits), a few readers. It is safe for concurrent use. The caller
// holds the data directory (Open's lock).
type Mailbox struct {
	path     string
	wdb, rdb *sql.DB
	// wmu serialises the writer connection between the deposit group
	// and the other writes.
	wmu      sync.Mutex
	deposits chan *depositReq
	stopping chan struct{}
	stopped  chan struct{}
	closed   sync.Once
	err      error
}

// OpenMailbox opens, or creates, the mailbox store at path; like Open, it
// never writes to a file it has not recognised, and refuses a newer
// schema, another program's file and a damaged one.
func OpenMailbox(path string) (*Mailbox, error) {
	m := &Mailbox{path: path, deposits: make(chan *depositReq), stopping: make(chan struct{}), stopped: make(chan struct{})}
	if err := m.open(); err != nil {
		close(m.stopped)
		m.Close()
		return nil, err
	}
	go m.depositWriter()
	return m, nil
}

func (m *Mailbox) probe() *Store { return &Store{path: m.path} }

func (m *Mailbox) open() error {
	p := m.probe()
	if err := p.checkFile(); err != nil {
		return err
	}
	version, err := p.identifyAs(mailboxAppID, mailboxVersion, func() error {
		return fmt.Errorf("%w: %s is not a p2pmsg mailbox store", ErrNotP2PMsg, m.path)
	}, func(version int) error {
		return fmt.Errorf("%w: %s has mailbox store version %d, this p2pmsg knows up to %d: upgrade p2pmsg", ErrTooNew, m.path, version, mailboxVersion)
	})
	if err != nil {
		return err
	}
	if err := os.Chmod(m.path, 0o600); err != nil {
		return fmt.Errorf("db: make %s private: %w", m.path, err)
	}
	m.wdb, m.rdb, err = sideFile{what: "mailbox store",
		common:  "?_busy_timeout=" + strconv.Itoa(busyTimeoutMS) + "&_foreign_keys=on",
		writer:  "&_synchronous=FULL&_txlock=immediate&_secure_delete=on",
		pragmas: "PRAGMA journal_mode = WAL; PRAGMA temp_store = MEMORY",
		schema:  mailboxSchema, app: mailboxAppID, version: mailboxVersion, nReaders: mailboxReaders,
	}.open(p, version)
	return err
}

// tx runs fn in a write transaction on the writer connection.
func (m *Mailbox) tx(fn func(*sql.Tx) error) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	tx, err := m.wdb.Begin()
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// write is tx with the error classified.
func (m *Mailbox) write(op string, fn func(*sql.Tx) error) error {
	err := m.tx(fn)
	if err == nil || errors.Is(err, ErrNoInbox) || errors.Is(err, ErrOwnerExists) || errors.Is(err, ErrBadInvite) ||
		errors.Is(err, ErrFull) || errors.Is(err, ErrTooMany) {
		return err
	}
	return m.probe().classify(op, err)
}

// Path returns the file's path.
func (m *Mailbox) Path() string { return m.path }

// Close stops the deposit writer and closes the file. It is idempotent.
func (m *Mailbox) Close() error {
	m.closed.Do(func() {
		close(m.stopping)
		<-m.stopped
		m.err = closeDBs(m.rdb, m.wdb)
	})
	return m.err
}

const ownerColumns = `peer, inbox, quota, quota_bytes, ttl_max, ttl, strangers, pow_bits, strangers_per_hour,
	token_key, bundle, used, used_bytes, strangers_waiting, created`

func scanOwner(sc interface{ Scan(...any) error }) (MailboxOwner, error) {
	var o MailboxOwner
	var inbox []byte
	var ttlMax, ttl, created int64
	err := sc.Scan(&o.Peer, &inbox, &o.Quota, &o.QuotaBytes, &ttlMax, &ttl, &o.Strangers, &o.PowBits, &o.StrangersPerHour,
		&o.TokenKey, &o.Bundle, &o.Used, &o.UsedBytes, &o.StrangersWaiting, &created)
	copy(o.Inbox[:], inbox)
	o.TTLMax, o.TTL, o.Created = time.Duration(ttlMax)*time.Second, time.Duration(ttl)*time.Second, fromMillis(created)
	return o, err
}

// AddOwner admits an owner with its limits (Peer, Inbox, Quota,
// QuotaBytes, TTLMax; TTL defaults to DefaultMailboxTTL within TTLMax), unless maxOwners (0: no
// limit) are owners already (ErrFull); ErrOwnerExists if the peer is one
// already.
func (m *Mailbox) AddOwner(o MailboxOwner, now time.Time, maxOwners int) error {
	return m.write("add owner", func(tx *sql.Tx) error { return addOwner(tx, o, now, maxOwners) })
}

func addOwner(tx *sql.Tx, o MailboxOwner, now time.Time, maxOwners int) error {
	if maxOwners > 0 {
		var n int
		if err := tx.QueryRow("SELECT count(*) FROM owners").Scan(&n); err != nil {
			return err
		}
		if n >= maxOwners {
			return fmt.Errorf("%w: %d owners, at most %d", ErrFull, n, maxOwners)
		}
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = DefaultMailboxTTL
	}
	ttl = min(ttl, o.TTLMax)
	res, err := tx.Exec(`INSERT INTO owners (peer, inbox, quota, quota_bytes, ttl_max, ttl, created) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer) DO NOTHING`,
		o.Peer, o.Inbox[:], o.Quota, o.QuotaBytes, int64(o.TTLMax/time.Second), int64(ttl/time.Second), millis(now))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrOwnerExists, o.Peer)
	}
	return nil
}

// RemoveOwner deletes an owner and everything kept for it, and reports
// whether it was one.
func (m *Mailbox) RemoveOwner(peer string) (bool, error) {
	var n int64
	err := m.write("remove owner", func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM owners WHERE peer = ?", peer)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n == 1, err
}

// Owner returns an owner by peer ID, or ErrNoInbox.
func (m *Mailbox) Owner(peer string) (MailboxOwner, error) {
	return m.owner("peer = ?", peer)
}

// OwnerByInbox returns an owner by inbox, or ErrNoInbox.
func (m *Mailbox) OwnerByInbox(inbox [InboxSize]byte) (MailboxOwner, error) {
	return m.owner("inbox = ?", inbox[:])
}

func (m *Mailbox) owner(where string, arg any) (MailboxOwner, error) {
	o, err := scanOwner(m.rdb.QueryRow("SELECT "+ownerColumns+" FROM owners WHERE "+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNoInbox
	}
	return o, m.probe().classify("read owner", err)
}

// Owners lists the owners, oldest first.
func (m *Mailbox) Owners() ([]MailboxOwner, error) {
	rows, err := m.rdb.Query("SELECT " + ownerColumns + " FROM owners ORDER BY created, peer")
	if err != nil {
		return nil, m.probe().classify("read owners", err)
	}
	defer rows.Close()
	var out []MailboxOwner
	for rows.Next() {
		o, err := scanOwner(rows)
		if err != nil {
			return nil, m.probe().classify("read owners", err)
		}
		out = append(out, o)
	}
	return out, m.probe().classify("read owners", rows.Err())
}

// MailboxPolicy is what an owner sets.
type MailboxPolicy struct {
	TTL              time.Duration // capped at the owner's TTLMax
	Strangers        bool
	PowBits          int
	StrangersPerHour int
	TokenKey         []byte
	Revoked          []uint32 // added to those revoked before
}

// SetPolicy sets an owner's policy. A new token key forgets the revoked
// indexes (every token of the old key is void anyway).
func (m *Mailbox) SetPolicy(peer string, p MailboxPolicy) error {
	return m.write("set policy", func(tx *sql.Tx) error {
		var inbox, oldKey []byte
		var ttlMax int64
		err := tx.QueryRow("SELECT inbox, ttl_max, token_key FROM owners WHERE peer = ?", peer).Scan(&inbox, &ttlMax, &oldKey)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoInbox
		}
		if err != nil {
			return err
		}
		ttl := min(int64(p.TTL/time.Second), ttlMax)
		if ttl <= 0 {
			ttl = ttlMax
		}
		if _, err := tx.Exec(`UPDATE owners SET ttl = ?, strangers = ?, pow_bits = ?, strangers_per_hour = ?, token_key = ? WHERE peer = ?`,
			ttl, p.Strangers, p.PowBits, p.StrangersPerHour, p.TokenKey, peer); err != nil {
			return err
		}
		if !bytes.Equal(oldKey, p.TokenKey) {
			if _, err := tx.Exec("DELETE FROM revoked WHERE inbox = ?", inbox); err != nil {
				return err
			}
		}
		for _, idx := range p.Revoked {
			if _, err := tx.Exec("INSERT INTO revoked (inbox, idx) VALUES (?, ?) ON CONFLICT DO NOTHING", inbox, idx); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRow("SELECT count(*) FROM revoked WHERE inbox = ?", inbox).Scan(&n); err != nil {
			return err
		}
		if n > MaxRevoked {
			return fmt.Errorf("%w: %d, at most %d: rotate the token key instead", ErrTooMany, n, MaxRevoked)
		}
		return nil
	})
}

// Revoked reports whether a token index of the inbox is revoked.
func (m *Mailbox) Revoked(inbox [InboxSize]byte, idx uint32) (bool, error) {
	var n int
	err := m.rdb.QueryRow("SELECT count(*) FROM revoked WHERE inbox = ? AND idx = ?", inbox[:], idx).Scan(&n)
	return n > 0, m.probe().classify("read revoked", err)
}

// PutBundle stores the owner's bundle.
func (m *Mailbox) PutBundle(peer string, bundle []byte) error {
	return m.write("put bundle", func(tx *sql.Tx) error {
		res, err := tx.Exec("UPDATE owners SET bundle = ? WHERE peer = ?", bundle, peer)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNoInbox
		}
		return nil
	})
}

// MailboxOTK is a one-time prekey certificate in the mailbox's keeping.
type MailboxOTK struct {
	Kind byte
	ID   uint32
	Cert []byte
}

// PutOTKs adds an owner's one-time prekey certificates (one already there
// under its kind and id is kept as it was), keeping at most max of each
// kind, and returns how many of each kind it holds.
func (m *Mailbox) PutOTKs(peer string, otks []MailboxOTK, max int) (counts map[byte]int, err error) {
	err = m.write("put one-time keys", func(tx *sql.Tx) error {
		var inbox []byte
		err := tx.QueryRow("SELECT inbox FROM owners WHERE peer = ?", peer).Scan(&inbox)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoInbox
		}
		if err != nil {
			return err
		}
		if counts, err = otkCounts(tx, inbox); err != nil {
			return err
		}
		for _, k := range otks {
			if counts[k.Kind] >= max {
				continue
			}
			res, err := tx.Exec("INSERT INTO otks (inbox, kind, id, cert) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", inbox, k.Kind, k.ID, k.Cert)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				counts[k.Kind]++
			}
		}
		return nil
	})
	return counts, err
}

func otkCounts(q interface {
	Query(string, ...any) (*sql.Rows, error)
}, inbox []byte) (map[byte]int, error) {
	rows, err := q.Query("SELECT kind, count(*) FROM otks WHERE inbox = ? GROUP BY kind", inbox)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[byte]int{}
	for rows.Next() {
		var kind byte
		var n int
		if err := rows.Scan(&kind, &n); err != nil {
			return nil, err
		}
		counts[kind] = n
	}
	return counts, rows.Err()
}

// OTKCounts returns how many certificates of each kind the inbox holds.
func (m *Mailbox) OTKCounts(inbox [InboxSize]byte) (map[byte]int, error) {
	c, err := otkCounts(m.rdb, inbox[:])
	return c, m.probe().classify("count one-time keys", err)
}

// TakeOTKs hands out one certificate of each kind the inbox holds, lowest
// id first, and deletes them in the same transaction: a certificate is
// handed out once.
func (m *Mailbox) TakeOTKs(inbox [InboxSize]byte) ([]MailboxOTK, error) {
	var out []MailboxOTK
	err := m.write("take one-time keys", func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT kind, id, cert FROM otks o WHERE inbox = ?
			AND id = (SELECT min(id) FROM otks WHERE inbox = o.inbox AND kind = o.kind) ORDER BY kind`, inbox[:])
		if err != nil {
			return err
		}
		for rows.Next() {
			var k MailboxOTK
			if err := rows.Scan(&k.Kind, &k.ID, &k.Cert); err != nil {
				rows.Close()
				return err
			}
			out = append(out, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range out {
			if _, err := tx.Exec("DELETE FROM otks WHERE inbox = ? AND kind = ? AND id = ?", inbox[:], k.Kind, k.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// AddInvite stores an invitation: the hash of its secret and the limits
// its redeemer gets, until expires.
func (m *Mailbox) AddInvite(hash [32]byte, limits MailboxOwner, expires time.Time) error {
	return m.write("add invite", func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO invites (hash, quota, quota_bytes, ttl_max, expires) VALUES (?, ?, ?, ?, ?)",
			hash[:], limits.Quota, limits.QuotaBytes, int64(limits.TTLMax/time.Second), millis(expires))
		return err
	})
}

// InviteValid reports whether an invitation with this secret waits, from
// a read: a guess costs no write.
func (m *Mailbox) InviteValid(secret []byte, now time.Time) (bool, error) {
	hash := sha256.Sum256(secret)
	var n int
	err := m.rdb.QueryRow("SELECT count(*) FROM invites WHERE hash = ? AND expires > ?", hash[:], millis(now)).Scan(&n)
	return n > 0, m.probe().classify("read invites", err)
}

// RedeemInvite admits peer with the limits of the invitation whose secret
// hashes to hash, and deletes the invitation; ErrBadInvite if there is no
// such invitation or it expired, ErrOwnerExists if the peer is an owner
// already and ErrFull if maxOwners are (the invitation is then kept).
func (m *Mailbox) RedeemInvite(secret []byte, peer string, inbox [InboxSize]byte, now time.Time, maxOwners int) (MailboxOwner, error) {
	hash := sha256.Sum256(secret)
	o := MailboxOwner{Peer: peer, Inbox: inbox}
	err := m.write("redeem invite", func(tx *sql.Tx) error {
		var ttlMax, expires int64
		err := tx.QueryRow("SELECT quota, quota_bytes, ttl_max, expires FROM invites WHERE hash = ?", hash[:]).
			Scan(&o.Quota, &o.QuotaBytes, &ttlMax, &expires)
		if errors.Is(err, sql.ErrNoRows) || err == nil && !now.Before(fromMillis(expires)) {
			return ErrBadInvite
		}
		if err != nil {
			return err
		}
		o.TTLMax = time.Duration(ttlMax) * time.Second
		if err := addOwner(tx, o, now, maxOwners); err != nil {
			return err
		}
		_, err = tx.Exec("DELETE FROM invites WHERE hash = ?", hash[:])
		return err
	})
	if err != nil {
		return MailboxOwner{}, err
	}
	return m.Owner(peer)
}

// Expire deletes the deposits and invitations whose time is up, and
// reports how many deposits went.
func (m *Mailbox) Expire(now time.Time) (int, error) {
	var n int
	err := m.write("expire", func(tx *sql.Tx) error {
		var err error
		n, err = deleteDeposits(tx, "expires <= ?", millis(now))
		if err == nil {
			_, err = tx.Exec("DELETE FROM invites WHERE expires <= ?", millis(now))
		}
		return err
	})
	return n, err
}

// deleteDeposits deletes the deposits matching where, and takes them off
// their owners' use.
func deleteDeposits(tx *sql.Tx, where string, args ...any) (int, error) {
	rows, err := tx.Query(`SELECT inbox, count(*), sum(length(seal)), sum(stranger) FROM deposits WHERE `+where+` GROUP BY inbox`, args...)
	if err != nil {
		return 0, err
	}
	type use struct {
		inbox        []byte
		n, strangers int
		bytes        int64
	}
	var uses []use
	for rows.Next() {
		var u use
		if err := rows.Scan(&u.inbox, &u.n, &u.bytes, &u.strangers); err != nil {
			rows.Close()
			return 0, err
		}
		uses = append(uses, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	total := 0
	for _, u := range uses {
		total += u.n
		if _, err := tx.Exec(`UPDATE owners SET used = used - ?, used_bytes = used_bytes - ?, strangers_waiting = strangers_waiting - ? WHERE inbox = ?`,
			u.n, u.bytes, u.strangers, u.inbox); err != nil {
			return 0, err
		}
	}
	if total > 0 {
		if _, err := tx.Exec("DELETE FROM deposits WHERE "+where, args...); err != nil {
			return 0, err
		}
	}
	return total, nil
}
