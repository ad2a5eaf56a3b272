package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/mailbox"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// The owner's side of mailboxes (docs/mailbox.md): the node names up to
// three mailboxes in its bundle, keeps each supplied with its bundle and
// one-time prekeys, grants its contacts tokens for them, and while it
// runs keeps a subscription to each, receiving what waits there as if it
// had come on a stream from its sender.

// Owner-side settings.
const (
	// mailboxStrangersPerHour and mailbox.DefaultPowBits: what strangers
	// may deposit.
	mailboxStrangersPerHour = 20
	// otkLow, otkFill: a mailbox is topped up to otkFill one-time
	// prekeys of each kind when it has fewer than otkLow.
	otkLow  = 20
	otkFill = 100
	// collectPage: the seals' bytes of one page of a subscription.
	collectPage = 64 << 10
	// mailboxRefresh: a subscription is renewed this often, and the
	// mailbox given a fresh bundle and one-time prekeys then.
	mailboxRefresh = time.Hour
	// mailboxRetryMin, mailboxRetryMax: the backoff after a failure.
	mailboxRetryMin = time.Second
	mailboxRetryMax = 5 * time.Minute
	// mailboxCallTimeout bounds one request to a mailbox.
	mailboxCallTimeout = 20 * time.Second
	// retrySoon: a subscription starts again this long after a deposit
	// had to wait (the strangers' handshake budget refills meanwhile).
	retrySoon = 10 * time.Second
)

// Errors of the owner's mailbox calls.
var (
	ErrTooManyMailboxes = db.ErrTooManyMailboxes
	ErrNoMailbox        = errors.New("node: no such mailbox")
)

// MailboxStatus is one of this node's mailboxes, as last seen.
type MailboxStatus struct {
	Peer  peer.ID
	Addrs []ma.Multiaddr
	Added time.Time
	// Reachable: the subscription is open now.
	Reachable bool
	// LastError says why it is not, when it is not.
	LastError string
	// What the mailbox reported at the last refresh.
	Stored           int
	StoredBytes      int64
	OTKs, PQOTKs     int
	Checked          time.Time
	Collected, Junk  int // since start
	QuotaBytes       int64
	TTL              time.Duration
	StrangersAllowed bool
}

// owned is the node's mailboxes at run time.
type owned struct {
	sync.Mutex
	running map[peer.ID]*ownedMailbox
	// policy serialises setPolicy, a whole operation (a store read and
	// a call to the mailbox): taken with nothing else held.
	policy sync.Mutex
	// revoking, revokeAgain: revokeGrants runs; run it once more.
	revoking, revokeAgain bool
}

type ownedMailbox struct {
	stop    context.CancelFunc
	done    chan struct{}
	refresh chan struct{}
	status  MailboxStatus // under owned's lock
}

// ParseMailbox reads what `mailboxes add` takes: an invitation code, or a
// multiaddr with /p2p/ (a mailbox that admitted us by peer ID).
func ParseMailbox(s string) (secret *[mailbox.KeySize]byte, ai peer.AddrInfo, err error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, InvitePrefix) {
		sec, ai, err := ParseInvite(s)
		if err != nil {
			return nil, ai, err
		}
		return &sec, ai, nil
	}
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, ai, fmt.Errorf("node: %q is neither an invitation (%s…) nor an address: %w", s, InvitePrefix, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return nil, ai, fmt.Errorf("node: the mailbox address %s needs its /p2p/ peer ID: %w", a, err)
	}
	return nil, *info, nil
}

