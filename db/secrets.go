package db

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The rows that hold secrets: the identity, prekeys and sessions. Their
// secret columns are sealed when the store has a passphrase.

// PutIdentity stores the node's identity: its public key and its secret
// (the e2e identity encoding). There is one; putting it again fails.
func (t *Tx) PutIdentity(public, secret []byte, now time.Time) error {
	_, err := t.exec("INSERT INTO identity (id, public_key, secret, created) VALUES (1, ?, ?, ?)",
		public, t.s.sealSecret("identity", secret), millis(now))
	if err != nil {
		return fmt.Errorf("db: put identity (one exists already?): %w", err)
	}
	return nil
}

// Identity returns the node's identity, or ErrNotFound.
func (r *ReadTx) Identity() (public, secret []byte, err error) {
	var sealed []byte
	err = r.q.QueryRow("SELECT public_key, secret FROM identity WHERE id = 1").Scan(&public, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("identity: %w", ErrNotFound)
	}
	if err != nil {
		return nil, nil, r.s.classify("identity", err)
	}
	secret, err = r.s.openSecret("identity", sealed)
	return public, secret, err
}

// PrekeyKind names the four kinds of prekeys.
type PrekeyKind string

const (
	SignedPrekey    PrekeyKind = "signed"
	PQPrekey        PrekeyKind = "pq" // the last-resort ML-KEM prekey
	OneTimePrekey   PrekeyKind = "one-time"
	PQOneTimePrekey PrekeyKind = "pq-one-time"
)

// Prekey is a stored prekey. Secret is nil once a one-time prekey was used.
type Prekey struct {
	Kind    PrekeyKind
	ID      uint32
	Public  []byte
	Secret  []byte
	Created time.Time
	Expires time.Time // signed and pq: when the private half may go; one-time: when, issued and unused, it goes
	Issued  time.Time // one-time: handed out
	Used    time.Time // one-time: consumed by a handshake
}

func oneTime(kind PrekeyKind) error {
	if kind != OneTimePrekey && kind != PQOneTimePrekey {
		return fmt.Errorf("db: %s prekeys are not one-time prekeys", kind)
	}
	return nil
}

func prekeyAD(kind PrekeyKind, id uint32) string { return fmt.Sprintf("prekey/%s/%d", kind, id) }

// PutPrekey stores a new prekey.
func (t *Tx) PutPrekey(p Prekey) error {
	_, err := t.exec(`INSERT INTO prekeys (kind, id, public, secret, created, expires) VALUES (?, ?, ?, ?, ?, ?)`,
		string(p.Kind), p.ID, p.Public, t.s.sealSecret(prekeyAD(p.Kind, p.ID), p.Secret), millis(p.Created), nullTime(p.Expires))
	if err != nil {
		return t.s.classify("put prekey", err)
	}
	return nil
}

