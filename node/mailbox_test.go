package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
)

// mailboxLab is one or more mailboxes that serve the DHT, and the
// configurations of A and B, bootstrapped from them.
type mailboxLab struct {
	m          *Node // ms[0]
	ms         []*Node
	mcfgs      []Config
	cfgA, cfgB Config
}

func newMailboxLab(t *testing.T) *mailboxLab { return newMailboxLabOf(t, 1, nil) }

// newMailboxLabOf starts k mailboxes, each with its configuration
// tweaked by tweak (when not nil).
func newMailboxLabOf(t *testing.T, k int, tweak func(*Config)) *mailboxLab {
	t.Helper()
	l := &mailboxLab{}
	var boot []peer.AddrInfo
	for range k {
		cfg := testConfig(t.TempDir())
		cfg.Mailbox = true
		if tweak != nil {
			tweak(&cfg)
		}
		m := startConfig(t, cfg)
		// Restarted on the same address (TestMailboxWiped).
		cfg.ListenAddrs = []string{m.Host().Addrs()[0].String()}
		l.ms, l.mcfgs = append(l.ms, m), append(l.mcfgs, cfg)
		boot = append(boot, m.AddrInfo())
	}
	l.m = l.ms[0]
	l.cfgA, l.cfgB = testConfig(t.TempDir(), boot...), testConfig(t.TempDir(), boot...)
	return l
}

// ownerAt makes b an owner at the lab's mailboxes, admitted by peer ID.
func (l *mailboxLab) ownerAt(t *testing.T, b *Node) { l.ownerWith(t, b, 0, l.ms...) }

// ownerWith makes b an owner at mailboxes ms with a quota of deposits
// (0: the mailbox's).
func (l *mailboxLab) ownerWith(t *testing.T, b *Node, quota int, ms ...*Node) {
	t.Helper()
	for _, m := range ms {
		if err := m.MailboxAllow(b.ID(), quota, 0, 0); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := b.AddMailbox(ctx, m.Addrs()[0].String())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the mailboxes supplied with one-time prekeys", func() (bool, string) {
		have, err := b.Mailboxes()
		if err != nil || len(have) != len(ms) {
			return false, "not all listed"
		}
		for _, m := range have {
			if !m.Reachable || m.OTKs < otkLow || m.PQOTKs < otkLow {
				return false, m.LastError
			}
		}
		return true, ""
	})
}

// becomeContacts has A write to B and B answer, so that they are
// contacts and A holds B's grant for each of B's mailboxes.
func (l *mailboxLab) becomeContacts(t *testing.T, a, b *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, b.ID(), "hello B"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B has A's first message", func() (bool, string) {
		return count(history(t, b, a.ID()), db.Incoming, "") == 1, ""
	})
	if _, err := b.Send(ctx, a.ID(), "hello A"); err != nil {
		t.Fatal(err)
	}
	ms, err := b.Mailboxes()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A holds B's grants", func() (bool, string) {
		gs := grants(t, a, b.ID())
		return len(gs) == len(ms), strconv.Itoa(len(gs))
	})
	waitFor(t, 10*time.Second, "both outboxes empty", func() (bool, string) {
		return outboxLen(t, b, a.ID()) == 0 && outboxLen(t, a, b.ID()) == 0, ""
	})
}

// sendAll sends the texts from a to b.
func sendAll(t *testing.T, a, b *Node, texts []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, s := range texts {
		if _, err := a.Send(ctx, b.ID(), s); err != nil {
			t.Fatal(err)
		}
	}
}

// waitMailboxed waits until n of a's messages to b are mailboxed.
func waitMailboxed(t *testing.T, a *Node, b peer.ID, n int) {
	t.Helper()
	waitFor(t, 30*time.Second, "messages mailboxed", func() (bool, string) {
		k := count(history(t, a, b), db.Outgoing, db.Mailboxed)
		return k == n, "mailboxed: " + strconv.Itoa(k)
	})
}

