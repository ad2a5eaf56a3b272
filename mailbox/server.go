package mailbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// The protocols and the resource manager's service that holds their
// streams.
const (
	OwnerProtocol   protocol.ID = "/p2pmsg/mbox/owner/1.0.0"
	DepositProtocol protocol.ID = "/p2pmsg/mbox/deposit/1.0.0"
	ServiceName                 = "p2pmsg-mbox"
)

// ServerConfig are a mailbox's limits; zero fields take the defaults of
// docs/mailbox.md.
type ServerConfig struct {
	MaxOwners  int           // owners admitted at most (20)
	Quota      int           // deposits kept per owner (10,000)
	QuotaBytes int64         // bytes of seals kept per owner (50 MiB)
	TTLMax     time.Duration // the longest an owner may keep a deposit (30 days)
	// MaxOTKs is how many one-time prekeys of each kind an owner may
	// keep here (100).
	MaxOTKs int
	// MaxStrangersWaiting bounds the strangers' deposits waiting in one
	// inbox (50).
	MaxStrangersWaiting int
	// Now is the clock (time.Now); tests move it.
	Now    func() time.Time
	Logger *slog.Logger
}

func (c *ServerConfig) defaults() {
	if c.MaxOwners <= 0 {
		c.MaxOwners = 20
	}
	if c.Quota <= 0 {
		c.Quota = 10000
	}
	if c.QuotaBytes <= 0 {
		c.QuotaBytes = 50 << 20
	}
	if c.TTLMax <= 0 {
		c.TTLMax = 30 * 24 * time.Hour
	}
	if c.MaxOTKs <= 0 {
		c.MaxOTKs = 100
	}
	if c.MaxStrangersWaiting <= 0 {
		c.MaxStrangersWaiting = 50
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server timing and rate limits.
const (
	// requestIdle: a stream with no request for this long is closed (a
	// subscription's stream is exempt: it waits for deposits).
	requestIdle = time.Minute
	// frameTimeout: a frame, once begun, arrives whole within this.
	frameTimeout = 10 * time.Second
	// writeTimeout bounds a reply's write.
	writeTimeout = 10 * time.Second
	// expireEvery: expired deposits and invitations are deleted this
	// often.
	expireEvery = 10 * time.Minute
	// prekeysPerAddr: one-time prekeys go to one IP address at most this
	// often; prekeysRate and prekeysBurst bound them over all addresses.
	prekeysPerAddr = 10 * time.Second
	prekeysRate    = rate.Limit(0.5)
	prekeysBurst   = 30
	// maxPrekeyAddrs bounds the addresses remembered for prekeysPerAddr.
	maxPrekeyAddrs = 4096
	// maxDepositBatch bounds the deposits of one stream stored at once.
	maxDepositBatch = 64
	// maxPageItems bounds a page's deposits: its count is two bytes.
	maxPageItems = 0xffff
	// redeemRate and redeemBurst bound the invitations tried, over all
	// peers.
	redeemRate  = rate.Limit(1)
	redeemBurst = 5
	// maxBatchBytes bounds the frames of one stream read ahead and held
	// at once; each is also reserved in the stream's resource scope.
	maxBatchBytes = 1 << 20
)

// Server serves the mailbox protocols on a host, from a mailbox store.
type Server struct {
	h     host.Host
	store *db.Mailbox
	cfg   ServerConfig
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closing   bool                                    // Close began: no handler starts
	newDeps   map[[e2e.InboxIDSize]byte]chan struct{} // closed when a deposit arrives
	strangers map[[e2e.InboxIDSize]byte]*rate.Limiter
	prekeyAt  map[string]time.Time
	prekeys   *rate.Limiter
	redeems   *rate.Limiter
}

// NewServer starts serving the mailbox protocols on h, from store.
func NewServer(h host.Host, store *db.Mailbox, cfg ServerConfig) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{h: h, store: store, cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		newDeps: map[[e2e.InboxIDSize]byte]chan struct{}{}, strangers: map[[e2e.InboxIDSize]byte]*rate.Limiter{},
		prekeyAt: map[string]time.Time{}, prekeys: rate.NewLimiter(prekeysRate, prekeysBurst),
		redeems: rate.NewLimiter(redeemRate, redeemBurst)}
	h.SetStreamHandler(OwnerProtocol, s.serve(s.handleOwner))
	h.SetStreamHandler(DepositProtocol, s.serve(s.handleDeposit))
	s.wg.Go(s.expireLoop)
	return s
}

// Close stops serving and waits for the handlers under way.
func (s *Server) Close() {
	s.h.RemoveStreamHandler(OwnerProtocol)
	s.h.RemoveStreamHandler(DepositProtocol)
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// serve runs a handler counted by Close, in the mailbox's service scope.
func (s *Server) serve(handle func(network.Stream)) network.StreamHandler {
	return func(st network.Stream) {
		if err := st.Scope().SetService(ServiceName); err != nil {
			st.Reset()
			return
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			st.Reset()
			return
		}
		s.wg.Add(1) // under mu: never after Close began to wait
		s.mu.Unlock()
		defer s.wg.Done()
		// A stream outlives nothing: Close resets what is under way.
		stop := context.AfterFunc(s.ctx, func() { st.Reset() })
		defer stop()
		handle(st)
	}
}

// Allow admits an owner with this mailbox's limits (zero: the
// defaults) and returns its inbox.
func (s *Server) Allow(p peer.ID, quota int, quotaBytes int64, ttlMax time.Duration) ([e2e.InboxIDSize]byte, error) {
	var inbox [e2e.InboxIDSize]byte
	if err := checkTTLMax(ttlMax); err != nil {
		return inbox, err
	}
	rand.Read(inbox[:])
	return inbox, s.store.AddOwner(s.limits(p, inbox, quota, quotaBytes, ttlMax), s.cfg.Now(), s.cfg.MaxOwners)
}

// Revoke removes an owner and everything kept for it, ends its
// subscriptions, and reports whether it was one.
func (s *Server) Revoke(p peer.ID) (bool, error) {
	o, err := s.store.Owner(p.String())
	if errors.Is(err, db.ErrNoInbox) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ok, err := s.store.RemoveOwner(p.String())
	s.arrived(o.Inbox) // its subscriptions look, find no owner, and end
	s.mu.Lock()
	delete(s.strangers, o.Inbox)
	s.mu.Unlock()
	return ok, err
}

// checkTTLMax refuses an owner's TTL maximum under an hour (zero: the
// mailbox's): kept in whole seconds, a shorter one keeps nothing.
func checkTTLMax(d time.Duration) error {
	if d != 0 && d < time.Hour {
		return fmt.Errorf("mailbox: a TTL maximum of %v: an hour or more", d)
	}
	return nil
}

func (s *Server) limits(p peer.ID, inbox [e2e.InboxIDSize]byte, quota int, quotaBytes int64, ttlMax time.Duration) db.MailboxOwner {
	o := db.MailboxOwner{Peer: p.String(), Inbox: inbox, Quota: s.cfg.Quota, QuotaBytes: s.cfg.QuotaBytes, TTLMax: s.cfg.TTLMax}
	if quota > 0 {
		o.Quota = min(quota, s.cfg.Quota)
	}
	if quotaBytes > 0 {
		o.QuotaBytes = min(quotaBytes, s.cfg.QuotaBytes)
	}
	if ttlMax > 0 {
		o.TTLMax = min(ttlMax, s.cfg.TTLMax)
	}
	return o
}

// Invite stores a one-time invitation with these limits (zero: the
// defaults), valid until expires, and returns its secret.
func (s *Server) Invite(quota int, quotaBytes int64, ttlMax time.Duration, expires time.Time) ([KeySize]byte, error) {
	var secret [KeySize]byte
	if err := checkTTLMax(ttlMax); err != nil {
		return secret, err
	}
	rand.Read(secret[:])
	return secret, s.store.AddInvite(sha256.Sum256(secret[:]), s.limits("", [16]byte{}, quota, quotaBytes, ttlMax), expires)
}

func (s *Server) expireLoop() {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		if n, err := s.store.Expire(s.cfg.Now()); err != nil {
			s.log.Warn("mailbox: expire deposits", "err", err)
		} else if n > 0 {
			s.log.Info("mailbox: deposits expired", "count", n)
		}
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

// readRequest reads the next frame of a stream: it may wait idle for it
// to begin, then it must come whole within frameTimeout. It holds the
// frame only while it decodes it (readReserved's reservation is given
// back at once).
func readRequest(st network.Stream, r *bufio.Reader, idle time.Duration) (Msg, error) {
	m, size, err := readReserved(st, r, idle)
	if err == nil {
		st.Scope().ReleaseMemory(size)
	}
	return m, err
}

// reply writes a frame.
func reply(st network.Stream, m Msg) error {
	st.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := st.Write(wire.AppendFrame(nil, m.Append(nil)))
	return err
}

func refuse(code byte, text string) *Error { return &Error{Code: code, Text: text} }

// handleOwner serves an owner's stream: one request at a time, each
// answered in order, until the stream ends or becomes a subscription.
func (s *Server) handleOwner(st network.Stream) {
	defer st.Close()
	p := st.Conn().RemotePeer()
	r := bufio.NewReader(st)
	for {
		// A peer that is not an owner may only redeem an invitation,
		// at once: it holds no stream of the owners' while it thinks.
		idle := requestIdle
		if _, err := s.store.Owner(p.String()); errors.Is(err, db.ErrNoInbox) {
			idle = frameTimeout
		}
		m, err := readRequest(st, r, idle)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Debug("mailbox: owner stream ends", "peer", p, "err", err)
				st.Reset()
			}
			return
		}
		owner, err := s.store.Owner(p.String())
		if errors.Is(err, db.ErrNoInbox) {
			if rd, ok := m.(Redeem); ok {
				// One try per stream: a stranger holds an owner's
				// stream for one request at most.
				out := s.redeem(p, rd.Secret)
				if err := reply(st, out); err != nil {
					st.Reset()
					return
				}
				if out != (OK{}) {
					return
				}
				continue
			}
			reply(st, refuse(ErrCodeNotAdmitted, "you are not an owner at this mailbox: ask its operator for an invitation"))
			return
		}
		if err != nil {
			s.log.Error("mailbox: read an owner", "err", err)
			reply(st, refuse(ErrCodeInternal, "the mailbox failed to read its store; try again later"))
			return
		}
		if sub, ok := m.(Subscribe); ok {
			s.subscribe(st, r, owner.Inbox, sub)
			return
		}
		if err := reply(st, s.ownerRequest(p, owner, m)); err != nil {
			st.Reset()
			return
		}
	}
}

// redeem admits p with an invitation, and returns the reply. Anyone may
// try: a wrong secret costs a read. Only right ones (256 random bits)
// reach the writer, at most redeemRate a second.
func (s *Server) redeem(p peer.ID, secret [KeySize]byte) Msg {
	now := s.cfg.Now()
	ok, err := s.store.InviteValid(secret[:], now)
	switch {
	case err != nil:
		s.log.Error("mailbox: read invitations", "err", err)
		return refuse(ErrCodeInternal, "the mailbox failed to read its store; try again later")
	case !ok:
		return refuse(ErrCodeBadInvite, "this invitation is unknown, used or expired")
	case !s.redeems.AllowN(now, 1):
		return refuse(ErrCodeInternal, "too many invitations redeemed at once; try again in a moment")
	}
	var inbox [e2e.InboxIDSize]byte
	rand.Read(inbox[:])
	_, err = s.store.RedeemInvite(secret[:], p.String(), inbox, now, s.cfg.MaxOwners)
	switch {
	case err == nil:
		return OK{}
	case errors.Is(err, db.ErrBadInvite):
		return refuse(ErrCodeBadInvite, "this invitation is unknown, used or expired")
	case errors.Is(err, db.ErrFull):
		return refuse(ErrCodeLimit, "this mailbox admits no more owners")
	case errors.Is(err, db.ErrOwnerExists):
		return OK{}
	}
	s.log.Error("mailbox: redeem an invitation", "err", err)
	return refuse(ErrCodeInternal, "the mailbox failed to store the admission; try again later")
}

// ownerRequest acts on one of an owner's requests and returns the reply.
func (s *Server) ownerRequest(p peer.ID, owner db.MailboxOwner, m Msg) Msg {
	fail := func(op string, err error) Msg {
		switch {
		case errors.Is(err, db.ErrNoInbox):
			return refuse(ErrCodeNotAdmitted, "you are no longer an owner at this mailbox")
		case errors.Is(err, db.ErrTooMany):
			return refuse(ErrCodeLimit, err.Error())
		}
		s.log.Error("mailbox: "+op, "err", err)
		return refuse(ErrCodeInternal, "the mailbox failed to "+op+"; try again later")
	}
	switch m := m.(type) {
	case Status:
		counts, err := s.store.OTKCounts(owner.Inbox)
		if err != nil {
			return fail("count one-time keys", err)
		}
		return StatusReply{Inbox: owner.Inbox, Stored: uint32(owner.Used), StoredBytes: uint64(owner.UsedBytes),
			Quota: uint32(owner.Quota), QuotaBytes: uint64(owner.QuotaBytes),
			TTL: uint32(owner.TTL / time.Second), TTLMax: uint32(owner.TTLMax / time.Second),
			Strangers: owner.Strangers, PowBits: uint8(owner.PowBits), StrangersPerHour: uint16(owner.StrangersPerHour),
			OTKsX25519: uint32(counts[byte(e2e.OneTimeX25519)]), OTKsMLKEM: uint32(counts[byte(e2e.OneTimeMLKEM)])}
	case SetPolicy:
		if m.PowBits > MaxPowBits {
			return refuse(ErrCodeLimit, fmt.Sprintf("proof of work of %d bits: at most %d", m.PowBits, MaxPowBits))
		}
		if m.Strangers && (m.PowBits == 0 || m.StrangersPerHour == 0) {
			return refuse(ErrCodeBadRequest, "strangers may deposit only with proof of work and some strangers an hour")
		}
		err := s.store.SetPolicy(p.String(), db.MailboxPolicy{TTL: time.Duration(m.TTL) * time.Second, Strangers: m.Strangers,
			PowBits: int(m.PowBits), StrangersPerHour: int(m.StrangersPerHour), TokenKey: m.TokenKey[:], Revoked: m.Revoked})
		if err != nil {
			return fail("set the policy", err)
		}
		s.mu.Lock()
		delete(s.strangers, owner.Inbox) // the new rate applies
		s.mu.Unlock()
		return OK{}
	case PutBundle:
		b, err := e2e.VerifyBundle(m.Bundle, s.cfg.Now())
		if err != nil {
			return refuse(ErrCodeBadRequest, "the bundle does not verify: "+err.Error())
		}
		if peer.ID(e2e.PeerIDBytes(b.Identity)) != p {
			return refuse(ErrCodeBadRequest, "the bundle is not yours")
		}
		if err := s.store.PutBundle(p.String(), m.Bundle); err != nil {
			return fail("store the bundle", err)
		}
		return OK{}
	case PutOTKs:
		key, err := identityOf(p)
		if err != nil {
			return refuse(ErrCodeBadRequest, "one-time keys need an Ed25519 peer ID")
		}
		otks := make([]db.MailboxOTK, 0, len(m.Certs))
		for _, c := range m.Certs {
			cert, err := e2e.VerifyOneTimeCert(key, []byte(s.h.ID()), c)
			if err != nil {
				return refuse(ErrCodeBadRequest, "a one-time key certificate does not verify for this mailbox: "+err.Error())
			}
			otks = append(otks, db.MailboxOTK{Kind: byte(cert.Kind), ID: cert.ID, Cert: c})
		}
		if _, err := s.store.PutOTKs(p.String(), otks, s.cfg.MaxOTKs); err != nil {
			return fail("store one-time keys", err)
		}
		return OK{}
	case Ack:
		if _, err := s.store.Ack(owner.Inbox, m.Seqs); err != nil {
			return fail("delete deposits", err)
		}
		return OK{}
	case Unregister:
		if _, err := s.Revoke(p); err != nil {
			return fail("unregister", err)
		}
		return OK{}
	case Redeem:
		return refuse(ErrCodeBadRequest, "you are an owner here already")
	}
	return refuse(ErrCodeBadRequest, fmt.Sprintf("not an owner's request: %T", m))
}

// identityOf is the Ed25519 key a peer ID names.
func identityOf(p peer.ID) (e2e.IdentityKey, error) {
	var k e2e.IdentityKey
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return k, err
	}
	raw, err := pub.Raw()
	if err != nil || len(raw) != len(k) || peer.ID(e2e.PeerIDBytes(e2e.IdentityKey(raw))) != p {
		return k, errors.New("mailbox: not an Ed25519 peer ID")
	}
	copy(k[:], raw)
	return k, nil
}

