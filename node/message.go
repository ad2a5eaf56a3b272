package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// MessageID names a message: random, 128 bits, the same on both sides.
type MessageID [16]byte

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero id, which no message has.
func (id MessageID) IsZero() bool { return id == MessageID{} }

func (id MessageID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

func (id *MessageID) UnmarshalText(b []byte) error {
	p, err := ParseMessageID(string(b))
	*id = p
	return err
}

// ParseMessageID reads the 32 hex digits that MessageID.String writes.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("node: message id %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("node: message id %q: want 32 hex digits", s)
	}
	return id, nil
}

// Direction says who wrote a message.
type Direction string

const (
	Incoming Direction = "in"
	Outgoing Direction = "out"
)

// MessageState is where a message is. Outgoing: queued (stored, not yet
// on the wire), sent (written, not yet acknowledged), mailboxed (stored
// at one of the recipient's mailboxes, waiting for its receipt),
// delivered (the recipient stored it) or failed (with a reason).
// Incoming: received or read.
type MessageState string

const (
	Queued    MessageState = "queued"
	Sent      MessageState = "sent"
	Mailboxed MessageState = "mailboxed"
	Delivered MessageState = "delivered"
	Failed    MessageState = "failed"
	Received  MessageState = "received"
	Read      MessageState = "read"
)

// Message is one message of a conversation.
type Message struct {
	ID        MessageID
	Peer      peer.ID
	Direction Direction
	Text      string
	State     MessageState
	Error     string    // why it failed, or why it still waits (queued)
	Sent      time.Time // the sender's clock (a peer's clock may be wrong)
	Stored    time.Time // when this node stored it: its place in the conversation
	Edited    time.Time // the sender's clock at its latest edit; zero: never edited
	Deleted   bool      // deleted for everyone: a tombstone, with no text
	ReplyTo   MessageID // the message it quotes; zero: none
	// Timer: its disappearing timer (zero: none), counting down to
	// Expires once it started (ours: on delivery; theirs: once read).
	Timer     time.Duration
	Expires   time.Time
	Reactions []Reaction // oldest first

	cursor db.Cursor
}

// Cursor is the message's position, to page on from.
func (m Message) Cursor() Cursor { return Cursor{m.cursor} }

// Seq orders messages stored at the same millisecond: the conversation
// is in (Stored, Seq) order.
func (m Message) Seq() int64 { return m.cursor.Seq }

// Cursor is a position in a conversation; the zero Cursor is either end.
type Cursor struct{ c db.Cursor }

// Page selects part of a conversation: up to Limit messages before
// Before, or after After (not both); with neither, the latest, or with
// Oldest the first ones. Pages come oldest first, and hold at most
// MaxPageText bytes of text (at least one message): a short page is not
// the end, an empty one is.
type Page struct {
	Before, After Cursor
	Oldest        bool
	Limit         int
}

// Reaction is one person's reaction to a message.
type Reaction struct {
	Reactor peer.ID // empty: our user
	Emoji   string
	Time    time.Time
}

func messageOf(m db.Message, rs []db.Reaction) (Message, error) {
	p, err := peer.Decode(m.Peer)
	if err != nil {
		return Message{}, fmt.Errorf("node: stored message %x names no peer: %w", m.ID, err)
	}
	msg := Message{ID: MessageID(m.ID), Peer: p, Direction: Direction(m.Direction), Text: m.Body,
		State: MessageState(m.State), Error: m.Error, Sent: m.Sent, Stored: m.Time(), cursor: db.CursorOf(m),
		Edited: m.Edited, Deleted: !m.Deleted.IsZero(), ReplyTo: MessageID(m.ReplyTo), Timer: m.Timer, Expires: m.Expires}
	for _, r := range rs {
		x := Reaction{Emoji: r.Emoji, Time: r.Time}
		if r.Reactor != "" {
			if x.Reactor, err = peer.Decode(r.Reactor); err != nil {
				continue
			}
		}
		msg.Reactions = append(msg.Reactions, x)
	}
	return msg, nil
}

// withReactions reads the reactions to ms and makes Messages of them.
func withReactions(r *db.ReadTx, ms []db.Message) ([]Message, error) {
	ids := make([][16]byte, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	rs, err := r.Reactions(ids)
	if err != nil {
		return nil, err
	}
	out := make([]Message, 0, len(ms))
	for _, m := range ms {
		msg, err := messageOf(m, rs[m.ID])
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, nil
}

// History returns a page of the conversation with p, oldest first.
func (n *Node) History(p peer.ID, pg Page) ([]Message, error) {
	switch {
	case pg.Limit <= 0 || pg.Limit > MaxPage:
		return nil, fmt.Errorf("%w: a page holds 1 to %d messages, not %d", ErrInvalid, MaxPage, pg.Limit)
	case pg.Before != (Cursor{}) && (pg.After != (Cursor{}) || pg.Oldest):
		return nil, fmt.Errorf("%w: page before or after a message, not both", ErrInvalid)
	}
	var out []Message
	err := n.store.View(func(r *db.ReadTx) error {
		var ms []db.Message
		var err error
		if pg.After != (Cursor{}) || pg.Oldest {
			ms, err = r.HistoryAfter(p.String(), pg.After.c, pg.Limit)
		} else {
			ms, err = r.History(p.String(), pg.Before.c, pg.Limit)
		}
		if err != nil {
			return err
		}
		out, err = withReactions(r, trimPage(ms, pg.After != (Cursor{}) || pg.Oldest))
		return err
	})
	return out, err
}

// trimPage keeps at most MaxPageText of text: the messages nearest the
// cursor (the oldest when paging forward, else the newest), so that the
// next page, from the page's first or last message, leaves no gap.
func trimPage(ms []db.Message, forward bool) []db.Message {
	text := 0
	for i := range ms {
		j := i
		if !forward {
			j = len(ms) - 1 - i
		}
		if i > 0 && text+len(ms[j].Body) > MaxPageText {
			if forward {
				return ms[:j]
			}
			return ms[j+1:]
		}
		text += len(ms[j].Body)
	}
	return ms
}

// Message returns one message by id; ErrNotFound when there is none.
func (n *Node) Message(id MessageID) (Message, error) {
	var out []Message
	err := n.store.View(func(r *db.ReadTx) error {
		m, err := r.Message(id)
		if err != nil {
			return err
		}
		out, err = withReactions(r, []db.Message{m})
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return Message{}, fmt.Errorf("%w: no message %s", ErrNotFound, id)
	}
	if err != nil {
		return Message{}, err
	}
	return out[0], nil
}
