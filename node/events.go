package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// EventKind names what an Event reports.
type EventKind string

const (
	// EventMessage: a message was stored, incoming or outgoing.
	EventMessage EventKind = "message"
	// EventState: an outgoing message changed state (sent, delivered,
	// failed with a reason).
	EventState EventKind = "state"
	// EventContactRequest: a stranger wrote; the contact waits for the
	// user to accept or block it.
	EventContactRequest EventKind = "contact-request"
	// EventKeyChange: a contact presented another identity key than the
	// one on record; its messages are refused until the user trusts the
	// new key.
	EventKeyChange EventKind = "key-change"
	// EventConnectivity: a contact connected or disconnected.
	EventConnectivity EventKind = "connectivity"
	// EventRequestDropped: more than the cap of contact requests were
	// pending, and the oldest was deleted with its message (Reason).
	EventRequestDropped EventKind = "request-dropped"
	// EventMailbox: one of our mailboxes (Peer) is unreachable, full, or
	// delivers junk (State says which, Reason details it); or a
	// contact's mailbox refused a deposit.
	EventMailbox EventKind = "mailbox"
	// EventEdit: a message's text was edited (by us: Direction out; by
	// the peer: in).
	EventEdit EventKind = "edit"
	// EventDelete: a message was deleted for everyone (its tombstone
	// stays), or its disappearing timer ran out (Reason "expired": it is
	// gone).
	EventDelete EventKind = "delete"
	// EventReaction: a reaction to a message was set (Emoji) or taken
	// back (no Emoji), by the peer (Reactor) or by us.
	EventReaction EventKind = "reaction"
	// EventProfile: a contact changed its display name (Reason is the
	// new one).
	EventProfile EventKind = "profile"
	// EventTimer: the conversation's disappearing timer changed (Timer;
	// zero: off), by us (Direction out) or by the peer (in).
	EventTimer EventKind = "timer"
)

// Event is an entry of the node's event log. IDs grow monotonically and
// survive restarts: a client resumes with Watch(ctx, lastSeenID).
// Which fields are set depends on the kind.
type Event struct {
	ID   int64
	Kind EventKind
	Time time.Time // when it was logged
	Peer peer.ID
	Name string // the peer's contact name, as it is now

	// EventMessage and EventState.
	MessageID MessageID
	State     MessageState // the message's state at this event
	Reason    string       // why: EventState failed or held, EventMessage queued held or waiting for a session, EventKeyChange, EventRequestDropped
	// EventMessage: the message as stored. Text is empty when the
	// message was deleted since (its contact was removed).
	Direction Direction
	Text      string
	Sent      time.Time // the sender's clock
	Stored    time.Time // when this node stored it

	// EventConnectivity: how the contact is reached now (PathOffline:
	// it went away).
	Path Path

	// EventReaction: the emoji (none: taken back) and who reacted (empty:
	// our user).
	Emoji   string
	Reactor peer.ID
	// EventTimer: the new timer.
	Timer time.Duration
}

// payload is what the events table holds of an event, as JSON.
type payload struct {
	Peer      string `json:"peer,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Direction string `json:"direction,omitempty"`
	State     string `json:"state,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Path      string `json:"path,omitempty"` // connectivity: direct, hole-punched, relayed, offline
	Emoji     string `json:"emoji,omitempty"`
	Reactor   string `json:"reactor,omitempty"`
	Timer     int64  `json:"timer,omitempty"` // seconds
}

func appendEvent(tx *db.Tx, kind EventKind, p payload, now time.Time) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = tx.AppendEvent(string(kind), b, now)
	return err
}

func msgIDString(id [16]byte) string { return hex.EncodeToString(id[:]) }

