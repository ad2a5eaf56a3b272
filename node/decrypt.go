package node

import (
	"crypto/subtle"
	"errors"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// recvOp decrypts and stores one envelope of a stream inside a batch
// (inbound.go submits it, and acknowledges it once it is done).
type recvOp struct {
	done
	env []byte
	// viaMailbox: it came from one of our mailboxes; a message stored
	// from it is receipted in the same batch (control.go).
	viaMailbox bool

	// Results: the ack to write.
	id     e2e.MessageID
	status wire.Status
	code   wire.Reason // wire.Rejected: why, for the sender
	reason string      // wire.Rejected: details, for our log
}

func newRecvOp(env []byte) *recvOp { return &recvOp{done: newDone(), env: env} }

func (o *recvOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	return c.receive(tx, o, st, now)
}

// fail: the sender may send it again later.
func (o *recvOp) fail(error) { o.status = wire.Retry }

func (o *recvOp) reject(code wire.Reason, why string) {
	o.status, o.code, o.reason = wire.Rejected, code, why
}

// receive decrypts and stores one incoming envelope: the message
// (received) and its event, with the session record the batch writes.
func (c *conv) receive(tx *db.Tx, o *recvOp, st *batchState, now time.Time) error {
	id, err := e2e.EnvelopeID(o.env)
	if err != nil {
		o.reject(wire.ReasonMalformed, "not an envelope")
		return nil
	}
	o.id = id
	r := tx.Read()
	if m, err := r.Message(id); err == nil {
		if m.Peer != c.key || m.Direction != db.Incoming {
			o.reject(wire.ReasonForeign, "message id of another conversation")
			return nil
		}
		o.status = wire.Stored // a retransmission: acknowledge again
		return nil
	} else if !errors.Is(err, db.ErrNotFound) {
		return err
	}
	if gone, err := r.Gone(id); err != nil || gone {
		// Stored once, and deleted since by our user (with its contact):
		// its sender never heard so, and is told now.
		o.status = wire.Stored
		return err
	}
	stranger := st.contact == nil || st.contact.State != db.ContactAccepted
	if stranger && (st.contact == nil || !st.contact.Blocked) {
		if refused, err := c.strangerGate(tx, o, st); err != nil || refused {
			return err
		}
	}
	var pt []byte
	if e2e.IsPrekeyMessage(o.env) {
		pt, err = c.receivePrekey(tx, o, st, now)
		if err != nil || o.status != 0 {
			return err
		}
	} else {
		decrypted := false
		for i, s := range c.rec.sessions {
			if pt, err = s.Decrypt(o.env, now); err == nil {
				c.rec.promote(i)
				decrypted = true
				break
			}
		}
		if !decrypted {
			if len(c.rec.sessions) == 0 {
				o.reject(wire.ReasonNoSession, "no session with the sender")
			} else {
				o.reject(wire.ReasonNoSession, "does not decrypt: "+err.Error())
			}
			return nil
		}
	}
	st.dirty = true
	if st.contact != nil && st.contact.Blocked {
		// Decrypted (the ratchet must move on, or unblocking would find
		// the chain too far ahead), acknowledged, dropped: a blocked peer
		// learns nothing.
		o.status = wire.Stored
		return nil
	}
	content, _ := wire.DecodeContent(pt)
	st.clock(content.Sent, now)
	if content.Control != 0 {
		// Control content is never stored as a message; from a
		// stranger it means nothing.
		o.status = wire.Stored
		if stranger {
			return nil
		}
		return c.receiveControl(tx, st, o, pt, content, now)
	}
	if stranger && len(content.Text) > maxRequestText {
		o.reject(wire.ReasonTooLarge, "a stranger's first message is too long")
		return nil
	}
	// A stranger's first message makes a contact request (trust.go).
	if err := c.ensureContact(tx, st, true, now); err != nil {
		return err
	}
	if content.HasProfile {
		if err := c.setProfileName(tx, st, content.Profile, now); err != nil {
			return err
		}
	}
	if content.ReplyTo != (e2e.MessageID{}) {
		// A reply quotes a message of this conversation: one of another
		// is not quoted. One not here (yet: deliveries may overtake each
		// other) is kept, and shown once it comes.
		if q, err := r.Message(content.ReplyTo); err == nil && q.Peer != c.key {
			content.ReplyTo = e2e.MessageID{}
		} else if err != nil && !errors.Is(err, db.ErrNotFound) {
			return err
		}
	}
	m := db.Message{ID: id, Peer: c.key, Direction: db.Incoming, Body: content.Text, State: db.Received,
		Sent: time.UnixMilli(content.Sent), Received: now, ReplyTo: content.ReplyTo,
		Timer: min(time.Duration(content.Timer)*time.Second, MaxTimer)}
	inserted, err := tx.InsertMessage(m)
	if err != nil {
		return err
	}
	o.status = wire.Stored
	if inserted {
		st.received = append(st.received, id)
	}
	if inserted && o.viaMailbox {
		st.receipts = append(st.receipts, id)
	}
	if err := st.event(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "in", State: string(db.Received)}, now); err != nil {
		return err
	}
	// The peer wrote to us: whatever it refused before, until its user
	// accepted us, may go now (a stranger's message says nothing of that).
	if stranger {
		return nil
	}
	return c.release(tx, st, now)
}

