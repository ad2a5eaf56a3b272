package node

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// ContactState says whether the user accepted a contact.
type ContactState string

const (
	// ContactRequest: a stranger wrote first; the user has not answered.
	ContactRequest ContactState = "request"
	// ContactAccepted: the user added, accepted or wrote to the peer.
	ContactAccepted ContactState = "accepted"
)

// Contact is a peer the node knows.
type Contact struct {
	PeerID     peer.ID
	Name       string // unique among contacts; empty: none
	State      ContactState
	Verified   bool // the user compared safety numbers
	Blocked    bool
	KeyChanged bool // it presented another identity key: refused until TrustIdentity
	// ProfileName: the name the peer gave itself; Name, the user's, wins
	// over it (DisplayName).
	ProfileName string
	Timer       time.Duration // the conversation's disappearing timer; zero: off
	// Unread: received messages not yet read; LastActivity: the time of
	// the conversation's latest message (zero: none). Set by Contacts and
	// Requests.
	Unread       int
	LastActivity time.Time
	Path         Path // how it is reached now
	Created      time.Time
	Updated      time.Time
}

func (n *Node) contactOf(c db.Contact) (Contact, error) {
	p, err := peer.Decode(c.PeerID)
	if err != nil {
		return Contact{}, fmt.Errorf("node: stored contact %q is no peer ID: %w", c.PeerID, err)
	}
	return Contact{PeerID: p, Name: c.Name, State: ContactState(c.State), Verified: c.Verified, Blocked: c.Blocked,
		KeyChanged: c.KeyChanged, Path: n.Path(p), Created: c.Created, Updated: c.Updated,
		ProfileName: c.ProfileName, Timer: c.Timer}, nil
}

// DisplayName is the name to show for the contact: the user's for it,
// else the one it gave itself, else none.
func (c Contact) DisplayName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.ProfileName
}

// Contacts lists the known peers, the accepted ones first, each group by
// name, then peer ID.
func (n *Node) Contacts() ([]Contact, error) {
	return n.listContacts((*db.ReadTx).Contacts)
}

// listContacts reads a list of contacts, skipping (and logging) a row
// that names no peer.
func (n *Node) listContacts(read func(*db.ReadTx) ([]db.Contact, error)) ([]Contact, error) {
	var cs []db.Contact
	var unread map[string]int
	var last map[string]time.Time
	if err := n.store.View(func(r *db.ReadTx) (err error) {
		if cs, err = read(r); err != nil {
			return err
		}
		if unread, err = r.UnreadCounts(); err != nil {
			return err
		}
		last, err = r.LastActivity()
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]Contact, 0, len(cs))
	for _, c := range cs {
		ct, err := n.contactOf(c)
		if err != nil {
			n.log.Warn("contact skipped", "err", err)
			continue
		}
		ct.Unread, ct.LastActivity = unread[c.PeerID], last[c.PeerID]
		out = append(out, ct)
	}
	return out, nil
}

