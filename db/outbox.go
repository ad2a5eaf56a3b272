package db

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// OutboxEntry is an envelope waiting for its acknowledgement.
type OutboxEntry struct {
	Row         int64 // the order of queueing; set by the store
	MessageID   [16]byte
	Peer        string
	Envelope    []byte // resent as these exact bytes, never re-encrypted
	Attempts    int
	NextAttempt time.Time
	LastError   string
	Created     time.Time
	Held        bool // refused until the recipient accepts us (Hold)
	// Control: a receipt or a grant, with no message row; it ends at a
	// direct ack or a mailbox's store, and is never receipted.
	Control bool
	// Lasting: a control message that a mailbox's store does not end:
	// like a message, it waits for the recipient's receipt (an edit, a
	// deletion, a reaction, a profile, a timer).
	Lasting bool
	// Mailboxed: when a mailbox stored it (zero: none did yet).
	Mailboxed time.Time
}

// Enqueue adds an envelope to the outbox; its message must be stored,
// unless it is a control message.
func (t *Tx) Enqueue(e OutboxEntry) error {
	_, err := t.exec(`INSERT INTO outbox (message_id, peer_id, envelope, attempts, next_attempt, last_error, created, held, control, lasting)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.MessageID[:], e.Peer, e.Envelope, e.Attempts, millis(e.NextAttempt), e.LastError, millis(e.Created), e.Held, e.Control,
		e.Control && e.Lasting)
	return t.s.classify("enqueue", err)
}

// Delivered removes an envelope that peer acknowledged (or receipted)
// from the outbox and marks its message delivered. It reports false when
// there was no such envelope of that peer (a repeated acknowledgement, or
// a peer acknowledging what it was never sent), or when it was a control
// message, which has no message to mark.
func (t *Tx) Delivered(peer string, id [16]byte) (bool, error) {
	res, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ? AND control = 0", id[:], peer)
	if err != nil {
		return false, t.s.classify("delivered", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// A control message, the rare case: a second statement only then.
		_, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer)
		return false, t.s.classify("delivered", err)
	}
	if _, err = t.SetMessageState(peer, id, Delivered, ""); err != nil {
		return true, err
	}
	return true, t.s.classify("delivered", t.startTimer(peer, id, time.Now()))
}

// Mailboxed records that a mailbox stored an envelope for peer: a control
// message's row ends; a message's stays until its receipt, and the
// message shows as mailboxed. It reports whether a message moved to
// mailboxed (false for a control message, for one already mailboxed,
// and for one no longer waiting).
func (t *Tx) Mailboxed(peer string, id [16]byte, now time.Time) (bool, error) {
	var control, lasting bool
	err := t.queryRow("SELECT control, lasting FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer).Scan(&control, &lasting)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, t.s.classify("mailboxed", err)
	}
	if control && !lasting {
		_, err := t.exec("DELETE FROM outbox WHERE message_id = ?", id[:])
		return false, t.s.classify("mailboxed", err)
	}
	if _, err := t.exec("UPDATE outbox SET mailboxed = ? WHERE message_id = ? AND mailboxed IS NULL", millis(now), id[:]); err != nil {
		return false, t.s.classify("mailboxed", err)
	}
	res, err := t.exec("UPDATE messages SET mailboxed = ? WHERE id = ? AND peer_id = ? AND mailboxed IS NULL AND state IN ('queued', 'sent')",
		millis(now), id[:], peer)
	if err != nil {
		return false, t.s.classify("mailboxed", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Rekey puts a message whose first envelope the recipient could not take
// (it no longer has the one-time prekey it names, which a faulty mailbox
// may have handed to two senders) back to wait for a session: its
// envelope is dropped, to be encrypted again under a new session with the
// same message id, at most max times in its life. It reports false when
// the entry is not waiting, is a control message, or was encrypted again
// max times already (the caller fails it then).
func (t *Tx) Rekey(peer string, id [16]byte, reason string, max int, now time.Time) (bool, error) {
	res, err := t.exec(`UPDATE outbox SET envelope = x'', mailboxed = NULL, rekeyed = rekeyed + 1, last_error = ?, next_attempt = ?
		WHERE message_id = ? AND peer_id = ? AND control = 0 AND rekeyed < ?`, reason, millis(now), id[:], peer, max)
	if err != nil {
		return false, t.s.classify("rekey", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	_, err = t.exec("UPDATE messages SET state = 'queued', mailboxed = NULL, error = ? WHERE id = ? AND peer_id = ? AND state IN ('queued', 'sent')",
		reason, id[:], peer)
	return true, t.s.classify("rekey", err)
}

// RetryLater records a failed attempt and when to try again.
func (t *Tx) RetryLater(id [16]byte, next time.Time, reason string) error {
	res, err := t.exec("UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE message_id = ?",
		millis(next), reason, id[:])
	if err != nil {
		return t.s.classify("retry", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("outbox %x: %w", id, ErrNotFound)
	}
	return nil
}

// GiveUp removes an envelope from the outbox and marks its message failed,
// and reports false when it was no longer waiting (delivered meanwhile)
// or was a control message.
func (t *Tx) GiveUp(peer string, id [16]byte, reason string) (bool, error) {
	res, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ? AND control = 0", id[:], peer)
	if err != nil {
		return false, t.s.classify("give up", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		_, err := t.exec("DELETE FROM outbox WHERE message_id = ? AND peer_id = ?", id[:], peer)
		return false, t.s.classify("give up", err)
	}
	_, err = t.SetMessageState(peer, id, Failed, reason)
	return true, err
}

const outboxColumns = "rowid, message_id, peer_id, envelope, attempts, next_attempt, last_error, created, held, control, lasting, mailboxed"

func collectOutbox(rows *sql.Rows, err error) ([]OutboxEntry, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		var id []byte
		var next, created int64
		var mailboxed sql.NullInt64
		if err := rows.Scan(&e.Row, &id, &e.Peer, &e.Envelope, &e.Attempts, &next, &e.LastError, &created, &e.Held, &e.Control, &e.Lasting, &mailboxed); err != nil {
			return nil, err
		}
		copy(e.MessageID[:], id)
		e.NextAttempt, e.Created, e.Mailboxed = fromMillis(next), fromMillis(created), fromNull(mailboxed)
		out = append(out, e)
	}
	return out, rows.Err()
}

// DueOutbox returns up to limit entries due at now, the most overdue first.
func (r *ReadTx) DueOutbox(now time.Time, limit int) ([]OutboxEntry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: outbox: limit %d is not positive", limit)
	}
	out, err := collectOutbox(r.q.Query("SELECT "+outboxColumns+" FROM outbox WHERE next_attempt <= ? ORDER BY next_attempt LIMIT ?", millis(now), limit))
	return out, r.s.classify("outbox", err)
}

// DuePeers returns up to limit peers that have envelopes due at now.
func (r *ReadTx) DuePeers(now time.Time, limit int) ([]string, error) {
	rows, err := r.q.Query("SELECT DISTINCT peer_id FROM outbox WHERE next_attempt <= ? LIMIT ?", millis(now), limit)
	if err != nil {
		return nil, r.s.classify("outbox", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, r.s.classify("outbox", err)
		}
		out = append(out, p)
	}
	return out, r.s.classify("outbox", rows.Err())
}

// NextAttempt returns when the earliest outbox entry is due, and false
// when the outbox is empty.
func (r *ReadTx) NextAttempt() (time.Time, bool, error) {
	var next sql.NullInt64
	if err := r.q.QueryRow("SELECT MIN(next_attempt) FROM outbox").Scan(&next); err != nil {
		return time.Time{}, false, r.s.classify("outbox", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromMillis(next.Int64), true, nil
}

// OutboxFor returns a peer's waiting envelopes in the order they were
// queued, due or not: what to send when the peer connects.
func (r *ReadTx) OutboxFor(peer string) ([]OutboxEntry, error) {
	out, err := collectOutbox(r.q.Query("SELECT "+outboxColumns+" FROM outbox WHERE peer_id = ? ORDER BY created, rowid", peer))
	return out, r.s.classify("outbox", err)
}

// OutboxAfter returns up to limit of a peer's waiting envelopes queued
// after the entry at row afterRow, in the order they were queued: what a
// sender that already wrote the earlier ones sends next. Nothing passes
// the first held envelope, so that the order holds: it comes, alone at
// the end, once its next attempt is due at now (a probe), and what
// follows it waits for its release.
func (r *ReadTx) OutboxAfter(peer string, afterRow int64, limit int, now time.Time) ([]OutboxEntry, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: outbox: limit %d is not positive", limit)
	}
	// Two statements, each on an index: the first held row (the partial
	// index outbox_held), then the rows before it. One statement with
	// the first as a subquery ran it for every row: 5 times the cost of
	// the whole read in the steady-messaging benchmark.
	end := int64(math.MaxInt64)
	var first, next int64
	err := r.q.QueryRow("SELECT rowid, next_attempt FROM outbox WHERE peer_id = ? AND held = 1 ORDER BY rowid LIMIT 1", peer).Scan(&first, &next)
	switch {
	case err == nil && next <= millis(now):
		end = first + 1
	case err == nil:
		end = first
	case !errors.Is(err, sql.ErrNoRows):
		return nil, r.s.classify("outbox", err)
	}
	out, err := collectOutbox(r.q.Query("SELECT "+outboxColumns+" FROM outbox WHERE peer_id = ? AND rowid > ? AND rowid < ? ORDER BY rowid LIMIT ?",
		peer, afterRow, end, limit))
	return out, r.s.classify("outbox", err)
}

// Event is an entry of the event log.
type Event struct {
	ID      int64
	Kind    string
	Payload []byte
	Time    time.Time
}

// AppendEvent appends to the event log and returns the event's id, which is
// larger than every id before it and never reused.
func (t *Tx) AppendEvent(kind string, payload []byte, now time.Time) (int64, error) {
	if payload == nil {
		payload = []byte{}
	}
	// Exec and LastInsertId: RETURNING costs twice as much through the
	// driver's row machinery.
	res, err := t.exec("INSERT INTO events (kind, payload, time) VALUES (?, ?, ?)", kind, payload, millis(now))
	if err != nil {
		return 0, t.s.classify("append event", err)
	}
	return res.LastInsertId()
}

// Events returns up to limit events with ids above after, in order.
func (r *ReadTx) Events(after int64, limit int) ([]Event, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: events: limit %d is not positive", limit)
	}
	rows, err := r.q.Query("SELECT id, kind, payload, time FROM events WHERE id > ? ORDER BY id LIMIT ?", after, limit)
	if err != nil {
		return nil, r.s.classify("events", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at int64
		if err := rows.Scan(&e.ID, &e.Kind, &e.Payload, &at); err != nil {
			return nil, r.s.classify("events", err)
		}
		e.Time = fromMillis(at)
		out = append(out, e)
	}
	return out, r.s.classify("events", rows.Err())
}

// LastEventID returns the id of the newest event, 0 when there is none.
func (r *ReadTx) LastEventID() (int64, error) {
	var id sql.NullInt64
	err := r.q.QueryRow("SELECT max(id) FROM events").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id.Int64, r.s.classify("events", err)
}

// OutboxCount is how many envelopes wait for an acknowledgement, control
// messages included.
func (r *ReadTx) OutboxCount() (int, error) {
	var n int
	err := r.q.QueryRow("SELECT count(*) FROM outbox").Scan(&n)
	return n, r.s.classify("outbox", err)
}

// ExpireStale drops what is kept for a while only, when it is older
// than before: control messages still queued (receipts and grants for a
// peer not reachable since: its own outbox resends what they answered;
// not the user's changes, which stay queued as messages do),
// and the ids of deleted messages (Gone).
func (t *Tx) ExpireStale(before time.Time) error {
	// Changes the user made (lasting) stay, like messages: their sender
	// keeps nothing else of them.
	if _, err := t.exec("DELETE FROM outbox WHERE control = 1 AND lasting = 0 AND created < ?", millis(before)); err != nil {
		return t.s.classify("expire", err)
	}
	_, err := t.exec("DELETE FROM gone_messages WHERE deleted < ?", millis(before))
	return t.s.classify("expire", err)
}

// Gone reports whether id is an incoming message deleted with its
// contact lately (DeleteContact).
func (r *ReadTx) Gone(id [16]byte) (bool, error) {
	var gone bool
	err := r.q.QueryRow("SELECT EXISTS (SELECT 1 FROM gone_messages WHERE id = ?)", id[:]).Scan(&gone)
	return gone, r.s.classify("gone", err)
}
