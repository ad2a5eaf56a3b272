package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/mailbox"
)

// The fault variants of offline delivery (docs/mailbox.md, "Failures"):
// each ends with the exactly-once checks of checkOnce.

// offlineStart is where most variants begin: A and B contacts, B an
// owner at the lab's mailboxes (with a quota of deposits, 0: the
// mailbox's), B away.
func offlineStart(t *testing.T, l *mailboxLab, quota int) (a, b *Node) {
	t.Helper()
	a, b = startConfig(t, l.cfgA), startConfig(t, l.cfgB)
	l.ownerWith(t, b, quota, l.ms...)
	l.becomeContacts(t, a, b)
	publish(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// Two mailboxes: each keeps a copy; B collects both and keeps each
// message once.
func TestMailboxTwoMailboxes(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLabOf(t, 2, nil)
	a, b := offlineStart(t, l, 0)
	want := texts("twice kept", 20)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 20)
	for i, m := range l.ms {
		if k := l.storedAt(t, m, b.ID()); k != 20 {
			t.Fatalf("mailbox %d keeps %d, want 20", i, k)
		}
	}
	b = startConfig(t, l.cfgB)
	l.checkOnce(t, a, b, want)
}

// One of two mailboxes is down: the deposits go to the other, and B,
// whose collector reports the one that is down, gets them from it.
func TestMailboxOneDown(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLabOf(t, 2, nil)
	a, b := offlineStart(t, l, 0)
	down := l.ms[0]
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	want := texts("one down", 20)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 20)
	if k := l.storedAt(t, l.ms[1], b.ID()); k != 20 {
		t.Fatalf("the mailbox that is up keeps %d, want 20", k)
	}
	b = startConfig(t, l.cfgB)
	waitFor(t, 10*time.Second, "the mailbox that is down reported", func() (bool, string) {
		ms, err := b.Mailboxes()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.Peer == down.ID() {
				return !m.Reachable && m.LastError != "", "reachable"
			}
		}
		return false, "not listed"
	})
	waitEvent(t, b, EventMailbox, "unreachable")
	l.checkOnce(t, a, b, want)
}

