package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"time"

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
)

// Event is an entry of the node's event log. IDs grow monotonically and
// survive restarts: a client resumes with Subscribe(ctx, lastSeenID).
type Event struct {
	ID   int64     `json:"id"`
	Kind EventKind `json:"kind"`
	Time time.Time `json:"time"`
	EventData
}

// EventData is what an event says beyond its id, kind and time; the
// events table holds it as JSON.
type EventData struct {
	Peer      string `json:"peer,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Direction string `json:"direction,omitempty"`
	State     string `json:"state,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Connected *bool  `json:"connected,omitempty"`
	Path      string `json:"path,omitempty"` // connectivity: direct, hole-punched, relayed, offline
}

// payload is the name the writers inside node use.
type payload = EventData

func appendEvent(tx *db.Tx, kind EventKind, p payload, now time.Time) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = tx.AppendEvent(string(kind), b, now)
	return err
}

func msgIDString(id [16]byte) string { return hex.EncodeToString(id[:]) }

func decodeEvent(e db.Event) Event {
	ev := Event{ID: e.ID, Kind: EventKind(e.Kind), Time: e.Time}
	// A payload that does not decode still yields its id, kind and time:
	// a client must be able to step over it.
	_ = json.Unmarshal(e.Payload, &ev.EventData)
	return ev
}

// notifyEvents wakes the subscribers after a commit that appended events.
func (n *Node) notifyEvents() {
	n.evMu.Lock()
	close(n.evCh)
	n.evCh = make(chan struct{})
	n.evMu.Unlock()
}

func (n *Node) eventsChanged() <-chan struct{} {
	n.evMu.Lock()
	defer n.evMu.Unlock()
	return n.evCh
}

// Subscribe streams the events with ids above after, from the store, then
// live as they are committed, until ctx ends or the node closes; then the
// channel is closed. Nothing is dropped: a slow reader only delays its own
// stream, which reads on from the store.
func (n *Node) Subscribe(ctx context.Context, after int64) <-chan Event {
	ch := make(chan Event, 64)
	ok := n.spawn(func() {
		defer close(ch)
		for {
			changed := n.eventsChanged()
			var evs []db.Event
			err := n.store.View(func(r *db.ReadTx) (err error) {
				evs, err = r.Events(after, 256)
				return err
			})
			if err != nil {
				n.log.Warn("event stream ends", "err", err)
				return
			}
			for _, e := range evs {
				select {
				case ch <- decodeEvent(e):
					after = e.ID
				case <-ctx.Done():
					return
				case <-n.ctx.Done():
					return
				}
			}
			if len(evs) > 0 {
				continue
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-n.ctx.Done():
				return
			}
		}
	})
	if !ok {
		close(ch)
	}
	return ch
}

// Events returns up to limit events with ids above after, oldest first.
func (n *Node) Events(after int64, limit int) ([]Event, error) {
	var evs []db.Event
	err := n.store.View(func(r *db.ReadTx) (err error) {
		evs, err = r.Events(after, limit)
		return err
	})
	out := make([]Event, 0, len(evs))
	for _, e := range evs {
		out = append(out, decodeEvent(e))
	}
	return out, err
}
