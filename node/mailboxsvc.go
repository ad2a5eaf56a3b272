package node

import (
	"encoding/base32"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/mailbox"
)

// The mailbox role (docs/mailbox.md): with Config.Mailbox the node keeps
// sealed deposits for the owners its operator admits, in
// db.MailboxFileName beside the store, served by package mailbox on the
// node's host. Like a relay it must be reachable from the internet, so it
// serves the DHT.

// MailboxLimits are a mailbox's limits; zero fields take the defaults of
// mailbox.ServerConfig.
type MailboxLimits struct {
	MaxOwners  int
	Quota      int           // deposits kept per owner
	QuotaBytes int64         // bytes kept per owner
	TTLMax     time.Duration // the longest an owner may keep a deposit
}

// Errors of the mailbox calls.
var (
	// ErrNotMailbox: a mailbox call on a node started without
	// Config.Mailbox.
	ErrNotMailbox = errors.New("node: this node is not a mailbox (start it with --mailbox)")
	// ErrOwnerExists: the peer is an owner at this mailbox already.
	ErrOwnerExists = db.ErrOwnerExists
)

// InvitePrefix starts a mailbox invitation code.
const InvitePrefix = "p2pmsg-mbox:"

type mailboxRole struct {
	store  *db.Mailbox
	server *mailbox.Server
}

// startMailbox opens the mailbox store and serves the mailbox protocols
// on h.
func (n *Node) startMailbox(h host.Host) (*mailboxRole, error) {
	path := filepath.Join(n.cfg.DataDir, db.MailboxFileName)
	store, err := db.OpenMailbox(path)
	if err != nil {
		return nil, fmt.Errorf("node: mailbox store: %w", err)
	}
	l := n.cfg.MailboxLimits
	srv := mailbox.NewServer(h, store, mailbox.ServerConfig{MaxOwners: l.MaxOwners, Quota: l.Quota, QuotaBytes: l.QuotaBytes,
		TTLMax: l.TTLMax, Logger: n.log, Now: n.cfg.mailboxNow})
	n.log.Info("serving as a mailbox", "file", path)
	return &mailboxRole{store: store, server: srv}, nil
}

// close stops serving; the store closes after the host, whose handlers
// may still be reading (Close orders them).
func (r *mailboxRole) close() { r.server.Close() }

func (n *Node) mailboxRole() (*mailboxRole, error) {
	lc := &n.lifecycle
	lc.Lock()
	defer lc.Unlock()
	if lc.closed {
		return nil, ErrClosed
	}
	if n.mbox == nil {
		if n.cfg.Mailbox {
			return nil, ErrNotStarted
		}
		return nil, ErrNotMailbox
	}
	return n.mbox, nil
}

// MailboxOwner is an owner admitted to this node's mailbox.
type MailboxOwner struct {
	Peer        peer.ID
	Quota       int
	QuotaBytes  int64
	TTLMax      time.Duration
	Stored      int   // deposits waiting
	StoredBytes int64 // their bytes
	Since       time.Time
}

// MailboxAllow admits an owner to this node's mailbox, with limits up to
// the mailbox's (zero: the mailbox's).
func (n *Node) MailboxAllow(p peer.ID, quota int, quotaBytes int64, ttlMax time.Duration) error {
	r, err := n.mailboxRole()
	if err != nil {
		return err
	}
	_, err = r.server.Allow(p, quota, quotaBytes, ttlMax)
	return err
}

// MailboxInvite makes a one-time invitation, valid for valid, with limits
// as MailboxAllow's, and returns its code: InvitePrefix, the secret, and
// after "@" an address of this node with its peer ID.
func (n *Node) MailboxInvite(quota int, quotaBytes int64, ttlMax, valid time.Duration) (string, error) {
	r, err := n.mailboxRole()
	if err != nil {
		return "", err
	}
	addrs := n.Addrs()
	if len(addrs) == 0 {
		return "", errors.New("node: this mailbox listens on no address to invite to")
	}
	// A public address if it has one: the owner is elsewhere.
	if i := slices.IndexFunc(addrs, manet.IsPublicAddr); i > 0 {
		addrs[0] = addrs[i]
	}
	secret, err := r.server.Invite(quota, quotaBytes, ttlMax, time.Now().Add(valid))
	if err != nil {
		return "", err
	}
	return InvitePrefix + inviteEncoding.EncodeToString(secret[:]) + "@" + addrs[0].String(), nil
}

var inviteEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// ParseInvite reads an invitation code: its secret and the mailbox's
// address (with its peer ID).
func ParseInvite(code string) ([mailbox.KeySize]byte, peer.AddrInfo, error) {
	var secret [mailbox.KeySize]byte
	rest, ok := strings.CutPrefix(strings.TrimSpace(code), InvitePrefix)
	enc, addr, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 {
		return secret, peer.AddrInfo{}, fmt.Errorf("node: not a mailbox invitation (%s...@address)", InvitePrefix)
	}
	b, err := inviteEncoding.DecodeString(strings.ToUpper(enc))
	if err != nil || len(b) != len(secret) {
		return secret, peer.AddrInfo{}, errors.New("node: the invitation's secret is damaged")
	}
	copy(secret[:], b)
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return secret, peer.AddrInfo{}, fmt.Errorf("node: the invitation's address: %w", err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return secret, peer.AddrInfo{}, fmt.Errorf("node: the invitation's address has no peer ID: %w", err)
	}
	return secret, *ai, nil
}

// MailboxOwners lists the owners admitted to this node's mailbox.
func (n *Node) MailboxOwners() ([]MailboxOwner, error) {
	r, err := n.mailboxRole()
	if err != nil {
		return nil, err
	}
	owners, err := r.store.Owners()
	if err != nil {
		return nil, err
	}
	out := make([]MailboxOwner, 0, len(owners))
	for _, o := range owners {
		p, err := peer.Decode(o.Peer)
		if err != nil {
			continue
		}
		out = append(out, MailboxOwner{Peer: p, Quota: o.Quota, QuotaBytes: o.QuotaBytes, TTLMax: o.TTLMax,
			Stored: o.Used, StoredBytes: o.UsedBytes, Since: o.Created})
	}
	return out, nil
}

// MailboxRevoke removes an owner and everything kept for it, and reports
// whether it was one.
func (n *Node) MailboxRevoke(p peer.ID) (bool, error) {
	r, err := n.mailboxRole()
	if err != nil {
		return false, err
	}
	return r.server.Revoke(p)
}
