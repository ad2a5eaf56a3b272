package db

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestOpenCreatesAPrivateDurableStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir, "")
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	for pragma, want := range map[string]string{
		"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "secure_delete": "1", "auto_vacuum": "2",
		"application_id": fmt.Sprint(applicationID), "user_version": fmt.Sprint(len(migrations())),
	} {
		var got string
		if err := s.wdb.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	var readOnly string
	s.reader.QueryRow("PRAGMA query_only").Scan(&readOnly)
	if readOnly != "1" {
		t.Error("reader connections can write")
	}
	if s.SecretsSealed() {
		t.Error("no passphrase, yet sealed")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := s.Update(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("update after close: %v", err)
	}
}

func TestSecondOpenOfADirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v", err)
	}
	s.Close()
	open(t, dir, "") // the lock went with the first store
}

func TestReceiveTransactionIsAtomic(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	update(t, s, func(tx *Tx) error { _, err := tx.EnsureContact("peer", t0); return err })
	update(t, s, func(tx *Tx) error { _, err := receive(tx, "peer", 1, []byte("state 1"), t0); return err })

	// A receive that fails after writing leaves nothing behind.
	boom := errors.New("decrypt failed")
	err := s.Update(func(tx *Tx) error {
		if _, err := receive(tx, "peer", 2, []byte("state 2"), t0); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	view(t, s, func(r *ReadTx) error {
		blob, err := r.Session("peer")
		if err != nil || string(blob) != "state 1" {
			t.Fatalf("session %q %v", blob, err)
		}
		if _, err := r.Message(msgID(2)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("message of the failed transaction: %v", err)
		}
		evs, _ := r.Events(0, 10)
		if len(evs) != 1 {
			t.Fatalf("%d events", len(evs))
		}
		return nil
	})

	// Foreign keys hold: no message for a stranger who is not a contact.
	err = s.Update(func(tx *Tx) error { _, err := receive(tx, "stranger", 3, nil, t0); return err })
	if err == nil {
		t.Fatal("message stored for a peer that is not a contact")
	}
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error { _, err := tx.EnsureContact("peer", t0); return err })
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Update(func(tx *Tx) error {
				if _, err := receive(tx, "peer", i, []byte{byte(i)}, t0); err != nil {
					return err
				}
				if i%10 == 0 {
					return fmt.Errorf("fail %d", i)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	view(t, s, func(r *ReadTx) error {
		for i := range n {
			_, err := r.Message(msgID(i))
			if (i%10 == 0) != errors.Is(err, ErrNotFound) {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		evs, _ := r.Events(0, 1000)
		if len(evs) != n-n/10 {
			t.Fatalf("%d events", len(evs))
		}
		return nil
	})

	// A panic reaches its own caller, and the store goes on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		s.Update(func(tx *Tx) error { panic("boom") })
	}()
	update(t, s, func(tx *Tx) error { return tx.PutSetting("after", []byte("panic")) })
}

func TestMessageIDOfAnotherPeerIsAConflict(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("alice", t0)
		tx.EnsureContact("mallory", t0)
		if _, err := tx.InsertMessage(Message{ID: msgID(1), Peer: "alice", Direction: Incoming, Body: "hi", State: Received, Sent: t0, Received: t0}); err != nil {
			return err
		}
		_, err := tx.InsertMessage(Message{ID: msgID(1), Peer: "mallory", Direction: Incoming, Body: "x", State: Received, Sent: t0, Received: t0})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("got %v", err)
		}
		return nil
	})
}

func TestRetransmittedMessageIsStoredOnce(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error { _, err := tx.EnsureContact("peer", t0); return err })
	for try := range 3 {
		update(t, s, func(tx *Tx) error {
			inserted, err := receive(tx, "peer", 7, []byte("s"), t0)
			if inserted != (try == 0) {
				t.Fatalf("try %d: inserted = %v", try, inserted)
			}
			return err
		})
	}
	var count int
	s.reader.QueryRow("SELECT count(*) FROM messages").Scan(&count)
	if count != 1 {
		t.Fatalf("%d rows", count)
	}
}

func TestOutboxKeepsExactBytesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	env := bytes.Repeat([]byte{0, 1, 2, 0xff}, 300)
	id := msgID(1)
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("peer", t0)
		if _, err := tx.InsertMessage(Message{ID: id, Peer: "peer", Direction: Outgoing, Body: "hi", State: Queued, Sent: t0}); err != nil {
			return err
		}
		if err := tx.PutSession("peer", []byte("advanced"), t0); err != nil {
			return err
		}
		return tx.Enqueue(OutboxEntry{MessageID: id, Peer: "peer", Envelope: env, NextAttempt: t0, Created: t0})
	})
	update(t, s, func(tx *Tx) error { return tx.RetryLater(id, t0.Add(2*time.Second), "peer offline") })
	s.Close()

	s = open(t, dir, "")
	view(t, s, func(r *ReadTx) error {
		out, err := r.OutboxFor("peer")
		if err != nil || len(out) != 1 {
			t.Fatalf("%d entries, %v", len(out), err)
		}
		if !bytes.Equal(out[0].Envelope, env) || out[0].Attempts != 1 || out[0].LastError != "peer offline" || !out[0].NextAttempt.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("entry %+v", out[0])
		}
		due, _ := r.DueOutbox(t0.Add(time.Second), 10)
		if len(due) != 0 {
			t.Fatal("entry due before its time")
		}
		due, _ = r.DueOutbox(t0.Add(3*time.Second), 10)
		if len(due) != 1 {
			t.Fatal("entry not due")
		}
		if next, ok, err := r.NextAttempt(); !ok || err != nil || !next.Equal(t0.Add(2*time.Second)) {
			t.Fatalf("next attempt %v, %v, %v; want %v", next, ok, err, t0.Add(2*time.Second))
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		if ok, _ := tx.Delivered("mallory", id); ok {
			t.Fatal("another peer acknowledged the message")
		}
		if ok, err := tx.Delivered("peer", id); !ok || err != nil {
			t.Fatalf("delivered: %v %v", ok, err)
		}
		if ok, _ := tx.Delivered("peer", id); ok {
			t.Fatal("delivered twice")
		}
		// A late "sent" or a give-up cannot take the state back.
		if moved, _ := tx.SetMessageState("peer", id, Sent, ""); moved {
			t.Fatal("delivered went back to sent")
		}
		if gave, _ := tx.GiveUp("peer", id, "timeout"); gave {
			t.Fatal("gave up on a delivered message")
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		m, _ := r.Message(id)
		if m.State != Delivered {
			t.Fatalf("state %s", m.State)
		}
		if next, ok, err := r.NextAttempt(); ok || err != nil {
			t.Fatalf("next attempt %v, %v, %v in an empty outbox", next, ok, err)
		}
		return nil
	})
}

