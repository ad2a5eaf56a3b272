package db

import (
	"testing"
	"time"
)

// A held envelope is not sent again until its probe is due or it is
// released; backoff leaves it alone, and Release makes it due at once
// with its reason gone.
func TestHoldAndRelease(t *testing.T) {
	s := open(t, t.TempDir(), "")
	const reason = "waiting for the contact to accept"
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("b", t0)
		for i := range 4 { // 3 is queued after the held ones, and waits behind them
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "b", Direction: Outgoing, Body: "m", State: Queued, Sent: t0}); err != nil {
				return err
			}
			if err := tx.Enqueue(OutboxEntry{MessageID: msgID(i), Peer: "b", Envelope: []byte{byte(i)}, NextAttempt: t0, Created: t0}); err != nil {
				return err
			}
		}
		if _, err := tx.SetMessageState("b", msgID(1), Sent, ""); err != nil {
			return err
		}
		for _, i := range []int{1, 2} {
			if ok, err := tx.Hold("b", msgID(i), reason, t0.Add(time.Hour)); err != nil || !ok {
				t.Fatalf("Hold %d: %v, %v", i, ok, err)
			}
		}
		if ok, err := tx.Hold("b", msgID(9), reason, t0); err != nil || ok {
			t.Fatalf("Hold of an unknown envelope: %v, %v", ok, err)
		}
		// Held again (a probe refused): not a change, a later probe.
		if ok, err := tx.Hold("b", msgID(2), reason, t0.Add(time.Hour)); err != nil || ok {
			t.Fatalf("Hold of a held envelope: %v, %v; want no change reported", ok, err)
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		got, err := r.OutboxAfter("b", 0, 10, t0.Add(time.Minute))
		if err != nil || len(got) != 1 || got[0].MessageID != msgID(0) {
			t.Fatalf("before the probe: %+v, %v; want the one not held", got, err)
		}
		// The probe is the first held envelope alone: nothing passes it.
		if got, _ := r.OutboxAfter("b", 0, 10, t0.Add(time.Hour)); len(got) != 2 || !got[1].Held || got[1].MessageID != msgID(1) {
			t.Fatalf("at the probe: %+v, want the one not held, then the first held", got)
		}
		for _, i := range []int{1, 2} {
			m, err := r.Message(msgID(i))
			if err != nil || m.State != Queued || m.Error != reason {
				t.Fatalf("held message %d: %+v, %v; want queued with the reason", i, m, err)
			}
		}
		if has, err := r.HasIncoming("b"); err != nil || has {
			t.Fatalf("HasIncoming with outgoing messages only: %v, %v", has, err)
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		ids, err := tx.Release("b", t0.Add(2*time.Minute))
		if err != nil || len(ids) != 2 {
			t.Fatalf("Release: %v, %v", ids, err)
		}
		if ids, err := tx.Release("b", t0); err != nil || len(ids) != 0 {
			t.Fatalf("second Release: %v, %v", ids, err)
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		got, _ := r.OutboxAfter("b", 0, 10, t0.Add(2*time.Minute))
		if len(got) != 4 || got[1].Held || got[2].Held || got[1].LastError != "" {
			t.Fatalf("after Release: %+v", got)
		}
		if m, _ := r.Message(msgID(2)); m.Error != "" || m.State != Queued {
			t.Fatalf("released message: %+v", m)
		}
		return nil
	})
}

// Requests are pending contacts in the order they came; blocked ones and
// accepted ones are not requests.
func TestRequests(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		for i, p := range []string{"r1", "acc", "r2", "blk", "r3"} {
			c := Contact{PeerID: p, State: ContactRequest, Blocked: p == "blk"}
			if p == "acc" {
				c.State = ContactAccepted
			}
			if err := tx.PutContact(c, t0.Add(time.Duration(i)*time.Second)); err != nil {
				return err
			}
		}
		_, err := receive(tx, "r2", 1, []byte("hi"), t0)
		return err
	})
	view(t, s, func(r *ReadTx) error {
		rs, err := r.Requests()
		if err != nil || len(rs) != 3 || rs[0].PeerID != "r1" || rs[1].PeerID != "r2" || rs[2].PeerID != "r3" {
			t.Fatalf("Requests: %+v, %v", rs, err)
		}
		if n, err := r.RequestCount(); n != 3 || err != nil {
			t.Fatalf("RequestCount: %d, %v", n, err)
		}
		if old, err := r.OldestRequests(2); err != nil || len(old) != 2 || old[0] != "r1" || old[1] != "r2" {
			t.Fatalf("OldestRequests: %v, %v", old, err)
		}
		if has, err := r.HasIncoming("r2"); err != nil || !has {
			t.Fatalf("HasIncoming(r2): %v, %v", has, err)
		}
		if _, err := r.OldestRequests(0); err == nil {
			t.Fatal("OldestRequests(0) accepted")
		}
		// Contacts lists the accepted before the requests.
		cs, err := r.Contacts()
		if err != nil || len(cs) != 5 || cs[0].PeerID != "acc" {
			t.Fatalf("Contacts: %+v, %v; want the accepted one first", cs, err)
		}
		return nil
	})
}
