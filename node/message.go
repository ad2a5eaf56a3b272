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

	cursor db.Cursor
}

// Cursor is the message's position, to page on from.
func (m Message) Cursor() Cursor { return Cursor{m.cursor} }

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

func messageOf(m db.Message) (Message, error) {
	p, err := peer.Decode(m.Peer)
	if err != nil {
		return Message{}, fmt.Errorf("node: stored message %x names no peer: %w", m.ID, err)
	}
	return Message{ID: MessageID(m.ID), Peer: p, Direction: Direction(m.Direction), Text: m.Body,
		State: MessageState(m.State), Error: m.Error, Sent: m.Sent, Stored: m.Time(), cursor: db.CursorOf(m)}, nil
}

func messagesOf(ms []db.Message) ([]Message, error) {
	out := make([]Message, 0, len(ms))
	for _, m := range ms {
		msg, err := messageOf(m)
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
	var ms []db.Message
	err := n.store.View(func(r *db.ReadTx) (err error) {
		if pg.After != (Cursor{}) || pg.Oldest {
			ms, err = r.HistoryAfter(p.String(), pg.After.c, pg.Limit)
		} else {
			ms, err = r.History(p.String(), pg.Before.c, pg.Limit)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// At most MaxPageText of text: keep the messages nearest the cursor
	// (the oldest when paging forward, else the newest), so that the next
	// page, from the page's first or last message, leaves no gap.
	forward := pg.After != (Cursor{}) || pg.Oldest
	text := 0
	for i := range ms {
		j := i
		if !forward {
			j = len(ms) - 1 - i
		}
		if i > 0 && text+len(ms[j].Body) > MaxPageText {
			if forward {
				ms = ms[:j]
			} else {
				ms = ms[j+1:]
			}
			break
		}
		text += len(ms[j].Body)
	}
	return messagesOf(ms)
}

// Message returns one message by id; ErrNotFound when there is none.
func (n *Node) Message(id MessageID) (Message, error) {
	var m db.Message
	err := n.store.View(func(r *db.ReadTx) (err error) {
		m, err = r.Message(id)
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return Message{}, fmt.Errorf("%w: no message %s", ErrNotFound, id)
	}
	if err != nil {
		return Message{}, err
	}
	return messageOf(m)
}

// MarkRead marks the conversation with p read up to and including m.
func (n *Node) MarkRead(p peer.ID, m Message) error {
	return n.store.Update(func(tx *db.Tx) error {
		_, err := tx.MarkRead(p.String(), m.cursor)
		return err
	})
}
