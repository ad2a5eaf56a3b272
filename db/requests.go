package db

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Contact requests and the messages held for them (docs/design.md §11):
// what the node needs to keep strangers within bounds.

// HasIncoming reports whether peer has a message of its stored (a
// stranger may have one until the user accepts it).
func (r *ReadTx) HasIncoming(peer string) (bool, error) {
	var has bool
	err := r.q.QueryRow("SELECT EXISTS (SELECT 1 FROM messages WHERE peer_id = ? AND direction = 'in')", peer).Scan(&has)
	return has, r.s.classify("requests", err)
}

// Requests lists the pending contact requests (not blocked), the oldest
// first.
func (r *ReadTx) Requests() ([]Contact, error) {
	rows, err := r.q.Query("SELECT " + contactColumns + " FROM contacts WHERE state = 'request' AND blocked = 0 ORDER BY created, rowid")
	if err != nil {
		return nil, r.s.classify("requests", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, r.s.classify("requests", err)
		}
		out = append(out, c)
	}
	return out, r.s.classify("requests", rows.Err())
}

// RequestCount counts the pending contact requests.
func (r *ReadTx) RequestCount() (int, error) {
	var n int
	err := r.q.QueryRow("SELECT count(*) FROM contacts WHERE state = 'request' AND blocked = 0").Scan(&n)
	return n, r.s.classify("requests", err)
}

// OldestRequests returns up to limit peers of the oldest pending
// requests.
func (r *ReadTx) OldestRequests(limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: requests: limit %d is not positive", limit)
	}
	rows, err := r.q.Query("SELECT peer_id FROM contacts WHERE state = 'request' AND blocked = 0 ORDER BY created, rowid LIMIT ?", limit)
	if err != nil {
		return nil, r.s.classify("requests", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, r.s.classify("requests", err)
		}
		out = append(out, p)
	}
	return out, r.s.classify("requests", rows.Err())
}

// Hold keeps an envelope that peer refused until its user accepts us:
// its message goes back to queued with reason, and the envelope is not
// sent again before next (a probe) or a Release. It reports whether that
// changed anything a client sees (the envelope was not held, or its
// message had been marked sent meanwhile); false also when the envelope
// was no longer waiting.
func (t *Tx) Hold(peer string, id [16]byte, reason string, next time.Time) (bool, error) {
	var held, control bool
	err := t.queryRow("SELECT held, control FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer).Scan(&held, &control)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, t.s.classify("hold", err)
	}
	if _, err := t.exec("UPDATE outbox SET held = 1, next_attempt = ?, last_error = ? WHERE message_id = ? AND peer_id = ?",
		millis(next), reason, id[:], peer); err != nil {
		return false, t.s.classify("hold", err)
	}
	res, err := t.exec("UPDATE messages SET state = 'queued', error = ? WHERE id = ? AND peer_id = ? AND (state = 'sent' OR state = 'queued' AND error != ?)",
		reason, id[:], peer, reason)
	if err != nil {
		return false, t.s.classify("hold", err)
	}
	n, _ := res.RowsAffected()
	// A control message has no message for a client to see.
	return !control && (!held || n > 0), nil
}

// HoldAll holds every envelope waiting for peer that is not held yet
// (they would be refused as the held one was), and returns the ids of
// their messages (control messages have none).
func (t *Tx) HoldAll(peer, reason string, next time.Time) ([][16]byte, error) {
	rows, err := t.tx.Query("SELECT message_id, control FROM outbox WHERE peer_id = ? AND held = 0", peer)
	if err != nil {
		return nil, t.s.classify("hold", err)
	}
	var all, ids [][16]byte
	for rows.Next() {
		var b []byte
		var control bool
		if err := rows.Scan(&b, &control); err != nil {
			rows.Close()
			return nil, t.s.classify("hold", err)
		}
		var id [16]byte
		copy(id[:], b)
		all = append(all, id)
		if !control {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, t.s.classify("hold", err)
	}
	for _, id := range all {
		if _, err := t.Hold(peer, id, reason, next); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// HasHeld reports whether something is held for peer: a new message
// then waits behind it, held too.
func (r *ReadTx) HasHeld(peer string) (bool, error) {
	var has bool
	err := r.q.QueryRow("SELECT EXISTS (SELECT 1 FROM outbox WHERE peer_id = ? AND held = 1)", peer).Scan(&has)
	return has, r.s.classify("outbox", err)
}

// Release makes what is held for peer due at now, and returns the ids
// of the messages released (control messages have none).
func (t *Tx) Release(peer string, now time.Time) ([][16]byte, error) {
	rows, err := t.tx.Query("SELECT message_id, control FROM outbox WHERE peer_id = ? AND held = 1", peer)
	if err != nil {
		return nil, t.s.classify("release", err)
	}
	var ids [][16]byte
	some := false
	for rows.Next() {
		var b []byte
		var control bool
		if err := rows.Scan(&b, &control); err != nil {
			rows.Close()
			return nil, t.s.classify("release", err)
		}
		some = true
		if !control { // a control message has no message to show
			var id [16]byte
			copy(id[:], b)
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || !some {
		return nil, t.s.classify("release", err)
	}
	if _, err := t.exec(`UPDATE messages SET error = '' WHERE state = 'queued' AND id IN
		(SELECT message_id FROM outbox WHERE peer_id = ? AND held = 1)`, peer); err != nil {
		return nil, t.s.classify("release", err)
	}
	if _, err := t.exec("UPDATE outbox SET held = 0, next_attempt = ?, last_error = '' WHERE peer_id = ? AND held = 1", millis(now), peer); err != nil {
		return nil, t.s.classify("release", err)
	}
	return ids, nil
}

// Messages waiting for a session: when no bundle of the recipient can be
// found, a message is queued with an empty envelope (its text waits in
// its message row, sealed like every body) until one is, and then
// encrypted in the order queued.

// AwaitsSession reports whether peer has messages queued that wait for a
// session (an outbox entry with no envelope yet).
func (r *ReadTx) AwaitsSession(peer string) (bool, error) {
	var has bool
	err := r.q.QueryRow("SELECT EXISTS (SELECT 1 FROM outbox WHERE peer_id = ? AND length(envelope) = 0)", peer).Scan(&has)
	return has, r.s.classify("outbox", err)
}

// SetEnvelope gives a waiting entry its envelope, and clears its
// message's reason.
func (t *Tx) SetEnvelope(peer string, id [16]byte, envelope []byte) error {
	if len(envelope) == 0 {
		return fmt.Errorf("db: outbox %x: empty envelope", id)
	}
	res, err := t.exec("UPDATE outbox SET envelope = ?, last_error = '' WHERE message_id = ? AND peer_id = ? AND length(envelope) = 0", envelope, id[:], peer)
	if err != nil {
		return t.s.classify("set envelope", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("outbox %x waiting for a session: %w", id, ErrNotFound)
	}
	_, err = t.exec("UPDATE messages SET error = '' WHERE id = ? AND state = 'queued'", id[:])
	return t.s.classify("set envelope", err)
}

// NoteQueued records why a queued message still waits (its state stays
// queued).
func (t *Tx) NoteQueued(id [16]byte, reason string) error {
	_, err := t.exec("UPDATE messages SET error = ? WHERE id = ? AND state = 'queued'", reason, id[:])
	return t.s.classify("note", err)
}
