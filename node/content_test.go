package node

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// pair starts A and B, connected, each with a display name; A has
// written to B ("hello B") and B accepted A and answered ("hello A").
func pair(t *testing.T, tweak func(*Config)) (a, b *Node, first, answer MessageID) {
	t.Helper()
	cfgB := testConfig(t.TempDir())
	if tweak != nil {
		tweak(&cfgB)
	}
	a, b = startNode(t, t.TempDir()), startConfig(t, cfgB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n, name := range map[*Node]string{a: "Alice", b: "Bob"} {
		if err := n.SetProfile(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	first = must(a.Send(ctx, b.ID(), "hello B"))
	waitMessage(t, b, first, func(m Message) bool { return true })
	// The first message carried A's name, though A is still a stranger
	// to B.
	if c := must(b.Contact(a.ID())); c.ProfileName != "Alice" || c.State != ContactRequest || c.DisplayName() != "Alice" {
		t.Fatalf("B's request from A: %+v", c)
	}
	if err := b.AddContact(a.ID(), ""); err != nil {
		t.Fatal(err)
	}
	answer = must(b.SendDraft(ctx, a.ID(), Draft{Text: "hello A", ReplyTo: first}))
	waitMessage(t, a, answer, func(m Message) bool { return m.ReplyTo == first })
	if c := must(a.Contact(b.ID())); c.ProfileName != "Bob" {
		t.Fatalf("A does not know B's name: %+v", c)
	}
	return a, b, first, answer
}

// waitMessage waits until n holds message id and ok holds for it.
func waitMessage(t *testing.T, n *Node, id MessageID, ok func(Message) bool) Message {
	t.Helper()
	var m Message
	waitFor(t, 10*time.Second, "message "+id.String(), func() (bool, string) {
		var err error
		m, err = n.Message(id)
		if err != nil {
			return false, err.Error()
		}
		return ok(m), m.Text + " " + string(m.State)
	})
	return m
}

// Names, replies, edits, reactions and deletions each reach the other
// side and change the message there as here.
func TestContentKinds(t *testing.T) {
	checkNoLeaks(t)
	a, b, first, answer := pair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A local name wins over the one a contact gave itself.
	if err := a.Rename(b.ID(), "bobby"); err != nil {
		t.Fatal(err)
	}
	if c := must(a.Contact(b.ID())); c.DisplayName() != "bobby" || c.ProfileName != "Bob" {
		t.Fatalf("renamed: %+v", c)
	}
	// A new name goes to contacts at once.
	if err := b.SetProfile(ctx, "Robert"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "A learns B's new name", func() (bool, string) {
		c := must(a.Contact(b.ID()))
		return c.ProfileName == "Robert", c.ProfileName
	})

	// Edit: the latest text, marked edited, on both sides.
	if err := a.Edit(b.ID(), first, "hello B, edited"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, b, first, func(m Message) bool { return m.Text == "hello B, edited" && !m.Edited.IsZero() })
	if m := must(a.Message(first)); m.Text != "hello B, edited" || m.Edited.IsZero() {
		t.Fatalf("A's own edit: %+v", m)
	}
	if err := b.Edit(a.ID(), first, "not yours"); !errors.Is(err, ErrNotYours) {
		t.Fatalf("B edits A's message: %v", err)
	}
	if err := a.Edit(b.ID(), answer, "not yours"); !errors.Is(err, ErrNotYours) {
		t.Fatalf("A edits B's message: %v", err)
	}

	// Reactions: one per person per message, replaced, taken back.
	for _, e := range []string{"👍", "🎉"} {
		if err := b.React(a.ID(), first, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.React(b.ID(), first, "❤️"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, a, first, func(m Message) bool {
		got := map[peer.ID]string{}
		for _, r := range m.Reactions {
			got[r.Reactor] = r.Emoji
		}
		return len(m.Reactions) == 2 && got[""] == "❤️" && got[b.ID()] == "🎉"
	})
	waitMessage(t, b, first, func(m Message) bool { return len(m.Reactions) == 2 })
	if err := a.React(b.ID(), first, ""); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, b, first, func(m Message) bool { return len(m.Reactions) == 1 && m.Reactions[0].Reactor == "" })
	for _, ok := range []string{"1️⃣", "ℹ️", "👩‍👩‍👧‍👦", "🇫🇷", "👍🏽", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"} { // keycaps, letter-like symbols, joined, flags, skin tones, tags
		if err := a.React(b.ID(), first, ok); err != nil {
			t.Errorf("reaction %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"hello", "5", "👍 👍", strings.Repeat("👍", 9), "lol😂", "ok👍", "\u202e👍", "\u200b👍", "hello\ufe0f"} {
		if err := a.React(b.ID(), first, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("reaction %q: %v", bad, err)
		}
	}

	// A reply to a message unknown here is refused.
	if _, err := a.SendDraft(ctx, b.ID(), Draft{Text: "x", ReplyTo: MessageID{9}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a reply to nothing: %v", err)
	}

	// Delete for everyone: a tombstone with no text on both sides, its
	// reactions gone, and no edit after it.
	if err := a.Delete(b.ID(), first); err != nil {
		t.Fatal(err)
	}
	m := waitMessage(t, b, first, func(m Message) bool { return m.Deleted })
	if m.Text != "" || len(m.Reactions) != 0 {
		t.Fatalf("B's tombstone: %+v", m)
	}
	if m := must(a.Message(first)); !m.Deleted || m.Text != "" {
		t.Fatalf("A's tombstone: %+v", m)
	}
	if err := a.Edit(b.ID(), first, "back"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an edit of a deleted message: %v", err)
	}
	if res := search(t, b, "edited"); len(res) != 0 {
		t.Fatalf("B's search finds the deleted text: %+v", res)
	}
	waitFor(t, 10*time.Second, "outboxes empty", func() (bool, string) {
		return outboxLen(t, a, b.ID()) == 0 && outboxLen(t, b, a.ID()) == 0, ""
	})
}

func search(t *testing.T, n *Node, q string) []db.Message {
	t.Helper()
	var out []db.Message
	if err := n.store.View(func(r *db.ReadTx) (err error) {
		out, err = r.Search(q, 10)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Read receipts: on by default; a node with them off sends none, and
// still shows the ones it gets.
func TestReadReceipts(t *testing.T) {
	checkNoLeaks(t)
	a, b, first, answer := pair(t, func(c *Config) { c.NoReadReceipts = true })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A reads B's answer: B sees it read.
	if n, err := a.ReadUntil(b.ID(), MessageID{}); err != nil || n != 1 {
		t.Fatalf("A read %d, %v", n, err)
	}
	waitMessage(t, b, answer, func(m Message) bool { return m.State == Read })
	if m := must(a.Message(answer)); m.State != Read {
		t.Fatalf("A's copy of the answer: %s", m.State)
	}
	// B reads A's messages: with receipts off, A sees them delivered only.
	waitMessage(t, a, first, func(m Message) bool { return m.State == Delivered })
	next := must(a.Send(ctx, b.ID(), "are you there?"))
	waitMessage(t, b, next, func(Message) bool { return true })
	if n, err := b.ReadUntil(a.ID(), next); err != nil || n != 2 {
		t.Fatalf("B read %d, %v", n, err)
	}
	// B's receipt for next would come before this answer if it were sent.
	probe := must(b.Send(ctx, a.ID(), "probe"))
	waitMessage(t, a, probe, func(Message) bool { return true })
	waitFor(t, 5*time.Second, "B's outbox empty", func() (bool, string) { return outboxLen(t, b, a.ID()) == 0, "" })
	for _, id := range []MessageID{first, next} {
		if m := must(a.Message(id)); m.State != Delivered {
			t.Errorf("A's %q is %s, with B's read receipts off", m.Text, m.State)
		}
	}
}

// Disappearing messages: the timer reaches the peer; a message written
// under it is deleted from both stores once its time has run (the
// sender's from delivery, the reader's from reading), and the database
// files hold its text nowhere: not in the table, the index, free pages
// or the WAL.
func TestDisappearingMessages(t *testing.T) {
	checkNoLeaks(t)
	a, b, _, _ := pair(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.SetTimer(b.ID(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B has A's timer", func() (bool, string) {
		c := must(b.Contact(a.ID()))
		return c.Timer == 2*time.Second, c.Timer.String()
	})
	const secret = "pineapplesecretword"
	id := must(a.Send(ctx, b.ID(), "the "+secret+" is here"))
	m := waitMessage(t, b, id, func(Message) bool { return true })
	if m.Timer != 2*time.Second || !m.Expires.IsZero() {
		t.Fatalf("B's copy before reading: timer %v, expires %v", m.Timer, m.Expires)
	}
	if res := search(t, b, secret); len(res) != 1 {
		t.Fatalf("B's search before expiry: %d results", len(res))
	}
	if m := waitMessage(t, a, id, func(m Message) bool { return m.State == Delivered || m.State == Read }); m.Expires.IsZero() {
		t.Fatal("A's copy was delivered and does not count down")
	}
	// Unread, B's copy stays past the sender's timer.
	waitFor(t, 10*time.Second, "A's copy gone", func() (bool, string) {
		_, err := a.Message(id)
		return errors.Is(err, ErrNotFound), ""
	})
	if _, err := b.Message(id); err != nil {
		t.Fatalf("B's unread copy: %v", err)
	}
	if _, err := b.ReadUntil(a.ID(), MessageID{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B's copy gone", func() (bool, string) {
		_, err := b.Message(id)
		return errors.Is(err, ErrNotFound), ""
	})
	for _, n := range []*Node{a, b} {
		waitFor(t, 20*time.Second, "no file holds the text", func() (bool, string) {
			f := filesHolding(t, n.cfg.DataDir, secret)
			return len(f) == 0, strings.Join(f, ", ")
		})
	}
	if res := search(t, b, secret); len(res) != 0 {
		t.Fatalf("B's search after expiry: %d results", len(res))
	}
	// Off again: B hears of it too.
	if err := a.SetTimer(b.ID(), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "B's timer off", func() (bool, string) { return must(b.Contact(a.ID())).Timer == 0, "" })
}

// filesHolding lists the files of dir that hold s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A newer peer's content, of a kind or with flags this version does not
// know, is stored as a placeholder and acknowledged, never refused; a
// control signal it does not know is acknowledged and ignored.
func TestUnknownKindsArePlaceholders(t *testing.T) {
	checkNoLeaks(t)
	b := startNode(t, t.TempDir())
	s := newStranger(t, b)
	now := time.Now().UnixMilli()
	named, err := wire.EncodeMessage(now, wire.Message{Text: "hi, it's Carol", Profile: "Carol", HasProfile: true})
	if err != nil {
		t.Fatal(err)
	}
	if acks := s.deliver(t, b, s.envelope(t, named)); acks[0].Status != wire.Stored {
		t.Fatalf("first message: %+v", acks[0])
	}
	_, sp, err := libp2pKey(s.id)
	if err != nil {
		t.Fatal(err)
	}
	if c := must(b.Contact(sp)); c.ProfileName != "Carol" {
		t.Fatalf("the stranger's name: %+v", c)
	}
	if err := b.AddContact(sp, ""); err != nil {
		t.Fatal(err)
	}
	newKind := append([]byte{42}, make([]byte, 8)...)
	newKind = append(newKind, "a poll, say"...)
	reply, _ := wire.EncodeMessage(now, wire.Message{Text: "x", ReplyTo: e2e.MessageID{1}})
	reply[wire.ContentHeader] |= 0x40 // a flag of the future
	unknownSignal := append(wire.EncodeControl(now, 77), 1, 2, 3)
	envs := [][]byte{s.envelope(t, newKind), s.envelope(t, reply), s.envelope(t, unknownSignal)}
	for i, ack := range s.deliver(t, b, envs...) {
		if ack.Status != wire.Stored {
			t.Fatalf("envelope %d: %+v", i, ack)
		}
	}
	h := history(t, b, sp)
	if len(h) != 3 || h[1].Body != wire.Unreadable || h[2].Body != wire.Unreadable {
		t.Fatalf("history: %+v", h)
	}
}

// A contact changes only its own messages of its own conversation: its
// edit or deletion of our message, or of a message of another
// conversation, and its reaction to another conversation's message, are
// dropped (acknowledged: sending them again changes nothing).
func TestChangesOnlyByTheirSender(t *testing.T) {
	checkNoLeaks(t)
	_, b, first, answer := pair(t, nil)
	s := newStranger(t, b)
	now := time.Now().UnixMilli()
	hello, _ := wire.EncodeMessage(now, wire.Message{Text: "hi, it is Sam"})
	env := s.envelope(t, hello)
	own := must(e2e.EnvelopeID(env))
	if acks := s.deliver(t, b, env); acks[0].Status != wire.Stored {
		t.Fatalf("Sam's first message: %+v", acks[0])
	}
	_, sp, err := libp2pKey(s.id)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddContact(sp, "sam"); err != nil {
		t.Fatal(err)
	}
	var envs [][]byte
	for _, pt := range [][]byte{
		must(wire.EncodeEdit(now, wire.Edit{ID: e2e.MessageID(first), Text: "A's message, forged"})),  // another conversation's
		must(wire.EncodeEdit(now, wire.Edit{ID: e2e.MessageID(answer), Text: "B's message, forged"})), // ours, to A
		must(wire.EncodeDelete(now, e2e.MessageID(first))),
		must(wire.EncodeReaction(now, wire.Reaction{ID: e2e.MessageID(first), Emoji: "💩"})),
		must(wire.EncodeEdit(now, wire.Edit{ID: own, Text: "hi, it is Sam, edited"})), // its own: applies
	} {
		envs = append(envs, s.envelope(t, pt))
	}
	for i, ack := range s.deliver(t, b, envs...) {
		if ack.Status != wire.Stored {
			t.Fatalf("change %d: %+v", i, ack)
		}
	}
	for _, id := range []MessageID{first, answer} {
		m := must(b.Message(id))
		if m.Deleted || !m.Edited.IsZero() || len(m.Reactions) != 0 || strings.Contains(m.Text, "forged") {
			t.Fatalf("B's copy of %s changed by Sam: %+v", id, m)
		}
	}
	if m := must(b.Message(MessageID(own))); m.Text != "hi, it is Sam, edited" {
		t.Fatalf("Sam's edit of its own message: %+v", m)
	}
}
