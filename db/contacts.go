package db

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mattn/go-sqlite3"
)

// ErrNameTaken: another contact has the name already.
var ErrNameTaken = errors.New("db: another contact has that name")

// ContactState says whether the user has accepted a contact; a stranger's
// first message makes a contact request.
type ContactState string

const (
	ContactRequest  ContactState = "request"
	ContactAccepted ContactState = "accepted"
)

// Contact is a peer the node knows.
type Contact struct {
	PeerID      string
	Name        string
	IdentityKey []byte // nil until known
	State       ContactState
	Verified    bool // the safety number was compared
	Blocked     bool
	KeyChanged  bool          // it presented another identity key; waits for the user's trust
	ProfileName string        // the name the peer gave itself (Name, ours for it, wins)
	ProfileSent string        // the name of ours last sent to it
	Timer       time.Duration // the conversation's disappearing timer; zero: off
	Created     time.Time
	Updated     time.Time
}

// PutContact inserts or replaces a contact (Created is kept on update).
func (t *Tx) PutContact(c Contact, now time.Time) error {
	if c.State == "" {
		c.State = ContactRequest
	}
	t.touchContacts()
	_, err := t.exec(`INSERT INTO contacts (peer_id, name, identity_key, state, verified, blocked, key_changed, created, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer_id) DO UPDATE SET name = excluded.name, identity_key = excluded.identity_key,
			state = excluded.state, verified = excluded.verified, blocked = excluded.blocked,
			key_changed = excluded.key_changed, updated = excluded.updated`,
		c.PeerID, c.Name, c.IdentityKey, string(c.State), c.Verified, c.Blocked, c.KeyChanged, millis(now), millis(now))
	var se sqlite3.Error
	if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
		return fmt.Errorf("contact %s: %w: %q", c.PeerID, ErrNameTaken, c.Name)
	}
	return t.s.classify("put contact", err)
}

// EnsureContact adds a peer as a contact request unless it is known
// already, and reports whether it was added.
func (t *Tx) EnsureContact(peer string, now time.Time) (added bool, err error) {
	t.touchContacts()
	res, err := t.exec(`INSERT INTO contacts (peer_id, created, updated) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		peer, millis(now), millis(now))
	if err != nil {
		return false, t.s.classify("ensure contact", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

const contactColumns = "peer_id, name, identity_key, state, verified, blocked, key_changed, created, updated, profile_name, profile_sent, timer"

func scanContact(sc interface{ Scan(...any) error }) (Contact, error) {
	var c Contact
	var state string
	var created, updated, timer int64
	err := sc.Scan(&c.PeerID, &c.Name, &c.IdentityKey, &state, &c.Verified, &c.Blocked, &c.KeyChanged, &created, &updated, &c.ProfileName, &c.ProfileSent, &timer)
	c.State, c.Created, c.Updated, c.Timer = ContactState(state), fromMillis(created), fromMillis(updated), time.Duration(timer)*time.Second
	return c, err
}

// Contact returns one contact, or ErrNotFound.
func (r *ReadTx) Contact(peer string) (Contact, error) {
	c, err := scanContact(r.q.QueryRow("SELECT "+contactColumns+" FROM contacts WHERE peer_id = ?", peer))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("contact %s: %w", peer, ErrNotFound)
	}
	return c, r.s.classify("contact", err)
}

// acceptedSet is AcceptedContacts' copy, and the generation it was read at.
type acceptedSet struct {
	gen   uint64
	peers map[string]bool
}

// AcceptedContacts returns the peer IDs of the accepted contacts, blocked
// ones included. The map is shared: callers must not change it. It is
// kept in memory until a write touches the contacts, because the node
// asks for every connection that opens or closes, most of them
// strangers' (DHT peers): a read each was the largest cost of an idle
// node of ours.
func (s *Store) AcceptedContacts() (map[string]bool, error) {
	gen := s.contactsGen.Load()
	if a := s.accepted.Load(); a != nil && a.gen == gen {
		return a.peers, nil
	}
	peers := map[string]bool{}
	err := s.View(func(r *ReadTx) error {
		rows, err := r.q.Query("SELECT peer_id FROM contacts WHERE state = 'accepted'")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				return err
			}
			peers[p] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.classify("accepted contacts", err)
	}
	// Read at gen, and nothing written since: it is current until the
	// next write. (A write under way moved gen before it began.)
	if s.contactsGen.Load() == gen {
		s.accepted.Store(&acceptedSet{gen, peers})
	}
	return peers, nil
}

// ContactByName returns the contact with a display name, or ErrNotFound.
func (r *ReadTx) ContactByName(name string) (Contact, error) {
	c, err := scanContact(r.q.QueryRow("SELECT "+contactColumns+" FROM contacts WHERE name = ? ORDER BY created LIMIT 1", name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("contact named %q: %w", name, ErrNotFound)
	}
	return c, r.s.classify("contact", err)
}

// Contacts lists every contact, the accepted ones first (requests from
// strangers must not bury them), each group by name, then peer ID.
func (r *ReadTx) Contacts() ([]Contact, error) {
	rows, err := r.q.Query("SELECT " + contactColumns + " FROM contacts ORDER BY state != 'accepted', name, peer_id")
	if err != nil {
		return nil, r.s.classify("contacts", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, r.s.classify("contacts", err)
		}
		out = append(out, c)
	}
	return out, r.s.classify("contacts", rows.Err())
}

// DeleteContact deletes a contact with everything kept for it: its
// session, its history (and so its outbox) and its place in the search
// index; the ids of its messages to us stay a while (Gone). Messages have
// no cascade from contacts on purpose: only this deliberate call removes
// history. It reports whether the contact existed.
func (t *Tx) DeleteContact(peer string) (bool, error) {
	t.touchContacts()
	for _, q := range []string{
		"INSERT OR IGNORE INTO gone_messages (id, deleted) SELECT id, unixepoch('subsec') * 1000 FROM messages WHERE peer_id = ? AND direction = 'in'",
		"DELETE FROM sessions WHERE peer_id = ?",
		"DELETE FROM outbox WHERE peer_id = ?",
		"DELETE FROM messages WHERE peer_id = ?",
	} {
		if _, err := t.exec(q, peer); err != nil {
			return false, t.s.classify("delete contact", err)
		}
	}
	res, err := t.exec("DELETE FROM contacts WHERE peer_id = ?", peer)
	if err != nil {
		return false, t.s.classify("delete contact", err)
	}
	// Rowids of deleted messages may be handed out again: the index must
	// not believe it already holds them (see migration 0002).
	if _, err := t.exec(`UPDATE fts_state SET indexed = min(indexed, (SELECT coalesce(max(seq), 0) FROM messages))`); err != nil {
		return false, t.s.classify("delete contact", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// PutSetting stores a setting.
func (t *Tx) PutSetting(key string, value []byte) error {
	_, err := t.exec("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return t.s.classify("put setting", err)
}

// Setting returns a setting, or ErrNotFound.
func (r *ReadTx) Setting(key string) ([]byte, error) {
	var v []byte
	err := r.q.QueryRow("SELECT value FROM settings WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("setting %s: %w", key, ErrNotFound)
	}
	return v, r.s.classify("setting", err)
}
