package node

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// A conv serialises everything that touches one peer's sessions. Sends and
// receives queue up as ops; one goroutine at a time (started on demand,
// gone when the queue is empty) takes all that are waiting and runs them
// in one store transaction: encrypt or decrypt in order, write the session
// record once, the messages, outbox rows and events, commit, then answer
// each op. Under load a batch holds many messages, so one fsync serves
// them all; the store's own group commit folds batches of different peers
// together.
//
// The session record in memory may run ahead of the store only while a
// batch is being committed; if the commit fails it is dropped and read
// again, so memory never holds a state the disk lacks.
type conv struct {
	n       *Node
	peer    peer.ID
	key     string // peer.String(), the store's peer id
	peerKey e2e.IdentityKey

	mu      sync.Mutex
	queue   []*op
	running bool

	// Only the running goroutine touches these.
	rec    *sessionRecord // nil: not loaded
	pruned time.Time
}

type opKind int

const (
	opSend opKind = iota
	opRecv
	opReset // forget the sessions (and with forgetKey the identity key on record)
)

type op struct {
	kind opKind
	// opSend
	text   string
	bundle *e2e.Bundle // to start a session when there is none
	// opRecv
	env []byte
	// opReset
	forgetKey bool

	// Results, valid once done is closed.
	id     e2e.MessageID
	status ackStatus    // opRecv
	code   rejectReason // opRecv, ackRejected: why, for the sender
	reason string       // opRecv, ackRejected: details, for our log
	err    error        // opSend
	done   chan struct{}
}

// maxBatch bounds one transaction, so that a flood from one peer cannot
// hold the writer for long.
const maxBatch = 512

var errNeedBundle = errors.New("node: no session with the peer yet")

func (n *Node) conv(p peer.ID) (*conv, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c, ok := n.convs[p]; ok {
		return c, nil
	}
	k, err := peerIdentity(p)
	if err != nil {
		return nil, err
	}
	c := &conv{n: n, peer: p, key: p.String(), peerKey: k}
	n.convs[p] = c
	return c, nil
}

// submit queues an op; its done channel closes once it is committed or
// refused.
func (c *conv) submit(o *op) {
	o.done = make(chan struct{})
	c.mu.Lock()
	c.queue = append(c.queue, o)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start && !c.n.spawn(c.run) {
		c.mu.Lock()
		queued := c.queue
		c.queue, c.running = nil, false
		c.mu.Unlock()
		for _, o := range queued {
			o.status, o.err = ackRetry, ErrClosed
			close(o.done)
		}
	}
}

func (c *conv) run() {
	for {
		c.mu.Lock()
		batch := c.queue[:min(len(c.queue), maxBatch)]
		c.queue = c.queue[len(batch):]
		if len(batch) == 0 {
			c.queue = nil
			c.running = false
			// Idle: drop the sessions from memory (the store has them).
			// Conversations with many peers then cost memory only while
			// they are active.
			c.rec = nil
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.process(batch)
	}
}

// batchState is what one batch learned and must act on after commit.
type batchState struct {
	contact    db.Contact
	hasContact bool
	dirty      bool // the session record changed
	sent       bool // envelopes were queued for the peer
	events     bool
	keyChange  bool // raised once per batch
	newContact bool // the peer became a contact in this batch
	requested  bool // and its event was raised
}

func (c *conv) process(batch []*op) {
	now := time.Now()
	var st batchState
	err := c.n.store.Update(func(tx *db.Tx) error {
		st = batchState{}
		r := tx.Read()
		if c.rec == nil {
			rec, err := loadRecord(r, c.key, c.n.log)
			if err != nil {
				return err
			}
			c.rec = rec
		}
		if now.Sub(c.pruned) > time.Hour {
			for _, s := range c.rec.sessions {
				if s.Prune(now) > 0 {
					st.dirty = true
				}
			}
			c.pruned = now
		}
		ct, err := r.Contact(c.key)
		if err == nil {
			st.contact, st.hasContact = ct, true
		} else if !errors.Is(err, db.ErrNotFound) {
			return err
		}
		for _, o := range batch {
			var err error
			switch o.kind {
			case opSend:
				err = c.send(tx, o, &st, now)
			case opRecv:
				err = c.receive(tx, o, &st, now)
			case opReset:
				err = c.reset(tx, o, &st, now)
			}
			if err != nil {
				return err
			}
		}
		if !st.dirty {
			return nil
		}
		blob, err := c.rec.MarshalBinary()
		if err != nil {
			return err
		}
		return tx.PutSession(c.key, blob, now)
	})
	if err != nil {
		// Nothing of the batch is stored: forget the sessions' progress
		// and let each op fail in a way its sender can retry.
		c.rec = nil
		c.n.log.Error("store a batch", "peer", c.key, "err", err)
		for _, o := range batch {
			o.status, o.err = ackRetry, fmt.Errorf("node: store: %w", err)
		}
	}
	for _, o := range batch {
		close(o.done)
	}
	if err == nil && st.events {
		c.n.notifyEvents()
	}
	if err == nil && st.sent {
		c.n.kick(c.peer)
	}
	if err == nil && st.newContact {
		// Its connection may predate it: report its path from now on.
		c.n.spawn(func() { c.n.pathChanged(c.peer) })
	}
}

func loadRecord(r *db.ReadTx, key string, log *slog.Logger) (*sessionRecord, error) {
	rec := new(sessionRecord)
	blob, err := r.Session(key)
	if errors.Is(err, db.ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return nil, err
	}
	if err := rec.UnmarshalBinary(blob); err != nil {
		// A record we cannot read is useless, and refusing every message
		// from the peer forever would be worse: start afresh (the peer's
		// next prekey message starts a new session) and say so.
		log.Error("unreadable session record replaced by an empty one", "peer", key, "err", err)
		return new(sessionRecord), nil
	}
	return rec, nil
}

// send encrypts one message and queues its envelope. Errors returned are
// the store's; the op's own failure goes in o.err.
func (c *conv) send(tx *db.Tx, o *op, st *batchState, now time.Time) error {
	if st.hasContact && st.contact.Blocked {
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
		if err := c.recordIdentity(tx, st, ik, now); err != nil {
			return err
		}
		c.rec.push(s)
	}
	id, env, err := s.Encrypt(encodeContent(now.UnixMilli(), o.text))
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
	st.sent, st.events = true, true
	return appendEvent(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "out", State: string(db.Queued)}, now)
}

