package node

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pmsg/p2pmsg/db"
)

// Invitations: one string that a friend pastes (or scans) to add us,
//
//	p2pmsg:PEER_ID?addr=MULTIADDR&addr=MULTIADDR&name=NAME
//
// with the addresses we can be reached at now (public ones first, then
// relayed, then those of the LAN; loopback only when there is nothing
// else) and our display name. The addresses let the first message go
// at once, without waiting for the DHT; the name is the one we gave
// ourselves, shown until the friend names us.

// InviteScheme starts every invitation.
const InviteScheme = "p2pmsg"

const (
	// maxInvite bounds an invitation, and its addresses, before parsing.
	maxInvite      = 4096
	maxInviteAddrs = 8
	// inviteAddrTTL: how long the addresses of an invitation are tried.
	inviteAddrTTL = time.Hour
)

// ErrBadInvitation: a string that is no invitation.
var ErrBadInvitation = errors.New("node: not a p2pmsg invitation")

// Invitation is an invitation to add a peer.
type Invitation struct {
	Peer  peer.ID
	Addrs []ma.Multiaddr // without the /p2p part
	Name  string         // the display name the peer gave itself
}

// String is the invitation's shareable form.
func (i Invitation) String() string {
	q := url.Values{}
	for _, a := range i.Addrs {
		q.Add("addr", a.String())
	}
	if i.Name != "" {
		q.Set("name", i.Name)
	}
	s := InviteScheme + ":" + i.Peer.String()
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// IsInvitation reports whether s looks like an invitation rather than a peer
// ID or a name.
func IsInvitation(s string) bool { return strings.HasPrefix(s, InviteScheme+":") }

// ParseInvitation reads an invitation. Addresses it cannot read, and more
// than 8, are errors: a truncated copy should say so, not half work.
func ParseInvitation(s string) (Invitation, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxInvite {
		return Invitation{}, fmt.Errorf("%w: longer than %d bytes", ErrBadInvitation, maxInvite)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != InviteScheme || u.Opaque == "" {
		return Invitation{}, fmt.Errorf("%w: want %s:PEER_ID?addr=...", ErrBadInvitation, InviteScheme)
	}
	var inv Invitation
	if inv.Peer, err = peer.Decode(u.Opaque); err != nil {
		return Invitation{}, fmt.Errorf("%w: %q is no peer ID", ErrBadInvitation, u.Opaque)
	}
	if _, err := peerIdentity(inv.Peer); err != nil {
		return Invitation{}, fmt.Errorf("%w: %v", ErrBadInvitation, err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Invitation{}, fmt.Errorf("%w: %v", ErrBadInvitation, err)
	}
	for k := range q {
		if k != "addr" && k != "name" {
			return Invitation{}, fmt.Errorf("%w: unknown field %q", ErrBadInvitation, k)
		}
	}
	if len(q["addr"]) > maxInviteAddrs || len(q["name"]) > 1 {
		return Invitation{}, fmt.Errorf("%w: more than %d addresses or one name", ErrBadInvitation, maxInviteAddrs)
	}
	for _, s := range q["addr"] {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return Invitation{}, fmt.Errorf("%w: address %q: %v", ErrBadInvitation, s, err)
		}
		if _, id := peer.SplitAddr(a); id != "" {
			return Invitation{}, fmt.Errorf("%w: address %q names a peer", ErrBadInvitation, s)
		}
		inv.Addrs = append(inv.Addrs, a)
	}
	if name := q.Get("name"); name != "" {
		if len(name) > MaxProfileName || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
			return Invitation{}, fmt.Errorf("%w: a name is at most %d bytes of text", ErrBadInvitation, MaxProfileName)
		}
		inv.Name = name
	}
	return inv, nil
}

// Invitation returns an invitation to add this node.
func (n *Node) Invitation() (Invitation, error) {
	if err := n.running(); err != nil {
		return Invitation{}, err
	}
	name, err := n.Profile()
	if err != nil {
		return Invitation{}, err
	}
	return Invitation{Peer: n.id, Addrs: shareable(n.host.Addrs()), Name: name}, nil
}

// shareable orders addresses for a friend, public first, and leaves out
// loopback (unless it is all there is) and link-local ones.
func shareable(addrs []ma.Multiaddr) []ma.Multiaddr {
	rank := func(a ma.Multiaddr) int {
		switch {
		case isCircuit(a):
			return 1
		case manet.IsPublicAddr(a):
			return 0
		case manet.IsIPLoopback(a):
			return 3
		}
		return 2
	}
	var out []ma.Multiaddr
	for _, a := range addrs {
		if !manet.IsIP6LinkLocal(a) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b ma.Multiaddr) int { return rank(a) - rank(b) })
	if i := slices.IndexFunc(out, manet.IsIPLoopback); i > 0 {
		out = out[:i]
	}
	return out[:min(len(out), maxInviteAddrs)]
}

// AddInvitation adds the invitation's peer as an accepted contact (with the
// user's name for it, if any; else the invitation's name shows), keeps
// its addresses for an hour, and tries to connect (until ctx ends), so
// that a first message goes at once. Not reaching it is no error: the
// DHT finds it later.
func (n *Node) AddInvitation(ctx context.Context, inv Invitation, name string) error {
	if err := n.running(); err != nil {
		return err
	}
	if err := n.AddContact(inv.Peer, name); err != nil {
		return err
	}
	if inv.Name != "" {
		err := n.change(inv.Peer, func(c *conv, tx *db.Tx, st *batchState, now time.Time) (func(int64) ([]byte, error), error, error) {
			return nil, nil, c.setProfileName(tx, st, inv.Name, now)
		})
		if err != nil {
			return err
		}
	}
	if len(inv.Addrs) == 0 {
		return nil
	}
	n.host.Peerstore().AddAddrs(inv.Peer, inv.Addrs, inviteAddrTTL)
	if err := n.host.Connect(ctx, peer.AddrInfo{ID: inv.Peer}); err != nil {
		n.log.Info("an invitation's peer is not reachable now", "peer", inv.Peer, "err", err)
	}
	return nil
}