// checkOnce is how every offline-delivery test ends: B holds A's first
// message and then want, each once, in order; A, connected to B, sees
// them all delivered, and its outbox empties; every running mailbox
// keeps nothing for B.
func (l *mailboxLab) checkOnce(t *testing.T, a, b *Node, want []string) {
	t.Helper()
	all := append([]string{"hello B"}, want...)
	waitFor(t, 20*time.Second, "B has them all", func() (bool, string) {
		k := count(history(t, b, a.ID()), db.Incoming, "")
		return k >= len(all), "received: " + strconv.Itoa(k)
	})
	checkConversation(t, history(t, b, a.ID()), db.Incoming, all)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "A's messages delivered", func() (bool, string) {
		k := count(history(t, a, b.ID()), db.Outgoing, db.Delivered)
		return k == len(all), "delivered: " + strconv.Itoa(k)
	})
	waitFor(t, 10*time.Second, "A's outbox empty", func() (bool, string) { return outboxLen(t, a, b.ID()) == 0, "" })
	checkConversation(t, history(t, b, a.ID()), db.Incoming, all)
	for _, m := range l.ms {
		if m.running() != nil {
			continue
		}
		waitFor(t, 10*time.Second, "the mailbox empty", func() (bool, string) {
			k := l.storedAt(t, m, b.ID())
			return k <= 0, "stored: " + strconv.Itoa(k)
		})
	}
}

// storedAt is what mailbox m keeps for owner p; -1 when p is no owner
// there (any more).
func (l *mailboxLab) storedAt(t *testing.T, m *Node, p peer.ID) int {
	t.Helper()
	owners, err := m.MailboxOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owners {
		if o.Peer == p {
			return o.Stored
		}
	}
	return -1
}

// stored is what the first mailbox keeps for owner p.
func (l *mailboxLab) stored(t *testing.T, p peer.ID) int {
	t.Helper()
	k := l.storedAt(t, l.m, p)
	if k < 0 {
		t.Fatalf("%s is no owner at the mailbox", p)
	}
	return k
}

func publish(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := n.PublishBundle(ctx); err != nil {
		t.Fatal(err)
	}
}

func grants(t testing.TB, n *Node, from peer.ID) []db.Grant {
	t.Helper()
	var gs []db.Grant
	if err := n.store.View(func(r *db.ReadTx) (err error) { gs, err = r.Grants(from.String()); return err }); err != nil {
		t.Fatal(err)
	}
	return gs
}

