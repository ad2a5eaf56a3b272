package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// History returns up to limit messages of the conversation with p before
// the cursor (the zero Cursor: the latest), oldest first.
func (n *Node) History(p peer.ID, before db.Cursor, limit int) ([]db.Message, error) {
	var out []db.Message
	err := n.store.View(func(r *db.ReadTx) (err error) {
		out, err = r.History(p.String(), before, limit)
		return err
	})
	return out, err
}

// Contacts lists the known peers.
func (n *Node) Contacts() ([]db.Contact, error) {
	var out []db.Contact
	err := n.store.View(func(r *db.ReadTx) (err error) {
		out, err = r.Contacts()
		return err
	})
	return out, err
}

// Contact returns one contact, db.ErrNotFound when p is a stranger.
func (n *Node) Contact(p peer.ID) (db.Contact, error) {
	var c db.Contact
	err := n.store.View(func(r *db.ReadTx) (err error) {
		c, err = r.Contact(p.String())
		return err
	})
	return c, err
}

// AddContact adds (or renames) an accepted contact.
func (n *Node) AddContact(p peer.ID, name string) error {
	if _, err := peerIdentity(p); err != nil {
		return err
	}
	if p == n.id {
		return errors.New("node: you cannot be your own contact")
	}
	return n.editContact(p, true, func(c *db.Contact) { c.Name, c.State = name, db.ContactAccepted })
}

// Accept accepts a contact request.
func (n *Node) Accept(p peer.ID) error {
	return n.editContact(p, false, func(c *db.Contact) { c.State = db.ContactAccepted })
}

// Block blocks (or unblocks) a peer: its messages are acknowledged and
// dropped, nothing is sent to it, and what was queued for it fails.
func (n *Node) Block(p peer.ID, blocked bool) error {
	if _, err := peerIdentity(p); err != nil {
		return err
	}
	return n.editContact(p, true, func(c *db.Contact) { c.Blocked = blocked })
}

// TrustIdentity accepts the identity key a contact presents next, after
// a key-change event: it forgets the key on record (and the sessions
// made under the old one), and the next handshake from the peer records
// the key it brings. Its messages were refused meanwhile; the peer sees
// them failed and can send them again.
func (n *Node) TrustIdentity(p peer.ID) error {
	c, err := n.conv(p)
	if err != nil {
		return err
	}
	// Through the conv, so that no batch of the peer runs meanwhile.
	o := &op{kind: opReset, forgetKey: true}
	c.submit(o)
	<-o.done
	return o.err
}

// SetVerified records that the user compared safety numbers with the
// contact (or withdraws it).
func (n *Node) SetVerified(p peer.ID, verified bool) error {
	return n.editContact(p, false, func(c *db.Contact) { c.Verified = verified })
}

// Resend sends the text of a failed outgoing message again, as a new
// message (a new id, a new encryption, under a new session when the
// failure called for one), and returns the new id. The failed one stays
// in the history as failed.
func (n *Node) Resend(ctx context.Context, p peer.ID, id [16]byte) (e2e.MessageID, error) {
	var m db.Message
	err := n.store.View(func(r *db.ReadTx) (err error) {
		m, err = r.Message(id)
		return err
	})
	if err != nil {
		return e2e.MessageID{}, fmt.Errorf("node: resend: %w", err)
	}
	if m.Peer != p.String() || m.Direction != db.Outgoing || m.State != db.Failed {
		return e2e.MessageID{}, fmt.Errorf("node: resend: message %x is not a failed message to %s", id, p)
	}
	return n.Send(ctx, p, m.Body)
}

// SafetyNumber is the number that two users compare to verify each
// other: identical on both sides when no one sits in between. The peer's
// identity key is the one its peer ID names.
func (n *Node) SafetyNumber(p peer.ID) (string, error) {
	k, err := peerIdentity(p)
	if err != nil {
		return "", err
	}
	return e2e.FormatSafetyNumber(e2e.SafetyNumber(n.self.Public().Key, k)), nil
}

// MarkRead marks the conversation read up to and including m.
func (n *Node) MarkRead(p peer.ID, m db.Message) error {
	return n.store.Update(func(tx *db.Tx) error {
		_, err := tx.MarkRead(p.String(), db.CursorOf(m))
		return err
	})
}

// Connect dials a peer at known addresses (a bootstrap peer, a friend's
// address from a QR code).
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.running(); err != nil {
		return err
	}
	return n.host.Connect(ctx, ai)
}

func (n *Node) editContact(p peer.ID, create bool, edit func(*db.Contact)) error {
	now := time.Now()
	return n.store.Update(func(tx *db.Tx) error {
		c, err := tx.Read().Contact(p.String())
		if errors.Is(err, db.ErrNotFound) && create {
			c, err = db.Contact{PeerID: p.String(), State: db.ContactRequest}, nil
		}
		if err != nil {
			return fmt.Errorf("node: contact %s: %w", p, err)
		}
		edit(&c)
		return tx.PutContact(c, now)
	})
}