func TestHistoryUnreadAndSearch(t *testing.T) {
	for _, pass := range []string{"", "sealed"} {
		t.Run(fmt.Sprintf("sealed=%v", pass != ""), func(t *testing.T) { testHistoryUnreadAndSearch(t, pass) })
	}
}

func testHistoryUnreadAndSearch(t *testing.T, pass string) {
	s := open(t, t.TempDir(), pass)
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("a", t0)
		tx.EnsureContact("b", t0)
		for i := range 30 {
			peer, dir, state := "a", Incoming, Received
			if i%3 == 0 {
				dir, state = Outgoing, Delivered
			}
			if i >= 25 {
				peer = "b"
			}
			at := t0.Add(time.Duration(i) * time.Minute)
			body := fmt.Sprintf("note %d about the Harbour", i)
			switch i {
			case 4:
				body = `quotes "and" OR NEAR( parentheses`
			case 5:
				body = "Привет from the Café"
			}
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: peer, Direction: dir, Body: body, State: state, Sent: at, Received: at}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		page, err := r.History("a", Cursor{}, 10)
		if err != nil || len(page) != 10 || page[0].Body != "note 15 about the Harbour" || page[9].Body != "note 24 about the Harbour" {
			t.Fatalf("newest page: %v %v", err, page)
		}
		older, _ := r.History("a", CursorOf(page[0]), 100)
		if len(older) != 15 || older[14].Body != "note 14 about the Harbour" {
			t.Fatalf("older page: %d", len(older))
		}
		unread, _ := r.UnreadCounts()
		if unread["a"] != 16 || unread["b"] != 4 {
			t.Fatalf("unread %v", unread)
		}
		found, err := r.Search("harbour note", 5)
		if err != nil || len(found) != 5 || found[0].Body != "note 29 about the Harbour" {
			t.Fatalf("search: %v %v", err, found)
		}
		for _, q := range []string{`"and" OR NEAR(`, `parenth*`, `quotes"`} {
			found, err = r.Search(q, 5)
			if err != nil || len(found) != 1 || found[0].ID != msgID(4) {
				t.Fatalf("search %q: %v %v", q, err, found)
			}
		}
		for _, q := range []string{"   ", "- ? !"} {
			if found, err := r.Search(q, 5); err != nil || len(found) != 0 {
				t.Fatalf("search %q: %v %v", q, err, found)
			}
		}
		// A word of punctuation alone does not make a query match nothing,
		// and case folds beyond ASCII.
		for _, q := range []string{"harbour -", "ПРИВЕТ", "привет", "cafe"} {
			found, err := r.Search(q, 50)
			if err != nil || len(found) == 0 {
				t.Fatalf("search %q: %v %v", q, err, found)
			}
		}
		if _, err := r.History("a", Cursor{}, 0); err == nil {
			t.Fatal("limit 0 accepted")
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		n, err := tx.MarkRead("a", Cursor{Time: t0.Add(time.Hour), Seq: 1 << 62})
		if n != 16 {
			t.Fatalf("marked %d", n)
		}
		return err
	})
}

