package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// sendOp encrypts one message inside a batch (Send, send.go, submits it).
type sendOp struct {
	done
	text    string
	replyTo e2e.MessageID // zero: none
	// bundle, fetched by Send when the peer had no session, starts one if
	// there is still none when the op runs; ignored otherwise.
	bundle *e2e.Bundle
	// waiting: no bundle could be found (it says why): with no session,
	// the message is queued unencrypted, to be encrypted once a bundle is
	// found (outbox.go, encryptWaiting).
	waiting string

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
	if o.replyTo != (e2e.MessageID{}) {
		if q, err := tx.Read().Message(o.replyTo); errors.Is(err, db.ErrNotFound) || err == nil && q.Peer != c.key {
			o.err = fmt.Errorf("%w: no message %x in the conversation with %s to reply to", ErrNotFound, o.replyTo, c.key)
			return nil
		} else if err != nil {
			return err
		}
	}
	s := c.rec.current()
	if s == nil && o.bundle == nil && o.waiting != "" {
		return c.queueWaiting(tx, o, st, now)
	}
	started := false
	if s == nil {
		var err error
		if s, o.err, err = c.startSession(tx, st, o.bundle, now); s == nil {
			return err
		}
		started = true
	}
	m := db.Message{Peer: c.key, Direction: db.Outgoing, Body: o.text, State: db.Queued, Sent: now, ReplyTo: o.replyTo, Timer: c.timer(st)}
	pt, profile, err := c.plaintext(tx, st, m, started)
	if err != nil {
		return err
	}
	id, env, err := s.Encrypt(pt)
	if err != nil {
		o.err = fmt.Errorf("node: encrypt: %w", err)
		return nil
	}
	st.dirty = true
	if err := c.accept(tx, st, now); err != nil {
		return err
	}
	if err := c.profileSent(tx, st, profile); err != nil {
		return err
	}
	m.ID = id
	e := db.OutboxEntry{MessageID: id, Peer: c.key, Envelope: env, NextAttempt: now, Created: now}
	if !st.heldKnown {
		// Behind a message the peer refused until it accepts us, a new
		// one waits held too (it would be refused the same way).
		if st.held, err = tx.Read().HasHeld(c.key); err != nil {
			return err
		}
		st.heldKnown = true
	}
	if st.held {
		m.Error = wire.ReasonNotAccepted.String()
		e.Held, e.LastError, e.NextAttempt = true, m.Error, now.Add(c.n.cfg.holdRetry())
	}
	if _, err := tx.InsertMessage(m); err != nil {
		return err
	}
	if err := tx.Enqueue(e); err != nil {
		return err
	}
	o.id = id
	st.kick = st.kick || !st.held
	return st.event(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "out", State: string(db.Queued), Reason: m.Error}, now)
}

// startSession starts a session from the peer's bundle, as initiator.
// With no session, opErr says why (errNeedBundle without a bundle), or
// err is the store's, which ends the batch.
func (c *conv) startSession(tx *db.Tx, st *batchState, b *e2e.Bundle, now time.Time) (s *e2e.Session, opErr, err error) {
	if b == nil {
		return nil, errNeedBundle, nil
	}
	ik := identityKey(b.Identity, b.IdentityDH)
	if changed, err := c.identityChanged(tx, st, ik, now); err != nil || changed {
		return nil, fmt.Errorf("%w: %s", ErrIdentityChanged, c.key), err
	}
	if s, err = e2e.Initiate(c.n.self, b); err != nil {
		return nil, fmt.Errorf("node: start a session with %s: %w", c.key, err), nil
	}
	// We write first: no contact-request event.
	if err := c.recordIdentity(tx, st, ik, false, now); err != nil {
		return nil, nil, err
	}
	c.rec.push(s)
	st.grant = true
	return s, nil, nil
}

// queueWaiting stores a message that no session can encrypt yet: the
// message (queued, with why), and an outbox entry without an envelope,
// due after the first backoff step; the delivery worker looks for a
// bundle again then (outbox.go, encryptWaiting).
func (c *conv) queueWaiting(tx *db.Tx, o *sendOp, st *batchState, now time.Time) error {
	if err := c.accept(tx, st, now); err != nil {
		return err
	}
	var id e2e.MessageID
	rand.Read(id[:])
	m := db.Message{ID: id, Peer: c.key, Direction: db.Outgoing, Body: o.text, State: db.Queued, Error: o.waiting, Sent: now,
		ReplyTo: o.replyTo, Timer: c.timer(st)}
	if _, err := tx.InsertMessage(m); err != nil {
		return err
	}
	if err := tx.Enqueue(db.OutboxEntry{MessageID: id, Peer: c.key, Envelope: []byte{}, Attempts: 1,
		NextAttempt: now.Add(c.n.cfg.retryMin()), LastError: o.waiting, Created: now}); err != nil {
		return err
	}
	o.id = id
	return st.event(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "out", State: string(db.Queued), Reason: o.waiting}, now)
}

// encryptOp encrypts the messages that wait for a session, in the order
// they were queued, under the current session or one started from
// bundle.
type encryptOp struct {
	done
	bundle *e2e.Bundle
	err    error
}

func (o *encryptOp) fail(err error) { o.err = err }

func (o *encryptOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	if st.contact != nil && st.contact.Blocked {
		o.err = fmt.Errorf("%w: %s", ErrBlocked, c.key)
		return nil
	}
	r := tx.Read()
	entries, err := r.OutboxFor(c.key)
	if err != nil {
		return err
	}
	// Nothing waits (the contact was removed meanwhile, or another op
	// did it): start no session, which would make a contact again.
	if !slices.ContainsFunc(entries, awaitsSession) {
		return nil
	}
	s := c.rec.current()
	started := false
	if s == nil {
		if s, o.err, err = c.startSession(tx, st, o.bundle, now); s == nil {
			return err
		}
		started = true
	}
	for _, e := range entries {
		if len(e.Envelope) > 0 {
			continue
		}
		m, err := r.Message(e.MessageID)
		if err != nil {
			return err
		}
		// The sender's clock as it was when the user wrote it; the first
		// under a new session carries our display name.
		pt, profile, err := c.plaintext(tx, st, m, started)
		if err != nil {
			return err
		}
		started = false
		env, err := encryptAs(s, e.MessageID, pt)
		if err != nil {
			o.err = fmt.Errorf("node: encrypt: %w", err)
			return nil
		}
		if err := c.profileSent(tx, st, profile); err != nil {
			return err
		}
		st.dirty = true
		if err := tx.SetEnvelope(c.key, e.MessageID, env); err != nil {
			return err
		}
	}
	return nil
}

// encryptAs is Encrypt under an id drawn before: the message was stored
// (and shown) before it could be encrypted.
func encryptAs(s *e2e.Session, id e2e.MessageID, plaintext []byte) ([]byte, error) {
	r := e2e.EncryptRandom{ID: id}
	rand.Read(r.HeaderNonce[:])
	rand.Read(r.BodyNonce[:])
	rand.Read(r.RatchetKey[:])
	defer clear(r.RatchetKey[:])
	_, env, err := s.EncryptWith(plaintext, &r)
	return env, err
}
