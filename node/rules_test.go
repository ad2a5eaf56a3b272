package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
)

// The contact rules, in one place: a name is unique, adding without a
// name keeps the name, trust with no key change changes nothing, and
// removing a contact removes its history and sessions.
func TestContactRules(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	c := startNode(t, t.TempDir(), boot.AddrInfo())

	if err := a.AddContact(b.ID(), "bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddContact(b.ID(), ""); err != nil {
		t.Fatal(err)
	}
	if ct, _ := a.Contact(b.ID()); ct.Name != "bob" {
		t.Fatalf("AddContact without a name: name %q, want bob kept", ct.Name)
	}
	if err := a.AddContact(c.ID(), "bob"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("a second bob: %v, want ErrNameTaken", err)
	}
	if _, err := a.Contact(c.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the refused contact was stored: %v", err)
	}
	for _, bad := range []string{" bob", "a\x1bb", c.ID().String()} {
		if err := a.AddContact(c.ID(), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: %v, want ErrInvalid", bad, err)
		}
	}
	if err := a.Rename(b.ID(), "robert"); err != nil {
		t.Fatal(err)
	}
	if p, err := a.Resolve("robert"); err != nil || p != b.ID() {
		t.Fatalf("Resolve(robert) = %s, %v", p, err)
	}
	if _, err := a.Resolve("bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old name still resolves: %v", err)
	}
	if _, err := a.Resolve("  "); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a blank peer: %v", err)
	}

	// Trust with no key change: nothing changes, verified stays.
	accepts(t, b, a)
	send(t, a, b, "hello")
	waitDelivered(t, a, b.ID(), 1)
	if err := a.SetVerified(b.ID(), true); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.TrustIdentity(b.ID()); err != nil || changed {
		t.Fatalf("TrustIdentity with no key change: %v, %v", changed, err)
	}
	if ct := storedContact(t, a, b.ID()); !ct.Verified || ct.IdentityKey == nil {
		t.Fatalf("TrustIdentity with no key change changed the contact: %+v", ct)
	}
	send(t, a, b, "still the same session")
	waitDelivered(t, a, b.ID(), 2)

	// Remove: the contact, its history and its sessions go; the peer
	// writes again as a stranger, in a new session.
	if err := b.RemoveContact(a.ID()); err != nil {
		t.Fatal(err)
	}
	if err := b.RemoveContact(a.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if h := history(t, b, a.ID()); len(h) != 0 {
		t.Fatalf("history kept: %d messages", len(h))
	}
	err := b.store.View(func(r *db.ReadTx) error { _, err := r.Session(a.ID().String()); return err })
	if !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("session kept: %v", err)
	}
	id := send(t, a, b, "are you there?")
	waitFor(t, 10*time.Second, "the message refused", func() (bool, string) {
		m := find(history(t, a, b.ID()), id)
		return m != nil && m.State == db.Failed, "not yet"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Resend(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the resent message stored", func() (bool, string) {
		return count(history(t, b, a.ID()), db.Incoming, "") == 1, "not yet"
	})
	if ct, err := b.Contact(a.ID()); err != nil || ct.State != ContactRequest {
		t.Fatalf("the removed peer wrote again: %+v %v, want a contact request", ct, err)
	}
}

// History pages both ways without gap or repeat; Message fetches one.
func TestHistoryPagesAndMessage(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("m%02d", i))
		send(t, a, b, want[i])
	}
	var back []string
	for pg := (Page{Limit: 10}); ; {
		ms, err := a.History(b.ID(), pg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		var texts []string
		for _, m := range ms {
			texts = append(texts, m.Text)
		}
		back = append(texts, back...)
		pg.Before = ms[0].Cursor()
	}
	var fwd []string
	for pg := (Page{Limit: 7, Oldest: true}); ; {
		ms, err := a.History(b.ID(), pg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			fwd = append(fwd, m.Text)
		}
		pg.After = ms[len(ms)-1].Cursor()
	}
	if fmt.Sprint(back) != fmt.Sprint(want) || fmt.Sprint(fwd) != fmt.Sprint(want) {
		t.Fatalf("paging back %v\nforward %v\nwant %v", back, fwd, want)
	}
	ms, _ := a.History(b.ID(), Page{Limit: 1})
	m, err := a.Message(ms[0].ID)
	if err != nil || m.Text != "m24" || m.Peer != b.ID() || m.Direction != Outgoing {
		t.Fatalf("Message: %+v %v", m, err)
	}
	if _, err := a.Message(MessageID{1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown message: %v", err)
	}
	if _, err := a.History(b.ID(), Page{Limit: MaxPage + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an oversized page: %v", err)
	}
	if _, err := a.Send(context.Background(), b.ID(), " \n "); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an empty message: %v", err)
	}
}

// A Watcher filters by kind, carries what a client shows, and says why
// it ended.
func TestWatcherFiltersAndEnds(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	if err := b.AddContact(a.ID(), "alice"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := b.Watch(ctx, 0, EventMessage)
	before := time.Now()
	id := send(t, a, b, "hi b")
	e, err := w.Next()
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != EventMessage || e.MessageID != id || e.Text != "hi b" || e.Name != "alice" || e.Peer != a.ID() ||
		e.Direction != Incoming || e.State != Received || e.Sent.Before(before.Add(-time.Second)) || e.Stored.IsZero() {
		t.Fatalf("message event %+v", e)
	}
	cancel()
	if _, err := w.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
	w = b.Watch(context.Background(), e.ID)
	done := make(chan error, 1)
	go func() { _, err := w.Next(); done <- err }()
	b.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

// A page of history or events holds at most MaxPageText bytes of text,
// whatever its limit (any peer can send long messages); paging still
// meets every message once.
func TestPagesAreBoundedInBytes(t *testing.T) {
	checkNoLeaks(t)
	boot := startNode(t, t.TempDir())
	a := startNode(t, t.TempDir(), boot.AddrInfo())
	b := startNode(t, t.TempDir(), boot.AddrInfo())
	const n = 100 // 100 × 64 KB: about 1.5 × MaxPageText
	long := strings.Repeat("x", MaxTextSize-4)
	accepts(t, b, a)
	for i := range n {
		send(t, a, b, fmt.Sprintf("%03d ", i)+long)
	}
	waitDelivered(t, a, b.ID(), n)
	var got []string
	for pg := (Page{Limit: MaxPage}); ; {
		ms, err := b.History(a.ID(), pg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		text := 0
		var ids []string
		for _, m := range ms {
			text += len(m.Text)
			ids = append(ids, m.Text[:3])
		}
		if len(ms) > 1 && text > MaxPageText {
			t.Fatalf("a page of %d messages holds %d bytes of text", len(ms), text)
		}
		got = append(ids, got...)
		pg.Before = ms[0].Cursor()
	}
	if len(got) != n || got[0] != "000" || got[n-1] != fmt.Sprintf("%03d", n-1) {
		t.Fatalf("paged %d messages: %v", len(got), got)
	}
	seen := 0
	for after := int64(0); ; {
		evs, last, err := b.Events(after, MaxPage, EventMessage)
		if err != nil {
			t.Fatal(err)
		}
		if last == after {
			break
		}
		text := 0
		for _, e := range evs {
			text += len(e.Text)
		}
		if len(evs) > 1 && text > MaxPageText {
			t.Fatalf("a page of %d events holds %d bytes of text", len(evs), text)
		}
		seen += len(evs)
		after = last
	}
	if seen != n {
		t.Fatalf("paged %d message events, want %d", seen, n)
	}
}
