package db

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// History pages forward as well as back: walking a conversation with
// HistoryAfter from the zero cursor meets every message once, in order.
func TestHistoryPagesForwardWithoutGapOrRepeat(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("a", t0)
		for i := range 25 {
			// Equal times for pairs: the seq breaks the tie.
			at := t0.Add(time.Duration(i/2) * time.Second)
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "a", Direction: Outgoing, Body: fmt.Sprint(i), State: Queued, Sent: at}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		var got []string
		for c := (Cursor{}); ; {
			page, err := r.HistoryAfter("a", c, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, m := range page {
				got = append(got, m.Body)
			}
			c = CursorOf(page[len(page)-1])
		}
		if fmt.Sprint(got) != fmt.Sprint(seq(25)) {
			t.Fatalf("forward walk: %v", got)
		}
		return nil
	})
}

func seq(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// DeleteContact removes the contact, its session, its history, its
// outbox and its search entries, and leaves other conversations alone;
// messages stored afterwards are indexed again (rowids may be reused).
func TestDeleteContactRemovesItsHistory(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		for _, p := range []string{"a", "b"} {
			tx.EnsureContact(p, t0)
			if err := tx.PutSession(p, []byte("state"), t0); err != nil {
				return err
			}
		}
		// a's messages take the highest rowids.
		for i := range 10 {
			peer := "b"
			if i >= 5 {
				peer = "a"
			}
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: peer, Direction: Outgoing, Body: "walrus " + peer, State: Queued, Sent: t0}); err != nil {
				return err
			}
			if err := tx.Enqueue(OutboxEntry{MessageID: msgID(i), Peer: peer, Envelope: []byte{1}, NextAttempt: t0, Created: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		if ok, err := tx.DeleteContact("a"); !ok || err != nil {
			t.Fatalf("delete: %v %v", ok, err)
		}
		if ok, err := tx.DeleteContact("a"); ok || err != nil {
			t.Fatalf("second delete: %v %v", ok, err)
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		if _, err := r.Contact("a"); err == nil {
			t.Error("contact kept")
		}
		if _, err := r.Session("a"); err == nil {
			t.Error("session kept")
		}
		if h, _ := r.History("a", Cursor{}, 100); len(h) != 0 {
			t.Errorf("history kept: %d", len(h))
		}
		if o, _ := r.OutboxFor("a"); len(o) != 0 {
			t.Errorf("outbox kept: %d", len(o))
		}
		if f, _ := r.Search("walrus", 100); len(f) != 5 || f[0].Peer != "b" {
			t.Errorf("search after delete: %v", f)
		}
		if h, _ := r.History("b", Cursor{}, 100); len(h) != 5 {
			t.Errorf("b's history: %d", len(h))
		}
		if _, err := r.Session("b"); err != nil {
			t.Errorf("b's session: %v", err)
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("a", t0)
		_, err := tx.InsertMessage(Message{ID: msgID(20), Peer: "a", Direction: Outgoing, Body: "narwhal", State: Queued, Sent: t0})
		return err
	})
	view(t, s, func(r *ReadTx) error {
		if f, err := r.Search("narwhal", 10); err != nil || len(f) != 1 {
			t.Errorf("a message stored after the delete is not found: %v %v", f, err)
		}
		return nil
	})
}

// Names are unique: a second contact cannot take a name in use, and
// an empty name is no name.
func TestContactNamesAreUnique(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		if err := tx.PutContact(Contact{PeerID: "a", Name: "bob"}, t0); err != nil {
			return err
		}
		if err := tx.PutContact(Contact{PeerID: "b", Name: "bob"}, t0); !errors.Is(err, ErrNameTaken) {
			t.Fatalf("duplicate name: %v", err)
		}
		for _, p := range []string{"c", "d"} {
			if err := tx.PutContact(Contact{PeerID: p}, t0); err != nil {
				t.Fatalf("unnamed %s: %v", p, err)
			}
		}
		return tx.PutContact(Contact{PeerID: "a", Name: "bob", KeyChanged: true}, t0)
	})
	view(t, s, func(r *ReadTx) error {
		if c, err := r.Contact("a"); err != nil || !c.KeyChanged || c.Name != "bob" {
			t.Fatalf("a: %+v %v", c, err)
		}
		return nil
	})
}