// AddMailbox makes this node an owner at a mailbox: it redeems the
// invitation (if spec is one), sets the policy, uploads the bundle and
// one-time prekeys, names the mailbox in the bundle it publishes, grants
// every accepted contact a token, and starts collecting.
func (n *Node) AddMailbox(ctx context.Context, spec string) (peer.ID, error) {
	if err := n.running(); err != nil {
		return "", err
	}
	secret, ai, err := ParseMailbox(spec)
	if err != nil {
		return "", err
	}
	if ai.ID == n.id {
		return "", errors.New("node: a node cannot be its own mailbox")
	}
	have, err := n.ownMailboxes()
	if err != nil {
		return "", err
	}
	var key []byte
	for _, m := range have {
		if m.Peer == ai.ID.String() {
			key = m.TokenKey
		}
	}
	if key == nil && len(have) >= db.MaxMailboxes {
		return "", ErrTooManyMailboxes
	}
	if key == nil {
		key = make([]byte, mailbox.KeySize)
		rand.Read(key)
	}
	h := n.host
	h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
	ctx, cancel := context.WithTimeout(ctx, mailboxCallTimeout)
	defer cancel()
	if err := h.Connect(ctx, ai); err != nil {
		return "", fmt.Errorf("node: reach the mailbox %s: %w", ai.ID, err)
	}
	if secret != nil {
		if _, err := mailbox.Call(ctx, h, ai.ID, mailbox.Redeem{Secret: *secret}); err != nil {
			// An owner already (a second `add` of the same code)
			// answers STATUS below.
			var me *mailbox.Error
			if !errors.As(err, &me) || me.Code != mailbox.ErrCodeBadRequest {
				return "", fmt.Errorf("node: redeem the invitation: %w", err)
			}
		}
	}
	st, err := mailboxStatus(ctx, n, ai.ID)
	if err != nil {
		return "", err
	}
	m := db.OwnMailbox{Peer: ai.ID.String(), Inbox: st.Inbox, TokenKey: key, Added: time.Now(), Updated: time.Now()}
	for _, a := range ai.Addrs {
		m.Addrs = append(m.Addrs, a.Bytes())
	}
	if err := n.setPolicy(ctx, ai.ID, m.TokenKey, st); err != nil {
		return "", err
	}
	if err := n.store.Update(func(tx *db.Tx) error { return tx.PutMailbox(m) }); err != nil {
		return "", err
	}
	n.log.Info("mailbox added", "mailbox", ai.ID)
	// Supplied with our bundle and one-time prekeys before `add`
	// returns: a first contact may use it at once.
	supplied, err := n.supply(ctx, ai.ID, &m)
	if err != nil {
		n.log.Warn("supply the new mailbox; the collector tries again", "mailbox", ai.ID, "err", err)
	}
	n.startCollector(m, supplied)
	// The bundle now names it: publish (a failure is retried by the
	// publication loop).
	n.publishNow(ctx)
	n.spawnIf(true, func() { n.grantAll() })
	return ai.ID, nil
}

// publishNow publishes the bundle, which changed; on failure the
// publication loop tries again.
func (n *Node) publishNow(ctx context.Context) {
	if _, err := n.PublishBundle(ctx); err != nil {
		n.log.Info("publish the bundle that names our mailboxes", "err", err)
		n.republish()
	}
}

// mailboxStatus asks a mailbox for our inbox's figures.
func mailboxStatus(ctx context.Context, n *Node, mbox peer.ID) (mailbox.StatusReply, error) {
	r, err := mailbox.Call(ctx, n.host, mbox, mailbox.Status{})
	if err != nil {
		return mailbox.StatusReply{}, fmt.Errorf("node: mailbox %s: %w", mbox, err)
	}
	st, ok := r.(mailbox.StatusReply)
	if !ok {
		return st, fmt.Errorf("node: mailbox %s: %w: %T to STATUS", mbox, mailbox.ErrUnexpected, r)
	}
	return st, nil
}