// arrivals returns a channel closed at the inbox's next deposit.
func (s *Server) arrivals(inbox [e2e.InboxIDSize]byte) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.newDeps[inbox]
	if ch == nil {
		ch = make(chan struct{})
		s.newDeps[inbox] = ch
	}
	return ch
}

func (s *Server) arrived(inbox [e2e.InboxIDSize]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch := s.newDeps[inbox]; ch != nil {
		close(ch)
		delete(s.newDeps, inbox)
	}
}

// subscribe sends the inbox's deposits after sub.After, page by page,
// then each new one as it comes, while the owner's acknowledgements
// come the other way; it ends with the stream.
func (s *Server) subscribe(st network.Stream, r *bufio.Reader, inbox [e2e.InboxIDSize]byte, sub Subscribe) {
	// A page's frame is its head and, for each deposit, pageItem bytes
	// and the seal: all of it within MaxFrame (or the owner's smaller
	// budget), and a count its two bytes can say.
	pageBytes := int(sub.PageBytes)
	if pageBytes <= 0 || pageBytes > MaxFrame-pageHead {
		pageBytes = MaxFrame - pageHead
	}
	gone := make(chan struct{})
	s.wg.Go(func() {
		defer close(gone)
		for {
			m, err := readRequest(st, r, 24*time.Hour)
			if err != nil {
				return
			}
			a, ok := m.(Ack)
			if !ok {
				st.Reset()
				return
			}
			if _, err := s.store.Ack(inbox, a.Seqs); err != nil {
				s.log.Error("mailbox: delete deposits", "err", err)
				st.Reset()
				return
			}
		}
	})
	after := sub.After
	for {
		next := s.arrivals(inbox) // before the read: a deposit between them is not missed
		page, more, err := s.store.Page(inbox, after, pageBytes, pageItem, maxPageItems)
		if err != nil {
			s.log.Error("mailbox: page deposits", "err", err)
			st.Reset()
			return
		}
		if len(page) > 0 {
			out := Page{More: more, Deposits: make([]Stored, len(page))}
			for i, d := range page {
				out.Deposits[i] = Stored{Seq: d.Seq, Received: d.Received.UnixMilli(), Seal: d.Seal}
			}
			if err := reply(st, out); err != nil {
				st.Reset()
				return
			}
			after = page[len(page)-1].Seq
			continue
		}
		// Looked at after arrivals: a Revoke before it is seen here, one
		// after it closes next.
		if _, err := s.store.OwnerByInbox(inbox); errors.Is(err, db.ErrNoInbox) {
			st.Reset() // revoked or unregistered
			return
		}
		select {
		case <-next:
		case <-gone:
			st.Reset()
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// handleDeposit serves a sender's stream: prekeys and deposits, each
// answered in order. Deposits already read together (a sender pipelines
// them) are stored together, so that they share commits.
func (s *Server) handleDeposit(st network.Stream) {
	defer st.Close()
	r := bufio.NewReaderSize(st, 64<<10)
	for {
		// A sender's stream lives for its batches: between them it may
		// wait frameTimeout, not longer (it cannot hold a slot with a
		// request a minute).
		m, held, err := readReserved(st, r, frameTimeout)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				st.Reset()
			}
			return
		}
		batch := []Msg{m}
		for len(batch) < maxDepositBatch && held < maxBatchBytes && r.Buffered() > 0 {
			m, n, err := readReserved(st, r, frameTimeout)
			if err != nil {
				st.Scope().ReleaseMemory(held)
				st.Reset()
				return
			}
			batch = append(batch, m)
			held += n
		}
		out := make([]Msg, len(batch))
		var deps []Deposit
		var at []int
		for i, m := range batch {
			switch m := m.(type) {
			case GetPrekeys:
				out[i] = s.getPrekeys(st, m.Inbox)
			case Deposit:
				deps, at = append(deps, m), append(at, i)
			default:
				out[i] = refuse(ErrCodeBadRequest, fmt.Sprintf("not a sender's request: %T", m))
			}
		}
		for j, res := range s.deposit(deps) {
			out[at[j]] = Result{Status: res}
		}
		st.Scope().ReleaseMemory(held)
		for _, o := range out {
			if err := reply(st, o); err != nil {
				st.Reset()
				return
			}
		}
	}
}

// readReserved reads the next request of a stream: it may wait idle for
// it to begin, then it must come whole within frameTimeout. It reserves
// the frame's bytes in the stream's resource scope before it reads them
// (the service's limit across all senders: over it, the stream is
// refused) and returns how much it reserved, for the caller to release.
func readReserved(st network.Stream, r *bufio.Reader, idle time.Duration) (Msg, int, error) {
	st.SetReadDeadline(time.Now().Add(idle))
	if _, err := r.Peek(1); err != nil {
		return nil, 0, err
	}
	st.SetReadDeadline(time.Now().Add(frameTimeout))
	n, err := wire.ReadLength(r, MaxFrame)
	if err != nil {
		return nil, 0, err
	}
	// The body, and its decoded copy.
	size := 2 * n
	if err := st.Scope().ReserveMemory(size, network.ReservationPriorityAlways); err != nil {
		return nil, 0, err
	}
	b, err := wire.ReadBody(r, n)
	var m Msg
	if err == nil {
		m, err = Decode(b)
	}
	if err != nil {
		st.Scope().ReleaseMemory(size)
		return nil, 0, err
	}
	return m, size, nil
}

// getPrekeys hands out the owner's bundle, with one one-time key of each
// kind unless this address had some within prekeysPerAddr or the
// mailbox handed out its share of them lately.
func (s *Server) getPrekeys(st network.Stream, inbox [e2e.InboxIDSize]byte) Msg {
	owner, err := s.store.OwnerByInbox(inbox)
	if err != nil || owner.Bundle == nil {
		return refuse(ErrCodeUnknownInbox, "no such inbox, or its owner left no bundle here")
	}
	out := Prekeys{Bundle: owner.Bundle}
	if s.mayHandOut(st) {
		otks, err := s.store.TakeOTKs(inbox)
		if err != nil {
			s.log.Error("mailbox: hand out one-time keys", "err", err)
		}
		for _, k := range otks {
			out.Certs = append(out.Certs, k.Cert)
		}
	}
	return out
}

func (s *Server) mayHandOut(st network.Stream) bool {
	// Per address, and per /64 for IPv6: a host has a whole /64 to
	// pick addresses from.
	ip, err := manet.ToIP(st.Conn().RemoteMultiaddr())
	addr := "?"
	if err == nil {
		if ip.To4() == nil {
			ip = ip.Mask(net.CIDRMask(64, 128))
		}
		addr = ip.String()
	}
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.prekeyAt[addr]; ok && now.Sub(last) < prekeysPerAddr {
		return false
	}
	if !s.prekeys.AllowN(now, 1) {
		return false
	}
	if len(s.prekeyAt) >= maxPrekeyAddrs {
		for a, t := range s.prekeyAt {
			if now.Sub(t) >= prekeysPerAddr {
				delete(s.prekeyAt, a)
			}
		}
		if len(s.prekeyAt) >= maxPrekeyAddrs {
			return false
		}
	}
	s.prekeyAt[addr] = now
	return true
}

// deposit authorises deposits and stores those allowed, in their order,
// and returns each one's result.
func (s *Server) deposit(ds []Deposit) []byte {
	out := make([]byte, len(ds))
	var store []db.MailboxDeposit
	var at []int
	var held []*rate.Reservation
	now := s.cfg.Now()
	type seal struct {
		inbox  [e2e.InboxIDSize]byte
		digest [32]byte
	}
	seen := map[seal]bool{}
	for i, d := range ds {
		stranger := d.Auth == AuthWork
		// A stranger's deposit that is a copy of one here (or earlier in
		// this batch) will be answered "duplicate": it takes no slot.
		again := false
		if stranger {
			digest := sha256.Sum256(d.Seal)
			again = seen[seal{d.Inbox, digest}]
			seen[seal{d.Inbox, digest}] = true
			if !again {
				var err error
				if again, err = s.store.HasDeposit(d.Inbox, digest); err != nil {
					s.log.Error("mailbox: look for a deposit", "err", err)
					out[i] = ResultRetryLater
					continue
				}
			}
		}
		var res *rate.Reservation
		if out[i], res = s.authorize(d, now, again); out[i] == 0 {
			store = append(store, db.MailboxDeposit{Inbox: d.Inbox, Seal: d.Seal, Stranger: stranger,
				TTL: time.Duration(d.TTL) * time.Second, MaxStrangers: s.cfg.MaxStrangersWaiting, Now: now})
			at = append(at, i)
			held = append(held, res)
		}
	}
	if len(store) == 0 {
		return out
	}
	res, err := s.store.Deposits(store)
	if err != nil {
		s.log.Error("mailbox: store deposits", "err", err)
	}
	for j, i := range at {
		switch {
		case err != nil:
			out[i] = ResultRetryLater
		case res[j] == db.DepositStored:
			s.arrived(ds[i].Inbox)
			out[i] = ResultStored
		case res[j] == db.DepositDuplicate:
			out[i] = ResultDuplicate
		case res[j] == db.DepositQuota:
			out[i] = ResultQuota
		default:
			out[i] = ResultUnknownInbox
		}
		// A stranger's slot of the hour is spent only by a deposit that
		// stayed: work replayed for duplicates spends none.
		if held[j] != nil && out[i] != ResultStored {
			held[j].CancelAt(now)
		}
	}
	return out
}

// authorize returns why a deposit is refused, or 0; for a stranger's, the
// reservation of its slot in the owner's hour, unless it is a copy of one
// stored (again).
func (s *Server) authorize(d Deposit, now time.Time, again bool) (byte, *rate.Reservation) {
	owner, err := s.store.OwnerByInbox(d.Inbox)
	if errors.Is(err, db.ErrNoInbox) {
		return ResultUnknownInbox, nil
	}
	if err != nil {
		s.log.Error("mailbox: read an owner", "err", err)
		return ResultRetryLater, nil
	}
	if d.Auth == AuthWork {
		switch {
		case len(d.Seal) > MaxStrangerSeal:
			return ResultTooLarge, nil
		case !owner.Strangers || !WorkValid(d.Inbox, d.Seal, d.Hour, d.Nonce, uint8(owner.PowBits), now):
			return ResultAuth, nil
		}
		if again {
			return 0, nil
		}
		res := s.strangerSlot(owner, now)
		if res == nil {
			return ResultQuota, nil
		}
		return 0, res
	}
	if len(owner.TokenKey) != KeySize || !TokenValid((*[KeySize]byte)(owner.TokenKey), d.Inbox, d.Index, d.Token) {
		return ResultAuth, nil
	}
	revoked, err := s.store.Revoked(d.Inbox, d.Index)
	if err != nil {
		s.log.Error("mailbox: read revoked tokens", "err", err)
		return ResultRetryLater, nil
	}
	if revoked {
		return ResultAuth, nil
	}
	return 0, nil
}

// strangerSlot reserves one of the owner's strangers of the hour, or
// returns nil when none is left.
func (s *Server) strangerSlot(owner db.MailboxOwner, now time.Time) *rate.Reservation {
	if owner.StrangersPerHour <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.strangers[owner.Inbox]
	if l == nil || l.Burst() != owner.StrangersPerHour {
		// New, or the policy changed since (the burst is the rate).
		l = rate.NewLimiter(rate.Every(time.Hour/time.Duration(owner.StrangersPerHour)), owner.StrangersPerHour)
		s.strangers[owner.Inbox] = l
	}
	r := l.ReserveN(now, 1)
	if !r.OK() || r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return nil
	}
	return r
}
