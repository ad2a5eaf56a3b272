package db

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Direction of a message.
type Direction string

const (
	Incoming Direction = "in"
	Outgoing Direction = "out"
)

// MessageState is where a message is: outgoing queued, sent (on the wire,
// not yet acknowledged), delivered or failed; incoming received or read.
type MessageState string

const (
	Queued    MessageState = "queued"
	Sent      MessageState = "sent"
	Delivered MessageState = "delivered"
	Failed    MessageState = "failed"
	Received  MessageState = "received"
	Read      MessageState = "read"
	// Mailboxed: outgoing, stored at one of the recipient's mailboxes,
	// not yet receipted. Never stored as a state: Tx.Mailboxed records
	// it, and reads show it in place of queued or sent.
	Mailboxed MessageState = "mailboxed"
)

// Message is one message of a conversation with a peer.
type Message struct {
	Seq       int64 // the store's order of insertion
	ID        [16]byte
	Peer      string
	Direction Direction
	Body      string
	State     MessageState
	Error     string    // why it failed
	Sent      time.Time // the sender's clock
	Received  time.Time // incoming: when it was stored
	Edited    time.Time // the sender's clock at its latest edit; zero: never edited
	Deleted   time.Time // when it was deleted for everyone (Body is empty); zero: not
	ReplyTo   [16]byte  // the message it quotes; zero: none
	// Timer: its disappearing timer; it runs from Expires minus Timer
	// (delivery for ours, reading for theirs) to Expires.
	Timer   time.Duration
	Expires time.Time
}

// Time is the message's place in its conversation: when it was sent, for
// ours, and when it was received, for theirs (a peer's clock may be wrong).
func (m *Message) Time() time.Time {
	if m.Direction == Incoming {
		return m.Received
	}
	return m.Sent
}

// ErrConflict: a message id that is already stored for another peer.
var ErrConflict = errors.New("db: message id already used by another peer")