// Prekey returns one prekey, or ErrNotFound.
func (r *ReadTx) Prekey(kind PrekeyKind, id uint32) (Prekey, error) {
	p := Prekey{Kind: kind, ID: id}
	var created int64
	var expires, issued, used sql.NullInt64
	var sealed []byte
	err := r.q.QueryRow("SELECT public, secret, created, expires, issued, used FROM prekeys WHERE kind = ? AND id = ?", string(kind), id).
		Scan(&p.Public, &sealed, &created, &expires, &issued, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("prekey %s/%d: %w", kind, id, ErrNotFound)
	}
	if err != nil {
		return p, r.s.classify("prekey", err)
	}
	p.Created, p.Expires, p.Issued, p.Used = fromMillis(created), fromNull(expires), fromNull(issued), fromNull(used)
	if sealed != nil {
		if p.Secret, err = r.s.openSecret(prekeyAD(kind, id), sealed); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Prekeys lists the prekeys of a kind, oldest id first, without secrets.
func (r *ReadTx) Prekeys(kind PrekeyKind) ([]Prekey, error) {
	rows, err := r.q.Query("SELECT id, public, created, expires, issued, used FROM prekeys WHERE kind = ? ORDER BY id", string(kind))
	if err != nil {
		return nil, r.s.classify("prekeys", err)
	}
	defer rows.Close()
	var out []Prekey
	for rows.Next() {
		p := Prekey{Kind: kind}
		var created int64
		var expires, issued, used sql.NullInt64
		if err := rows.Scan(&p.ID, &p.Public, &created, &expires, &issued, &used); err != nil {
			return nil, r.s.classify("prekeys", err)
		}
		p.Created, p.Expires, p.Issued, p.Used = fromMillis(created), fromNull(expires), fromNull(issued), fromNull(used)
		out = append(out, p)
	}
	return out, r.s.classify("prekeys", rows.Err())
}

// IssueOneTimePrekey marks the oldest never-issued one-time prekey of kind
// issued and returns its public half, or ErrNotFound when none is left.
// Each prekey is issued at most once. Unused, it expires at expires:
// DeleteExpiredPrekeys then deletes it, private half and all (whoever
// fetched it did not write, and stores must not grow with every fetch).
func (t *Tx) IssueOneTimePrekey(kind PrekeyKind, now, expires time.Time) (id uint32, public []byte, err error) {
	if err := oneTime(kind); err != nil {
		return 0, nil, err
	}
	err = t.queryRow(`UPDATE prekeys SET issued = ?, expires = ? WHERE kind = ? AND id =
		(SELECT id FROM prekeys WHERE kind = ? AND issued IS NULL ORDER BY id LIMIT 1) RETURNING id, public`,
		millis(now), millis(expires), string(kind), string(kind)).Scan(&id, &public)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("one-time prekey %s: none left: %w", kind, ErrNotFound)
	}
	return id, public, t.s.classify("issue prekey", err)
}

// UnissuedPrekeys counts the one-time prekeys of kind not yet handed out.
func (r *ReadTx) UnissuedPrekeys(kind PrekeyKind) (int, error) {
	var n int
	err := r.q.QueryRow("SELECT count(*) FROM prekeys WHERE kind = ? AND issued IS NULL", string(kind)).Scan(&n)
	return n, r.s.classify("count prekeys", err)
}

// UseOneTimePrekey consumes a one-time prekey: it returns the private half
// and deletes it, in the caller's transaction. A prekey already used, or
// unknown, gives ErrNotFound: a one-time key serves one handshake.
func (t *Tx) UseOneTimePrekey(kind PrekeyKind, id uint32, now time.Time) ([]byte, error) {
	if err := oneTime(kind); err != nil {
		return nil, err
	}
	var sealed []byte
	err := t.queryRow("SELECT secret FROM prekeys WHERE kind = ? AND id = ? AND used IS NULL", string(kind), id).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && sealed == nil) {
		return nil, fmt.Errorf("one-time prekey %s/%d: %w", kind, id, ErrNotFound)
	}
	if err != nil {
		return nil, t.s.classify("use prekey", err)
	}
	if _, err := t.exec("UPDATE prekeys SET used = ?, secret = NULL WHERE kind = ? AND id = ?", millis(now), string(kind), id); err != nil {
		return nil, t.s.classify("use prekey", err)
	}
	return t.s.openSecret(prekeyAD(kind, id), sealed)
}

// DeleteExpiredPrekeys deletes signed and PQ prekeys whose private halves
// have outlived their grace period, and used one-time prekeys.
func (t *Tx) DeleteExpiredPrekeys(now time.Time) (int64, error) {
	res, err := t.exec("DELETE FROM prekeys WHERE (expires IS NOT NULL AND expires <= ?) OR used IS NOT NULL", millis(now))
	if err != nil {
		return 0, t.s.classify("delete prekeys", err)
	}
	return res.RowsAffected()
}

// MarkSeen records the replay key of an accepted initial message until
// expires. It reports false when the key was already recorded: the message
// is a replay. Its primary key makes the check and the record one step.
func (t *Tx) MarkSeen(replayKey []byte, expires time.Time) (fresh bool, err error) {
	res, err := t.exec("INSERT INTO seen_prekey_messages (replay_key, expires) VALUES (?, ?) ON CONFLICT DO NOTHING",
		replayKey, millis(expires))
	if err != nil {
		return false, t.s.classify("mark seen", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Seen reports whether a replay key is recorded.
func (r *ReadTx) Seen(replayKey []byte) (bool, error) {
	var one int
	err := r.q.QueryRow("SELECT 1 FROM seen_prekey_messages WHERE replay_key = ?", replayKey).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, r.s.classify("seen", err)
}

// PruneSeen forgets replay keys that expired before now.
func (t *Tx) PruneSeen(now time.Time) error {
	_, err := t.exec("DELETE FROM seen_prekey_messages WHERE expires <= ?", millis(now))
	return t.s.classify("prune seen", err)
}

// PutSession stores the session blob of a peer (a contact).
func (t *Tx) PutSession(peer string, blob []byte, now time.Time) error {
	_, err := t.exec(`INSERT INTO sessions (peer_id, blob, updated) VALUES (?, ?, ?)
		ON CONFLICT (peer_id) DO UPDATE SET blob = excluded.blob, updated = excluded.updated`,
		peer, t.s.sealSecret("session/"+peer, blob), millis(now))
	return t.s.classify("put session", err)
}

// Session returns the session blob of a peer, or ErrNotFound.
func (r *ReadTx) Session(peer string) ([]byte, error) {
	var sealed []byte
	err := r.q.QueryRow("SELECT blob FROM sessions WHERE peer_id = ?", peer).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session %s: %w", peer, ErrNotFound)
	}
	if err != nil {
		return nil, r.s.classify("session", err)
	}
	return r.s.openSecret("session/"+peer, sealed)
}

// DeleteSession forgets the session with a peer.
func (t *Tx) DeleteSession(peer string) error {
	_, err := t.exec("DELETE FROM sessions WHERE peer_id = ?", peer)
	return t.s.classify("delete session", err)
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMilli(n.Int64)
}
