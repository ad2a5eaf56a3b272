package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// Control messages through the outbox (docs/mailbox.md, "Content
// kinds"): delivery receipts for what came through a mailbox, and the
// grants that let contacts deposit at ours. Each is encrypted in the
// peer's conversation and queued like a message, with no message row: a
// direct ack or a mailbox's store ends it, and none is ever receipted.

// errNoSession: there is no session to encrypt a control message under.
var errNoSession = errors.New("node: no session with the peer")

// controlOp encrypts a control plaintext and queues it.
type controlOp struct {
	done
	encode func(sentMillis int64) ([]byte, error)
	err    error
}

func newControlOp(encode func(int64) ([]byte, error)) *controlOp {
	return &controlOp{done: newDone(), encode: encode}
}

func (o *controlOp) fail(err error) { o.err = err }

func (o *controlOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	s := c.rec.current()
	if s == nil {
		o.err = errNoSession
		return nil
	}
	if st.contact == nil || st.contact.Blocked {
		o.err = fmt.Errorf("%w: %s", ErrBlocked, c.key)
		return nil
	}
	pt, err := o.encode(now.UnixMilli())
	if err != nil {
		o.err = err
		return nil
	}
	o.err, err = c.enqueueControl(tx, st, s, pt, now)
	return err
}

// enqueueControl encrypts a control plaintext under s and queues it in
// the batch's transaction. encErr is the encryption's failure (the
// batch goes on), err the store's.
func (c *conv) enqueueControl(tx *db.Tx, st *batchState, s *e2e.Session, pt []byte, now time.Time) (encErr, err error) {
	id, env, err := s.Encrypt(pt)
	if err != nil {
		return fmt.Errorf("node: encrypt: %w", err), nil
	}
	st.dirty, st.kick = true, true
	return nil, tx.Enqueue(db.OutboxEntry{MessageID: id, Peer: c.key, Envelope: env, NextAttempt: now, Created: now, Control: true})
}

// queueControl queues a control message to p and waits for its commit.
func (n *Node) queueControl(p peer.ID, encode func(int64) ([]byte, error)) error {
	o := newControlOp(encode)
	if err := n.runOp(p, o); err != nil {
		return err
	}
	return o.err
}

// queueReceipts queues, in the batch's transaction, delivery receipts
// for the messages the batch stored from a mailbox: their sender's
// outbox keeps them until then. In the same transaction as the messages,
// so that a crash cannot leave them stored and never receipted (a page
// taken again finds them stored, and stores nothing new).
func (c *conv) queueReceipts(tx *db.Tx, st *batchState, now time.Time) error {
	s := c.rec.current()
	if len(st.receipts) == 0 || s == nil {
		return nil
	}
	for ids := st.receipts; len(ids) > 0; {
		k := min(len(ids), wire.MaxReceiptIDs)
		pt, err := wire.EncodeReceipt(now.UnixMilli(), wire.Receipt{Kind: wire.ReceiptDelivered, IDs: ids[:k]})
		if err != nil {
			return err
		}
		ids = ids[k:]
		encErr, err := c.enqueueControl(tx, st, s, pt, now)
		if err != nil {
			return err
		}
		if encErr != nil {
			c.n.log.Warn("encrypt a receipt", "peer", c.key, "err", encErr)
			return nil
		}
	}
	return nil
}

// receiveControl acts on a control plaintext from an accepted contact,
// inside the batch that decrypted it (content.go: the changes).
func (c *conv) receiveControl(tx *db.Tx, st *batchState, o *recvOp, pt []byte, content wire.Content, now time.Time) error {
	if signal := content.Control; signal.Lasting() {
		if o.viaMailbox {
			// Like a message: its sender keeps it until this receipt.
			st.receipts = append(st.receipts, o.id)
		}
		return c.receiveChange(tx, st, pt, signal, content.Sent, now)
	}
	switch content.Control {
	case wire.ControlAccepted:
		return c.release(tx, st, now)
	case wire.ControlReceipt:
		r, err := wire.DecodeReceipt(pt)
		if err != nil {
			c.n.log.Debug("malformed receipt", "peer", c.key, "err", err)
			return nil
		}
		if r.Kind == wire.ReceiptRead {
			return c.receiveRead(tx, st, r.IDs, now)
		}
		for _, id := range r.IDs {
			// Only the peer's own messages: Delivered checks the peer.
			ok, err := tx.Delivered(c.key, id)
			if err != nil {
				return err
			}
			if ok {
				st.expiry = true
				if err := st.event(tx, EventState, payload{Peer: c.key, MessageID: msgIDString(id), State: string(db.Delivered)}, now); err != nil {
					return err
				}
			}
		}
	case wire.ControlGrant:
		g, err := wire.DecodeGrant(pt)
		if err != nil {
			c.n.log.Debug("malformed mailbox grant", "peer", c.key, "err", err)
			return nil
		}
		mbox, err := peer.IDFromBytes(g.Mailbox)
		if err != nil {
			c.n.log.Debug("mailbox grant for no peer ID", "peer", c.key)
			return nil
		}
		return tx.PutGrant(db.Grant{Peer: c.key, Mailbox: mbox.String(), Inbox: g.Inbox, Index: g.Index, Token: g.Token, Received: now})
	}
	// A signal this version does not know: acknowledged and ignored.
	return nil
}
