package node

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// A stranger is what an attacker makes by the thousand: a fresh identity
// on a raw host, with a session started from the victim's bundle.
type stranger struct {
	id   *e2e.Identity
	h    host.Host
	sess *e2e.Session
}

func newStranger(t testing.TB, b *Node) *stranger {
	t.Helper()
	id := e2e.NewIdentity()
	key, _, err := libp2pKey(id)
	if err != nil {
		t.Fatal(err)
	}
	s := &stranger{id: id, h: rawHost(t, key)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.h.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if s.sess, err = e2e.Initiate(id, fetchRawBundle(t, s.h, b)); err != nil {
		t.Fatal(err)
	}
	return s
}

// envelope encrypts content for the victim.
func (s *stranger) envelope(t testing.TB, content []byte) []byte {
	t.Helper()
	_, env, err := s.sess.Encrypt(content)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// deliver sends envelopes on a new stream and returns the acks.
func (s *stranger) deliver(t testing.TB, b *Node, envs ...[]byte) []wire.Ack {
	t.Helper()
	st := rawStream(t, s.h, b)
	defer st.Close()
	return exchange(t, st, envs...)
}

func textContent(text string) []byte { return wire.EncodeContent(time.Now().UnixMilli(), text) }

// A stranger gets one message through until the user accepts it; its
// node holds the rest (queued, with the reason) and sends them, in
// order, once the user accepts; a first message longer than 8 KiB is
// refused unread, and makes no request.
func TestStrangerIsHeldUntilAccepted(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	events := watch(t, a, 0)

	send(t, a, b, "hello, it is alice")
	waitDelivered(t, a, b.ID(), 1)
	held := []MessageID{send(t, a, b, "are you there?"), send(t, a, b, "it is about the keys")}
	reason := wire.ReasonNotAccepted.String()
	waitFor(t, 10*time.Second, "a holds what b refused until it accepts", func() (bool, string) {
		h := history(t, a, b.ID())
		for _, id := range held {
			if m := find(h, id); m == nil || m.State != db.Queued || m.Error != reason {
				return false, "not yet held"
			}
		}
		return true, ""
	})
	if got := history(t, b, a.ID()); len(got) != 1 || got[0].Body != "hello, it is alice" {
		t.Fatalf("b stored %d messages of a stranger, want its first only", len(got))
	}
	var entries []db.OutboxEntry
	a.store.View(func(r *db.ReadTx) (err error) { entries, err = r.OutboxFor(b.ID().String()); return err })
	if len(entries) != 2 || !entries[0].Held || !entries[1].Held {
		t.Fatalf("a's outbox for b: %+v, want the 2 messages held", entries)
	}
	// Held is not failed: no failure was reported, and the second held
	// message was announced as held: by a state event if it was on the
	// wire when the first was refused, else already when it was queued,
	// behind the first.
	for {
		e, err := events.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == EventState && e.State == Failed {
			t.Fatalf("a saw a failure: %+v", e)
		}
		if e.MessageID == held[1] && e.State == Queued && e.Reason == reason {
			break
		}
	}

	// b accepts: its notice releases them at once (not at a's probe in
	// holdRetry).
	if err := b.Accept(a.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the held messages are delivered after b accepts", func() (bool, string) {
		return count(history(t, a, b.ID()), db.Outgoing, db.Delivered) == 3, "not yet"
	})
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"hello, it is alice", "are you there?", "it is about the keys"})
	if m := find(history(t, a, b.ID()), held[0]); m.Error != "" {
		t.Fatalf("delivered message keeps the reason %q", m.Error)
	}

	// Too long for a first message: refused unread, no request.
	c := newStranger(t, b)
	long := c.envelope(t, textContent(strings.Repeat("x", maxRequestText+1)))
	if acks := c.deliver(t, b, long); acks[0].Status != wire.Rejected || acks[0].Reason != wire.ReasonTooLarge {
		t.Fatalf("a stranger's 8 KiB + 1 message: ack %+v, want rejected as too large", acks[0])
	}
	if _, err := b.Contact(c.h.ID()); err == nil {
		t.Fatal("a refused first message made a contact request")
	}
	// At the bound it passes.
	if acks := c.deliver(t, b, c.envelope(t, textContent(strings.Repeat("y", maxRequestText)))); acks[0].Status != wire.Stored {
		t.Fatalf("a stranger's 8 KiB message: ack %+v, want stored", acks[0])
	}
}