func outboxLen(t testing.TB, n *Node, p peer.ID) int {
	t.Helper()
	var es []db.OutboxEntry
	if err := n.store.View(func(r *db.ReadTx) (err error) { es, err = r.OutboxFor(p.String()); return err }); err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// apart is a connection gater that, once closed, keeps the peers it
// names from connecting to each other (each node's gater refuses the
// others): the mailbox is then their only way.
type apart struct {
	mu    sync.Mutex
	peers map[peer.ID]bool
}

func (g *apart) close(ps ...peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.peers = map[peer.ID]bool{}
	for _, p := range ps {
		g.peers[p] = true
	}
}

func (g *apart) refused(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peers[p]
}

func (g *apart) InterceptPeerDial(p peer.ID) bool                 { return !g.refused(p) }
func (g *apart) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return !g.refused(p) }
func (g *apart) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *apart) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return !g.refused(p)
}
func (g *apart) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// The acceptance test of offline delivery: A writes 200 messages while B
// is away, A goes away too, B comes back and gets each exactly once, in
// order; the mailbox kept neither text nor A's identity; A, back, sees
// them delivered by B's receipts and its outbox empty. A and B never
// connect after they became contacts: the mailbox, where each is an
// owner, carries the messages one way and the receipts the other.
func TestMailboxOfflineExactlyOnce(t *testing.T) {
	checkNoLeaks(t)
	// M keeps B's messages; A's (the receipts) are kept by another.
	l := newMailboxLabOf(t, 2, nil)
	mB, mA := l.ms[0], l.ms[1]
	gate := &apart{}
	l.cfgA.hostOptions = []libp2p.Option{libp2p.ConnectionGater(gate)}
	l.cfgB.hostOptions = l.cfgA.hostOptions
	a, b := startConfig(t, l.cfgA), startConfig(t, l.cfgB)
	l.ownerWith(t, b, 0, mB)
	l.ownerWith(t, a, 0, mA)
	l.becomeContacts(t, a, b)
	waitFor(t, 10*time.Second, "B holds A's grant", func() (bool, string) { return len(grants(t, b, a.ID())) == 1, "" })
	publish(t, a)
	publish(t, b)
	gate.close(a.ID(), b.ID())
	a.Host().Network().ClosePeer(b.ID())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	want := texts("offline", 200)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 200)
	if got := l.storedAt(t, mB, b.ID()); got != 200 {
		t.Fatalf("M holds %d deposits, want 200", got)
	}
	aID, aKey := a.ID(), a.Identity().Key
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// What M's files hold: no text, not A's peer ID in either form, not
	// A's identity key.
	secrets := map[string][]byte{"A's peer ID": []byte(aID.String()), "A's peer ID (multihash)": []byte(aID),
		"A's identity key": aKey[:], "a text": []byte("offline 1"), "the first text": []byte("hello B")}
	files, _ := filepath.Glob(filepath.Join(mB.cfg.DataDir, db.MailboxFileName+"*"))
	if len(files) == 0 {
		t.Fatal("no mailbox file")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range secrets {
			if bytes.Contains(raw, s) {
				t.Errorf("%s holds %s", filepath.Base(f), what)
			}
		}
	}

	start := time.Now()
	b = startConfig(t, l.cfgB)
	waitFor(t, 5*time.Second, "B has the 200", func() (bool, string) {
		n := count(history(t, b, aID), db.Incoming, "")
		return n == 201, "received: " + strconv.Itoa(n)
	})
	t.Logf("B collected 200 messages in %v", time.Since(start))
	checkConversation(t, history(t, b, aID), db.Incoming, append([]string{"hello B"}, want...))
	waitFor(t, 5*time.Second, "M empty", func() (bool, string) {
		n := l.storedAt(t, mB, b.ID())
		return n == 0, "stored: " + strconv.Itoa(n)
	})
	// B's receipts wait at A's mailbox.
	waitFor(t, 10*time.Second, "B's receipts deposited for A", func() (bool, string) {
		return l.storedAt(t, mA, aID) > 0 && outboxLen(t, b, aID) == 0, ""
	})

	a = startConfig(t, l.cfgA)
	waitFor(t, 20*time.Second, "A's messages delivered", func() (bool, string) {
		k := count(history(t, a, b.ID()), db.Outgoing, db.Delivered)
		return k == 201, "delivered: " + strconv.Itoa(k)
	})
	waitFor(t, 10*time.Second, "A's outbox empty", func() (bool, string) { return outboxLen(t, a, b.ID()) == 0, "" })
	waitFor(t, 10*time.Second, "the mailboxes empty", func() (bool, string) {
		return l.storedAt(t, mA, aID) == 0 && l.storedAt(t, mB, b.ID()) == 0, ""
	})
	if a.Host().Network().Connectedness(b.ID()) != network.NotConnected {
		t.Fatal("A and B connected: the test proved nothing of the mailbox")
	}
}