// InsertMessage stores a message unless its peer already sent (or was
// sent) one with its id, and reports whether it did: a retransmission
// never makes a second row. An id stored for another peer is
// ErrConflict, never a silent duplicate. The peer must be a contact.
func (t *Tx) InsertMessage(m Message) (inserted bool, err error) {
	body, sealed := m.Body, []byte(nil)
	if sl := t.s.sealer.Load(); sl != nil {
		body, sealed = "", sl.values.seal(messageAD(m.ID[:]), []byte(m.Body))
	}
	var reply []byte
	if m.ReplyTo != ([16]byte{}) {
		reply = m.ReplyTo[:]
	}
	res, err := t.exec(`INSERT INTO messages (id, peer_id, direction, body, body_sealed, state, error, sent, received, time, reply_to, timer)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		m.ID[:], m.Peer, string(m.Direction), body, sealed, string(m.State), m.Error, millis(m.Sent), nullTime(m.Received), millis(m.Time()),
		reply, seconds(m.Timer))
	if err != nil {
		return false, t.s.classify("insert message", err)
	}
	if n, err := res.RowsAffected(); n == 1 || err != nil {
		t.newMessages = t.newMessages || n == 1
		return n == 1, err
	}
	var owner string
	if err := t.queryRow("SELECT peer_id FROM messages WHERE id = ?", m.ID[:]).Scan(&owner); err != nil {
		return false, t.s.classify("insert message", err)
	}
	if owner != m.Peer {
		return false, fmt.Errorf("message %x from %s: %w", m.ID, m.Peer, ErrConflict)
	}
	return false, nil
}

// previousStates lists, for each state, the states a message may reach it
// from: states only move forward (an acknowledgement that overtakes the
// "sent" update must not be undone by it). A failed message may be queued
// again.
var previousStates = map[MessageState]string{
	Queued:    "'failed'",
	Sent:      "'queued'",
	Delivered: "'queued', 'sent'",
	Failed:    "'queued', 'sent'",
	Read:      "'received'",
}

// SetMessageState moves one of peer's messages to state (with a failure
// reason), if its current state allows, and reports whether it moved.
// Unknown messages are ErrNotFound.
func (t *Tx) SetMessageState(peer string, id [16]byte, state MessageState, reason string) (bool, error) {
	from, ok := previousStates[state]
	if !ok {
		return false, fmt.Errorf("db: no message moves to state %q", state)
	}
	res, err := t.exec("UPDATE messages SET state = ?, error = ? WHERE id = ? AND peer_id = ? AND state IN ("+from+")",
		string(state), reason, id[:], peer)
	if err != nil {
		return false, t.s.classify("set message state", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return true, nil
	}
	var one int
	if err := t.queryRow("SELECT 1 FROM messages WHERE id = ? AND peer_id = ?", id[:], peer).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("message %x of %s: %w", id, peer, ErrNotFound)
	} else if err != nil {
		return false, t.s.classify("set message state", err)
	}
	return false, nil
}

// MarkRead marks the received messages of a conversation read, up to and
// including the message at the cursor, and returns how many changed.
func (t *Tx) MarkRead(peer string, upTo Cursor) (int64, error) {
	res, err := t.exec("UPDATE messages SET state = 'read' WHERE peer_id = ? AND state = 'received' AND (time, seq) <= (?, ?)",
		peer, millis(upTo.Time), upTo.Seq)
	if err != nil {
		return 0, t.s.classify("mark read", err)
	}
	return res.RowsAffected()
}

const messageColumns = "seq, id, peer_id, direction, body, state, error, sent, received, mailboxed, edited, deleted, reply_to, timer, expires, body_sealed"

// scanMessage reads a row of messageColumns, opening a sealed body.
func (s *Store) scanMessage(sc interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var id, reply, sealed []byte
	var dir, state string
	var sent, timer int64
	var received, mailboxed, edited, deleted, expires sql.NullInt64
	if err := sc.Scan(&m.Seq, &id, &m.Peer, &dir, &m.Body, &state, &m.Error, &sent, &received, &mailboxed,
		&edited, &deleted, &reply, &timer, &expires, &sealed); err != nil {
		return m, err
	}
	copy(m.ID[:], id)
	copy(m.ReplyTo[:], reply)
	m.Direction, m.State, m.Sent, m.Received = Direction(dir), MessageState(state), fromMillis(sent), fromNull(received)
	m.Edited, m.Deleted, m.Timer, m.Expires = fromNull(edited), fromNull(deleted), time.Duration(timer)*time.Second, fromNull(expires)
	if mailboxed.Valid && (m.State == Queued || m.State == Sent) {
		m.State = Mailboxed
	}
	if sealed != nil {
		sl := s.sealer.Load()
		if sl == nil {
			return m, fmt.Errorf("%w: %s: message %x has a sealed body in an unsealed store", ErrCorrupt, s.path, m.ID)
		}
		b, err := sl.values.open(messageAD(id), sealed)
		if err != nil {
			return m, fmt.Errorf("message %x: %w", m.ID, err)
		}
		m.Body = string(b)
		clear(b)
	}
	return m, nil
}

// Message returns one message by id, or ErrNotFound.
func (r *ReadTx) Message(id [16]byte) (Message, error) {
	m, err := r.s.scanMessage(r.q.QueryRow("SELECT "+messageColumns+" FROM messages WHERE id = ?", id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("message %x: %w", id, ErrNotFound)
	}
	return m, r.s.classify("message", err)
}

// Cursor is a position in a conversation; the zero Cursor is its end.
type Cursor struct {
	Time time.Time
	Seq  int64
}

// CursorOf returns the position of m, to page on from.
func CursorOf(m Message) Cursor { return Cursor{Time: m.Time(), Seq: m.Seq} }

// History returns up to limit messages of the conversation with peer that
// come before the cursor, oldest first. Page back in time with the cursor
// of the first message returned.
func (r *ReadTx) History(peer string, before Cursor, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: history: limit %d is not positive", limit)
	}
	var rows *sql.Rows
	var err error
	if before == (Cursor{}) {
		rows, err = r.q.Query("SELECT "+messageColumns+" FROM messages WHERE peer_id = ? ORDER BY time DESC, seq DESC LIMIT ?", peer, limit)
	} else {
		// A row value, so that SQLite walks the (peer_id, time, seq) index
		// from the cursor instead of filtering.
		rows, err = r.q.Query("SELECT "+messageColumns+` FROM messages WHERE peer_id = ? AND (time, seq) < (?, ?)
			ORDER BY time DESC, seq DESC LIMIT ?`, peer, millis(before.Time), before.Seq, limit)
	}
	if err != nil {
		return nil, r.s.classify("history", err)
	}
	out, err := r.s.collectMessages(rows)
	if err != nil {
		return nil, r.s.classify("history", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// HistoryAfter returns up to limit messages of the conversation with peer
// that come after the cursor, oldest first. Page forward with the cursor
// of the last message returned.
func (r *ReadTx) HistoryAfter(peer string, after Cursor, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: history: limit %d is not positive", limit)
	}
	rows, err := r.q.Query("SELECT "+messageColumns+` FROM messages WHERE peer_id = ? AND (time, seq) > (?, ?)
		ORDER BY time, seq LIMIT ?`, peer, millis(after.Time), after.Seq, limit)
	if err != nil {
		return nil, r.s.classify("history", err)
	}
	out, err := r.s.collectMessages(rows)
	return out, r.s.classify("history", err)
}

func (s *Store) collectMessages(rows *sql.Rows) ([]Message, error) {
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := s.scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// UnreadCounts returns the number of received, unread messages per peer
// that has any.
func (r *ReadTx) UnreadCounts() (map[string]int, error) {
	rows, err := r.q.Query("SELECT peer_id, count(*) FROM messages WHERE state = 'received' GROUP BY peer_id")
	if err != nil {
		return nil, r.s.classify("unread", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var peer string
		var n int
		if err := rows.Scan(&peer, &n); err != nil {
			return nil, r.s.classify("unread", err)
		}
		out[peer] = n
	}
	return out, r.s.classify("unread", rows.Err())
}

// Search returns up to limit messages, the most recently stored first,
// whose bodies contain every word of text (case-insensitive, diacritics
// ignored, whole words; a word ending in * matches as a prefix; a word
// that the tokenizer splits, as "don't", must match as a phrase).
// Messages are indexed in the transaction that inserts them, at its end
// (migration 0002): a search inside that transaction, through Tx.Read,
// does not see them yet.
//
// An unsealed store searches with SQLite's FTS4. A sealed one looks the
// whole words up in its keyed word index, which holds the first 256
// distinct words of each message, and checks each candidate's text; a
// query of prefixes alone (tomor*) has nothing to look up and reads the
// messages, newest first, until it has found limit of them.
func (r *ReadTx) Search(text string, limit int) ([]Message, error) {
	return r.SearchIn("", text, limit)
}

// SearchIn is Search in the conversation with peer; "" searches them
// all.
func (r *ReadTx) SearchIn(peer, text string, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("db: search: limit %d is not positive", limit)
	}
	if sl := r.s.sealer.Load(); sl != nil {
		return r.searchSealed(sl, peer, text, limit)
	}
	q := ftsQuery(text)
	if q == "" {
		return nil, nil
	}
	rows, err := r.q.Query("SELECT "+searchColumns+` FROM messages_fts JOIN messages m ON m.seq = messages_fts.docid
		WHERE messages_fts MATCH ? AND (? = '' OR m.peer_id = ?) ORDER BY messages_fts.docid DESC LIMIT ?`, q, peer, peer, limit)
	if err != nil {
		return nil, r.s.classify("search", err)
	}
	out, err := r.s.collectMessages(rows)
	return out, r.s.classify("search", err)
}

// ftsQuery makes a query of plain words, each a quoted phrase, so that no
// user input is read as FTS syntax (operators are plain words inside
// quotes).
func ftsQuery(text string) string {
	words := queryWords(text)
	for i, w := range words {
		words[i] = `"` + w + `"`
	}
	return strings.Join(words, " ")
}

var queryBreaks = strings.NewReplacer(`"`, " ", "^", " ")

// queryWords splits a search into its words, for FTS4 and the word index
// alike. FTS4 has no escape for a quote inside a phrase; the tokenizer
// drops punctuation anyway, so quotes become spaces, and a "word" of
// punctuation alone (which would match nothing) is left out. A word
// ending in * keeps one. A ^ is a space too: before a token inside a
// phrase FTS4 reads it as "the first word of the text", which the word
// index has no notion of (found by FuzzSearchMatchesFTS4).
func queryWords(text string) []string {
	var words []string
	for _, w := range strings.Fields(queryBreaks.Replace(text)) {
		prefix := strings.HasSuffix(w, "*")
		if w = strings.TrimRight(w, "*"); !strings.ContainsFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			continue
		}
		if prefix {
			w += "*"
		}
		words = append(words, w)
	}
	return words
}

var searchColumns = prefixed("m.", messageColumns)

func prefixed(p, columns string) string {
	cols := strings.Split(columns, ", ")
	for i := range cols {
		cols[i] = p + cols[i]
	}
	return strings.Join(cols, ", ")
}