// decodeEvents turns stored events into Events, with the message and the
// contact's name that a client shows, keeping those of the kinds asked
// for (all when kinds is empty).
// It stops after MaxPageText bytes of text and returns the id of the
// last stored event it went through, to go on from.
func decodeEvents(r *db.ReadTx, evs []db.Event, kinds []EventKind) ([]Event, int64, error) {
	out := make([]Event, 0, len(evs))
	names := map[string]string{}
	var last int64
	text := 0
	for _, e := range evs {
		if len(kinds) > 0 && !slices.Contains(kinds, EventKind(e.Kind)) {
			last = e.ID
			continue
		}
		ev := Event{ID: e.ID, Kind: EventKind(e.Kind), Time: e.Time}
		var d payload
		// A payload that does not decode still yields its id, kind and
		// time: a client must be able to step over it.
		_ = json.Unmarshal(e.Payload, &d)
		ev.Peer, _ = peer.Decode(d.Peer)
		ev.MessageID, _ = ParseMessageID(d.MessageID)
		ev.Direction, ev.State, ev.Reason, ev.Path = Direction(d.Direction), MessageState(d.State), d.Reason, Path(d.Path)
		ev.Emoji, ev.Timer = d.Emoji, time.Duration(d.Timer)*time.Second
		ev.Reactor, _ = peer.Decode(d.Reactor)
		if d.Peer != "" {
			name, ok := names[d.Peer]
			if !ok {
				c, err := r.Contact(d.Peer)
				if err != nil && !errors.Is(err, db.ErrNotFound) {
					return nil, 0, err
				}
				name, names[d.Peer] = c.Name, c.Name
			}
			ev.Name = name
		}
		if ev.Kind == EventMessage && !ev.MessageID.IsZero() {
			m, err := r.Message(ev.MessageID)
			switch {
			case err == nil:
				if len(out) > 0 && text+len(m.Body) > MaxPageText {
					return out, last, nil // the next page starts with it
				}
				ev.Text, ev.Sent, ev.Stored = m.Body, m.Sent, m.Time()
				text += len(m.Body)
			case !errors.Is(err, db.ErrNotFound):
				return nil, 0, err
			}
		}
		out = append(out, ev)
		last = e.ID
	}
	return out, last, nil
}

// raise appends one event in a transaction of its own.
func (n *Node) raise(kind EventKind, p payload) {
	err := n.store.Update(func(tx *db.Tx) error { return appendEvent(tx, kind, p, time.Now()) })
	if err != nil {
		n.log.Warn("log an event", "kind", kind, "err", err)
		return
	}
	n.notifyEvents()
}

// notifyEvents wakes the watchers after a commit that appended events.
func (n *Node) notifyEvents() {
	ev := &n.events
	ev.Lock()
	close(ev.ch)
	ev.ch = make(chan struct{})
	ev.Unlock()
}

func (n *Node) eventsChanged() <-chan struct{} {
	ev := &n.events
	ev.Lock()
	defer ev.Unlock()
	return ev.ch
}

// A Watcher follows the event log: from the store first, then live as
// events are committed. Nothing is dropped and nothing is held in memory
// beyond one page: a slow reader only delays itself.
type Watcher struct {
	n     *Node
	ctx   context.Context
	after int64
	kinds []EventKind
	buf   []Event
}

// Watch follows the events with ids above after, of the given kinds (all
// when none are given).
func (n *Node) Watch(ctx context.Context, after int64, kinds ...EventKind) *Watcher {
	return &Watcher{n: n, ctx: ctx, after: after, kinds: kinds}
}

// Next returns the next event, waiting for one. It returns ctx's error
// when ctx ends, ErrClosed when the node closes, or the store's error.
func (w *Watcher) Next() (Event, error) {
	for len(w.buf) == 0 {
		changed := w.n.eventsChanged()
		if err := w.ctx.Err(); err != nil {
			return Event{}, err
		}
		if w.n.ctx.Err() != nil {
			return Event{}, ErrClosed
		}
		read := 0
		err := w.n.store.View(func(r *db.ReadTx) error {
			evs, err := r.Events(w.after, eventPage)
			if err != nil {
				return err
			}
			read = len(evs)
			if read == 0 {
				return nil
			}
			w.buf, w.after, err = decodeEvents(r, evs, w.kinds)
			return err
		})
		if err != nil {
			if w.n.ctx.Err() != nil {
				return Event{}, ErrClosed
			}
			return Event{}, err
		}
		if read > 0 {
			continue
		}
		select {
		case <-changed:
		case <-w.ctx.Done():
		case <-w.n.ctx.Done():
		}
	}
	ev := w.buf[0]
	w.buf = w.buf[1:]
	return ev, nil
}

// Events returns up to limit events with ids above after, of the given
// kinds (all when none are given), oldest first, and the id to go on
// from. Fewer than limit does not mean the end (kinds filter, and a page
// holds at most MaxPageText bytes of text); last == after does.
func (n *Node) Events(after int64, limit int, kinds ...EventKind) (evs []Event, last int64, err error) {
	if limit <= 0 || limit > MaxPage {
		return nil, after, fmt.Errorf("%w: a page holds 1 to %d events, not %d", ErrInvalid, MaxPage, limit)
	}
	last = after
	err = n.store.View(func(r *db.ReadTx) error {
		stored, err := r.Events(after, limit)
		if err != nil || len(stored) == 0 {
			return err
		}
		evs, last, err = decodeEvents(r, stored, kinds)
		return err
	})
	return evs, last, err
}

// LastEventID is the id of the newest event (0 when there is none): a
// client that wants only what comes next watches from it.
func (n *Node) LastEventID() (int64, error) {
	var id int64
	err := n.store.View(func(r *db.ReadTx) (err error) {
		id, err = r.LastEventID()
		return err
	})
	return id, err
}
