package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// mailboxLab is a mailbox M that serves the DHT, and the configurations
// of A and B, bootstrapped from it.
type mailboxLab struct {
	m          *Node
	cfgA, cfgB Config
}

func newMailboxLab(t *testing.T) *mailboxLab {
	t.Helper()
	cfg := testConfig(t.TempDir())
	cfg.Mailbox = true
	m := startConfig(t, cfg)
	boot := m.AddrInfo()
	return &mailboxLab{m: m, cfgA: testConfig(t.TempDir(), boot), cfgB: testConfig(t.TempDir(), boot)}
}

// ownerAt makes b an owner at the lab's mailbox, admitted by peer ID.
func (l *mailboxLab) ownerAt(t *testing.T, b *Node) {
	t.Helper()
	if err := l.m.MailboxAllow(b.ID(), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.AddMailbox(ctx, l.m.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the mailbox supplied with one-time prekeys", func() (bool, string) {
		ms, err := b.Mailboxes()
		if err != nil || len(ms) != 1 {
			return false, "no mailbox listed"
		}
		return ms[0].Reachable && ms[0].OTKs >= otkLow && ms[0].PQOTKs >= otkLow, ms[0].LastError
	})
}

// stored is what the mailbox keeps for owner p.
func (l *mailboxLab) stored(t *testing.T, p peer.ID) int {
	t.Helper()
	owners, err := l.m.MailboxOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range owners {
		if o.Peer == p {
			return o.Stored
		}
	}
	t.Fatalf("%s is no owner at the mailbox", p)
	return 0
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

// The acceptance test of offline delivery: A writes 200 messages while B
// is away, A goes away too, B comes back and gets each exactly once, in
// order; the mailbox kept neither text nor A's identity; A, back, sees
// them delivered and its outbox empty.
func TestMailboxOfflineExactlyOnce(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a := startConfig(t, l.cfgA)
	b := startConfig(t, l.cfgB)
	l.ownerAt(t, b)

	// Contacts: a message each way; B's reply grants A a token.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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
	waitFor(t, 10*time.Second, "A holds B's grant", func() (bool, string) {
		gs := grants(t, a, b.ID())
		return len(gs) == 1 && gs[0].Mailbox == l.m.ID().String(), ""
	})
	waitFor(t, 10*time.Second, "B's outbox empty", func() (bool, string) {
		return outboxLen(t, b, a.ID()) == 0 && outboxLen(t, a, b.ID()) == 0, ""
	})
	publish(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	want := texts("offline", 200)
	for _, s := range want {
		if _, err := a.Send(ctx, b.ID(), s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "A's 200 messages mailboxed", func() (bool, string) {
		h := history(t, a, b.ID())
		n := count(h, db.Outgoing, db.Mailboxed)
		return n == 200, "mailboxed: " + strconv.Itoa(n)
	})
	if got := l.stored(t, b.ID()); got != 200 {
		t.Fatalf("the mailbox holds %d deposits, want 200", got)
	}
	aID, aKey := a.ID(), a.Identity().Key
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// What the mailbox's files hold: no text, not A's peer ID in either
	// form, not A's identity key.
	secrets := map[string][]byte{"A's peer ID": []byte(aID.String()), "A's peer ID (multihash)": []byte(aID),
		"A's identity key": aKey[:], "a text": []byte("offline 1"), "the first text": []byte("hello B")}
	files, _ := filepath.Glob(filepath.Join(l.m.cfg.DataDir, db.MailboxFileName+"*"))
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
	h := history(t, b, aID)
	checkConversation(t, h, db.Incoming, append([]string{"hello B"}, want...))
	waitFor(t, 5*time.Second, "the mailbox empty", func() (bool, string) {
		n := l.stored(t, b.ID())
		return n == 0, "stored: " + strconv.Itoa(n)
	})

	a = startConfig(t, l.cfgA)
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "A's 200 delivered", func() (bool, string) {
		h := history(t, a, b.ID())
		n := count(h, db.Outgoing, db.Delivered)
		return n == 201, "delivered: " + strconv.Itoa(n)
	})
	waitFor(t, 10*time.Second, "A's outbox empty", func() (bool, string) {
		return outboxLen(t, a, b.ID()) == 0, ""
	})
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