// BenchmarkMailboxCollect: 1,000 messages wait at B's mailbox (A
// deposited them while B was away, and is away too); each iteration
// starts B and times from its start to the last of them stored in its
// history (target: 2 s). A sends the next 1,000, with B stopped, outside
// the timer.
func BenchmarkMailboxCollect(b *testing.B) {
	const waiting = 1000
	cfg := testConfig(b.TempDir())
	cfg.Mailbox = true
	m := startConfig(b, cfg)
	cfgA, cfgB := testConfig(b.TempDir(), m.AddrInfo()), testConfig(b.TempDir(), m.AddrInfo())
	a, bn := startConfig(b, cfgA), startConfig(b, cfgB)
	if err := m.MailboxAllow(bn.ID(), 2*waiting, 0, 0); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := bn.AddMailbox(ctx, m.Addrs()[0].String()); err != nil {
		b.Fatal(err)
	}
	if err := a.Connect(ctx, bn.AddrInfo()); err != nil {
		b.Fatal(err)
	}
	send(b, a, bn, "hello")
	accepts(b, bn, a)
	waitFor(b, 10*time.Second, "A holds B's grant", func() (bool, string) { return len(grants(b, a, bn.ID())) == 1, "" })
	if err := bn.Close(); err != nil {
		b.Fatal(err)
	}
	aID := a.ID()
	unread := func() int {
		var n map[string]int
		if err := bn.store.View(func(r *db.ReadTx) (err error) { n, err = r.UnreadCounts(); return err }); err != nil {
			b.Fatal(err)
		}
		return n[aID.String()]
	}
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if i > 0 {
			a = startConfig(b, cfgA)
		}
		for range waiting {
			if _, err := a.Send(ctx, bn.ID(), benchText); err != nil {
				b.Fatal(err)
			}
		}
		waitFor(b, 2*time.Minute, "the messages mailboxed", func() (bool, string) {
			n := count(history(b, a, bn.ID()), db.Outgoing, db.Mailboxed)
			return n == (i+1)*waiting, strconv.Itoa(n)
		})
		if err := a.Close(); err != nil {
			b.Fatal(err)
		}
		want := 1 + (i+1)*waiting
		b.StartTimer()
		start := time.Now()
		bn = startConfig(b, cfgB)
		for unread() < want {
			if time.Since(start) > time.Minute {
				b.Fatalf("after a minute B has %d of %d", unread(), want)
			}
			time.Sleep(2 * time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if got := unread(); got != want {
			b.Fatalf("B has %d messages, want %d", got, want)
		}
		if err := bn.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/1000-collected")
}

// handedOut counts n's one-time prekeys of a kind that were issued (to
// a peer or a mailbox) and not used yet. (Used ones are deleted at the
// next publication, so they cannot be counted.)
func handedOut(t *testing.T, n *Node, kind db.PrekeyKind) int {
	t.Helper()
	var ps []db.Prekey
	if err := n.store.View(func(r *db.ReadTx) (err error) { ps, err = r.Prekeys(kind); return err }); err != nil {
		t.Fatal(err)
	}
	k := 0
	for _, p := range ps {
		if !p.Issued.IsZero() && p.Used.IsZero() {
			k++
		}
	}
	return k
}

// A stranger writes first while B is away: it takes B's bundle with
// one-time prekeys from B's mailbox, deposits its first message there
// with proof of work, and keeps the rest until B answers. B, back, has
// the message as a contact request, made with a one-time prekey of each
// kind; once B accepts, the rest comes directly, each message once.
func TestMailboxFirstContact(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	l.cfgB.powBits = 8
	b := startConfig(t, l.cfgB)
	l.ownerAt(t, b)
	publish(t, b)
	x, pq := handedOut(t, b, db.OneTimePrekey), handedOut(t, b, db.PQOneTimePrekey)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	c := startConfig(t, l.cfgA)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Send(ctx, b.ID(), "first contact"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, b.ID(), "second"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first message mailboxed", func() (bool, string) {
		n := count(history(t, c, b.ID()), db.Outgoing, db.Mailboxed)
		return n == 1, strconv.Itoa(n)
	})
	if n := l.stored(t, b.ID()); n != 1 {
		t.Fatalf("the mailbox holds %d of a stranger's deposits, want 1", n)
	}
	if h := history(t, c, b.ID()); h[0].State != db.Mailboxed || h[1].State != db.Queued {
		t.Fatalf("states %s, %s: want mailboxed, queued", h[0].State, h[1].State)
	}

	b = startConfig(t, l.cfgB)
	waitFor(t, 10*time.Second, "B has the stranger's first message", func() (bool, string) {
		return count(history(t, b, c.ID()), db.Incoming, "") == 1, ""
	})
	if ct := storedContact(t, b, c.ID()); ct.State != db.ContactRequest {
		t.Fatalf("the stranger is %q, want a contact request", ct.State)
	}
	if dx, dpq := x-handedOut(t, b, db.OneTimePrekey), pq-handedOut(t, b, db.PQOneTimePrekey); dx != 1 || dpq != 1 {
		t.Fatalf("one-time prekeys the mailbox handed out used: %d X25519, %d ML-KEM; want 1 each", dx, dpq)
	}
	waitFor(t, 5*time.Second, "the mailbox empty", func() (bool, string) { return l.stored(t, b.ID()) == 0, "" })

	if err := b.Accept(c.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "both delivered", func() (bool, string) {
		n := count(history(t, c, b.ID()), db.Outgoing, db.Delivered)
		return n == 2, strconv.Itoa(n)
	})
	checkConversation(t, history(t, b, c.ID()), db.Incoming, []string{"first contact", "second"})
	waitFor(t, 10*time.Second, "C's outbox empty", func() (bool, string) { return outboxLen(t, c, b.ID()) == 0, "" })
}