// setPolicy gives the mailbox our policy: our TTL within its maximum,
// strangers with proof of work, the token key (revokeGrants says why no
// single index is ever revoked): key, or with none the key stored now.
// One at a time (owned.policy), the stored key read under it: a round
// that read the key before revokeGrants made a new one cannot put the
// old one back.
func (n *Node) setPolicy(ctx context.Context, mbox peer.ID, key []byte, st mailbox.StatusReply) error {
	o := &n.owned
	o.policy.Lock()
	defer o.policy.Unlock()
	if key == nil {
		m, err := n.ownMailbox(mbox)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("%w: %s", ErrNoMailbox, mbox)
		}
		key = m.TokenKey
	}
	ttl := uint32(db.DefaultMailboxTTL / time.Second)
	if st.TTLMax > 0 && st.TTLMax < ttl {
		ttl = st.TTLMax
	}
	p := mailbox.Policy{TTL: ttl, Strangers: true, PowBits: n.cfg.mailboxPowBits(), StrangersPerHour: mailboxStrangersPerHour}
	copy(p.TokenKey[:], key)
	if _, err := mailbox.Call(ctx, n.host, mbox, mailbox.SetPolicy{Policy: p}); err != nil {
		return fmt.Errorf("node: set the policy at mailbox %s: %w", mbox, err)
	}
	return nil
}

// RemoveMailbox stops using a mailbox: it asks it to delete what it
// keeps for us (best effort: a mailbox that is down keeps it until its
// TTL), forgets it, and publishes a bundle without it.
func (n *Node) RemoveMailbox(ctx context.Context, p peer.ID) error {
	if err := n.running(); err != nil {
		return err
	}
	var ok bool
	if err := n.store.Update(func(tx *db.Tx) (err error) { ok, err = tx.DeleteMailbox(p.String()); return err }); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNoMailbox, p)
	}
	n.stopCollector(p)
	ctx, cancel := context.WithTimeout(ctx, mailboxCallTimeout)
	defer cancel()
	if _, err := mailbox.Call(ctx, n.host, p, mailbox.Unregister{}); err != nil {
		n.log.Warn("the mailbox did not unregister us; it deletes what it keeps at its TTL", "mailbox", p, "err", err)
	}
	n.host.ConnManager().Unprotect(p, "mailbox")
	n.publishNow(ctx)
	return nil
}

// Mailboxes lists this node's mailboxes and how they are doing.
func (n *Node) Mailboxes() ([]MailboxStatus, error) {
	have, err := n.ownMailboxes()
	if err != nil {
		return nil, err
	}
	o := &n.owned
	o.Lock()
	defer o.Unlock()
	out := make([]MailboxStatus, 0, len(have))
	for _, m := range have {
		p, err := peer.Decode(m.Peer)
		if err != nil {
			continue
		}
		s := MailboxStatus{Peer: p, Added: m.Added}
		if r := o.running[p]; r != nil {
			s = r.status
			s.Peer, s.Added = p, m.Added
		}
		s.Addrs = decodeAddrs(m.Addrs)
		out = append(out, s)
	}
	return out, nil
}

func decodeAddrs(bs [][]byte) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range bs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// mailboxEntries are the bundle extension's entries for our mailboxes.
func mailboxEntries(r *db.ReadTx, powBits uint8) ([]mailbox.Entry, error) {
	have, err := r.Mailboxes()
	if err != nil || len(have) == 0 {
		return nil, err
	}
	out := make([]mailbox.Entry, 0, len(have))
	for _, m := range have {
		p, err := peer.Decode(m.Peer)
		if err != nil {
			return nil, fmt.Errorf("node: mailbox %q: %w", m.Peer, err)
		}
		addrs := decodeAddrs(m.Addrs)
		if len(addrs) > mailbox.MaxAddrs {
			addrs = addrs[:mailbox.MaxAddrs]
		}
		out = append(out, mailbox.Entry{Peer: p, Inbox: m.Inbox, Strangers: true, PowBits: powBits, Addrs: addrs})
	}
	return out, nil
}

// ownMailboxes reads the mailboxes we are an owner at.
func (n *Node) ownMailboxes() ([]db.OwnMailbox, error) {
	var have []db.OwnMailbox
	err := n.store.View(func(r *db.ReadTx) (err error) { have, err = r.Mailboxes(); return err })
	return have, err
}

// ownMailbox reads one of them: nil when it is not one of ours (any
// more).
func (n *Node) ownMailbox(p peer.ID) (*db.OwnMailbox, error) {
	have, err := n.ownMailboxes()
	for i := range have {
		if have[i].Peer == p.String() {
			return &have[i], err
		}
	}
	return nil, err
}