// reset forgets the peer's sessions, so that the next message starts a
// new one; with forgetKey also its identity key, so that the next
// handshake records the key it presents.
func (c *conv) reset(tx *db.Tx, o *op, st *batchState, now time.Time) error {
	if o.forgetKey {
		if !st.hasContact {
			o.err = fmt.Errorf("node: %s is not a contact: %w", c.key, db.ErrNotFound)
			return nil
		}
		st.contact.IdentityKey, st.contact.Verified = nil, false
		if err := tx.PutContact(st.contact, now); err != nil {
			return err
		}
	}
	c.rec.sessions, st.dirty = nil, false
	return tx.DeleteSession(c.key)
}

// accept makes the peer an accepted contact: writing to someone accepts
// them, as replying to a request does in Signal.
func (c *conv) accept(tx *db.Tx, st *batchState, now time.Time) error {
	if st.hasContact && st.contact.State == db.ContactAccepted {
		return nil
	}
	if !st.hasContact {
		st.contact = db.Contact{PeerID: c.key}
		st.hasContact, st.newContact = true, true
	}
	st.contact.State = db.ContactAccepted
	return tx.PutContact(st.contact, now)
}

// identityChanged compares a peer's identity with the one on record, and
// raises a key-change event (once per batch) when they differ. It writes
// nothing else: a handshake that then fails must leave no trace.
func (c *conv) identityChanged(tx *db.Tx, st *batchState, ik []byte, now time.Time) (bool, error) {
	if !st.hasContact || st.contact.IdentityKey == nil || subtle.ConstantTimeCompare(st.contact.IdentityKey, ik) == 1 {
		return false, nil
	}
	if st.keyChange {
		return true, nil
	}
	st.keyChange, st.events = true, true
	return true, appendEvent(tx, EventKeyChange, payload{Peer: c.key, Reason: "the peer presented another identity key"}, now)
}

// recordIdentity keeps a peer's identity on its contact, making a
// stranger a contact request.
func (c *conv) recordIdentity(tx *db.Tx, st *batchState, ik []byte, now time.Time) error {
	if st.hasContact && st.contact.IdentityKey != nil {
		return nil
	}
	if err := c.ensureContact(tx, st, now); err != nil {
		return err
	}
	st.contact.IdentityKey = ik
	return tx.PutContact(st.contact, now)
}

// ensureContact makes a stranger a contact request. The event for it is
// raised when its first message is stored (or never, when we wrote first).
func (c *conv) ensureContact(tx *db.Tx, st *batchState, now time.Time) error {
	if st.hasContact {
		return nil
	}
	if _, err := tx.EnsureContact(c.key, now); err != nil {
		return err
	}
	st.contact = db.Contact{PeerID: c.key, State: db.ContactRequest, Created: now}
	st.hasContact, st.newContact = true, true
	return nil
}

