package node

import (
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// The contact and identity-key rules that run inside a conversation's
// batch (docs/design.md §3, §7.4; docs/node-decisions.md, 4, 11, 12): who
// becomes a contact and in which state, which identity key is on record,
// and the operations that forget sessions. The contact operations that
// touch no session are in contacts.go.

// identityChanged compares a peer's identity with the one on record, and
// raises a key-change event (once per batch) and marks the contact when
// they differ. It writes nothing else: a handshake that then fails must
// leave no other trace.
func (c *conv) identityChanged(tx *db.Tx, st *batchState, ik []byte, now time.Time) (bool, error) {
	if st.contact == nil || st.contact.IdentityKey == nil || subtle.ConstantTimeCompare(st.contact.IdentityKey, ik) == 1 {
		return false, nil
	}
	if st.keyChange {
		return true, nil
	}
	st.keyChange = true
	if !st.contact.KeyChanged {
		st.contact.KeyChanged = true
		if err := tx.PutContact(*st.contact, now); err != nil {
			return true, err
		}
	}
	return true, st.event(tx, EventKeyChange, payload{Peer: c.key, Reason: "the peer presented another identity key"}, now)
}

// recordIdentity keeps a peer's identity on its contact once a handshake
// succeeded, making a stranger a contact request (announced when a
// message of its is stored next: see ensureContact).
func (c *conv) recordIdentity(tx *db.Tx, st *batchState, ik []byte, announce bool, now time.Time) error {
	if st.contact != nil && st.contact.IdentityKey != nil {
		return nil
	}
	if err := c.ensureContact(tx, st, announce, now); err != nil {
		return err
	}
	st.contact.IdentityKey = ik
	return tx.PutContact(*st.contact, now)
}

// ensureContact makes a stranger a contact request. With announce (a
// message of the stranger's is stored in this batch) it raises the
// contact-request event; without (we wrote first, and accept follows) it
// raises none. A contact that exists raises nothing: the event comes
// once, with the first message.
func (c *conv) ensureContact(tx *db.Tx, st *batchState, announce bool, now time.Time) error {
	if st.contact != nil {
		return nil
	}
	if _, err := tx.EnsureContact(c.key, now); err != nil {
		return err
	}
	st.contact = &db.Contact{PeerID: c.key, State: db.ContactRequest, Created: now}
	st.newContact = true
	if !announce {
		return nil
	}
	st.newRequest = true
	return st.event(tx, EventContactRequest, payload{Peer: c.key}, now)
}

// accept makes the peer an accepted contact: writing to someone accepts
// them, as replying to a request does in Signal.
func (c *conv) accept(tx *db.Tx, st *batchState, now time.Time) error {
	if st.contact != nil && st.contact.State == db.ContactAccepted {
		return nil
	}
	if st.contact == nil {
		st.contact = &db.Contact{PeerID: c.key}
		st.newContact = true
	}
	st.contact.State = db.ContactAccepted
	st.grant = true
	return tx.PutContact(*st.contact, now)
}

// resetOp forgets the peer's sessions, so that the next message starts a
// new one; with forgetKey also its identity key, so that the next
// handshake records the key it presents.
type resetOp struct {
	done
	forgetKey bool

	// Results.
	changed bool // with forgetKey: there was a key change to forget
	err     error
}

func newResetOp(forgetKey bool) *resetOp { return &resetOp{done: newDone(), forgetKey: forgetKey} }

func (o *resetOp) fail(err error) { o.err = err }

func (o *resetOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	if o.forgetKey {
		if st.contact == nil {
			o.err = fmt.Errorf("%w: %s is not a contact", ErrNotFound, c.key)
			return nil
		}
		if !st.contact.KeyChanged {
			return nil // nothing to trust: the key and the verified mark stay
		}
		st.contact.IdentityKey, st.contact.Verified, st.contact.KeyChanged = nil, false, false
		if err := tx.PutContact(*st.contact, now); err != nil {
			return err
		}
		o.changed = true
	}
	c.rec.sessions, st.dirty = nil, false
	return tx.DeleteSession(c.key)
}

// removeOp deletes the contact with its sessions and history.
type removeOp struct {
	done
	// onlyRequest: delete it only while it is a pending request (not
	// accepted meanwhile); with dropped, the cap on requests deleted it,
	// and an event says so.
	onlyRequest, dropped bool

	// Results: wasAccepted, the contact was accepted (it may hold our
	// mailbox tokens).
	wasAccepted bool
	err         error
}

func newRemoveOp() *removeOp { return &removeOp{done: newDone()} }

func (o *removeOp) fail(err error) { o.err = err }

func (o *removeOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	if o.onlyRequest && (st.contact == nil || st.contact.State != db.ContactRequest || st.contact.Blocked) {
		o.err = fmt.Errorf("%w: %s is no pending contact request", ErrNotFound, c.key)
		return nil
	}
	if o.dropped {
		if err := st.event(tx, EventRequestDropped, payload{Peer: c.key,
			Reason: fmt.Sprintf("more than %d contact requests are pending: the oldest is deleted with its message", c.n.cfg.maxRequests())}, now); err != nil {
			return err
		}
	}
	o.wasAccepted = st.contact != nil && st.contact.State == db.ContactAccepted
	ok, err := tx.DeleteContact(c.key)
	if err != nil {
		return err
	}
	if !ok {
		o.err = fmt.Errorf("%w: %s is not a contact", ErrNotFound, c.key)
		return nil
	}
	c.rec.sessions, st.dirty = nil, false
	st.contact, st.newContact = nil, false
	return nil
}

// TrustIdentity accepts the identity key a contact presents next, after
// a key change: it forgets the key on record, the verified mark and the
// sessions made under the old key, and the next handshake from the peer
// records the key it brings. Its messages were refused meanwhile; the
// peer sees them failed and can send them again. With no key change
// pending it changes nothing and reports false.
func (n *Node) TrustIdentity(p peer.ID) (bool, error) {
	o := newResetOp(true)
	if err := n.runOp(p, o); err != nil {
		return false, err
	}
	return o.changed, o.err
}

// RemoveContact deletes a contact with its sessions and its whole
// history; what was queued for it is dropped. The peer may write again
// later, as a stranger.
func (n *Node) RemoveContact(p peer.ID) error {
	o := newRemoveOp()
	if err := n.runOp(p, o); err != nil {
		return err
	}
	if o.err == nil {
		n.forgetPeer(p)
		if o.wasAccepted {
			n.revokeGrants()
		}
	}
	return o.err
}

// forgetPeer drops what the node keeps in memory of a peer that is no
// longer a contact.
func (n *Node) forgetPeer(p peer.ID) {
	n.paths.Lock()
	delete(n.paths.m, p)
	n.paths.Unlock()
	n.clocks.Lock()
	delete(n.clocks.m, p)
	n.clocks.Unlock()
	n.releases.Lock()
	delete(n.releases.m, p)
	n.releases.Unlock()
}

// dropSessions forgets the sessions with p, so that the next message
// starts a new one from a fresh bundle, and waits until that is stored.
// The delivery worker calls it after the peer refused an envelope with a
// reason that calls for a new session (outbox.go, commitAcks): the ack
// path re-enters the peer's conversation. That cannot deadlock: the
// worker holds no lock while it waits, and a batch never waits for a
// worker (it only kicks it, which does not block). A Send that looked
// before the reset and runs after it takes Send's rare path.
func (n *Node) dropSessions(p peer.ID) error {
	return n.runOp(p, newResetOp(false))
}
