package api

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// The mailbox methods: a daemon started with --mailbox admits owners,
// lists and revokes them (docs/mailbox.md).

// MailboxAllowParams are the params of "mailbox.allow": the owner, and
// its limits (zero: the mailbox's; TTLMax a Go duration such as "720h").
type MailboxAllowParams struct {
	Peer       string `json:"peer"`
	Quota      int    `json:"quota,omitempty"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
	TTLMax     string `json:"ttl_max,omitempty"`
}

func (p MailboxAllowParams) check() error {
	if err := needPeer(p.Peer); err != nil {
		return err
	}
	_, err := limitsOf(p.Quota, p.QuotaBytes, p.TTLMax)
	return err
}

// MailboxInviteParams are the params of "mailbox.invite": the limits its
// redeemer gets, as "mailbox.allow" takes them, and how long the code
// may be used (a Go duration; empty: 7 days).
type MailboxInviteParams struct {
	Quota      int    `json:"quota,omitempty"`
	QuotaBytes int64  `json:"quota_bytes,omitempty"`
	TTLMax     string `json:"ttl_max,omitempty"`
	Valid      string `json:"valid,omitempty"`
}

func (p MailboxInviteParams) check() error {
	if _, err := p.valid(); err != nil {
		return err
	}
	_, err := limitsOf(p.Quota, p.QuotaBytes, p.TTLMax)
	return err
}

func (p MailboxInviteParams) valid() (time.Duration, error) {
	if p.Valid == "" {
		return 7 * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(p.Valid)
	if err != nil || d <= 0 {
		return 0, invalid("valid %q: want a duration such as 24h", p.Valid)
	}
	return d, nil
}

// limitsOf checks an owner's limits and parses its TTLMax.
func limitsOf(quota int, quotaBytes int64, ttlMax string) (time.Duration, error) {
	if quota < 0 || quotaBytes < 0 {
		return 0, invalid("a quota cannot be negative")
	}
	if ttlMax == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(ttlMax)
	if err != nil || d < time.Hour {
		// Kept in whole seconds: less than that would keep nothing.
		return 0, invalid("ttl_max %q: want a duration of an hour or more, such as 720h", ttlMax)
	}
	return d, nil
}

// MailboxInvite is a one-time invitation code.
type MailboxInvite struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// MailboxOwner is an owner admitted to this mailbox.
type MailboxOwner struct {
	PeerID      string    `json:"peer_id"`
	Quota       int       `json:"quota"`
	QuotaBytes  int64     `json:"quota_bytes"`
	TTLMax      string    `json:"ttl_max"`
	Stored      int       `json:"stored"`
	StoredBytes int64     `json:"stored_bytes"`
	Since       time.Time `json:"since"`
}

// MailboxRevoked is the answer of "mailbox.revoke".
type MailboxRevoked struct {
	PeerID  string `json:"peer_id"`
	Revoked bool   `json:"revoked"` // false: it was not an owner
}

func (s *Server) mailboxAllow(_ context.Context, p MailboxAllowParams) (MailboxOwner, error) {
	id, err := peer.Decode(p.Peer)
	if err != nil {
		return MailboxOwner{}, invalid("peer %q: not a peer ID", p.Peer)
	}
	ttl, _ := limitsOf(p.Quota, p.QuotaBytes, p.TTLMax)
	if err := s.n.MailboxAllow(id, p.Quota, p.QuotaBytes, ttl); err != nil {
		return MailboxOwner{}, err
	}
	owners, err := s.n.MailboxOwners()
	for _, o := range owners {
		if o.Peer == id {
			return ownerOf(o), nil
		}
	}
	return MailboxOwner{PeerID: id.String()}, err
}

func (s *Server) mailboxInvite(_ context.Context, p MailboxInviteParams) (MailboxInvite, error) {
	ttl, _ := limitsOf(p.Quota, p.QuotaBytes, p.TTLMax)
	valid, _ := p.valid()
	code, err := s.n.MailboxInvite(p.Quota, p.QuotaBytes, ttl, valid)
	return MailboxInvite{Code: code, Expires: time.Now().Add(valid).UTC().Truncate(time.Second)}, err
}

func (s *Server) mailboxList(context.Context, None) ([]MailboxOwner, error) {
	owners, err := s.n.MailboxOwners()
	out := make([]MailboxOwner, 0, len(owners))
	for _, o := range owners {
		out = append(out, ownerOf(o))
	}
	return out, err
}

func (s *Server) mailboxRevoke(_ context.Context, p PeerParams) (MailboxRevoked, error) {
	id, err := peer.Decode(p.Peer)
	if err != nil {
		return MailboxRevoked{}, invalid("peer %q: not a peer ID", p.Peer)
	}
	ok, err := s.n.MailboxRevoke(id)
	return MailboxRevoked{PeerID: id.String(), Revoked: ok}, err
}

func ownerOf(o node.MailboxOwner) MailboxOwner {
	return MailboxOwner{PeerID: o.Peer.String(), Quota: o.Quota, QuotaBytes: o.QuotaBytes, TTLMax: o.TTLMax.String(),
		Stored: o.Stored, StoredBytes: o.StoredBytes, Since: o.Since.UTC()}
}

// MailboxAllow admits an owner to the daemon's mailbox.
func (c *Client) MailboxAllow(ctx context.Context, p MailboxAllowParams) (MailboxOwner, error) {
	return call[MailboxOwner](ctx, c, "mailbox.allow", p)
}

// MailboxInvite makes a one-time invitation code.
func (c *Client) MailboxInvite(ctx context.Context, p MailboxInviteParams) (MailboxInvite, error) {
	return call[MailboxInvite](ctx, c, "mailbox.invite", p)
}

// MailboxList lists the owners admitted to the daemon's mailbox.
func (c *Client) MailboxList(ctx context.Context) ([]MailboxOwner, error) {
	return call[[]MailboxOwner](ctx, c, "mailbox.list", nil)
}

// MailboxRevoke removes an owner and everything kept for it.
func (c *Client) MailboxRevoke(ctx context.Context, peer string) (MailboxRevoked, error) {
	return call[MailboxRevoked](ctx, c, "mailbox.revoke", PeerParams{Peer: peer})
}

// The owner's methods: the mailboxes this node is an owner at.

// MailboxesAddParams are the params of "mailboxes.add": an invitation
// code, or the mailbox's multiaddr with /p2p/ (when it admitted us by
// peer ID).
type MailboxesAddParams struct {
	Mailbox string `json:"mailbox"`
}

func (p MailboxesAddParams) check() error {
	if p.Mailbox == "" {
		return invalid("mailbox: an invitation code or the mailbox's address is required")
	}
	return nil
}

// OwnMailbox is one of the node's mailboxes, as last seen.
type OwnMailbox struct {
	PeerID      string    `json:"peer_id"`
	Addrs       []string  `json:"addrs"`
	Added       time.Time `json:"added"`
	Reachable   bool      `json:"reachable"`
	LastError   string    `json:"last_error,omitempty"`
	Stored      int       `json:"stored"`       // deposits waiting there, at the last check
	StoredBytes int64     `json:"stored_bytes"` // their bytes
	OneTimeKeys int       `json:"one_time_keys"`
	PQOneTime   int       `json:"pq_one_time_keys"`
	Collected   int       `json:"collected"` // since the daemon started
	Junk        int       `json:"junk"`      // deposits that did not open or authenticate, since start
	Checked     time.Time `json:"checked,omitzero"`
}

// MailboxRemoved is the answer of "mailboxes.remove".
type MailboxRemoved struct {
	PeerID string `json:"peer_id"`
}

func (s *Server) mailboxesAdd(ctx context.Context, p MailboxesAddParams) (OwnMailbox, error) {
	id, err := s.n.AddMailbox(ctx, p.Mailbox)
	if err != nil {
		if _, _, perr := node.ParseMailbox(p.Mailbox); perr != nil {
			return OwnMailbox{}, invalid("%v", perr)
		}
		return OwnMailbox{}, err
	}
	ms, err := s.n.Mailboxes()
	for _, m := range ms {
		if m.Peer == id {
			return ownMailboxOf(m), nil
		}
	}
	return OwnMailbox{PeerID: id.String()}, err
}

func (s *Server) mailboxesList(context.Context, None) ([]OwnMailbox, error) {
	ms, err := s.n.Mailboxes()
	out := make([]OwnMailbox, 0, len(ms))
	for _, m := range ms {
		out = append(out, ownMailboxOf(m))
	}
	return out, err
}

func (s *Server) mailboxesRemove(ctx context.Context, p PeerParams) (MailboxRemoved, error) {
	id, err := peer.Decode(p.Peer)
	if err != nil {
		return MailboxRemoved{}, invalid("peer %q: not a peer ID", p.Peer)
	}
	return MailboxRemoved{PeerID: id.String()}, s.n.RemoveMailbox(ctx, id)
}

func ownMailboxOf(m node.MailboxStatus) OwnMailbox {
	o := OwnMailbox{PeerID: m.Peer.String(), Addrs: []string{}, Added: m.Added.UTC(), Reachable: m.Reachable, LastError: m.LastError,
		Stored: m.Stored, StoredBytes: m.StoredBytes, OneTimeKeys: m.OTKs, PQOneTime: m.PQOTKs, Collected: m.Collected, Junk: m.Junk}
	if !m.Checked.IsZero() {
		o.Checked = m.Checked.UTC()
	}
	for _, a := range m.Addrs {
		o.Addrs = append(o.Addrs, a.String())
	}
	return o
}

// MailboxesAdd makes the node an owner at a mailbox.
func (c *Client) MailboxesAdd(ctx context.Context, mailbox string) (OwnMailbox, error) {
	return call[OwnMailbox](ctx, c, "mailboxes.add", MailboxesAddParams{Mailbox: mailbox})
}

// MailboxesList lists the node's mailboxes.
func (c *Client) MailboxesList(ctx context.Context) ([]OwnMailbox, error) {
	return call[[]OwnMailbox](ctx, c, "mailboxes.list", nil)
}

// MailboxesRemove stops using a mailbox.
func (c *Client) MailboxesRemove(ctx context.Context, peer string) (MailboxRemoved, error) {
	return call[MailboxRemoved](ctx, c, "mailboxes.remove", PeerParams{Peer: peer})
}