// startMailboxes starts collecting from every mailbox named.
func (n *Node) startMailboxes() {
	have, err := n.ownMailboxes()
	if err != nil {
		n.log.Error("read the mailboxes", "err", err)
		return
	}
	for _, m := range have {
		n.startCollector(m, nil)
	}
}

// startCollector starts collecting from m, with what supply last saw of
// it, if anything.
func (n *Node) startCollector(m db.OwnMailbox, seen *MailboxStatus) {
	p, err := peer.Decode(m.Peer)
	if err != nil {
		return
	}
	addrs := decodeAddrs(m.Addrs)
	n.host.Peerstore().AddAddrs(p, addrs, peerstore.PermanentAddrTTL)
	n.host.ConnManager().Protect(p, "mailbox")
	o := &n.owned
	o.Lock()
	if o.running == nil {
		o.running = map[peer.ID]*ownedMailbox{}
	}
	if r := o.running[p]; r != nil {
		o.Unlock()
		r.poke()
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	r := &ownedMailbox{stop: cancel, done: make(chan struct{}), refresh: make(chan struct{}, 1),
		status: MailboxStatus{Peer: p, Addrs: addrs, Added: m.Added}}
	if seen != nil {
		r.status = *seen
	}
	o.running[p] = r
	o.Unlock()
	if !n.spawn(func() { defer close(r.done); n.collect(ctx, p, r) }) {
		cancel()
		close(r.done)
	}
}

func (r *ownedMailbox) poke() {
	select {
	case r.refresh <- struct{}{}:
	default:
	}
}

func (n *Node) stopCollector(p peer.ID) {
	o := &n.owned
	o.Lock()
	r := o.running[p]
	delete(o.running, p)
	o.Unlock()
	if r != nil {
		r.stop()
		<-r.done
	}
}

// refreshMailboxes gives every mailbox the bundle just published.
func (n *Node) refreshMailboxes() {
	o := &n.owned
	o.Lock()
	defer o.Unlock()
	for _, r := range o.running {
		r.poke()
	}
}

func (n *Node) setMailboxStatus(p peer.ID, f func(*MailboxStatus)) {
	o := &n.owned
	o.Lock()
	defer o.Unlock()
	if r := o.running[p]; r != nil {
		f(&r.status)
	}
}

// collect keeps a subscription to one mailbox until ctx ends: each round
// supplies the mailbox (bundle, one-time prekeys) and collects for
// mailboxRefresh, or until the bundle changes; a failure waits with
// backoff.
func (n *Node) collect(ctx context.Context, p peer.ID, r *ownedMailbox) {
	wait := mailboxRetryMin
	for ctx.Err() == nil {
		err := n.collectRound(ctx, p, r)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			wait = mailboxRetryMin
			continue
		}
		if errors.Is(err, errRetrySoon) {
			if !sleepCtx(ctx, retrySoon) {
				return
			}
			continue
		}
		n.setMailboxStatus(p, func(s *MailboxStatus) { s.Reachable, s.LastError = false, err.Error() })
		n.log.Info("mailbox unreachable", "mailbox", p, "err", err, "retry in", wait)
		if n.newsOnce(p, "unreachable", time.Now()) {
			n.raise(EventMailbox, payload{Peer: p.String(), State: "unreachable", Reason: err.Error()})
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.refresh:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
		wait = min(wait*2, mailboxRetryMax)
	}
}

// collectRound supplies the mailbox, then collects until the round ends;
// nil when it ended as planned.
func (n *Node) collectRound(ctx context.Context, p peer.ID, r *ownedMailbox) error {
	m, err := n.ownMailbox(p)
	if err != nil {
		return err
	}
	if m == nil {
		<-ctx.Done() // removed: RemoveMailbox stops us
		return nil
	}
	seen, err := n.supply(ctx, p, m)
	if err != nil {
		return err
	}
	n.setMailboxStatus(p, func(s *MailboxStatus) { *s = *seen })
	round, cancel := context.WithTimeout(ctx, mailboxRefresh)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-r.refresh:
			cancel()
		case <-stop:
		}
	}()
	err = mailbox.Collect(round, n.host, p, 0, collectPage, func(page []mailbox.Stored) error {
		return n.takePage(p, m.Inbox, page)
	})
	if round.Err() != nil && ctx.Err() == nil {
		return nil // the round ended: refresh
	}
	if err == nil {
		err = errors.New("the subscription ended")
	}
	return err
}