// release makes what we held for the peer (it had not accepted us) due
// at once, once per batch.
func (c *conv) release(tx *db.Tx, st *batchState, now time.Time) error {
	if st.released {
		return nil
	}
	st.released = true
	st.held, st.heldKnown = false, true // what this batch sends next goes
	c.n.bumpRelease(c.peer)
	ids, err := tx.Release(c.key, now)
	if err != nil || len(ids) == 0 {
		return err
	}
	st.kick = true
	for _, id := range ids {
		if err := st.event(tx, EventState, payload{Peer: c.key, MessageID: msgIDString(id), State: string(db.Queued)}, now); err != nil {
			return err
		}
	}
	return nil
}

// receivePrekey handles an initial message: by the session it started, if
// it is a retransmission, or by running PQXDH as responder. The responder
// records the replay key, consumes the one-time prekeys and records the
// sender's identity in the batch's transaction. A refusal sets o.status
// and returns no plaintext.
func (c *conv) receivePrekey(tx *db.Tx, o *recvOp, st *batchState, now time.Time) ([]byte, error) {
	reject := func(code wire.Reason, why string) ([]byte, error) {
		o.reject(code, why)
		return nil, nil
	}
	pm, err := e2e.ParsePrekeyMessage(o.env)
	if err != nil {
		return reject(wire.ReasonMalformed, "malformed prekey message")
	}
	// The stream is authenticated as the peer: a prekey message that
	// names someone else is a forgery or a misdirected replay.
	if subtle.ConstantTimeCompare(pm.Sender.Key[:], c.peerKey[:]) != 1 {
		return reject(wire.ReasonForeign, "prekey message of another identity")
	}
	if i := c.rec.byBaseKey(pm.BaseKey); i >= 0 {
		pt, err := c.rec.sessions[i].Decrypt(o.env, now)
		if err != nil {
			return reject(wire.ReasonNoSession, "does not decrypt: "+err.Error())
		}
		c.rec.promote(i)
		return pt, nil
	}
	if err := pm.Sender.Verify(); err != nil {
		return reject(wire.ReasonForeign, "bad identity certificate")
	}
	ik := identityKey(pm.Sender.Key, pm.Sender.DH)
	if changed, err := c.identityChanged(tx, st, ik, now); err != nil || changed {
		if changed {
			return reject(wire.ReasonIdentity, "identity key changed")
		}
		return nil, err
	}
	// A new session costs a KEM decapsulation, five DH and a write:
	// strangers share a budget, contacts do not (limits.go).
	if (st.contact == nil || st.contact.State != db.ContactAccepted) && !c.n.takeHandshake(now) {
		o.status = wire.Retry
		return nil, nil
	}
	r := tx.Read()
	var keys e2e.ResponderKeys
	if keys.SignedPrekey, err = loadSigned(r, pm.SignedPrekeyID, now); err != nil {
		return reject(wire.ReasonUnknownPrekey, "unknown signed prekey")
	}
	pqKind := db.PQPrekey
	if pm.PQOneTime {
		pqKind = db.PQOneTimePrekey
	}
	if keys.PQPrekey, err = loadPQ(r, pqKind, pm.PQPrekeyID, now); err != nil {
		return reject(wire.ReasonUnknownPrekey, "unknown PQ prekey")
	}
	if pm.HasOneTimePrekey {
		if keys.OneTimePrekey, err = loadOneTime(r, pm.OneTimePrekeyID); err != nil {
			return reject(wire.ReasonUnknownPrekey, "unknown or used one-time prekey")
		}
	}
	rk := pm.ReplayKey()
	var seenErr error
	seen := func(k e2e.ReplayKey) bool {
		ok, err := r.Seen(k[:])
		if err != nil {
			seenErr = err
			return true
		}
		return ok
	}
	s, pt, err := e2e.Respond(c.n.self, pm, keys, seen, now)
	if seenErr != nil {
		return nil, seenErr
	}
	if err != nil {
		// A replayed handshake here comes from the peer itself (the stream
		// is authenticated, and copies of stored messages were caught
		// above): its session is one we have forgotten. It needs a new one.
		return reject(wire.ReasonNoSession, "handshake failed: "+err.Error())
	}
	// The envelope's size bounded text and extras together: the text
	// alone is checked before anything of the handshake is recorded.
	if st.contact == nil || st.contact.State != db.ContactAccepted {
		if content, _ := wire.DecodeContent(pt); len(content.Text) > maxRequestText {
			return reject(wire.ReasonTooLarge, "a stranger's first message is too long")
		}
	}
	// The replay key must outlive the signed prekey it names.
	if _, err := tx.MarkSeen(rk[:], now.Add(c.n.cfg.rotate()*(1+graceRotations))); err != nil {
		return nil, err
	}
	if pm.HasOneTimePrekey {
		secret, err := tx.UseOneTimePrekey(db.OneTimePrekey, pm.OneTimePrekeyID, now)
		clear(secret)
		if err != nil {
			return nil, err
		}
	}
	if pm.PQOneTime {
		secret, err := tx.UseOneTimePrekey(db.PQOneTimePrekey, pm.PQPrekeyID, now)
		clear(secret)
		if err != nil {
			return nil, err
		}
	}
	// The handshake succeeded, and receive stores its message next: a
	// stranger becomes a contact request now.
	if err := c.recordIdentity(tx, st, ik, true, now); err != nil {
		return nil, err
	}
	c.rec.push(s)
	st.grant = true
	return pt, nil
}
