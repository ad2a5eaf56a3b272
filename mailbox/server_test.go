package mailbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

func checkNoLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	}
	t.Cleanup(func() {
		if !t.Failed() {
			if err := goleak.Find(opts...); err != nil {
				t.Errorf("goroutines leaked: %v", err)
			}
		}
	})
}

// newHost is a libp2p host on 127.0.0.1 with the identity's key (nil: a
// fresh one).
func newHost(t testing.TB, id *e2e.Identity) host.Host {
	t.Helper()
	opts := []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics(), libp2p.DisableRelay()}
	if id != nil {
		seed := id.Ed25519Seed()
		k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, libp2p.Identity(k))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

type lab struct {
	m      host.Host
	store  *db.Mailbox
	server *Server
}

func newLab(t testing.TB, cfg ServerConfig) *lab {
	t.Helper()
	store, err := db.OpenMailbox(filepath.Join(t.TempDir(), db.MailboxFileName))
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{m: newHost(t, nil), store: store}
	l.server = NewServer(l.m, store, cfg)
	t.Cleanup(func() { l.server.Close(); store.Close() })
	return l
}

// connect makes h know the mailbox's addresses.
func (l *lab) connect(t testing.TB, h host.Host) {
	t.Helper()
	if err := h.Connect(context.Background(), peer.AddrInfo{ID: l.m.ID(), Addrs: l.m.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// The whole path through real hosts: an owner admitted and set up, a
// sender taking its prekeys and depositing (contacts with tokens, a
// stranger with work; refusals answered), the owner collecting in order
// and acknowledging, so that the mailbox keeps nothing.
func TestServerDepositAndCollect(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	bID := e2e.NewIdentity()
	b, a := newHost(t, bID), newHost(t, nil)
	l.connect(t, b)
	l.connect(t, a)

	if _, err := Call(ctx(t), b, l.m.ID(), Status{}); !isCode(err, ErrCodeNotAdmitted) {
		t.Fatalf("status before admission: %v", err)
	}
	inbox, err := l.server.Allow(b.ID(), 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := [KeySize]byte{42}
	for _, req := range []Msg{
		SetPolicy{Policy{TTL: 3600, Strangers: true, PowBits: 8, StrangersPerHour: 5, TokenKey: key, Revoked: []uint32{9}}},
		PutBundle{Bundle: signBundle(t, bID)},
		PutOTKs{Certs: certs(t, bID, l.m.ID(), 3)},
	} {
		if m, err := Call(ctx(t), b, l.m.ID(), req); err != nil || m != (OK{}) {
			t.Fatalf("%T: %v, %v", req, m, err)
		}
	}
	st, err := Call(ctx(t), b, l.m.ID(), Status{})
	if err != nil {
		t.Fatal(err)
	}
	if s := st.(StatusReply); s.Inbox != inbox || s.OTKsX25519 != 3 || s.OTKsMLKEM != 3 || s.TTL != 3600 || !s.Strangers {
		t.Fatalf("status %+v", s)
	}
	// Someone else's bundle and certificates for another mailbox are refused.
	if _, err := Call(ctx(t), b, l.m.ID(), PutBundle{Bundle: signBundle(t, e2e.NewIdentity())}); !isCode(err, ErrCodeBadRequest) {
		t.Fatalf("someone else's bundle: %v", err)
	}
	if _, err := Call(ctx(t), b, l.m.ID(), PutOTKs{Certs: certs(t, bID, a.ID(), 1)}); !isCode(err, ErrCodeBadRequest) {
		t.Fatalf("certificates for another mailbox: %v", err)
	}

	// Prekeys: the bundle, one key of each kind; the next ask from the
	// same address within 10 s gets the bundle alone.
	pk, err := FetchPrekeys(ctx(t), a, l.m.ID(), inbox)
	if err != nil || len(pk.Certs) != 2 || !bytes.Equal(pk.Bundle, signBundleCached) {
		t.Fatalf("prekeys: %d certificates, %v", len(pk.Certs), err)
	}
	bun, err := e2e.VerifyBundle(pk.Bundle, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bun.WithOneTimeCerts([]byte(l.m.ID()), pk.Certs...); err != nil {
		t.Fatalf("the handed-out certificates: %v", err)
	}
	if pk, err := FetchPrekeys(ctx(t), a, l.m.ID(), inbox); err != nil || len(pk.Certs) != 0 {
		t.Fatalf("a second ask: %d certificates, %v", len(pk.Certs), err)
	}
	if _, err := FetchPrekeys(ctx(t), a, l.m.ID(), [16]byte{1}); !isCode(err, ErrCodeUnknownInbox) {
		t.Fatalf("prekeys of no inbox: %v", err)
	}

	tok := func(idx uint32, seal string) Deposit {
		return Deposit{Inbox: inbox, Auth: AuthToken, Index: idx, Token: Token(&key, inbox, idx), TTL: 600, Seal: []byte(seal)}
	}
	wrong := tok(1, "wrong token")
	wrong.Token[0] ^= 1
	stranger := Deposit{Inbox: inbox, Auth: AuthWork, Hour: Hour(time.Now()), TTL: 600, Seal: []byte("a stranger")}
	if stranger.Nonce, err = Solve(ctx(t), inbox, stranger.Seal, stranger.Hour, 8); err != nil {
		t.Fatal(err)
	}
	lazy := stranger
	lazy.Seal = []byte("a lazy stranger")
	for leadingZeros(workPrefix(inbox, lazy.Seal, lazy.Hour), lazy.Nonce) >= 8 {
		lazy.Nonce++
	}
	big := stranger
	big.Seal = make([]byte, MaxStrangerSeal+1)
	elsewhere := tok(1, "no such inbox")
	elsewhere.Inbox[0] ^= 1
	results, err := Deposits(ctx(t), a, l.m.ID(), []Deposit{
		tok(1, "one"), tok(2, "two"), wrong, stranger, lazy, tok(1, "one"), tok(9, "revoked"), big, elsewhere, tok(3, "three"),
	})
	want := []byte{ResultStored, ResultStored, ResultAuth, ResultStored, ResultAuth, ResultDuplicate, ResultAuth, ResultTooLarge, ResultUnknownInbox, ResultStored}
	if err != nil || !bytes.Equal(results, want) {
		t.Fatalf("results %v, want %v (%v)", results, want, err)
	}

	// The owner collects: everything stored, in order; then a deposit made
	// while it is subscribed comes at once.
	got := make(chan string, 10)
	cctx, stop := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() {
		done <- Collect(cctx, b, l.m.ID(), 0, 0, func(ds []Stored) error {
			for _, d := range ds {
				got <- string(d.Seal)
			}
			return nil
		})
	}()
	for _, w := range []string{"one", "two", "a stranger", "three"} {
		if g := <-got; g != w {
			t.Fatalf("collected %q, want %q", g, w)
		}
	}
	if r, err := Deposits(ctx(t), a, l.m.ID(), []Deposit{tok(4, "while subscribed")}); err != nil || r[0] != ResultStored {
		t.Fatalf("a deposit while subscribed: %v, %v", r, err)
	}
	if g := <-got; g != "while subscribed" {
		t.Fatalf("collected %q", g)
	}
	waitFor(t, "the mailbox to delete what was acknowledged", func() bool {
		o, err := l.store.Owner(b.ID().String())
		return err == nil && o.Used == 0
	})
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("collect ended with %v", err)
	}
}

// A page the owner fails to store is not acknowledged: it comes again.
func TestServerRedeliversUnacknowledged(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	key := [KeySize]byte{1}
	b, a, inbox := ownerAndSender(t, l, Policy{TTL: 60, TokenKey: key})
	d := Deposit{Inbox: inbox, Auth: AuthToken, Index: 1, Token: Token(&key, inbox, 1), Seal: []byte("kept until acknowledged")}
	if r, err := Deposits(ctx(t), a, l.m.ID(), []Deposit{d}); err != nil || r[0] != ResultStored {
		t.Fatalf("%v, %v", r, err)
	}
	failed := errors.New("the commit failed")
	for try, wantErr := range []error{failed, nil} {
		seen := 0
		err := Collect(ctx(t), b, l.m.ID(), 0, 0, func(ds []Stored) error {
			seen += len(ds)
			if try == 0 {
				return failed
			}
			return errStop
		})
		if seen != 1 || (wantErr != nil && !errors.Is(err, wantErr)) {
			t.Fatalf("try %d: saw %d, %v", try, seen, err)
		}
	}
}

var errStop = errors.New("stop")

// An invitation admits whoever redeems it, once.
func TestServerInvite(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	c, d := newHost(t, nil), newHost(t, nil)
	l.connect(t, c)
	l.connect(t, d)
	secret, err := l.server.Invite(5, 5000, time.Hour, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Call(ctx(t), c, l.m.ID(), Redeem{Secret: [KeySize]byte{1}}); !isCode(err, ErrCodeBadInvite) {
		t.Fatalf("a wrong secret: %v", err)
	}
	if m, err := Call(ctx(t), c, l.m.ID(), Redeem{Secret: secret}); err != nil || m != (OK{}) {
		t.Fatalf("redeem: %v, %v", m, err)
	}
	st, err := Call(ctx(t), c, l.m.ID(), Status{})
	if err != nil || st.(StatusReply).Quota != 5 {
		t.Fatalf("status after redeeming: %v, %v", st, err)
	}
	if _, err := Call(ctx(t), d, l.m.ID(), Redeem{Secret: secret}); !isCode(err, ErrCodeBadInvite) {
		t.Fatalf("redeemed twice: %v", err)
	}
}

func isCode(err error, code byte) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var signBundleCached []byte

func signBundle(t *testing.T, id *e2e.Identity) []byte {
	t.Helper()
	b, err := id.SignBundle(e2e.BundleParams{Seq: 1, Expires: time.Now().Add(24 * time.Hour),
		SignedPrekey: e2e.NewSignedPrekey(1), PQPrekey: e2e.NewPQPrekey(2, false)})
	if err != nil {
		t.Fatal(err)
	}
	if signBundleCached == nil {
		signBundleCached = b
	}
	return b
}

// certs certifies n one-time keys of each kind for the mailbox.
func certs(t *testing.T, id *e2e.Identity, mbox peer.ID, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range n {
		x, err := id.SignOneTimeCert([]byte(mbox), e2e.NewOneTimePrekey(uint32(100+i)))
		if err != nil {
			t.Fatal(err)
		}
		pq, err := id.SignPQOneTimeCert([]byte(mbox), e2e.NewPQPrekey(uint32(200+i), true))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x, pq)
	}
	return out
}

// Many small deposits come in pages that each fit a frame (a page's
// per-deposit overhead counts), and all reach the owner, once, in order.
func TestServerManySmallDeposits(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	key := [KeySize]byte{3}
	b, a, inbox := ownerAndSender(t, l, Policy{TTL: 600, TokenKey: key})
	const n = 300 // the smallest real seal is SealOverhead + 1 KiB: 89 already overflowed a page
	ds := make([]Deposit, n)
	for i := range ds {
		seal := make([]byte, e2e.SealOverhead+1<<10)
		seal[0], seal[1] = byte(i), byte(i>>8)
		ds[i] = Deposit{Inbox: inbox, Auth: AuthToken, Index: 1, Token: Token(&key, inbox, 1), TTL: 600, Seal: seal}
	}
	res, err := Deposits(ctx(t), a, l.m.ID(), ds)
	if err != nil || len(res) != n || bytes.Count(res, []byte{ResultStored}) != n {
		t.Fatalf("%d results, %v", len(res), err)
	}
	next, pages := 0, 0
	err = Collect(ctx(t), b, l.m.ID(), 0, 0, func(got []Stored) error {
		pages++
		for _, d := range got {
			if i := int(d.Seal[0]) | int(d.Seal[1])<<8; i != next {
				return fmt.Errorf("deposit %d came after %d", i, next-1)
			}
			next++
		}
		if next == n {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || next != n || pages < 4 {
		t.Fatalf("collected %d in %d pages: %v", next, pages, err)
	}
}

// A revoked owner's subscription ends, and so does everything kept.
func TestServerRevokeEndsSubscription(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	b := newHost(t, nil)
	l.connect(t, b)
	if _, err := l.server.Allow(b.ID(), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Collect(ctx(t), b, l.m.ID(), 0, 0, func([]Stored) error { return nil }) }()
	waitFor(t, "the subscription to wait", func() bool {
		l.server.mu.Lock()
		defer l.server.mu.Unlock()
		return len(l.server.newDeps) == 1
	})
	if ok, err := l.server.Revoke(b.ID()); !ok || err != nil {
		t.Fatalf("revoke: %v, %v", ok, err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the subscription ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked owner's subscription went on")
	}
}

// Work replayed for a deposit already there spends none of the owner's
// strangers of the hour: another stranger still gets in.
func TestServerStrangerReplaySpendsNoSlot(t *testing.T) {
	checkNoLeaks(t)
	l := newLab(t, ServerConfig{})
	_, a, inbox := ownerAndSender(t, l, Policy{TTL: 600, Strangers: true, PowBits: 4, StrangersPerHour: 2})
	var err error
	stranger := func(text string) Deposit {
		d := Deposit{Inbox: inbox, Auth: AuthWork, Hour: Hour(time.Now()), TTL: 600, Seal: []byte(text)}
		if d.Nonce, err = Solve(ctx(t), inbox, d.Seal, d.Hour, 4); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := stranger("first")
	res, err := Deposits(ctx(t), a, l.m.ID(), []Deposit{first, first, first, first, stranger("second"), stranger("third")})
	want := []byte{ResultStored, ResultDuplicate, ResultDuplicate, ResultDuplicate, ResultStored, ResultQuota}
	if err != nil || !bytes.Equal(res, want) {
		t.Fatalf("results %v, want %v (%v)", res, want, err)
	}
}

// ownerAndSender makes an owner admitted to the lab's mailbox with this
// policy, and a sender; both connected to the mailbox.
func ownerAndSender(t *testing.T, l *lab, p Policy) (owner, sender host.Host, inbox [e2e.InboxIDSize]byte) {
	t.Helper()
	owner, sender = newHost(t, nil), newHost(t, nil)
	l.connect(t, owner)
	l.connect(t, sender)
	inbox, err := l.server.Allow(owner.ID(), 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Call(ctx(t), owner, l.m.ID(), SetPolicy{p}); err != nil {
		t.Fatal(err)
	}
	return owner, sender, inbox
}