// supply sets the policy, uploads the current bundle, and tops up the
// one-time prekeys; it returns the mailbox's figures after, as reachable.
func (n *Node) supply(ctx context.Context, p peer.ID, m *db.OwnMailbox) (*MailboxStatus, error) {
	cctx, cancel := context.WithTimeout(ctx, mailboxCallTimeout)
	defer cancel()
	st, err := mailboxStatus(cctx, n, p)
	if err != nil {
		return nil, err
	}
	if st.Inbox != m.Inbox {
		return nil, fmt.Errorf("node: mailbox %s changed our inbox: add it again", p)
	}
	if err := n.setPolicy(cctx, p, nil, st); err != nil {
		return nil, err
	}
	now := time.Now()
	var b []byte
	if err := n.store.Update(func(tx *db.Tx) (err error) {
		b, err = signBundle(tx, n.self, now, false, n.cfg.mailboxPowBits())
		return err
	}); err != nil {
		return nil, err
	}
	if _, err := mailbox.Call(cctx, n.host, p, mailbox.PutBundle{Bundle: b}); err != nil {
		return nil, fmt.Errorf("node: give mailbox %s our bundle: %w", p, err)
	}
	for _, k := range []e2e.OneTimeKind{e2e.OneTimeX25519, e2e.OneTimeMLKEM} {
		have := int(st.OTKsX25519)
		if k == e2e.OneTimeMLKEM {
			have = int(st.OTKsMLKEM)
		}
		if have >= otkLow {
			continue
		}
		for want := otkFill - have; want > 0; {
			certs, err := n.issueCerts(p, k, min(want, mailbox.MaxOTKsPerFrame), now)
			if err != nil {
				return nil, err
			}
			if _, err := mailbox.Call(cctx, n.host, p, mailbox.PutOTKs{Certs: certs}); err != nil {
				return nil, fmt.Errorf("node: give mailbox %s one-time prekeys: %w", p, err)
			}
			want -= len(certs)
		}
	}
	if st, err = mailboxStatus(cctx, n, p); err != nil {
		return nil, err
	}
	s := n.mailboxStatusOf(p, m)
	s.Reachable, s.LastError = true, ""
	s.Stored, s.StoredBytes, s.OTKs, s.PQOTKs, s.Checked = int(st.Stored), int64(st.StoredBytes), int(st.OTKsX25519), int(st.OTKsMLKEM), now
	s.QuotaBytes, s.TTL, s.StrangersAllowed = int64(st.QuotaBytes), time.Duration(st.TTL)*time.Second, st.Strangers
	return &s, nil
}

// mailboxStatusOf is what is known of mailbox p now.
func (n *Node) mailboxStatusOf(p peer.ID, m *db.OwnMailbox) MailboxStatus {
	o := &n.owned
	o.Lock()
	defer o.Unlock()
	if r := o.running[p]; r != nil {
		return r.status
	}
	return MailboxStatus{Peer: p, Addrs: decodeAddrs(m.Addrs), Added: m.Added}
}

