package db

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// What a conversation holds beyond the text of its messages: edits,
// deletions for everyone, reactions, disappearing timers, read state and
// the names peers give themselves (migration 0008, docs/content.md).

// Reaction is one person's reaction to a message.
type Reaction struct {
	Reactor string // a peer ID; "" for this node's user
	Emoji   string
	Time    time.Time
}

// EditMessage replaces the text of a message of the conversation with
// peer that went in direction dir, unless it was deleted or an edit made
// later (by the sender's clock, at) is already stored. It reports whether
// the text changed. The search index follows: FTS4 by its triggers, a
// sealed store's word index here.
func (t *Tx) EditMessage(peer string, id [16]byte, dir Direction, text string, at time.Time) (bool, error) {
	body, sealed := text, []byte(nil)
	sl := t.s.sealer.Load()
	if sl != nil {
		body, sealed = "", sl.values.seal(messageAD(id[:]), []byte(text))
	}
	res, err := t.exec(`UPDATE messages SET body = ?, body_sealed = ?, edited = ?
		WHERE id = ? AND peer_id = ? AND direction = ? AND deleted IS NULL AND (edited IS NULL OR edited < ?)`,
		body, sealed, millis(at), id[:], peer, string(dir), millis(at))
	if err != nil {
		return false, t.s.classify("edit message", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if sl != nil {
		if err := t.reindexWords(sl, id, text); err != nil {
			return false, t.s.classify("edit message", err)
		}
	}
	return true, nil
}

// reindexWords replaces the word index entries of one message in a
// sealed store, when the message was indexed already (one inserted in
// this transaction is indexed at its end, with its latest text).
func (t *Tx) reindexWords(sl *sealer, id [16]byte, text string) error {
	var seq int64
	var indexed bool
	if err := t.queryRow("SELECT seq, seq <= (SELECT indexed FROM fts_state) FROM messages WHERE id = ?", id[:]).Scan(&seq, &indexed); err != nil {
		return err
	}
	if _, err := t.exec("DELETE FROM message_words WHERE seq = ?", seq); err != nil {
		return err
	}
	if !indexed || text == "" {
		return nil
	}
	return insertWords(t.exec, sl.appendWords(nil, sl.hasher(), seq, text))
}

// DeleteForEveryone empties a message of the conversation with peer that
// went in direction dir and keeps it as a tombstone (deleted at at): its
// text leaves the row and the search index, its reactions go. It reports
// whether it was there and not deleted yet. The text may linger in free
// pages of the index and in the WAL until Reclaim.
func (t *Tx) DeleteForEveryone(peer string, id [16]byte, dir Direction, at time.Time) (bool, error) {
	var sealed []byte
	sl := t.s.sealer.Load()
	if sl != nil {
		sealed = sl.values.seal(messageAD(id[:]), nil)
	}
	res, err := t.exec(`UPDATE messages SET body = '', body_sealed = ?, deleted = ?
		WHERE id = ? AND peer_id = ? AND direction = ? AND deleted IS NULL`, sealed, millis(at), id[:], peer, string(dir))
	if err != nil {
		return false, t.s.classify("delete message", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if sl != nil {
		if err := t.reindexWords(sl, id, ""); err != nil {
			return false, t.s.classify("delete message", err)
		}
	}
	_, err = t.exec("DELETE FROM reactions WHERE message_id = ?", id[:])
	return true, t.s.classify("delete message", err)
}

// SetReaction records reactor's reaction to a message of the
// conversation with peer (an empty emoji takes it back), and reports
// whether the message is there to react to (not deleted).
func (t *Tx) SetReaction(peer string, id [16]byte, reactor, emoji string, at time.Time) (bool, error) {
	var one int
	err := t.queryRow("SELECT 1 FROM messages WHERE id = ? AND peer_id = ? AND deleted IS NULL", id[:], peer).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, t.s.classify("react", err)
	}
	if emoji == "" {
		_, err = t.exec("DELETE FROM reactions WHERE message_id = ? AND reactor = ?", id[:], reactor)
	} else {
		_, err = t.exec(`INSERT INTO reactions (message_id, reactor, emoji, time) VALUES (?, ?, ?, ?)
			ON CONFLICT (message_id, reactor) DO UPDATE SET emoji = excluded.emoji, time = excluded.time`,
			id[:], reactor, emoji, millis(at))
	}
	return true, t.s.classify("react", err)
}

// Reactions returns the reactions to the messages given, in the order
// they were made.
func (r *ReadTx) Reactions(ids [][16]byte) (map[[16]byte][]Reaction, error) {
	out := map[[16]byte][]Reaction{}
	if len(ids) == 0 {
		return out, nil
	}
	for _, id := range ids {
		rows, err := r.q.Query("SELECT reactor, emoji, time FROM reactions WHERE message_id = ? ORDER BY time, reactor", id[:])
		if err != nil {
			return nil, r.s.classify("reactions", err)
		}
		for rows.Next() {
			var x Reaction
			var at int64
			if err := rows.Scan(&x.Reactor, &x.Emoji, &at); err != nil {
				rows.Close()
				return nil, r.s.classify("reactions", err)
			}
			x.Time = fromMillis(at)
			out[id] = append(out[id], x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, r.s.classify("reactions", err)
		}
	}
	return out, nil
}

// SetProfileName records the name a peer gave itself.
func (t *Tx) SetProfileName(peer, name string) error {
	t.touchContacts()
	_, err := t.exec("UPDATE contacts SET profile_name = ? WHERE peer_id = ?", name, peer)
	return t.s.classify("profile name", err)
}

// SetProfileSent records the name of ours that peer was last sent.
func (t *Tx) SetProfileSent(peer, name string) error {
	_, err := t.exec("UPDATE contacts SET profile_sent = ? WHERE peer_id = ?", name, peer)
	return t.s.classify("profile sent", err)
}

// SetTimer sets the disappearing timer of the conversation with peer
// (zero: off) and reports whether it changed.
func (t *Tx) SetTimer(peer string, timer time.Duration) (bool, error) {
	res, err := t.exec("UPDATE contacts SET timer = ? WHERE peer_id = ? AND timer != ?", seconds(timer), peer, seconds(timer))
	if err != nil {
		return false, t.s.classify("timer", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// MarkReadIDs marks the received messages of a conversation read, up to
// and including the message at the cursor, starts the disappearing timer
// of those that have one, and returns their ids, oldest first.
func (t *Tx) MarkReadIDs(peer string, upTo Cursor, now time.Time) ([][16]byte, error) {
	rows, err := t.tx.Query(`UPDATE messages SET state = 'read',
			expires = CASE WHEN timer > 0 AND expires IS NULL THEN ? + timer * 1000 ELSE expires END
		WHERE peer_id = ? AND state = 'received' AND (time, seq) <= (?, ?) RETURNING id, time, seq`,
		millis(now), peer, millis(upTo.Time), upTo.Seq)
	if err != nil {
		return nil, t.s.classify("mark read", err)
	}
	defer rows.Close()
	type read struct {
		id        [16]byte
		time, seq int64
	}
	var got []read
	for rows.Next() {
		var r read
		var id []byte
		if err := rows.Scan(&id, &r.time, &r.seq); err != nil {
			return nil, t.s.classify("mark read", err)
		}
		copy(r.id[:], id)
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		return nil, t.s.classify("mark read", err)
	}
	// RETURNING gives no order.
	for i := 1; i < len(got); i++ {
		for j := i; j > 0 && (got[j].time < got[j-1].time || got[j].time == got[j-1].time && got[j].seq < got[j-1].seq); j-- {
			got[j], got[j-1] = got[j-1], got[j]
		}
	}
	ids := make([][16]byte, len(got))
	for i, r := range got {
		ids[i] = r.id
	}
	return ids, nil
}

// PeerRead records that peer read one of our messages: it is delivered
// (its outbox entry ends) and read, and its disappearing timer starts if
// delivery had not started it. It reports whether the message moved.
func (t *Tx) PeerRead(peer string, id [16]byte, now time.Time) (bool, error) {
	if _, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer); err != nil {
		return false, t.s.classify("peer read", err)
	}
	res, err := t.exec(`UPDATE messages SET state = 'read', error = '',
			expires = CASE WHEN timer > 0 AND expires IS NULL THEN ? + timer * 1000 ELSE expires END
		WHERE id = ? AND peer_id = ? AND direction = 'out' AND state IN ('queued', 'sent', 'delivered')`,
		millis(now), id[:], peer)
	if err != nil {
		return false, t.s.classify("peer read", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// startTimer starts the disappearing timer of an outgoing message on its
// delivery.
func (t *Tx) startTimer(peer string, id [16]byte, now time.Time) error {
	_, err := t.exec("UPDATE messages SET expires = ? + timer * 1000 WHERE id = ? AND peer_id = ? AND timer > 0 AND expires IS NULL",
		millis(now), id[:], peer)
	return err
}

// Expired is a message whose disappearing timer ran out.
type Expired struct {
	ID   [16]byte
	Peer string
}

// DeleteExpired deletes up to limit messages whose disappearing timer
// ran out by now, with their reactions and their place in the search
// index, and returns them. Incoming ones are remembered a while (Gone),
// so that a copy sent again is not stored anew. Their text may linger in
// free pages and the WAL until Reclaim.
func (t *Tx) DeleteExpired(now time.Time, limit int) ([]Expired, error) {
	rows, err := t.tx.Query("SELECT id, peer_id, direction FROM messages WHERE expires <= ? ORDER BY expires LIMIT ?", millis(now), limit)
	if err != nil {
		return nil, t.s.classify("expire messages", err)
	}
	var out []Expired
	var incoming [][16]byte
	for rows.Next() {
		var e Expired
		var id []byte
		var dir string
		if err := rows.Scan(&id, &e.Peer, &dir); err != nil {
			rows.Close()
			return nil, t.s.classify("expire messages", err)
		}
		copy(e.ID[:], id)
		out = append(out, e)
		if Direction(dir) == Incoming {
			incoming = append(incoming, e.ID)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, t.s.classify("expire messages", err)
	}
	for _, id := range incoming {
		if _, err := t.exec("INSERT OR IGNORE INTO gone_messages (id, deleted) VALUES (?, ?)", id[:], millis(now)); err != nil {
			return nil, t.s.classify("expire messages", err)
		}
	}
	for _, e := range out {
		if _, err := t.exec("DELETE FROM messages WHERE id = ?", e.ID[:]); err != nil {
			return nil, t.s.classify("expire messages", err)
		}
	}
	return out, nil
}

// NextExpiry returns when the next disappearing message is due, or false
// when none is counting down.
func (r *ReadTx) NextExpiry() (time.Time, bool, error) {
	var at sql.NullInt64
	if err := r.q.QueryRow("SELECT min(expires) FROM messages WHERE expires IS NOT NULL").Scan(&at); err != nil {
		return time.Time{}, false, r.s.classify("next expiry", err)
	}
	return fromNull(at), at.Valid, nil
}

// ErrNotYours: an edit or a deletion of a message its author did not
// write.
var ErrNotYours = errors.New("db: only its sender can change a message")

// Own checks that id is a message of the conversation with peer that
// this node sent, for an edit or a deletion.
func (r *ReadTx) Own(peer string, id [16]byte) (Message, error) {
	m, err := r.Message(id)
	if err != nil {
		return m, err
	}
	if m.Peer != peer {
		return m, fmt.Errorf("message %x is not in the conversation with %s: %w", id, peer, ErrNotFound)
	}
	if m.Direction != Outgoing {
		return m, fmt.Errorf("message %x: %w", id, ErrNotYours)
	}
	return m, nil
}

// WaitsForSession reports whether one of our messages is queued without
// an envelope yet (no session could encrypt it so far).
func (r *ReadTx) WaitsForSession(id [16]byte) (bool, error) {
	var waits bool
	err := r.q.QueryRow("SELECT EXISTS (SELECT 1 FROM outbox WHERE message_id = ? AND length(envelope) = 0)", id[:]).Scan(&waits)
	return waits, r.s.classify("waits for session", err)
}

// Unqueue drops a message of peer from the outbox, its state unchanged.
func (t *Tx) Unqueue(peer string, id [16]byte) error {
	_, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer)
	return t.s.classify("unqueue", err)
}

// ForgetSessions prepares a restored store (node.Restore): its sessions
// and one-time prekeys go (the peers' ratchets moved on since the backup,
// and the keys may have been used), queued control messages go, and
// queued messages wait for a new session, to be encrypted again.
func (t *Tx) ForgetSessions(now time.Time) error {
	for _, q := range []string{
		"DELETE FROM sessions",
		"DELETE FROM prekeys WHERE kind IN ('one-time', 'pq-one-time')",
		"DELETE FROM outbox WHERE control = 1",
		"UPDATE messages SET state = 'queued', mailboxed = NULL WHERE state IN ('queued', 'sent') AND id IN (SELECT message_id FROM outbox)",
	} {
		if _, err := t.exec(q); err != nil {
			return t.s.classify("forget sessions", err)
		}
	}
	_, err := t.exec("UPDATE outbox SET envelope = x'', mailboxed = NULL, next_attempt = ?", millis(now))
	return t.s.classify("forget sessions", err)
}

// MessageCount is the number of messages stored.
func (r *ReadTx) MessageCount() (int, error) {
	var n int
	err := r.q.QueryRow("SELECT count(*) FROM messages").Scan(&n)
	return n, r.s.classify("count messages", err)
}

// LastActivity returns, for each contact with messages, the time of its
// conversation's latest one (one index seek per contact).
func (r *ReadTx) LastActivity() (map[string]time.Time, error) {
	rows, err := r.q.Query("SELECT peer_id, (SELECT max(time) FROM messages m WHERE m.peer_id = c.peer_id) FROM contacts c")
	if err != nil {
		return nil, r.s.classify("last activity", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var peer string
		var at sql.NullInt64
		if err := rows.Scan(&peer, &at); err != nil {
			return nil, r.s.classify("last activity", err)
		}
		if at.Valid {
			out[peer] = fromMillis(at.Int64)
		}
	}
	return out, r.s.classify("last activity", rows.Err())
}