// storedEvents are n's events of a kind so far.
func storedEvents(t *testing.T, n *Node, kind EventKind) []Event {
	t.Helper()
	var out []Event
	err := n.store.View(func(r *db.ReadTx) error {
		evs, err := r.Events(0, 10000)
		if err == nil {
			out, _, err = decodeEvents(r, evs, []EventKind{kind})
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEvent waits for an event of kind with that state.
func waitEvent(t *testing.T, n *Node, kind EventKind, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := n.Watch(ctx, 0, kind)
	for {
		e, err := w.Next()
		if err != nil {
			t.Fatalf("no %s event %q: %v", kind, state, err)
		}
		if string(e.State) == state {
			return
		}
	}
}

// The mailbox loses everything after the deposits (its file deleted):
// nothing comes from it, and A's outbox, which kept every message until
// B's receipt, delivers them directly once both are online.
func TestMailboxWiped(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a, b := offlineStart(t, l, 0)
	want := texts("wiped", 20)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 20)
	if err := l.m.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(l.mcfgs[0].DataDir, db.MailboxFileName+"*"))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	l.m = startConfig(t, l.mcfgs[0])
	l.ms[0] = l.m
	b = startConfig(t, l.cfgB)
	if k := l.storedAt(t, l.m, b.ID()); k != -1 {
		t.Fatalf("the wiped mailbox still knows B (%d stored)", k)
	}
	l.checkOnce(t, a, b, want)
}

// Deposits expire at their TTL (the mailbox's clock moved on by 15 days,
// past B's 14): B gets nothing from the mailbox, and A delivers directly.
func TestMailboxTTLExpiry(t *testing.T) {
	checkNoLeaks(t)
	var skew atomic.Int64
	l := newMailboxLabOf(t, 1, func(c *Config) {
		c.mailboxNow = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	a, b := offlineStart(t, l, 0)
	want := texts("expiring", 20)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 20)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(15 * 24 * time.Hour))
	if n, err := l.m.mbox.store.Expire(l.m.cfg.mailboxNow()); err != nil || n != 20 {
		t.Fatalf("expired %d, want 20: %v", n, err)
	}
	b = startConfig(t, l.cfgB)
	a = startConfig(t, l.cfgA)
	l.checkOnce(t, a, b, want)
}

// B's quota at the mailbox is 50 deposits: of 80 messages, 50 are
// mailboxed and the rest stay queued at A, which says the mailbox is
// full; B, back, gets all 80, in order, once each.
func TestMailboxQuota(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a, b := offlineStart(t, l, 50)
	want := texts("quota", 80)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 50)
	waitEvent(t, a, EventMailbox, "full")
	if k := count(history(t, a, b.ID()), db.Outgoing, db.Queued); k != 30 {
		t.Fatalf("%d queued at A, want 30", k)
	}
	if k := l.stored(t, b.ID()); k != 50 {
		t.Fatalf("the mailbox keeps %d, want its quota, 50", k)
	}
	b = startConfig(t, l.cfgB)
	l.checkOnce(t, a, b, want)
}

// The answer to a round of deposits is lost after the mailbox stored
// them: A deposits again, the same seals, and the mailbox keeps one copy.
func TestMailboxReplyLost(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	var lost atomic.Int32
	l.cfgA.loseDepositReply = func() bool { return lost.Add(1) == 1 }
	a, b := offlineStart(t, l, 0)
	want := texts("reply lost", 10)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 10)
	if lost.Load() < 2 {
		t.Fatalf("%d rounds of deposits, want a lost one and another", lost.Load())
	}
	if k := l.stored(t, b.ID()); k != 10 {
		t.Fatalf("the mailbox keeps %d, want 10 (one copy each)", k)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = startConfig(t, l.cfgB)
	a = startConfig(t, l.cfgA)
	l.checkOnce(t, a, b, want)
}

// The mailbox injects junk: bytes that are no seal, a seal of garbage
// in A's name, a seal of garbage from nobody B knows. B drops them,
// acknowledges them (the mailbox deletes them), says so, and still gets
// A's messages.
func TestMailboxJunk(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a, b := offlineStart(t, l, 0)
	want := texts("among junk", 5)
	sendAll(t, a, b, want[:2])
	waitMailboxed(t, a, b.ID(), 2)
	owner, err := l.m.mbox.store.Owner(b.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	inA, err := e2e.Seal(b.Identity().DH, owner.Inbox, a.Identity().Key, []byte("not an envelope"))
	if err != nil {
		t.Fatal(err)
	}
	stranger := e2e.NewIdentity()
	inNobody, err := e2e.Seal(b.Identity().DH, owner.Inbox, stranger.Public().Key, []byte("not an envelope either"))
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{make([]byte, 1100), inA, inNobody} {
		if _, err := l.m.mbox.store.Deposit(db.MailboxDeposit{Inbox: owner.Inbox, Seal: junk, TTL: time.Hour, Now: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	sendAll(t, a, b, want[2:])
	waitMailboxed(t, a, b.ID(), 5)
	if k := l.stored(t, b.ID()); k != 8 {
		t.Fatalf("the mailbox keeps %d, want 5 and 3 of junk", k)
	}
	b = startConfig(t, l.cfgB)
	waitEvent(t, b, EventMailbox, "junk")
	waitFor(t, 10*time.Second, "the junk counted", func() (bool, string) {
		ms, err := b.Mailboxes()
		if err != nil || len(ms) != 1 {
			return false, "no mailbox"
		}
		return ms[0].Junk == 3, "junk: " + strconv.Itoa(ms[0].Junk)
	})
	l.checkOnce(t, a, b, want)
}

// B, a process of its own, is killed (SIGKILL) after it committed a page
// from its mailbox and before it acknowledged it: the mailbox keeps the
// page, B restarted takes it again, and keeps each message once.
func TestMailboxKilledBeforeAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node process; skipped with -short")
	}
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a, b := offlineStart(t, l, 0)
	want := texts("killed", 30)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 30)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "P2PMSG_CHILD_DIR="+l.cfgB.DataDir, "P2PMSG_CHILD_BOOT="+l.m.Addrs()[0].String(),
		"P2PMSG_CHILD_KILL_AFTER_PAGE=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // kept open: the child runs until killed
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("B did not take a page within 30 s")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("B ended with %v, not killed after a page", err)
	}
	if k := l.stored(t, b.ID()); k != 30 {
		t.Fatalf("the mailbox keeps %d after B was killed before its ack, want 30", k)
	}
	// B had committed the page: the restart takes it a second time.
	store, err := db.Open(l.cfgB.DataDir, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var h []db.Message
	err = store.View(func(r *db.ReadTx) (err error) { h, err = r.History(a.ID().String(), db.Cursor{}, 1000); return err })
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	if k := count(h, db.Incoming, ""); k != 31 {
		t.Fatalf("B stored %d before it was killed, want 31: the kill came before the commit", k)
	}
	b = startConfig(t, l.cfgB)
	l.checkOnce(t, a, b, want)
}

// A faulty mailbox hands the same one-time prekeys to two strangers: the
// first one's message opens B's session with them; the second one's
// names keys B has used, and is refused when it comes again directly;
// its sender encrypts it again under a new session, and both
// conversations deliver their message once.
func TestMailboxOneTimeKeyTwice(t *testing.T) {
	checkNoLeaks(t)
	var skew atomic.Int64
	l := newMailboxLabOf(t, 1, func(c *Config) {
		c.mailboxNow = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	l.cfgB.powBits = 8
	b := startConfig(t, l.cfgB)
	l.ownerAt(t, b)
	publish(t, b)
	owner, err := l.m.mbox.store.Owner(b.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	// The fault: one pair of one-time prekeys left, and handed out twice.
	var pair []db.MailboxOTK
	for {
		ks, err := l.m.mbox.store.TakeOTKs(owner.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if len(ks) == 0 {
			break
		}
		if pair == nil {
			pair = ks
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// What the senders write on the wire: the one whose message B takes
	// second (from the mailbox or directly, whichever comes first) sees it
	// refused, and writes it again under a new session.
	var mu sync.Mutex
	written := map[e2e.MessageID]map[string]bool{}
	tap := func(id e2e.MessageID, env []byte) {
		mu.Lock()
		defer mu.Unlock()
		if written[id] == nil {
			written[id] = map[string]bool{}
		}
		written[id][string(env)] = true
	}
	cfg := testConfig(t.TempDir(), l.m.AddrInfo())
	l.cfgA.tap, cfg.tap = tap, tap
	senders := []*Node{startConfig(t, l.cfgA), startConfig(t, cfg)}
	for i, c := range senders {
		if _, err := l.m.mbox.store.PutOTKs(b.ID().String(), pair, 100); err != nil {
			t.Fatal(err)
		}
		skew.Add(int64(time.Minute)) // past the pause between two askings from one address
		// The first goes to the mailbox, the second waits here (a
		// stranger's rule), in the same session.
		sendAll(t, c, b, []string{"from sender " + strconv.Itoa(i), "and again " + strconv.Itoa(i)})
		waitMailboxed(t, c, b.ID(), 1)
	}
	b = startConfig(t, l.cfgB)
	for i, c := range senders {
		if err := c.Connect(context.Background(), b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		// B accepts them: a stranger's second message waits until then.
		waitFor(t, 20*time.Second, "sender "+strconv.Itoa(i)+" a contact request", func() (bool, string) {
			ct, err := b.Contact(c.ID())
			return err == nil && ct.State == ContactRequest, ""
		})
		if err := b.Accept(c.ID()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "sender "+strconv.Itoa(i)+"'s messages delivered", func() (bool, string) {
			h := history(t, c, b.ID())
			return count(h, db.Outgoing, db.Delivered) == 2, fmt.Sprintf("%s (%s), %s (%s)", h[0].State, h[0].Error, h[1].State, h[1].Error)
		})
		checkConversation(t, history(t, b, c.ID()), db.Incoming, []string{"from sender " + strconv.Itoa(i), "and again " + strconv.Itoa(i)})
		waitFor(t, 10*time.Second, "the outbox empty", func() (bool, string) { return outboxLen(t, c, b.ID()) == 0, "" })
	}
	again := 0
	mu.Lock()
	defer mu.Unlock()
	for _, c := range senders {
		for _, m := range history(t, c, b.ID()) {
			again += max(0, len(written[m.ID])-1)
		}
	}
	if again == 0 {
		t.Fatal("no message written again under a new session: B refused none")
	}
}

// Strangers' first messages need a handshake each, from a budget (here 1
// at once): a page whose second stranger finds it spent is acknowledged
// but for that deposit, which comes again with the next subscription. The
// mailbox is not reported unreachable, and nothing is receipted twice.
func TestMailboxStrangerWaitsForBudget(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	l.cfgB.powBits = 8
	l.cfgB.handshakeRate, l.cfgB.handshakeBurst = 0.5, 1
	a, b := offlineStart(t, l, 0)
	want := texts("before the strangers", 3)
	sendAll(t, a, b, want)
	waitMailboxed(t, a, b.ID(), 3)
	var strangers []*Node
	for i := range 2 {
		s := startConfig(t, testConfig(t.TempDir(), l.m.AddrInfo()))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := s.Send(ctx, b.ID(), "a stranger "+strconv.Itoa(i))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		waitMailboxed(t, s, b.ID(), 1)
		// Away, so that only the mailbox can bring its message.
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		strangers = append(strangers, s)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = startConfig(t, l.cfgB)
	for i, s := range strangers {
		waitFor(t, 3*retrySoon, "stranger "+strconv.Itoa(i)+"'s message", func() (bool, string) {
			return count(history(t, b, s.ID()), db.Incoming, "") == 1, ""
		})
	}
	// The deposit that waited was taken at the next subscription.
	waitFor(t, 3*retrySoon, "the mailbox empty", func() (bool, string) { return l.stored(t, b.ID()) == 0, "" })
	if ms, err := b.Mailboxes(); err != nil || !ms[0].Reachable || ms[0].Collected != 5 {
		t.Fatalf("the mailbox seen as %+v, %v: want reachable, 5 collected", ms, err)
	}
	for _, e := range storedEvents(t, b, EventMailbox) {
		if e.State == "unreachable" {
			t.Fatalf("the mailbox reported unreachable: %s", e.Reason)
		}
	}
	// Receipts for A's three wait for A: one per batch that stored some
	// (1 to 3), none more for the round that took the stranger's again.
	if k := outboxLen(t, b, a.ID()); k < 1 || k > 3 {
		t.Fatalf("%d control messages wait for A, want 1 to 3 receipts", k)
	}
	a = startConfig(t, l.cfgA)
	l.checkOnce(t, a, b, want)
}

// Blocking a contact takes back its token: the mailbox gets a new token
// key, the other contacts new grants. The blocked one's deposits are
// refused (it is told, and keeps the message); the others' go on.
func TestMailboxBlockRevokesToken(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	a, b := startConfig(t, l.cfgA), startConfig(t, l.cfgB)
	c := startConfig(t, testConfig(t.TempDir(), l.m.AddrInfo()))
	l.ownerAt(t, b)
	l.becomeContacts(t, a, b)
	l.becomeContacts(t, c, b)
	old := grants(t, c, b.ID())[0].Token
	if err := b.Block(a.ID(), true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "C's new grant", func() (bool, string) { return grants(t, c, b.ID())[0].Token != old, "" })
	publish(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	sendAll(t, a, b, []string{"after the block"})
	waitEvent(t, a, EventMailbox, "refused")
	sendAll(t, c, b, []string{"from C"})
	waitMailboxed(t, c, b.ID(), 1)
	if k := count(history(t, a, b.ID()), db.Outgoing, db.Mailboxed); k != 0 {
		t.Fatalf("%d of the blocked contact's messages mailboxed", k)
	}
	if k := l.stored(t, b.ID()); k != 1 {
		t.Fatalf("the mailbox keeps %d, want C's 1", k)
	}
}

// Deposits without the work a stranger owes, or with a token B never
// made, are refused, each with its answer, and nothing is stored.
func TestMailboxRefusesUnauthorised(t *testing.T) {
	checkNoLeaks(t)
	l := newMailboxLab(t)
	l.cfgB.powBits = 8
	a, b := offlineStart(t, l, 0)
	owner, err := l.m.mbox.store.Owner(b.ID().String())
	if err != nil {
		t.Fatal(err)
	}
	seal, err := e2e.Seal(b.Identity().DH, owner.Inbox, a.Identity().Key, []byte("an envelope"))
	if err != nil {
		t.Fatal(err)
	}
	g := grants(t, a, b.ID())[0]
	lazy := mailbox.Deposit{Inbox: owner.Inbox, Auth: mailbox.AuthWork, Hour: mailbox.Hour(time.Now()), TTL: 3600, Seal: seal}
	for mailbox.WorkValid(owner.Inbox, seal, lazy.Hour, lazy.Nonce, 8, time.Now()) {
		lazy.Nonce++
	}
	forged := mailbox.Deposit{Inbox: owner.Inbox, Auth: mailbox.AuthToken, Index: g.Index, Token: g.Token, TTL: 3600, Seal: seal}
	forged.Token[0] ^= 1
	unknown := forged
	unknown.Index, unknown.Token = g.Index+1000, g.Token
	h, err := a.throwawayHost()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, l.m.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	res, err := mailbox.Deposits(ctx, h, l.m.ID(), []mailbox.Deposit{lazy, forged, unknown})
	if err != nil || len(res) != 3 {
		t.Fatalf("results %v, %v", res, err)
	}
	for i, r := range res {
		if r != mailbox.ResultAuth {
			t.Errorf("deposit %d answered %d, want %d (auth)", i, r, mailbox.ResultAuth)
		}
	}
	if k := l.stored(t, b.ID()); k != 0 {
		t.Fatalf("the mailbox keeps %d refused deposits", k)
	}
}