// issueCerts issues k one-time prekeys of a kind for a mailbox (marked
// issued, as when a peer fetches them: each goes to one place only) and
// signs a certificate for each.
func (n *Node) issueCerts(mbox peer.ID, kind e2e.OneTimeKind, k int, now time.Time) ([][]byte, error) {
	dbKind := db.OneTimePrekey
	if kind == e2e.OneTimeMLKEM {
		dbKind = db.PQOneTimePrekey
	}
	var certs [][]byte
	err := n.store.Update(func(tx *db.Tx) error {
		certs = certs[:0]
		r := tx.Read()
		for range k {
			id, _, err := tx.IssueOneTimePrekey(dbKind, now, now.Add(oneTimeUnusedLife))
			if errors.Is(err, db.ErrNotFound) {
				if err := putNewPrekey(tx, dbKind, now, time.Time{}); err != nil {
					return err
				}
				id, _, err = tx.IssueOneTimePrekey(dbKind, now, now.Add(oneTimeUnusedLife))
			}
			if err != nil {
				return err
			}
			var cert []byte
			if kind == e2e.OneTimeMLKEM {
				key, err := loadPQ(r, db.PQOneTimePrekey, id, now)
				if err != nil {
					return err
				}
				cert, err = n.self.SignPQOneTimeCert([]byte(mbox), key)
			} else {
				key, err := loadOneTime(r, id)
				if err != nil {
					return err
				}
				cert, err = n.self.SignOneTimeCert([]byte(mbox), key)
			}
			if err != nil {
				return err
			}
			certs = append(certs, cert)
		}
		return nil
	})
	return certs, err
}

// errRetrySoon: a deposit of the page must wait (the strangers'
// handshake budget is spent, the store failed); the rest was
// acknowledged, and the subscription starts again in retrySoon.
var errRetrySoon = errors.New("node: a deposit must wait")

// takePage receives one page of deposits: each seal opened, its envelope
// handed to its sender's conversation as if it had come on a stream, and
// stored, with its receipt, before the page is acknowledged. What
// does not open or authenticate is junk: acknowledged (the mailbox
// deletes it) and reported. A deposit that must wait is not
// acknowledged: it comes again with the next subscription.
func (n *Node) takePage(mbox peer.ID, inbox [e2e.InboxIDSize]byte, page []mailbox.Stored) error {
	type taken struct {
		seq uint64
		p   peer.ID
		o   *recvOp
	}
	var ops []taken
	var ack []uint64
	junk := 0
	for _, d := range page {
		key, env, err := n.self.OpenSealed(inbox, d.Seal)
		var p peer.ID
		if err == nil {
			p, err = peer.IDFromBytes(e2e.PeerIDBytes(key))
		}
		var c *conv
		if err == nil && p != n.id {
			c, err = n.conv(p)
		}
		if err != nil || p == n.id {
			junk++
			ack = append(ack, d.Seq)
			continue
		}
		o := newRecvOp(env)
		o.viaMailbox = true
		c.submit(o)
		ops = append(ops, taken{d.Seq, p, o})
	}
	wait := false
	for _, t := range ops {
		t.o.wait()
		switch t.o.status {
		case wire.Stored:
		case wire.Rejected:
			switch t.o.code {
			case wire.ReasonMalformed, wire.ReasonForeign:
				// Not an envelope, or not the claimed sender's.
				junk++
			default:
				// A refusal the sender would have been told on a stream
				// (a stranger's second message, a key change, keys
				// gone): its outbox keeps the message, and a direct
				// attempt tells it.
				n.log.Debug("a deposit refused", "mailbox", mbox, "peer", t.p, "reason", t.o.reason)
			}
		default:
			wait = true
			continue
		}
		ack = append(ack, t.seq)
	}
	if n.cfg.afterPage != nil {
		n.cfg.afterPage()
	}
	// Acknowledged and not junk: taken (what waits is counted when it
	// is).
	n.setMailboxStatus(mbox, func(s *MailboxStatus) { s.Collected += len(ack) - junk; s.Junk += junk })
	if junk > 0 {
		n.log.Warn("deposits that do not open or authenticate: from the mailbox, or from a sender", "mailbox", mbox, "count", junk)
		if n.newsOnce(mbox, "junk", time.Now()) {
			n.raise(EventMailbox, payload{Peer: mbox.String(), State: "junk", Reason: fmt.Sprintf("%d deposits did not open or authenticate", junk)})
		}
	}
	if wait {
		return &mailbox.Partial{Ack: ack, Err: errRetrySoon}
	}
	return nil
}

