package node

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// nextEvent waits for the next event of a kind.
func nextEvent(t *testing.T, w *Watcher, kind EventKind) Event {
	t.Helper()
	for {
		e, err := w.Next()
		if err != nil {
			t.Fatalf("waiting for a %s event: %v", kind, err)
		}
		if e.Kind == kind {
			return e
		}
	}
}

// watch follows n's events after an id for 10 s at most.
func watch(t *testing.T, n *Node, after int64) *Watcher {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return n.Watch(ctx, after)
}

// A stranger's message is stored as a contact request, announced, not
// trusted; blocking drops what the peer sends next.
func TestContactRequestAndBlock(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := watch(t, b, 0)

	send(t, a, b, "hi, we met at the conference")
	if e := nextEvent(t, events, EventContactRequest); e.Peer != a.ID() {
		t.Fatalf("contact request from %s, want %s", e.Peer, a.ID())
	}
	if e := nextEvent(t, events, EventMessage); e.Direction != "in" || e.Peer != a.ID() {
		t.Fatalf("message event %+v", e)
	}
	c := storedContact(t, b, a.ID())
	if c.State != db.ContactRequest || c.IdentityKey == nil {
		t.Fatalf("stranger's contact: state %s, identity key %x; want a request with its key", c.State, c.IdentityKey)
	}
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"hi, we met at the conference"})
	if err := b.Accept(a.ID()); err != nil {
		t.Fatal(err)
	}
	if c, _ := b.Contact(a.ID()); c.State != ContactAccepted {
		t.Fatalf("after Accept: %s", c.State)
	}

	if err := b.Block(a.ID(), true); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, "are you ignoring me?")
	waitDelivered(t, a, b.ID(), 2) // acknowledged: a blocked peer learns nothing
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"hi, we met at the conference"})
	if _, err := b.Send(ctx, a.ID(), "no"); err == nil {
		t.Fatal("sent to a blocked peer")
	}
}

// A known contact that presents another identity DH key under the same
// peer ID (its Ed25519 key restored, the rest lost, or stolen) is refused
// and raised as a key change, until the user trusts the new key.
func TestKeyChangeRefused(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	aDir := t.TempDir()
	a := startNode(t, aDir, boot.AddrInfo())
	aID := a.ID()
	accepts(t, b, a) // a contact: a stranger's second message is held before any key check
	send(t, a, b, "hello")
	waitDelivered(t, a, b.ID(), 1)
	seed := a.self.Ed25519Seed()
	a.Close()

	// The same Ed25519 key with a new X25519 identity key, in a new store.
	var dh [32]byte
	rand.Read(dh[:])
	a2dir := t.TempDir()
	putIdentity(t, a2dir, e2e.NewIdentityFromSeeds(seed, dh))
	a2 := startNode(t, a2dir, boot.AddrInfo())
	if a2.ID() != aID {
		t.Fatal("the restored key gives another peer ID")
	}
	last, _ := lastEvent(t, b)
	events := watch(t, b, last)
	id := send(t, a2, b, "it is me, new laptop")
	if e := nextEvent(t, events, EventKeyChange); e.Peer != aID {
		t.Fatalf("key change for %s", e.Peer)
	}
	waitFor(t, 10*time.Second, "the message refused", func() (bool, string) {
		m := find(history(t, a2, b.ID()), id)
		return m != nil && m.State == db.Failed, "not yet"
	})
	checkConversation(t, history(t, b, aID), db.Incoming, []string{"hello"})

	if changed, err := b.TrustIdentity(aID); err != nil || !changed {
		t.Fatal(err)
	}
	send(t, a2, b, "and now?")
	waitFor(t, 10*time.Second, "accepted after trust", func() (bool, string) {
		return count(history(t, b, aID), db.Incoming, "") == 2, "not yet"
	})
	checkConversation(t, history(t, b, aID), db.Incoming, []string{"hello", "and now?"})
}

func find[ID ~[16]byte](h []db.Message, id ID) *db.Message {
	i := slices.IndexFunc(h, func(m db.Message) bool { return m.ID == [16]byte(id) })
	if i < 0 {
		return nil
	}
	return &h[i]
}

// putIdentity writes an identity into a new store, as a restore would.
func putIdentity(t *testing.T, dir string, id *e2e.Identity) {
	t.Helper()
	s, err := db.Open(dir, db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	secret, _ := id.MarshalBinary()
	pub := id.Public()
	if err := s.Update(func(tx *db.Tx) error { return tx.PutIdentity(identityKey(pub.Key, pub.DH), secret, time.Now()) }); err != nil {
		t.Fatal(err)
	}
}

// The event log outlives the node: a client resumes after a restart from
// the last id it saw, and gets exactly what came after.
func TestEventsResumeAfterRestart(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	bDir := t.TempDir()
	b := startNode(t, bDir, boot.AddrInfo())
	send(t, a, b, "one")
	waitDelivered(t, a, b.ID(), 1)
	if err := b.Accept(a.ID()); err != nil {
		t.Fatal(err)
	}
	mark, _ := lastEvent(t, b)
	send(t, a, b, "two")
	send(t, a, b, "three")
	waitDelivered(t, a, b.ID(), 3)
	b.Close()

	b = startNode(t, bDir, boot.AddrInfo())
	events := watch(t, b, mark)
	var got []string
	for len(got) < 2 {
		e := nextEvent(t, events, EventMessage)
		if e.ID <= mark {
			t.Fatalf("event %d replayed, asked for those after %d", e.ID, mark)
		}
		if m := find(history(t, b, a.ID()), e.MessageID); m == nil || m.Body != e.Text || e.Name != "" || e.Direction != Incoming {
			t.Fatalf("event %+v: b holds %+v", e, m)
		}
		got = append(got, e.Text)
	}
	if !slices.Equal(got, []string{"two", "three"}) {
		t.Fatalf("resumed events name %q, want two, three", got)
	}
}
