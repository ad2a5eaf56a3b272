package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// sendOp encrypts one message inside a batch (Send, send.go, submits it).
type sendOp struct {
	done
	text string
	// bundle, fetched by Send when the peer had no session, starts one if
	// there is still none when the op runs; ignored otherwise.
	bundle *e2e.Bundle

	// Results.
	id  e2e.MessageID
	err error
}

func newSendOp(text string, b *e2e.Bundle) *sendOp {
	return &sendOp{done: newDone(), text: text, bundle: b}
}

func (o *sendOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	return c.send(tx, o, st, now)
}

func (o *sendOp) fail(err error) { o.err = err }

// errNeedBundle: a sendOp without a bundle found no session. Send fetches
// the bundle and submits again (the rare path: see Send).
var errNeedBundle = errors.New("node: no session with the peer yet")

// send encrypts one message and queues its envelope: the message
// (queued), its outbox row with the exact envelope bytes, and an event.
// Errors returned are the store's; the op's own failure goes in o.err.
func (c *conv) send(tx *db.Tx, o *sendOp, st *batchState, now time.Time) error {
	if st.contact != nil && st.contact.Blocked {
		o.err = fmt.Errorf("%w: %s", ErrBlocked, c.key)
		return nil
	}
	s := c.rec.current()
	if s == nil {
		if o.bundle == nil {
			o.err = errNeedBundle
			return nil
		}
		ik := identityKey(o.bundle.Identity, o.bundle.IdentityDH)
		if changed, err := c.identityChanged(tx, st, ik, now); err != nil || changed {
			if changed {
				o.err = fmt.Errorf("%w: %s", ErrIdentityChanged, c.key)
			}
			return err
		}
		var err error
		if s, err = e2e.Initiate(c.n.self, o.bundle); err != nil {
			o.err = fmt.Errorf("node: start a session with %s: %w", c.key, err)
			return nil
		}
		// We write first: no contact-request event.
		if err := c.recordIdentity(tx, st, ik, false, now); err != nil {
			return err
		}
		c.rec.push(s)
	}
	id, env, err := s.Encrypt(wire.EncodeContent(now.UnixMilli(), o.text))
	if err != nil {
		o.err = fmt.Errorf("node: encrypt: %w", err)
		return nil
	}
	st.dirty = true
	if err := c.accept(tx, st, now); err != nil {
		return err
	}
	m := db.Message{ID: id, Peer: c.key, Direction: db.Outgoing, Body: o.text, State: db.Queued, Sent: now}
	if _, err := tx.InsertMessage(m); err != nil {
		return err
	}
	if err := tx.Enqueue(db.OutboxEntry{MessageID: id, Peer: c.key, Envelope: env, NextAttempt: now, Created: now}); err != nil {
		return err
	}
	o.id = id
	st.kick = true
	return st.event(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "out", State: string(db.Queued)}, now)
}