func TestEventsResumeFromAnyID(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	for i := range 5 {
		update(t, s, func(tx *Tx) error { _, err := tx.AppendEvent("tick", []byte{byte(i)}, t0); return err })
	}
	s.Close()
	s = open(t, dir, "")
	view(t, s, func(r *ReadTx) error {
		evs, _ := r.Events(2, 10)
		if len(evs) != 3 || evs[0].ID != 3 || evs[0].Payload[0] != 2 {
			t.Fatalf("events %+v", evs)
		}
		last, _ := r.LastEventID()
		if last != 5 {
			t.Fatalf("last %d", last)
		}
		return nil
	})
	// Ids are never reused, even after the newest events are deleted.
	s.wdb.Exec("DELETE FROM events WHERE id > 3")
	update(t, s, func(tx *Tx) error {
		id, err := tx.AppendEvent("tick", nil, t0)
		if id != 6 {
			t.Fatalf("reused id: %d", id)
		}
		return err
	})
}

func TestPrekeysAndReplayRecords(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		if err := tx.PutIdentity([]byte("pub"), []byte("identity secret"), t0); err != nil {
			return err
		}
		if err := tx.PutIdentity([]byte("pub"), []byte("again"), t0); err == nil {
			t.Fatal("second identity stored")
		}
		for i := range 3 {
			if err := tx.PutPrekey(Prekey{Kind: OneTimePrekey, ID: uint32(10 + i), Public: []byte{byte(i)}, Secret: []byte{0xa0 + byte(i)}, Created: t0}); err != nil {
				return err
			}
		}
		return tx.PutPrekey(Prekey{Kind: SignedPrekey, ID: 1, Public: []byte("spk"), Secret: []byte("spk secret"), Created: t0, Expires: t0.Add(time.Hour)})
	})
	update(t, s, func(tx *Tx) error {
		seen := map[uint32]bool{}
		for range 3 {
			id, _, err := tx.IssueOneTimePrekey(OneTimePrekey, t0, t0.Add(30*24*time.Hour))
			if err != nil || seen[id] {
				t.Fatalf("issued %d twice or %v", id, err)
			}
			seen[id] = true
		}
		if _, _, err := tx.IssueOneTimePrekey(OneTimePrekey, t0, t0.Add(30*24*time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fourth issue: %v", err)
		}
		secret, err := tx.UseOneTimePrekey(OneTimePrekey, 11, t0)
		if err != nil || !bytes.Equal(secret, []byte{0xa1}) {
			t.Fatalf("use: %x %v", secret, err)
		}
		if _, err := tx.UseOneTimePrekey(OneTimePrekey, 11, t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second use: %v", err)
		}
		fresh, err := tx.MarkSeen([]byte("replay"), t0.Add(time.Hour))
		if !fresh || err != nil {
			t.Fatal("first mark")
		}
		if fresh, _ := tx.MarkSeen([]byte("replay"), t0.Add(time.Hour)); fresh {
			t.Fatal("replay key accepted twice")
		}
		return nil
	})
	view(t, s, func(r *ReadTx) error {
		pub, sec, err := r.Identity()
		if err != nil || string(pub) != "pub" || string(sec) != "identity secret" {
			t.Fatalf("identity %q %q %v", pub, sec, err)
		}
		p, err := r.Prekey(OneTimePrekey, 11)
		if err != nil || p.Secret != nil || p.Used.IsZero() || p.Issued.IsZero() {
			t.Fatalf("used prekey kept its secret: %+v %v", p, err)
		}
		if n, _ := r.UnissuedPrekeys(OneTimePrekey); n != 0 {
			t.Fatalf("%d unissued", n)
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		n, err := tx.DeleteExpiredPrekeys(t0.Add(2 * time.Hour))
		if n != 2 { // the used one-time key and the expired signed key
			t.Fatalf("deleted %d", n)
		}
		// The two issued and never used expire in their turn.
		if n, err := tx.DeleteExpiredPrekeys(t0.Add(31 * 24 * time.Hour)); n != 2 || err != nil {
			t.Fatalf("issued, unused one-time keys: deleted %d, %v", n, err)
		}
		if err := tx.PruneSeen(t0.Add(2 * time.Hour)); err != nil {
			return err
		}
		seen, _ := tx.Read().Seen([]byte("replay"))
		if seen {
			t.Fatal("expired replay key kept")
		}
		return err
	})
}

func TestContactsAndSettings(t *testing.T) {
	s := open(t, t.TempDir(), "")
	update(t, s, func(tx *Tx) error {
		if added, _ := tx.EnsureContact("p1", t0); !added {
			t.Fatal("not added")
		}
		if added, _ := tx.EnsureContact("p1", t0); added {
			t.Fatal("added twice")
		}
		if err := tx.PutContact(Contact{PeerID: "p2", Name: "bob", State: ContactAccepted, IdentityKey: []byte("k")}, t0); err != nil {
			return err
		}
		return tx.PutSetting("k", []byte("v"))
	})
	view(t, s, func(r *ReadTx) error {
		c, err := r.ContactByName("bob")
		if err != nil || c.PeerID != "p2" || c.State != ContactAccepted {
			t.Fatalf("%+v %v", c, err)
		}
		c, _ = r.Contact("p1")
		if c.State != ContactRequest {
			t.Fatalf("stranger is %s", c.State)
		}
		all, _ := r.Contacts()
		if len(all) != 2 {
			t.Fatal(len(all))
		}
		v, err := r.Setting("k")
		if string(v) != "v" || err != nil {
			t.Fatal(err)
		}
		if _, err := r.Setting("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		return nil
	})
}

// Messages are indexed at the end of the transaction that inserts them:
// a group whose second function fails keeps the first's message
// searchable and leaves nothing of the second in the index, and
// concurrent groups each index exactly their own messages.
func TestSearchIndexesCommittedMessagesOnly(t *testing.T) {
	for _, pass := range []string{"", "sealed"} {
		t.Run(fmt.Sprintf("sealed=%v", pass != ""), func(t *testing.T) { testSearchIndexesCommittedMessagesOnly(t, pass) })
	}
}

func testSearchIndexesCommittedMessagesOnly(t *testing.T, pass string) {
	s := open(t, t.TempDir(), pass)
	update(t, s, func(tx *Tx) error { _, err := tx.EnsureContact("a", t0); return err })
	insert := func(i int, body string) func(*Tx) error {
		return func(tx *Tx) error {
			_, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "a", Direction: Incoming, Body: body, State: Received, Sent: t0, Received: t0})
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 3 {
				errs[i] = s.Update(func(tx *Tx) error {
					insert(i, fmt.Sprintf("rolled back %d zebra", i))(tx)
					return errors.New("changed my mind")
				})
				return
			}
			errs[i] = s.Update(insert(i, fmt.Sprintf("kept %d walrus", i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%4 == 3) != (err != nil) {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	view(t, s, func(r *ReadTx) error {
		if found, err := r.Search("walrus", 100); err != nil || len(found) != 30 {
			t.Fatalf("kept messages found: %d (%v), want 30", len(found), err)
		}
		if found, err := r.Search("zebra", 100); err != nil || len(found) != 0 {
			t.Fatalf("rolled-back messages found: %d (%v)", len(found), err)
		}
		return nil
	})
}