// A reply releases what was held too: writing to someone accepts them.
func TestReplyReleasesHeldMessages(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	send(t, a, b, "one")
	waitDelivered(t, a, b.ID(), 1)
	id := send(t, a, b, "two")
	waitFor(t, 10*time.Second, "two is held", func() (bool, string) {
		m := find(history(t, a, b.ID()), id)
		return m != nil && m.State == db.Queued && m.Error != "", "not yet"
	})
	send(t, b, a, "who is this?")
	waitFor(t, 10*time.Second, "two is delivered after b's reply", func() (bool, string) {
		m := find(history(t, a, b.ID()), id)
		return m != nil && m.State == db.Delivered, "not yet"
	})
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"one", "two"})
}

// Many strangers: requests stay within their cap (the oldest dropped,
// with an event), a contact's messages keep flowing meanwhile, strangers'
// 60 KB first messages are refused unread, and clearing the requests
// leaves only the real contacts.
func TestStrangerFlood(t *testing.T) {
	checkNoLeaks(t)
	const strangers, capReq = 150, 40
	boot := startNode(t, t.TempDir())
	cfg := testConfig(t.TempDir(), boot.AddrInfo())
	cfg.requestCap = capReq
	cfg.handshakeRate, cfg.handshakeBurst = 1000, 1000 // the bucket has its own test
	b := startConfig(t, cfg)
	carol := startNode(t, t.TempDir(), boot.AddrInfo())
	if err := b.AddContact(carol.ID(), "carol"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events := b.Watch(ctx, 0)

	var wg sync.WaitGroup
	errs := make(chan string, strangers)
	sem := make(chan struct{}, 8)
	for i := range strangers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := newStranger(t, b)
			text := "hi, I am a stranger"
			if i%5 == 0 {
				text = strings.Repeat("z", 60<<10)
			}
			acks := s.deliver(t, b, s.envelope(t, textContent(text)), s.envelope(t, textContent("and again")))
			// A 60 KB first message is refused unread; the short one
			// after it is the stranger's one message.
			want := [2]wire.Reason{wire.ReasonNone, wire.ReasonNotAccepted}
			if i%5 == 0 {
				want = [2]wire.Reason{wire.ReasonTooLarge, wire.ReasonNone}
			}
			if acks[0].Reason != want[0] || acks[1].Reason != want[1] {
				errs <- fmt.Sprintf("stranger %d got acks (status %d, reason %d), (%d, %d); want reasons %d, %d", i, acks[0].Status, acks[0].Reason, acks[1].Status, acks[1].Reason, want[0], want[1])
			}
			s.h.Close()
		}()
		if i%10 == 0 {
			send(t, carol, b, "carol says hi")
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	waitDelivered(t, carol, b.ID(), strangers/10)
	waitFor(t, 10*time.Second, "requests trimmed to the cap", func() (bool, string) {
		rs, err := b.Requests()
		return err == nil && len(rs) == capReq, "not yet"
	})
	for range strangers - capReq {
		if nextEvent(t, events, EventRequestDropped).Reason == "" {
			t.Fatal("a dropped request's event gives no reason")
		}
	}

	full := fileSize(t, b.store.Path())
	n, err := b.ClearRequests()
	if err != nil || n != capReq {
		t.Fatalf("ClearRequests: %d, %v; want %d", n, err, capReq)
	}
	if after := fileSize(t, b.store.Path()); after >= full {
		t.Fatalf("the store is %d bytes after clearing, %d before: the space was not given back", after, full)
	}
	cs, err := b.Contacts()
	if err != nil || len(cs) != 1 || cs[0].PeerID != carol.ID() {
		t.Fatalf("after clearing: %d contacts (%v), want carol only", len(cs), err)
	}
	// Messages cannot outlive their contact (a foreign key): carol's
	// are all that is left.
	if h := history(t, b, carol.ID()); len(h) != strangers/10 {
		t.Fatalf("carol's conversation has %d messages, want %d", len(h), strangers/10)
	}
}

// New sessions from strangers share a budget: past the burst their first
// messages are answered "retry later" (not refused, not stored); a
// contact's new session is not counted.
func TestStrangerHandshakesAreRateLimited(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	cfg := testConfig(t.TempDir(), boot.AddrInfo())
	cfg.handshakeRate, cfg.handshakeBurst = 0.001, 5
	b := startConfig(t, cfg)
	stored, retry := 0, 0
	for range 10 {
		s := newStranger(t, b)
		switch a := s.deliver(t, b, s.envelope(t, textContent("hello")))[0]; a.Status {
		case wire.Stored:
			stored++
		case wire.Retry:
			retry++
		default:
			t.Fatalf("ack %+v", a)
		}
	}
	if stored != 5 || retry != 5 {
		t.Fatalf("%d stored, %d told to retry; want 5 and 5", stored, retry)
	}
	// A contact is not counted.
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	if err := b.AddContact(a.ID(), "alice"); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "I am a contact")
	waitDelivered(t, a, b.ID(), 1)
}