// receive decrypts and stores one incoming envelope.
func (c *conv) receive(tx *db.Tx, o *op, st *batchState, now time.Time) error {
	reject := func(code rejectReason, why string) error {
		o.status, o.code, o.reason = ackRejected, code, why
		return nil
	}
	id, err := e2e.EnvelopeID(o.env)
	if err != nil {
		return reject(reasonMalformed, "not an envelope")
	}
	o.id = id
	r := tx.Read()
	if m, err := r.Message(id); err == nil {
		if m.Peer != c.key || m.Direction != db.Incoming {
			return reject(reasonForeign, "message id of another conversation")
		}
		o.status = ackStored // a retransmission: acknowledge again
		return nil
	} else if !errors.Is(err, db.ErrNotFound) {
		return err
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
				return reject(reasonNoSession, "no session with the sender")
			}
			return reject(reasonNoSession, "does not decrypt: "+err.Error())
		}
	}
	st.dirty = true
	if st.hasContact && st.contact.Blocked {
		// Decrypted (the ratchet must move on, or unblocking would find
		// the chain too far ahead), acknowledged, dropped: a blocked peer
		// learns nothing.
		o.status = ackStored
		return nil
	}
	sent, text, _ := decodeContent(pt)
	if err := c.ensureContact(tx, st, now); err != nil {
		return err
	}
	if st.newContact && st.contact.State == db.ContactRequest && !st.requested {
		st.requested = true
		if err := appendEvent(tx, EventContactRequest, payload{Peer: c.key}, now); err != nil {
			return err
		}
	}
	m := db.Message{ID: id, Peer: c.key, Direction: db.Incoming, Body: text, State: db.Received,
		Sent: time.UnixMilli(sent), Received: now}
	if _, err := tx.InsertMessage(m); err != nil {
		return err
	}
	o.status, st.events = ackStored, true
	return appendEvent(tx, EventMessage, payload{Peer: c.key, MessageID: msgIDString(id), Direction: "in", State: string(db.Received)}, now)
}

// receivePrekey handles an initial message: by the session it started, if
// it is a retransmission, or by running PQXDH as responder.
func (c *conv) receivePrekey(tx *db.Tx, o *op, st *batchState, now time.Time) ([]byte, error) {
	reject := func(code rejectReason, why string) ([]byte, error) {
		o.status, o.code, o.reason = ackRejected, code, why
		return nil, nil
	}
	pm, err := e2e.ParsePrekeyMessage(o.env)
	if err != nil {
		return reject(reasonMalformed, "malformed prekey message")
	}
	// The stream is authenticated as the peer: a prekey message that
	// names someone else is a forgery or a misdirected replay.
	if subtle.ConstantTimeCompare(pm.Sender.Key[:], c.peerKey[:]) != 1 {
		return reject(reasonForeign, "prekey message of another identity")
	}
	if i := c.rec.byBaseKey(pm.BaseKey); i >= 0 {
		pt, err := c.rec.sessions[i].Decrypt(o.env, now)
		if err != nil {
			return reject(reasonNoSession, "does not decrypt: "+err.Error())
		}
		c.rec.promote(i)
		return pt, nil
	}
	if err := pm.Sender.Verify(); err != nil {
		return reject(reasonForeign, "bad identity certificate")
	}
	ik := identityKey(pm.Sender.Key, pm.Sender.DH)
	if changed, err := c.identityChanged(tx, st, ik, now); err != nil || changed {
		if changed {
			return reject(reasonIdentity, "identity key changed")
		}
		return nil, err
	}
	r := tx.Read()
	var keys e2e.ResponderKeys
	if keys.SignedPrekey, err = loadSigned(r, pm.SignedPrekeyID, now); err != nil {
		return reject(reasonUnknownPrekey, "unknown signed prekey")
	}
	pqKind := db.PQPrekey
	if pm.PQOneTime {
		pqKind = db.PQOneTimePrekey
	}
	if keys.PQPrekey, err = loadPQ(r, pqKind, pm.PQPrekeyID, now); err != nil {
		return reject(reasonUnknownPrekey, "unknown PQ prekey")
	}
	if pm.HasOneTimePrekey {
		if keys.OneTimePrekey, err = loadOneTime(r, pm.OneTimePrekeyID); err != nil {
			return reject(reasonUnknownPrekey, "unknown or used one-time prekey")
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
		return reject(reasonNoSession, "handshake failed: "+err.Error())
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
	if err := c.recordIdentity(tx, st, ik, now); err != nil {
		return nil, err
	}
	c.rec.push(s)
	return pt, nil
}