// revokeGrants takes back the tokens of a contact just blocked or
// removed: each mailbox gets a new token key (every token granted so far
// stops working), and the contacts still accepted get new grants. A
// contact's token index cannot be revoked alone: it is the contact's
// row number, which SQLite may give again to the next contact added.
func (n *Node) revokeGrants() {
	// Coalesced: while one runs, those asked meanwhile make one more.
	o := &n.owned
	o.Lock()
	if o.revoking {
		o.revokeAgain = true
		o.Unlock()
		return
	}
	o.revoking = true
	o.Unlock()
	if !n.spawnIf(true, n.revokeLoop) {
		o.Lock()
		o.revoking = false
		o.Unlock()
	}
}

func (n *Node) revokeLoop() {
	o := &n.owned
	for {
		n.newTokenKeys()
		o.Lock()
		if !o.revokeAgain || n.ctx.Err() != nil {
			o.revoking, o.revokeAgain = false, false
			o.Unlock()
			return
		}
		o.revokeAgain = false
		o.Unlock()
	}
}

// newTokenKeys gives each mailbox a new token key, and the contacts
// still accepted new grants.
func (n *Node) newTokenKeys() {
	var have []db.OwnMailbox
	now := time.Now()
	err := n.store.Update(func(tx *db.Tx) (err error) {
		if have, err = tx.Read().Mailboxes(); err != nil {
			return err
		}
		for i := range have {
			have[i].TokenKey = make([]byte, mailbox.KeySize)
			rand.Read(have[i].TokenKey)
			have[i].Updated = now
			if err := tx.PutMailbox(have[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.log.Error("new mailbox token keys", "err", err)
		return
	}
	if len(have) == 0 {
		return
	}
	// The mailboxes first, so that the new grants work when they arrive;
	// one that is down gets its key at the collector's next round.
	for _, m := range have {
		p, err := peer.Decode(m.Peer)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, mailboxCallTimeout)
		st, err := mailboxStatus(ctx, n, p)
		if err == nil {
			err = n.setPolicy(ctx, p, nil, st)
		}
		cancel()
		if err != nil {
			n.log.Info("the mailbox gets its new token key at the next round", "mailbox", p, "err", err)
		}
	}
	n.grantAll()
}

// grantAll grants every accepted contact a token for each of our
// mailboxes.
func (n *Node) grantAll() {
	var cs []db.Contact
	if err := n.store.View(func(r *db.ReadTx) (err error) { cs, err = r.Contacts(); return err }); err != nil {
		n.log.Warn("read contacts to grant mailbox tokens", "err", err)
		return
	}
	for _, c := range cs {
		if p, err := peer.Decode(c.PeerID); err == nil && c.State == db.ContactAccepted && !c.Blocked {
			n.grant(p)
		}
	}
}

// grant queues, for a contact, a token for each of our mailboxes.
func (n *Node) grant(p peer.ID) {
	var have []db.OwnMailbox
	var idx uint32
	err := n.store.View(func(r *db.ReadTx) (err error) {
		if have, err = r.Mailboxes(); err != nil || len(have) == 0 {
			return err
		}
		idx, err = r.TokenIndex(p.String())
		return err
	})
	if err != nil || len(have) == 0 {
		return
	}
	for _, m := range have {
		mp, err := peer.Decode(m.Peer)
		if err != nil {
			continue
		}
		g := wire.Grant{Mailbox: []byte(mp), Inbox: m.Inbox, Index: idx}
		g.Token = mailbox.Token((*[mailbox.KeySize]byte)(m.TokenKey), m.Inbox, idx)
		err = n.queueControl(p, func(sent int64) ([]byte, error) { return wire.EncodeGrant(sent, g) })
		if err != nil {
			n.log.Debug("no mailbox grant queued", "peer", p, "err", err)
			return
		}
	}
}

// sleepCtx waits d, and reports false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
