package db

import (
	"bytes"
	"testing"
	"time"
)

// The outbox as the mailboxes use it: control rows without a message,
// the mailboxed mark shown as a state, a message put back to wait for a
// new session (at most max times), and the ids of messages deleted with
// their contact, kept until they expire.
func TestOutboxControlMailboxedRekey(t *testing.T) {
	s := open(t, t.TempDir(), "passphrase") // sealed: bodies and secrets too
	msg, ctl := msgID(1), msgID(2)
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("peer", t0)
		if _, err := tx.InsertMessage(Message{ID: msg, Peer: "peer", Direction: Outgoing, Body: "hi", State: Queued, Sent: t0}); err != nil {
			return err
		}
		if err := tx.Enqueue(OutboxEntry{MessageID: msg, Peer: "peer", Envelope: []byte("env"), NextAttempt: t0, Created: t0}); err != nil {
			return err
		}
		return tx.Enqueue(OutboxEntry{MessageID: ctl, Peer: "peer", Envelope: []byte("receipt"), NextAttempt: t0, Created: t0, Control: true})
	})
	update(t, s, func(tx *Tx) error {
		if ok, err := tx.Mailboxed("peer", msg, t0); !ok || err != nil {
			t.Fatalf("mailboxed: %v, %v", ok, err)
		}
		if ok, err := tx.Mailboxed("peer", msg, t0); ok || err != nil {
			t.Fatalf("mailboxed twice: %v, %v", ok, err)
		}
		// A control row ends at a mailbox's store, with no message.
		if ok, err := tx.Mailboxed("peer", ctl, t0); ok || err != nil {
			t.Fatalf("control mailboxed: %v, %v", ok, err)
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		m, err := r.Message(msg)
		if err != nil || m.State != Mailboxed || m.Body != "hi" {
			t.Fatalf("message %+v, %v: want mailboxed", m, err)
		}
		out, err := r.OutboxFor("peer")
		if err != nil || len(out) != 1 || out[0].Mailboxed.IsZero() {
			t.Fatalf("outbox %+v, %v: want the message's row, mailboxed", out, err)
		}
		return nil
	})
	// Put back to wait for a session, twice at most.
	for i, want := range []bool{true, true, false} {
		update(t, s, func(tx *Tx) error {
			ok, err := tx.Rekey("peer", msg, "keys gone", 2, t0)
			if ok != want || err != nil {
				t.Fatalf("rekey %d: %v, %v; want %v", i, ok, err, want)
			}
			if ok {
				return tx.SetEnvelope("peer", msg, []byte("env again"))
			}
			return nil
		})
	}
	view(t, s, func(r *ReadTx) error {
		m, _ := r.Message(msg)
		out, _ := r.OutboxFor("peer")
		if m.State != Queued || len(out) != 1 || !bytes.Equal(out[0].Envelope, []byte("env again")) || !out[0].Mailboxed.IsZero() {
			t.Fatalf("after rekeys: %s, %+v", m.State, out)
		}
		return nil
	})
	// A control row delivered: no message to mark, the row goes.
	update(t, s, func(tx *Tx) error {
		if err := tx.Enqueue(OutboxEntry{MessageID: ctl, Peer: "peer", Envelope: []byte("grant"), NextAttempt: t0, Created: t0, Control: true}); err != nil {
			return err
		}
		if ok, err := tx.Delivered("peer", ctl); ok || err != nil {
			t.Fatalf("control delivered: %v, %v", ok, err)
		}
		n, err := tx.Read().OutboxCount()
		if n != 1 || err != nil {
			t.Fatalf("%d rows, %v; want the message's", n, err)
		}
		return nil
	})

	// Deleted with its contact, an incoming message leaves its id.
	in := msgID(3)
	update(t, s, func(tx *Tx) error {
		if _, err := receive(tx, "peer", 3, []byte("s"), t0); err != nil {
			return err
		}
		_, err := tx.DeleteContact("peer")
		return err
	})
	view(t, s, func(r *ReadTx) error {
		if gone, err := r.Gone(in); !gone || err != nil {
			t.Fatalf("gone: %v, %v", gone, err)
		}
		if n, _ := r.OutboxCount(); n != 0 {
			t.Fatalf("%d outbox rows after the contact's deletion", n)
		}
		return nil
	})
	update(t, s, func(tx *Tx) error { return tx.ExpireStale(time.Now().Add(time.Hour)) })
	view(t, s, func(r *ReadTx) error {
		if gone, err := r.Gone(in); gone || err != nil {
			t.Fatalf("gone after expiry: %v, %v", gone, err)
		}
		return nil
	})
}

// A contact's grants: the newest MaxMailboxes are kept, tokens sealed
// with a passphrase (and in the file without one: the check sees them);
// the owner's mailboxes, at most MaxMailboxes, token keys sealed alike.
func TestGrantsAndMailboxes(t *testing.T) {
	for _, pass := range []string{"", "passphrase"} {
		t.Run("passphrase="+pass, func(t *testing.T) { testGrantsAndMailboxes(t, pass) })
	}
}

func testGrantsAndMailboxes(t *testing.T, pass string) {
	dir := t.TempDir()
	s := open(t, dir, pass)
	token := [16]byte(bytes.Repeat([]byte{0x5c}, 16))
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("peer", t0)
		for i := range MaxMailboxes + 2 {
			g := Grant{Peer: "peer", Mailbox: string(rune('a' + i)), Index: uint32(i), Token: token, Received: t0.Add(time.Duration(i) * time.Second)}
			if err := tx.PutGrant(g); err != nil {
				return err
			}
		}
		for i := range MaxMailboxes {
			m := OwnMailbox{Peer: string(rune('m' + i)), Addrs: [][]byte{{1, 2}, {3}}, TokenKey: bytes.Repeat([]byte{0x7e}, 32), Added: t0, Updated: t0}
			if err := tx.PutMailbox(m); err != nil {
				return err
			}
		}
		if err := tx.PutMailbox(OwnMailbox{Peer: "one too many", TokenKey: []byte{1}, Added: t0, Updated: t0}); err != ErrTooManyMailboxes {
			t.Fatalf("a fourth mailbox: %v", err)
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		gs, err := r.Grants("peer")
		if err != nil || len(gs) != MaxMailboxes || gs[0].Mailbox != "e" || gs[0].Token != token {
			t.Fatalf("grants %+v, %v: want the newest %d", gs, err, MaxMailboxes)
		}
		ms, err := r.Mailboxes()
		if err != nil || len(ms) != MaxMailboxes || len(ms[0].Addrs) != 2 || !bytes.Equal(ms[0].Addrs[1], []byte{3}) {
			t.Fatalf("mailboxes %+v, %v", ms, err)
		}
		return nil
	})
	s.Close()
	for what, secret := range map[string][]byte{"a token": token[:], "a token key": bytes.Repeat([]byte{0x7e}, 32)} {
		mustContain(t, filesBytes(t, dir, "", "-wal"), secret, pass == "", what)
	}
}
