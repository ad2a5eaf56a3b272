package db

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The owner's side of mailboxes (docs/mailbox.md): the mailboxes this
// node collects from, and the tokens contacts granted it for theirs.

// MaxMailboxes is how many mailboxes an owner names in its bundle.
const MaxMailboxes = 3

// ErrTooManyMailboxes: an owner names at most MaxMailboxes.
var ErrTooManyMailboxes = fmt.Errorf("db: at most %d mailboxes", MaxMailboxes)

// OwnMailbox is a mailbox this node is an owner at.
type OwnMailbox struct {
	Peer     string
	Addrs    [][]byte // multiaddrs, in their binary form
	Inbox    [16]byte
	TokenKey []byte // makes the contacts' tokens; secret
	Added    time.Time
	Updated  time.Time
}

func mailboxKeyAD(peer string) string { return "mailbox-key/" + peer }

// PutMailbox adds a mailbox, or updates the addresses and token key of
// one named already. A fourth is ErrTooManyMailboxes.
func (t *Tx) PutMailbox(m OwnMailbox) error {
	var n int
	if err := t.queryRow("SELECT count(*) FROM mailboxes WHERE peer_id != ?", m.Peer).Scan(&n); err != nil {
		return t.s.classify("put mailbox", err)
	}
	if n >= MaxMailboxes {
		return ErrTooManyMailboxes
	}
	_, err := t.exec(`INSERT INTO mailboxes (peer_id, addrs, inbox, token_key, added, updated) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer_id) DO UPDATE SET addrs = excluded.addrs, inbox = excluded.inbox, token_key = excluded.token_key, updated = excluded.updated`,
		m.Peer, joinAddrs(m.Addrs), m.Inbox[:], t.s.sealSecret(mailboxKeyAD(m.Peer), m.TokenKey), millis(m.Added), millis(m.Updated))
	return t.s.classify("put mailbox", err)
}

// DeleteMailbox forgets a mailbox, and reports whether it was named.
func (t *Tx) DeleteMailbox(peer string) (bool, error) {
	res, err := t.exec("DELETE FROM mailboxes WHERE peer_id = ?", peer)
	if err != nil {
		return false, t.s.classify("delete mailbox", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Mailboxes returns the mailboxes this node is an owner at, in the order
// added.
func (r *ReadTx) Mailboxes() ([]OwnMailbox, error) {
	rows, err := r.q.Query("SELECT peer_id, addrs, inbox, token_key, added, updated FROM mailboxes ORDER BY added, rowid")
	if err != nil {
		return nil, r.s.classify("mailboxes", err)
	}
	defer rows.Close()
	var out []OwnMailbox
	for rows.Next() {
		var m OwnMailbox
		var addrs, inbox, key []byte
		var added, updated int64
		if err := rows.Scan(&m.Peer, &addrs, &inbox, &key, &added, &updated); err != nil {
			return nil, r.s.classify("mailboxes", err)
		}
		if m.Addrs, err = splitAddrs(addrs); err != nil {
			return nil, fmt.Errorf("%w: %s: mailbox %s: %v", ErrCorrupt, r.s.path, m.Peer, err)
		}
		copy(m.Inbox[:], inbox)
		if m.TokenKey, err = r.s.openSecret(mailboxKeyAD(m.Peer), key); err != nil {
			return nil, err
		}
		m.Added, m.Updated = fromMillis(added), fromMillis(updated)
		out = append(out, m)
	}
	return out, r.s.classify("mailboxes", rows.Err())
}

// TokenIndex is the number a contact's mailbox tokens are made for: its
// row in contacts. SQLite may give the row of a contact deleted to the
// next one added, so an index says who holds a token only while the
// token key is unchanged: the node makes a new key whenever it blocks or
// removes a contact. ErrNotFound for a peer that is not a contact.
func (r *ReadTx) TokenIndex(peer string) (uint32, error) {
	var idx int64
	err := r.q.QueryRow("SELECT rowid FROM contacts WHERE peer_id = ?", peer).Scan(&idx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("contact %s: %w", peer, ErrNotFound)
	}
	if err != nil {
		return 0, r.s.classify("token index", err)
	}
	if idx <= 0 || idx > 1<<32-1 {
		return 0, fmt.Errorf("db: contact %s: row %d is no token index", peer, idx)
	}
	return uint32(idx), nil
}

// Grant is a token a contact granted us for depositing at one of its
// mailboxes.
type Grant struct {
	Peer     string // the contact
	Mailbox  string // the mailbox's peer ID
	Inbox    [16]byte
	Index    uint32
	Token    [16]byte // secret
	Received time.Time
}

func grantAD(peer, mailbox string) string { return "grant/" + peer + "/" + mailbox }

// PutGrant stores a contact's grant, replacing the one it gave for that
// mailbox before, and keeps the newest MaxMailboxes of the contact's. The
// peer must be a contact.
func (t *Tx) PutGrant(g Grant) error {
	_, err := t.exec(`INSERT INTO mailbox_grants (peer_id, mailbox, inbox, idx, token, received) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (peer_id, mailbox) DO UPDATE SET inbox = excluded.inbox, idx = excluded.idx, token = excluded.token, received = excluded.received`,
		g.Peer, g.Mailbox, g.Inbox[:], int64(g.Index), t.s.sealSecret(grantAD(g.Peer, g.Mailbox), g.Token[:]), millis(g.Received))
	if err != nil {
		return t.s.classify("put grant", err)
	}
	// A contact names at most MaxMailboxes: the newest grants are kept,
	// so that a contact cannot make us store one per made-up mailbox.
	_, err = t.exec(`DELETE FROM mailbox_grants WHERE peer_id = ? AND rowid NOT IN
		(SELECT rowid FROM mailbox_grants WHERE peer_id = ? ORDER BY received DESC, rowid DESC LIMIT ?)`, g.Peer, g.Peer, MaxMailboxes)
	return t.s.classify("put grant", err)
}

// Grants returns what peer granted us, the newest first.
func (r *ReadTx) Grants(peer string) ([]Grant, error) {
	rows, err := r.q.Query("SELECT mailbox, inbox, idx, token, received FROM mailbox_grants WHERE peer_id = ? ORDER BY received DESC", peer)
	if err != nil {
		return nil, r.s.classify("grants", err)
	}
	defer rows.Close()
	var out []Grant
	for rows.Next() {
		g := Grant{Peer: peer}
		var inbox, token []byte
		var idx, received int64
		if err := rows.Scan(&g.Mailbox, &inbox, &idx, &token, &received); err != nil {
			return nil, r.s.classify("grants", err)
		}
		plain, err := r.s.openSecret(grantAD(peer, g.Mailbox), token)
		if err != nil {
			return nil, err
		}
		if len(plain) != len(g.Token) {
			return nil, fmt.Errorf("%w: %s: a grant's token of %d bytes", ErrCorrupt, r.s.path, len(plain))
		}
		copy(g.Inbox[:], inbox)
		copy(g.Token[:], plain)
		g.Index, g.Received = uint32(idx), fromMillis(received)
		out = append(out, g)
	}
	return out, r.s.classify("grants", rows.Err())
}

// joinAddrs and splitAddrs keep a list of binary multiaddrs in one
// column: each a uvarint length and its bytes.
func joinAddrs(addrs [][]byte) []byte {
	var b []byte
	for _, a := range addrs {
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	if b == nil {
		b = []byte{}
	}
	return b
}

func splitAddrs(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("damaged address list")
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}
