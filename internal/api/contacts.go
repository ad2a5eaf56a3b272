package api

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// Contacts, names, keys and the node's status.

func (s *Server) resolve(_ context.Context, p PeerParams) (Resolved, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Resolved{}, err
	}
	c, _ := s.n.Contact(to)
	return Resolved{PeerID: to.String(), Name: c.Name}, nil
}

func (s *Server) verify(_ context.Context, p PeerParams) (SafetyNumber, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return SafetyNumber{}, err
	}
	sn, err := s.n.SafetyNumber(to)
	if err != nil {
		return SafetyNumber{}, err
	}
	c, _ := s.n.Contact(to)
	return SafetyNumber{PeerID: to.String(), Name: c.Name, SafetyNumber: sn}, nil
}

func (s *Server) status(context.Context, None) (Status, error) {
	st, err := s.n.Status()
	if err != nil {
		return Status{}, err
	}
	out := Status{PeerID: st.PeerID.String(), Addrs: nonNil(st.Addrs), Reachability: string(st.Reachability),
		RelayAddrs: nonNil(st.RelayAddrs), HolePunching: st.HolePunching, Contacts: []ContactPath{},
		ConnectedPeers: st.ConnectedPeers, RoutingTable: st.RoutingTable, Published: st.Published,
		Replicas: st.Replicas, NextRepublish: st.NextRepublish, SecretsUnsealed: st.SecretsUnsealed,
		ClockSkews: []ClockSkew{}, Requests: st.Requests, Outbox: st.Outbox, NewSessionsPending: st.NewSessionsPending, Mailboxes: []OwnMailbox{}, Problems: []Problem{},
		DHT: DHTStatus{Mode: string(st.DHT.Mode), LANServer: st.DHT.LANServer, WANServer: st.DHT.WANServer,
			LANPeers: st.DHT.LANPeers, WANPeers: st.DHT.WANPeers}}
	for _, p := range st.Problems {
		out.Problems = append(out.Problems, Problem{Code: p.Code, Text: p.Text})
	}
	for _, c := range st.ClockSkews {
		out.ClockSkews = append(out.ClockSkews, ClockSkew{PeerID: c.PeerID.String(), OffsetMillis: c.Offset.Milliseconds()})
	}
	for _, c := range st.Contacts {
		out.Contacts = append(out.Contacts, ContactPath{PeerID: c.PeerID.String(), Name: c.Name, Path: string(c.Path)})
	}
	for _, m := range st.Mailboxes {
		out.Mailboxes = append(out.Mailboxes, ownMailboxOf(m))
	}
	return out, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func contactOf(c node.Contact) Contact {
	return Contact{PeerID: c.PeerID.String(), Name: c.Name, State: string(c.State), Verified: c.Verified,
		Blocked: c.Blocked, KeyChanged: c.KeyChanged, Path: string(c.Path), ProfileName: c.ProfileName,
		DisplayName: c.DisplayName(), Timer: int64(c.Timer / time.Second), Unread: c.Unread, LastActivity: c.LastActivity}
}

func (s *Server) contacts(context.Context, None) ([]Contact, error) {
	return contactsOf(s.n.Contacts())
}

func contactsOf(cs []node.Contact, err error) ([]Contact, error) {
	if err != nil {
		return nil, err
	}
	out := make([]Contact, 0, len(cs))
	for _, c := range cs {
		out = append(out, contactOf(c))
	}
	return out, nil
}

// contactAfter answers a change to a contact with the contact as it is
// now.
func (s *Server) contactAfter(p peer.ID, err error) (Contact, error) {
	if err != nil {
		return Contact{}, err
	}
	c, err := s.n.Contact(p)
	return contactOf(c), err
}

func (s *Server) addContact(ctx context.Context, p ContactParams) (Contact, error) {
	if node.IsInvitation(p.Peer) {
		inv, err := node.ParseInvitation(p.Peer)
		if err != nil {
			return Contact{}, err
		}
		// A first message goes at once when the connection is up; the
		// DHT finds the peer later when it is not.
		cctx, cancel := context.WithTimeout(ctx, inviteConnect)
		defer cancel()
		return s.contactAfter(inv.Peer, s.n.AddInvitation(cctx, inv, p.Name))
	}
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Contact{}, err
	}
	return s.contactAfter(to, s.n.AddContact(to, p.Name))
}

// inviteConnect bounds the connection that adding from an invitation
// tries.
const inviteConnect = 5 * time.Second

// Invitation is the answer of "invite": the string a friend gives
// "contacts.add" (or scans) to add this node.
type Invitation struct {
	Invitation string   `json:"invitation"`
	PeerID     string   `json:"peer_id"`
	Addrs      []string `json:"addrs"`
	Name       string   `json:"name,omitempty"`
}

func (s *Server) invite(context.Context, None) (Invitation, error) {
	inv, err := s.n.Invitation()
	if err != nil {
		return Invitation{}, err
	}
	out := Invitation{Invitation: inv.String(), PeerID: inv.Peer.String(), Addrs: []string{}, Name: inv.Name}
	for _, a := range inv.Addrs {
		out.Addrs = append(out.Addrs, a.String())
	}
	return out, nil
}

func (c *Client) Invite(ctx context.Context) (Invitation, error) {
	return call[Invitation](ctx, c, "invite", nil)
}

func (s *Server) rename(_ context.Context, p ContactParams) (Contact, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Contact{}, err
	}
	return s.contactAfter(to, s.n.Rename(to, p.Name))
}

func (s *Server) removeContact(_ context.Context, p PeerParams) (Removed, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Removed{}, err
	}
	return Removed{PeerID: to.String()}, s.n.RemoveContact(to)
}

func (s *Server) requests(context.Context, None) ([]Contact, error) {
	return contactsOf(s.n.Requests())
}

func (s *Server) clearRequests(context.Context, None) (Cleared, error) {
	n, err := s.n.ClearRequests()
	return Cleared{Deleted: n}, err
}

func (s *Server) contactOp(f func(peer.ID) error) func(context.Context, PeerParams) (Contact, error) {
	return func(_ context.Context, p PeerParams) (Contact, error) {
		to, err := s.n.Resolve(p.Peer)
		if err != nil {
			return Contact{}, err
		}
		return s.contactAfter(to, f(to))
	}
}

func (s *Server) setVerified(_ context.Context, p VerifiedParams) (Contact, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Contact{}, err
	}
	verified := p.Verified == nil || *p.Verified
	return s.contactAfter(to, s.n.SetVerified(to, verified))
}

func (s *Server) trust(_ context.Context, p PeerParams) (Trusted, error) {
	to, err := s.n.Resolve(p.Peer)
	if err != nil {
		return Trusted{}, err
	}
	changed, err := s.n.TrustIdentity(to)
	return Trusted{PeerID: to.String(), Changed: changed}, err
}
