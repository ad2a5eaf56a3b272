package node

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
)

// Two nodes that share only a bootstrap node, and both write first at
// once (so both start a session), deliver everything exactly once and in
// order: after 100 messages each way, both histories hold all 200, in
// order, once each, and both outboxes are empty.
func TestTwoNodesThroughBootstrap(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range []*Node{a, b} {
		if _, err := n.PublishBundle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const N = 100
	aTexts, bTexts := texts("from a", N), texts("from b", N)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, s := range []struct {
		from, to *Node
		texts    []string
	}{{a, b, aTexts}, {b, a, bTexts}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, txt := range s.texts {
				if _, err := s.from.Send(ctx, s.to.ID(), txt); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range []struct{ n, other *Node }{{a, b}, {b, a}} {
		waitFor(t, 30*time.Second, "all delivered and received", func() (bool, string) {
			h := history(t, s.n, s.other.ID())
			d, in := count(h, db.Outgoing, db.Delivered), count(h, db.Incoming, "")
			return d == N && in == N, fmt.Sprintf("delivered %d, received %d", d, in)
		})
	}
	checkConversation(t, history(t, a, b.ID()), db.Outgoing, aTexts)
	checkConversation(t, history(t, a, b.ID()), db.Incoming, bTexts)
	checkConversation(t, history(t, b, a.ID()), db.Outgoing, bTexts)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, aTexts)
	for _, n := range []*Node{a, b} {
		if due := outbox(t, n); due != 0 {
			t.Errorf("%d envelopes left in the outbox", due)
		}
	}
}

func outbox(t testing.TB, n *Node) int {
	t.Helper()
	var out []db.OutboxEntry
	err := n.store.View(func(r *db.ReadTx) (err error) {
		out, err = r.DueOutbox(time.Now().Add(24*time.Hour), 100000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(out)
}

// Messages to a recipient that is down wait in the outbox, and go as soon
// as it is back: sent while B is down they stay queued; when B starts
// again they are delivered within 5 s, in order, once.
func TestOfflineRecipient(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	bDir := t.TempDir()
	b := startNode(t, bDir, boot.AddrInfo())
	bID := b.ID()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// They have talked before: each is the other's contact.
	send(t, a, b, "hello b")
	send(t, b, a, "hello a")
	waitFor(t, 10*time.Second, "first exchange", func() (bool, string) {
		ha, hb := history(t, a, bID), history(t, b, a.ID())
		return count(ha, db.Incoming, "") == 1 && count(hb, db.Incoming, "") == 1, "not yet"
	})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	want := texts("while b was away", 10)
	for _, txt := range want {
		if _, err := a.Send(ctx, bID, txt); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // a tries, and fails, to deliver
	h := history(t, a, bID)
	if q := count(h, db.Outgoing, db.Queued); q != len(want) {
		t.Fatalf("%d messages queued while the recipient is down, want %d", q, len(want))
	}
	start := time.Now()
	b = startNode(t, bDir, boot.AddrInfo())
	waitFor(t, 5*time.Second, "delivery after the recipient came back", func() (bool, string) {
		d := count(history(t, a, bID), db.Outgoing, db.Delivered)
		return d == len(want)+1, fmt.Sprintf("%d of %d delivered", d-1, len(want))
	})
	t.Logf("delivered %v after the recipient started again", time.Since(start).Round(time.Millisecond))
	checkConversation(t, history(t, b, a.ID()), db.Incoming, append([]string{"hello b"}, want...))
}

func send(t testing.TB, from, to *Node, text string) MessageID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := from.Send(ctx, to.ID(), text)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
