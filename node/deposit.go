package node

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/mailbox"
)

// The sender's side of mailboxes (docs/mailbox.md, "The sender's
// pipeline"): when a peer cannot be reached, what waits for it is sealed
// to it and deposited at up to two of the mailboxes its bundle names,
// from a throwaway transport identity (Noise would otherwise name us to
// the mailbox). The outbox rows stay until the peer's receipt or a
// direct ack: a mailbox that loses a deposit costs time, not a message.

const (
	// depositMailboxes: each envelope goes to at most this many of the
	// peer's mailboxes.
	depositMailboxes = 2
	// depositBatch: deposits per stream (the server reads 64 ahead).
	depositBatch = 64
	// depositTimeout bounds one round of deposits at one mailbox.
	depositTimeout = 30 * time.Second
	// peerBundleLife: a peer's bundle, for its mailboxes, is looked up
	// again after this long.
	peerBundleLife = time.Hour
	// peerBundleRetry: a failed lookup is not tried again before this.
	peerBundleRetry = 10 * time.Second
	// maxPeerBundles bounds the bundles kept in memory for that.
	maxPeerBundles = 1024
	// depositHostIdle, maxDepositHosts: the throwaway hosts deposits go
	// out from (depositHosts).
	depositHostIdle = time.Minute
	maxDepositHosts = 4
)

// errNoDepositTarget: the peer names no mailbox we may deposit at.
var errNoDepositTarget = errors.New("node: the recipient names no mailbox that takes our deposits")

// peerBundles caches the bundles of peers we deposit for, and when each
// mailbox last made news (newsOnce).
type peerBundles struct {
	sync.Mutex
	m    map[peer.ID]peerBundle
	news map[newsKey]time.Time
}

type peerBundle struct {
	b   *e2e.Bundle // nil: the lookup failed with err
	err error
	at  time.Time
}

// bundleFor is p's bundle from the DHT, cached for peerBundleLife (a
// failed lookup for peerBundleRetry: a peer offline for days must not
// cost a lookup at each of its retries).
func (n *Node) bundleFor(ctx context.Context, p peer.ID) (*e2e.Bundle, error) {
	c := &n.peerBundles
	now := time.Now()
	c.Lock()
	if e, ok := c.m[p]; ok && e.b != nil && now.Sub(e.at) < peerBundleLife && now.Before(e.b.Expires) {
		c.Unlock()
		return e.b, nil
	} else if ok && e.b == nil && now.Sub(e.at) < peerBundleRetry {
		c.Unlock()
		return nil, e.err
	}
	c.Unlock()
	lctx, cancel := context.WithTimeout(ctx, n.cfg.lookup())
	defer cancel()
	b, _, err := n.dht.Lookup(lctx, p, 0)
	if err != nil {
		err = fmt.Errorf("%w: no bundle from the DHT: %w", ErrPeerNotFound, err)
	}
	c.Lock()
	defer c.Unlock()
	if c.m == nil || len(c.m) >= maxPeerBundles {
		c.m = map[peer.ID]peerBundle{}
	}
	c.m[p] = peerBundle{b, err, now}
	return b, err
}

// newsOnce reports whether what mailbox m says (full, refused, junk) is
// news: each at most once an hour for each mailbox, so that a mailbox
// cannot fill the event log.
func (n *Node) newsOnce(m peer.ID, what string, now time.Time) bool {
	c := &n.peerBundles
	c.Lock()
	defer c.Unlock()
	k := newsKey{m, what}
	if now.Sub(c.news[k]) < time.Hour {
		return false
	}
	if c.news == nil || len(c.news) >= maxPeerBundles {
		c.news = map[newsKey]time.Time{}
	}
	c.news[k] = now
	return true
}

type newsKey struct {
	mbox peer.ID
	what string
}