// Contact returns one contact; ErrNotFound when p is a stranger.
func (n *Node) Contact(p peer.ID) (Contact, error) {
	var c db.Contact
	err := n.store.View(func(r *db.ReadTx) (err error) {
		c, err = r.Contact(p.String())
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return Contact{}, fmt.Errorf("%w: %s is not a contact", ErrNotFound, p)
	}
	if err != nil {
		return Contact{}, err
	}
	return n.contactOf(c)
}

// Resolve reads a peer ID, or the name of a contact.
func (n *Node) Resolve(s string) (peer.ID, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: no peer given (want a peer ID or a contact's name)", ErrInvalid)
	}
	if p, err := peer.Decode(s); err == nil {
		return p, nil
	}
	var c db.Contact
	err := n.store.View(func(r *db.ReadTx) (err error) {
		c, err = r.ContactByName(s)
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return "", fmt.Errorf("%w: unknown peer %q: neither a peer ID nor a contact's name", ErrNotFound, s)
	}
	if err != nil {
		return "", err
	}
	return peer.Decode(c.PeerID)
}

// checkName refuses names that cannot serve to pick a contact: blank,
// too long, with control characters, or that read as a peer ID.
func checkName(name string) error {
	switch {
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: the name %q starts or ends with spaces", ErrInvalid, name)
	case utf8.RuneCountInString(name) > MaxNameLen:
		return fmt.Errorf("%w: a name has at most %d characters", ErrInvalid, MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the name is not valid UTF-8", ErrInvalid)
	case strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) >= 0:
		return fmt.Errorf("%w: the name %q has control characters", ErrInvalid, name)
	}
	if _, err := peer.Decode(name); err == nil {
		return fmt.Errorf("%w: the name %q reads as a peer ID", ErrInvalid, name)
	}
	return nil
}

// AddContact adds p as an accepted contact, or accepts it. A non-empty
// name is given to it (it must not be another contact's); an empty name
// keeps the one it has.
func (n *Node) AddContact(p peer.ID, name string) error {
	if _, err := peerIdentity(p); err != nil {
		return err
	}
	if p == n.id {
		return fmt.Errorf("%w: you cannot be your own contact", ErrInvalid)
	}
	if name != "" {
		if err := checkName(name); err != nil {
			return err
		}
	}
	var accepted bool
	err := n.editContact(p, true, func(c *db.Contact) error {
		if name != "" {
			c.Name = name
		}
		accepted = c.State == db.ContactRequest && c.IdentityKey != nil
		c.State = db.ContactAccepted
		return nil
	})
	if err == nil && accepted {
		n.sendAcceptance(p)
		n.spawnIf(true, func() { n.grant(p) })
	}
	return err
}

// Rename gives a contact another name; an empty name removes it.
func (n *Node) Rename(p peer.ID, name string) error {
	if name != "" {
		if err := checkName(name); err != nil {
			return err
		}
	}
	return n.editContact(p, false, func(c *db.Contact) error { c.Name = name; return nil })
}

// Accept accepts a contact request, and tells the peer, whose node then
// sends what it held back (requests.go).
func (n *Node) Accept(p peer.ID) error {
	var accepted bool
	err := n.editContact(p, false, func(c *db.Contact) error {
		accepted = c.State == db.ContactRequest && c.IdentityKey != nil
		c.State = db.ContactAccepted
		return nil
	})
	if err == nil && accepted {
		n.sendAcceptance(p)
		n.spawnIf(true, func() { n.grant(p) })
	}
	return err
}

// Block blocks (or unblocks) a peer: its messages are acknowledged and
// dropped, nothing is sent to it, and what was queued for it fails.
func (n *Node) Block(p peer.ID, blocked bool) error {
	if _, err := peerIdentity(p); err != nil {
		return err
	}
	var was, accepted bool
	err := n.editContact(p, true, func(c *db.Contact) error {
		was, accepted, c.Blocked = c.Blocked, c.State == db.ContactAccepted, blocked
		return nil
	})
	switch {
	case err != nil || !accepted || was == blocked:
	case blocked:
		// Only an accepted contact may hold our tokens.
		n.revokeGrants()
	default:
		n.spawnIf(true, func() { n.grant(p) })
	}
	return err
}

// SetVerified records that the user compared safety numbers with the
// contact (or withdraws it).
func (n *Node) SetVerified(p peer.ID, verified bool) error {
	return n.editContact(p, false, func(c *db.Contact) error { c.Verified = verified; return nil })
}

func (n *Node) editContact(p peer.ID, create bool, edit func(*db.Contact) error) error {
	now := time.Now()
	err := n.store.Update(func(tx *db.Tx) error {
		c, err := tx.Read().Contact(p.String())
		if errors.Is(err, db.ErrNotFound) && create {
			c, err = db.Contact{PeerID: p.String(), State: db.ContactRequest}, nil
		}
		if err != nil {
			return err
		}
		old := c.Name
		if err := edit(&c); err != nil {
			return err
		}
		if c.Name != old && c.Name != "" {
			if other, err := tx.Read().ContactByName(c.Name); err == nil && other.PeerID != c.PeerID {
				return fmt.Errorf("%w: %q is the name of %s: rename or remove that contact first", ErrNameTaken, c.Name, other.PeerID)
			}
		}
		return tx.PutContact(c, now)
	})
	switch {
	case errors.Is(err, db.ErrNotFound):
		return fmt.Errorf("%w: %s is not a contact", ErrNotFound, p)
	case errors.Is(err, db.ErrNameTaken) && !errors.Is(err, ErrNameTaken):
		return fmt.Errorf("%w: %v", ErrNameTaken, err)
	}
	return err
}