// A contact gets one-time prekeys while strangers have drained the part
// of the budget open to them.
func TestContactsKeepOneTimePrekeys(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	got := 0
	for range issueBurst {
		h := rawHost(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := h.Connect(ctx, b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		cancel()
		if fetchRawBundle(t, h, b).HasOneTimePrekey {
			got++
		}
		h.Close()
	}
	if got > issueBurst-issueReserve+1 {
		t.Fatalf("strangers got %d one-time prekeys, want at most %d", got, issueBurst-issueReserve+1)
	}
	id := e2e.NewIdentity()
	key, p, err := libp2pKey(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddContact(p, "friend"); err != nil {
		t.Fatal(err)
	}
	h := rawHost(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	if !fetchRawBundle(t, h, b).HasOneTimePrekey {
		t.Fatal("a contact got no one-time prekey after strangers drained theirs")
	}
}

// status warns about a contact whose messages show a clock 10 minutes
// ahead of ours (no delay explains that); one 10 minutes behind only once
// it persists (one late burst looks the same); never about a stranger.
func TestStatusWarnsOfSkewedClocks(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	ahead, right, behind, unknown := newStranger(t, b), newStranger(t, b), newStranger(t, b), newStranger(t, b)
	for _, s := range []*stranger{ahead, right, behind} {
		if err := b.AddContact(s.h.ID(), ""); err != nil {
			t.Fatal(err)
		}
	}
	at := func(d time.Duration, text string) []byte {
		return wire.EncodeContent(time.Now().Add(d).UnixMilli(), text)
	}
	for _, m := range []struct {
		s       *stranger
		content []byte
	}{
		{ahead, at(10*time.Minute, "my clock is fast")},
		{right, at(0, "mine is right")},
		{behind, at(-10*time.Minute, "late, or slow")},
		{unknown, at(10*time.Minute, "a stranger's clock")},
	} {
		if a := m.s.deliver(t, b, m.s.envelope(t, m.content)); a[0].Status != wire.Stored {
			t.Fatalf("ack %+v", a[0])
		}
	}
	st, err := b.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.ClockSkews) != 1 || st.ClockSkews[0].PeerID != ahead.h.ID() ||
		st.ClockSkews[0].Offset > -9*time.Minute || st.ClockSkews[0].Offset < -11*time.Minute {
		t.Fatalf("clock skews %+v, want only %s, about 10 minutes ahead", st.ClockSkews, ahead.h.ID())
	}
	if st.Requests != 1 {
		t.Fatalf("status counts %d requests, want 1", st.Requests)
	}
	// Behind in batches over minutes: a clock, not a late burst.
	t0 := time.Now()
	for i := range clockBatches {
		b.observeClock(behind.h.ID(), 10*time.Minute, t0.Add(time.Duration(i)*clockSpread/2))
	}
	if skews := b.clockSkews(t0.Add(clockSpread)); len(skews) != 2 || skews[0].PeerID != min(ahead.h.ID(), behind.h.ID()) {
		t.Fatalf("clock skews %+v, want %s too, sorted", skews, behind.h.ID())
	}
}

// A message to a peer whose bundle cannot be found is not lost: it is
// queued unencrypted with the reason, and once the peer publishes, what
// waits is encrypted, in order, and delivered.
func TestMessageWaitsForABundle(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b, err := New(testConfig(t.TempDir(), boot.AddrInfo()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	// They exchanged peer IDs in person: b accepts a beforehand (or the
	// second message would be held, as a stranger's).
	if err := b.AddContact(a.ID(), "alice"); err != nil {
		t.Fatal(err)
	}
	first, second := send(t, a, b, "are you there yet?"), send(t, a, b, "second, behind the first")
	for id, why := range map[MessageID]string{first: "not found in the DHT yet; it stays queued and will be retried",
		second: "waiting for a session, behind earlier messages to this peer"} {
		m, err := a.Message(id)
		if err != nil || m.State != Queued || m.Error != why {
			t.Fatalf("message to a peer with no bundle: %+v, %v; want queued with the reason %q", m, err, why)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, a, b.ID(), 2)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"are you there yet?", "second, behind the first"})
	if m := must(a.Message(second)); m.Error != "" {
		t.Fatalf("delivered message keeps the reason %q", m.Error)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// If the acceptance notice is lost, the sender's probe finds out: the
// first held message goes alone, and once it is stored the rest follow,
// in order, before anything written after.
func TestHeldMessagesGoAfterALostNotice(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	cfg := testConfig(t.TempDir(), boot.AddrInfo())
	cfg.holdFor = time.Second
	a := startConfig(t, cfg)
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	send(t, a, b, "one")
	waitDelivered(t, a, b.ID(), 1)
	held := []MessageID{send(t, a, b, "two"), send(t, a, b, "three")}
	waitFor(t, 10*time.Second, "two and three held", func() (bool, string) {
		for _, id := range held {
			if m := must(a.Message(id)); m.State != Queued || m.Error == "" {
				return false, "not yet"
			}
		}
		return true, ""
	})
	// b accepts, and its notice never leaves (as if a were offline then).
	if err := b.editContact(a.ID(), false, func(c *db.Contact) error { c.State = db.ContactAccepted; return nil }); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "four")
	waitDelivered(t, a, b.ID(), 4)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"one", "two", "three", "four"})
}

// A stranger's handshake is its one message even when it carried no
// text: after a control content, its text is refused, and nothing of the
// control content is stored.
func TestStrangerControlContentIsItsOneMessage(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	s := newStranger(t, b)
	acks := s.deliver(t, b, s.envelope(t, wire.EncodeControl(time.Now().UnixMilli(), wire.ControlAccepted)),
		s.envelope(t, textContent("and now text")))
	if acks[0].Status != wire.Stored || acks[1].Status != wire.Rejected || acks[1].Reason != wire.ReasonNotAccepted {
		t.Fatalf("acks %+v, want the control stored (and ignored), the text refused as not accepted", acks)
	}
	if h := history(t, b, s.h.ID()); len(h) != 0 {
		t.Fatalf("%d messages stored of a stranger's control content", len(h))
	}
}

// Strangers share maxStrangerStreams message streams, each at most
// strangerStreamsPerPeer, and lose them after frameTimeout idle; a
// contact's stream is served while strangers hold every slot.
func TestStrangerStreamsAreBounded(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	accepts(t, b, a)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := 0
	var streams []network.Stream
	for range maxStrangerStreams/strangerStreamsPerPeer + 4 {
		h := rawHost(t, nil)
		if err := h.Connect(ctx, b.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		for range strangerStreamsPerPeer + 1 {
			s, err := h.NewStream(ctx, b.ID(), MsgProtocol)
			if err != nil {
				continue
			}
			streams = append(streams, s)
		}
	}
	// A stream the node refused is reset: a read fails at once, while an
	// admitted one waits (for up to frameTimeout).
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	var longest time.Duration
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.SetReadDeadline(time.Now().Add(30 * time.Second))
			var buf [1]byte
			s.Read(buf[:])
			mu.Lock()
			if d := time.Since(start); d > time.Second {
				open++
				longest = max(longest, d)
			}
			mu.Unlock()
			s.Reset()
		}()
	}
	send(t, a, b, "a contact gets through")
	waitDelivered(t, a, b.ID(), 1)
	wg.Wait()
	if open != maxStrangerStreams {
		t.Fatalf("%d stranger streams were held open, want %d", open, maxStrangerStreams)
	}
	if longest > frameTimeout+5*time.Second {
		t.Fatalf("an idle stranger stream lived %v", longest)
	}
	t.Logf("%d of %d stranger streams admitted; the longest lived %v", open, len(streams), longest)
}

// Peer IDs cost nothing, so a stranger's conversation does not outlive
// its batch: after many strangers, only contacts' remain in memory.
func TestStrangersLeaveNoConversations(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	for range 20 {
		s := newStranger(t, b)
		if a := s.deliver(t, b, s.envelope(t, textContent("hi")), s.envelope(t, textContent("again"))); a[0].Status != wire.Stored {
			t.Fatalf("ack %+v", a[0])
		}
		s.h.Close()
	}
	waitFor(t, 10*time.Second, "strangers' conversations dropped", func() (bool, string) {
		b.convs.Lock()
		defer b.convs.Unlock()
		return len(b.convs.m) == 0, fmt.Sprintf("%d left", len(b.convs.m))
	})
	// A request accepted later still works: its conversation comes back.
	rs, err := b.Requests()
	if err != nil || len(rs) != 20 {
		t.Fatalf("%d requests, %v", len(rs), err)
	}
}