// prekeysFromMailbox asks the first of the mailboxes b names that answers
// for the peer's bundle with one-time prekeys (from a throwaway identity:
// asking names no one), and returns it when it is the same identity's
// and the certificates verify; nil otherwise, and the caller goes on
// with b.
func (n *Node) prekeysFromMailbox(ctx context.Context, b *e2e.Bundle) *e2e.Bundle {
	mboxes, err := mailbox.Mailboxes(b)
	if err != nil || len(mboxes) == 0 {
		return nil
	}
	h, err := n.throwawayHost()
	if err != nil {
		return nil
	}
	defer h.Close()
	for _, m := range mboxes {
		cctx, cancel := context.WithTimeout(ctx, mailboxCallTimeout)
		pk, err := func() (mailbox.Prekeys, error) {
			if err := h.Connect(cctx, peer.AddrInfo{ID: m.Peer, Addrs: m.Addrs}); err != nil {
				return mailbox.Prekeys{}, err
			}
			return mailbox.FetchPrekeys(cctx, h, m.Peer, m.Inbox)
		}()
		cancel()
		if err != nil {
			n.log.Debug("no prekeys from a mailbox", "mailbox", m.Peer, "err", err)
			continue
		}
		mb, err := e2e.VerifyBundle(pk.Bundle, time.Now())
		if err != nil || !mb.Identity.Equal(b.Identity) || subtle.ConstantTimeCompare(mb.IdentityDH[:], b.IdentityDH[:]) != 1 {
			n.log.Debug("a mailbox served a bundle that is not its owner's", "mailbox", m.Peer)
			continue
		}
		// The newer of the two: a mailbox may keep an old one (its owner
		// away), and must not roll us back to prekeys rotated out. The
		// certificates are the owner's for this mailbox, whichever
		// bundle they go with.
		if mb.Seq < b.Seq {
			mb = b
		}
		if len(pk.Certs) == 0 {
			return mb
		}
		withOTKs, err := mb.WithOneTimeCerts([]byte(m.Peer), pk.Certs...)
		if err != nil {
			n.log.Debug("a mailbox's one-time prekeys do not verify", "mailbox", m.Peer, "err", err)
			return mb
		}
		return withOTKs
	}
	return nil
}

// depositors: at most one goroutine per peer deposits (depositSoon).
type depositors struct {
	sync.Mutex
	m map[peer.ID]chan struct{}
}

// depositSoon makes sure what waits for p, and is in no mailbox yet, is
// deposited at p's mailboxes, beside the outbox worker's direct attempts
// (which may wait for a dial to time out): when p could not be reached,
// and when a message is queued for p while no connection to it is open.
// It never blocks.
func (n *Node) depositSoon(p peer.ID) {
	ds := &n.depositors
	ds.Lock()
	defer ds.Unlock()
	if ch, ok := ds.m[p]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
		return
	}
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	if !n.spawnIf(true, func() { n.runDepositor(p, ch) }) {
		return
	}
	if ds.m == nil {
		ds.m = map[peer.ID]chan struct{}{}
	}
	ds.m[p] = ch
}

// runDepositor deposits for p while it is asked to; it leaves under the
// lock when nothing more is asked.
func (n *Node) runDepositor(p peer.ID, ch chan struct{}) {
	ds := &n.depositors
	for {
		ds.Lock()
		select {
		case <-ch:
		default:
			delete(ds.m, p)
			ds.Unlock()
			return
		}
		ds.Unlock()
		err := n.depositWaiting(n.ctx, p)
		switch {
		case err == nil, errors.Is(err, errNoDepositTarget), errors.Is(err, ErrPeerNotFound), n.ctx.Err() != nil:
		default:
			n.log.Info("deposit at a mailbox failed", "peer", p, "err", err)
		}
	}
}

// notConnected reports whether no connection to p is open, relayed or
// not; false before Start (no host to deposit from).
func (n *Node) notConnected(p peer.ID) bool {
	h := n.currentHost()
	if h == nil {
		return false
	}
	c := h.Network().Connectedness(p)
	return c != network.Connected && c != network.Limited
}

// target is one mailbox a deposit goes to, with its authorisation.
type target struct {
	entry mailbox.Entry
	grant *db.Grant // nil: a stranger's proof of work
}