// A store made before names were unique opens, with its duplicates
// renamed so that each name picks one contact, whatever the old names
// were (even one that looks like a renamed duplicate).
func TestMigrationMakesNamesUnique(t *testing.T) {
	dir := t.TempDir()
	raw, err := sql.Open("sqlite3", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations()[:2] {
		if _, err := raw.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = 2", applicationID)); err != nil {
		t.Fatal(err)
	}
	// a, b and c are all "bob"; d is named as b's duplicate becomes, and
	// h as it would with the end of its peer ID.
	for _, c := range [][2]string{{"p-a", "bob"}, {"p-b-123456", "bob"}, {"p-c", "bob"}, {"p-d", "bob p-b-123456"}, {"p-e-123456", "eve"}, {"p-f", ""}, {"p-g", ""}, {"p-h", "bob 123456"}} {
		if _, err := raw.Exec("INSERT INTO contacts (peer_id, name, created, updated) VALUES (?, ?, 0, 0)", c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	s := open(t, dir, "")
	view(t, s, func(r *ReadTx) error {
		cs, err := r.Contacts()
		if err != nil || len(cs) != 8 {
			t.Fatalf("contacts after the migration: %v %v", cs, err)
		}
		names := map[string]string{}
		for _, c := range cs {
			if c.Name == "" {
				continue
			}
			if other, dup := names[c.Name]; dup {
				t.Errorf("%s and %s are both named %q", other, c.PeerID, c.Name)
			}
			names[c.Name] = c.PeerID
		}
		if names["bob"] != "p-a" || names["eve"] != "p-e-123456" || names["bob p-c"] != "p-c" {
			t.Errorf("names after the migration: %v", names)
		}
		return nil
	})
}

// One-time prekeys issued by a version that gave them no expiry get one
// 30 days after their issue, and are deleted after it.
func TestMigrationExpiresOldIssuedPrekeys(t *testing.T) {
	dir := t.TempDir()
	raw, err := sql.Open("sqlite3", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations()[:3] {
		if _, err := raw.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = 3", applicationID)); err != nil {
		t.Fatal(err)
	}
	issued := t0.UnixMilli()
	for id, iss := range map[int]any{1: issued, 2: nil} {
		if _, err := raw.Exec("INSERT INTO prekeys (kind, id, public, secret, created, issued) VALUES ('one-time', ?, x'01', x'02', ?, ?)", id, issued, iss); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	s := open(t, dir, "")
	update(t, s, func(tx *Tx) error {
		if n, err := tx.DeleteExpiredPrekeys(t0.Add(29 * 24 * time.Hour)); n != 0 || err != nil {
			t.Fatalf("before 30 days: deleted %d, %v", n, err)
		}
		if n, err := tx.DeleteExpiredPrekeys(t0.Add(31 * 24 * time.Hour)); n != 1 || err != nil {
			t.Fatalf("after 30 days: deleted %d, %v; want the issued one only", n, err)
		}
		return nil
	})
}

// AcceptedContacts follows every write to the contacts, from the moment
// Update returns, though it answers from memory in between; and a reader
// racing writers never keeps a stale copy once they are done.
func TestAcceptedContactsFollowWrites(t *testing.T) {
	s := open(t, t.TempDir(), "")
	want := func(peers ...string) {
		t.Helper()
		got, err := s.AcceptedContacts()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(peers) {
			t.Fatalf("accepted contacts %v, want %v", got, peers)
		}
		for _, p := range peers {
			if !got[p] {
				t.Fatalf("accepted contacts %v, want %v", got, peers)
			}
		}
	}
	want()
	update(t, s, func(tx *Tx) error {
		if _, err := tx.EnsureContact("stranger", t0); err != nil {
			return err
		}
		return tx.PutContact(Contact{PeerID: "a", Name: "a", State: ContactAccepted}, t0)
	})
	want("a")
	update(t, s, func(tx *Tx) error {
		return tx.PutContact(Contact{PeerID: "stranger", Name: "s", State: ContactAccepted}, t0)
	})
	want("a", "stranger")
	update(t, s, func(tx *Tx) error {
		return tx.PutContact(Contact{PeerID: "a", Name: "a", State: ContactAccepted, Blocked: true}, t0)
	})
	want("a", "stranger") // blocked is still a contact
	update(t, s, func(tx *Tx) error {
		_, err := tx.DeleteContact("stranger")
		return err
	})
	want("a")
	// A write that fails rolls back: the set is what the store holds.
	boom := errors.New("boom")
	if err := s.Update(func(tx *Tx) error {
		if err := tx.PutContact(Contact{PeerID: "b", Name: "b", State: ContactAccepted}, t0); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("update: %v", err)
	}
	want("a")

	// Readers racing writers: after the last Update returns, every peer
	// written is there.
	const writes = 50
	done := make(chan struct{})
	readers := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-done:
					readers <- nil
					return
				default:
				}
				if _, err := s.AcceptedContacts(); err != nil {
					readers <- err
					return
				}
			}
		}()
	}
	peers := []string{"a"}
	for i := range writes {
		p := fmt.Sprintf("p%02d", i)
		peers = append(peers, p)
		update(t, s, func(tx *Tx) error {
			return tx.PutContact(Contact{PeerID: p, Name: p, State: ContactAccepted}, t0)
		})
		want(peers...)
	}
	close(done)
	for range 2 {
		if err := <-readers; err != nil {
			t.Fatal(err)
		}
	}
	want(peers...)
}