// depositWaiting deposits what waits for p and is in no mailbox yet at
// up to depositMailboxes of p's mailboxes, and marks it mailboxed.
func (n *Node) depositWaiting(ctx context.Context, p peer.ID) error {
	var entries []db.OutboxEntry
	var grants []db.Grant
	var contact db.Contact
	mailboxedAny := false
	err := n.store.View(func(r *db.ReadTx) error {
		all, err := r.OutboxFor(p.String())
		if err != nil {
			return err
		}
		for _, e := range all {
			if !e.Mailboxed.IsZero() {
				mailboxedAny = true
			}
			if len(e.Envelope) > 0 && e.Mailboxed.IsZero() && !e.Held {
				entries = append(entries, e)
			}
		}
		if len(entries) == 0 {
			return nil
		}
		if contact, err = r.Contact(p.String()); err != nil && !errors.Is(err, db.ErrNotFound) {
			return err
		}
		grants, err = r.Grants(p.String())
		return err
	})
	if err != nil || len(entries) == 0 {
		return err
	}
	b, err := n.bundleFor(ctx, p)
	if err != nil {
		return err
	}
	// Seal only to the key the contact is known by: a bundle of another
	// identity key is a key change, which the direct path reports.
	if ik := identityKey(b.Identity, b.IdentityDH); contact.IdentityKey != nil && subtle.ConstantTimeCompare(ik, contact.IdentityKey) != 1 {
		return fmt.Errorf("%w: %s", ErrIdentityChanged, p)
	}
	mboxes, err := mailbox.Mailboxes(b)
	if err != nil {
		return err
	}
	targets := chooseTargets(mboxes, grants)
	if len(targets) == 0 {
		return errNoDepositTarget
	}
	if targets[0].grant == nil {
		// A stranger's deposits cost work and count against the
		// recipient's strangers: one first message, and the rest waits
		// here until it answers (as a stranger's second message would be
		// held on the direct path).
		if mailboxedAny {
			return nil
		}
		entries = entries[:1]
	}
	h, err := n.depositHostFor(p)
	if err != nil {
		return err
	}
	stored := map[e2e.MessageID]bool{}
	var errs []error
	for _, t := range targets {
		ok, err := n.depositAt(ctx, h, b, t, entries)
		for id := range ok {
			stored[id] = true
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("mailbox %s: %w", t.entry.Peer, err))
		}
	}
	if len(stored) > 0 {
		if err := n.markMailboxed(p, entries, stored); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// chooseTargets picks the mailboxes to deposit at: those we hold a grant
// for, in the bundle's order, then those that take strangers.
func chooseTargets(mboxes []mailbox.Entry, grants []db.Grant) []target {
	var out []target
	for _, m := range mboxes {
		for i := range grants {
			if g := &grants[i]; g.Mailbox == m.Peer.String() && g.Inbox == m.Inbox && len(out) < depositMailboxes {
				out = append(out, target{entry: m, grant: g})
				break
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, m := range mboxes {
		if m.Strangers && len(out) < depositMailboxes {
			out = append(out, target{entry: m})
		}
	}
	return out
}

// depositAt seals and deposits the entries at one mailbox, in order, and
// returns those it stored (or had already).
func (n *Node) depositAt(ctx context.Context, h host.Host, b *e2e.Bundle, t target, entries []db.OutboxEntry) (map[e2e.MessageID]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, depositTimeout)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: t.entry.Peer, Addrs: t.entry.Addrs}); err != nil {
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	stored := map[e2e.MessageID]bool{}
	ttl := uint32(db.DefaultMailboxTTL / time.Second)
	for len(entries) > 0 {
		batch := entries[:min(len(entries), depositBatch)]
		entries = entries[len(batch):]
		ds := make([]mailbox.Deposit, 0, len(batch))
		for _, e := range batch {
			seal, err := n.self.SealOnce(b.IdentityDH, t.entry.Inbox, e.Envelope)
			if err != nil {
				return stored, err
			}
			d := mailbox.Deposit{Inbox: t.entry.Inbox, TTL: ttl, Seal: seal}
			if t.grant != nil {
				d.Auth, d.Index, d.Token = mailbox.AuthToken, t.grant.Index, t.grant.Token
			} else {
				if len(seal) > mailbox.MaxStrangerSeal {
					return stored, errors.New("a first message too long for a stranger's deposit")
				}
				d.Auth, d.Hour = mailbox.AuthWork, mailbox.Hour(time.Now())
				nonce, err := mailbox.Solve(ctx, t.entry.Inbox, seal, d.Hour, t.entry.PowBits)
				if err != nil {
					return stored, err
				}
				d.Nonce = nonce
			}
			ds = append(ds, d)
		}
		res, err := mailbox.Deposits(ctx, h, t.entry.Peer, ds)
		if n.cfg.loseDepositReply != nil && n.cfg.loseDepositReply() {
			res, err = nil, errors.New("the connection to the mailbox broke (test)")
		}
		for i, r := range res {
			switch r {
			case mailbox.ResultStored, mailbox.ResultDuplicate:
				stored[batch[i].MessageID] = true
			case mailbox.ResultQuota:
				if n.newsOnce(t.entry.Peer, "full", time.Now()) {
					n.raise(EventMailbox, payload{Peer: t.entry.Peer.String(), State: "full",
						Reason: "a contact's mailbox is full: what it could not take stays queued here"})
				}
				return stored, errors.New("the mailbox is full")
			case mailbox.ResultAuth:
				if n.newsOnce(t.entry.Peer, "refused", time.Now()) {
					n.raise(EventMailbox, payload{Peer: t.entry.Peer.String(), State: "refused",
						Reason: "a contact's mailbox refused our deposit: its owner took back our token (it stays queued here)"})
				}
				return stored, errors.New("the mailbox refused our token")
			default:
				// In order: what follows would land out of order.
				return stored, fmt.Errorf("deposit refused (result %d)", r)
			}
		}
		if err != nil {
			return stored, err
		}
	}
	return stored, nil
}

// markMailboxed records the deposits, with their events.
func (n *Node) markMailboxed(p peer.ID, entries []db.OutboxEntry, stored map[e2e.MessageID]bool) error {
	now := time.Now()
	events := false
	err := n.store.Update(func(tx *db.Tx) error {
		events = false
		for _, e := range entries {
			if !stored[e.MessageID] {
				continue
			}
			ok, err := tx.Mailboxed(p.String(), e.MessageID, now)
			if err != nil {
				return err
			}
			if ok {
				events = true
				if err := appendEvent(tx, EventState, payload{Peer: p.String(), MessageID: msgIDString(e.MessageID), State: string(db.Mailboxed)}, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil && events {
		n.notifyEvents()
	}
	return err
}

// depositHosts keeps, for each peer we deposit for, the throwaway host
// its deposits go out from, until it has been idle depositHostIdle: a
// mailbox limits the new connections it accepts from one address
// (go-libp2p's default: a burst of 16, then one every 5 s), and a host
// per round would hit that within seconds of steady messaging. At most
// maxDepositHosts at once: a mailbox also limits the connections open
// from one address (8 by default). A mailbox can link the deposits of one
// host; it can already link a contact's by its token index, and a
// peer's deposits go to its own inbox.
type depositHosts struct {
	sync.Mutex
	m      map[peer.ID]*depositHost
	closed bool
}

type depositHost struct {
	h    host.Host
	last time.Time
	idle *time.Timer
}

// depositHostFor is the throwaway host for deposits to p's mailboxes.
func (n *Node) depositHostFor(p peer.ID) (host.Host, error) {
	dh := &n.depositHosts
	dh.Lock()
	defer dh.Unlock()
	if dh.closed {
		return nil, ErrClosed
	}
	now := time.Now()
	if e := dh.m[p]; e != nil {
		e.last = now
		e.idle.Reset(depositHostIdle)
		return e.h, nil
	}
	if len(dh.m) >= maxDepositHosts {
		// The longest idle goes (a deposit under way on it fails, and
		// is tried again).
		var oldest peer.ID
		for q, e := range dh.m {
			if oldest == "" || e.last.Before(dh.m[oldest].last) {
				oldest = q
			}
		}
		e := dh.m[oldest]
		delete(dh.m, oldest)
		e.idle.Stop()
		defer e.h.Close() // after the lock
	}
	h, err := n.throwawayHost()
	if err != nil {
		return nil, err
	}
	e := &depositHost{h: h, last: now}
	e.idle = time.AfterFunc(depositHostIdle, func() {
		dh.Lock()
		// Used again while this waited for the lock: it stays.
		mine := dh.m[p] == e && time.Since(e.last) >= depositHostIdle
		if mine {
			delete(dh.m, p)
		}
		dh.Unlock()
		if mine {
			e.h.Close()
		}
	})
	if dh.m == nil {
		dh.m = map[peer.ID]*depositHost{}
	}
	dh.m[p] = e
	return h, nil
}

// closeDepositHosts closes them all (Close, once the depositors are
// gone).
func (n *Node) closeDepositHosts() error {
	dh := &n.depositHosts
	dh.Lock()
	dh.closed = true
	all := dh.m
	dh.m = nil
	dh.Unlock()
	var errs []error
	for _, e := range all {
		e.idle.Stop()
		errs = append(errs, e.h.Close()) // a host closes once, whoever asks first
	}
	return errors.Join(errs...)
}

// throwawayHost is a libp2p host with a fresh identity that listens
// nowhere: deposits from it do not name us to the mailbox.
func (n *Node) throwawayHost() (host.Host, error) {
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, err
	}
	return libp2p.New(
		libp2p.Identity(priv),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, muxer()),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
}
