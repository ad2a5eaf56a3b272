package db

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Words that appear in messages and nowhere else: none may be found in
// the files of a sealed store, in any of the forms the index could have
// written (as typed, folded).
var secretWords = []string{"Quixotically", "quixotically", "marmalade", "Zanzibar", "zanzibar", "Ångström", "ångström", "angstrom",
	"pterodactyl", "fjordhesten", "hullabaloo", "Obliterated", "obliterated", "kerfuffle"}

const (
	controlName = "Zeppelina"                   // a contact's name: stored in clear
	controlPeer = "12D3KooWPositiveControlPeer" // a peer ID: stored in clear
)

func mustNotLeak(t *testing.T, dir, when string, extra ...string) {
	t.Helper()
	raw := fileBytes(t, dir)
	// The positive control: the same grep finds what is stored in clear.
	mustContain(t, raw, []byte(controlName), true, when+": a contact's name (the grep works)")
	mustContain(t, raw, []byte(controlPeer), true, when+": a peer ID (the grep works)")
	for _, w := range append(slices.Clone(secretWords), extra...) {
		mustContain(t, raw, []byte(w), false, when+": "+w)
	}
}

// A conversation on a sealed store: messages both ways, state changes,
// a contact deleted with its history, searches. No text and no indexed
// word reaches the database file, its WAL or its index, whether the WAL
// was checkpointed or not.
func TestSealedStoreLeavesNoTextInTheFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "correct horse")
	bodies := []string{
		"Quixotically, the marmalade went to Zanzibar",
		"an Ångström of pterodactyl",
		"fjordhesten hullabaloo",
	}
	update(t, s, func(tx *Tx) error {
		if err := tx.PutContact(Contact{PeerID: controlPeer, Name: controlName, State: ContactAccepted}, t0); err != nil {
			return err
		}
		tx.EnsureContact("bob", t0)
		for i, b := range bodies {
			dir, state := Outgoing, Queued
			if i%2 == 1 {
				dir, state = Incoming, Received
			}
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: controlPeer, Direction: dir, Body: b, State: state, Sent: t0, Received: t0}); err != nil {
				return err
			}
		}
		if err := tx.Enqueue(OutboxEntry{MessageID: msgID(0), Peer: controlPeer, Envelope: []byte("ciphertext"), NextAttempt: t0, Created: t0}); err != nil {
			return err
		}
		_, err := tx.InsertMessage(Message{ID: msgID(9), Peer: "bob", Direction: Incoming, Body: "Obliterated kerfuffle", State: Received, Sent: t0, Received: t0})
		return err
	})
	update(t, s, func(tx *Tx) error {
		if _, err := tx.SetMessageState(controlPeer, msgID(0), Sent, ""); err != nil {
			return err
		}
		if _, err := tx.Delivered(controlPeer, msgID(0)); err != nil {
			return err
		}
		if _, err := tx.MarkRead(controlPeer, Cursor{Time: t0, Seq: 1 << 62}); err != nil {
			return err
		}
		_, err := tx.DeleteContact("bob")
		return err
	})
	view(t, s, func(r *ReadTx) error {
		for q, want := range map[string]int{"zanzibar marmalade": 1, "ANGSTROM": 1, "hullabaloo": 1, "kerfuffle": 0, "pterod*": 1} {
			if found, err := r.Search(q, 10); err != nil || len(found) != want {
				t.Fatalf("search %q: %d found, %v; want %d", q, len(found), err, want)
			}
		}
		return nil
	})
	var frames int
	s.wdb.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(new(int), &frames, new(int))
	if frames == 0 {
		t.Fatal("nothing in the WAL: the first check would check the database file only")
	}
	mustNotLeak(t, dir, "open, the WAL checkpointed passively")
	// New frames in a WAL of which the start was checkpointed.
	update(t, s, func(tx *Tx) error {
		_, err := tx.InsertMessage(Message{ID: msgID(20), Peer: controlPeer, Direction: Incoming, Body: "pterodactyl again, Zanzibar", State: Received, Sent: t0, Received: t0})
		return err
	})
	mustNotLeak(t, dir, "open, not checkpointed")
	if _, err := s.wdb.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	mustNotLeak(t, dir, "open, checkpointed and truncated")
	s.Close()
	mustNotLeak(t, dir, "closed")

	s = open(t, dir, "correct horse")
	view(t, s, func(r *ReadTx) error {
		h, err := r.History(controlPeer, Cursor{}, 10)
		if err != nil || len(h) != 4 || h[0].Body != bodies[0] || h[3].Body != "pterodactyl again, Zanzibar" {
			t.Fatalf("history after reopening: %v %+v", err, h)
		}
		if h[0].State != Delivered || h[1].State != Read {
			t.Fatalf("states: %s %s", h[0].State, h[1].State)
		}
		m, err := r.Message(msgID(2))
		if err != nil || m.Body != bodies[2] {
			t.Fatalf("message: %q %v", m.Body, err)
		}
		found, err := r.Search("zanzibar", 10)
		if err != nil || len(found) != 2 || found[0].ID != msgID(20) {
			t.Fatalf("search after reopening: %v %v", found, err)
		}
		return nil
	})
}

// Same messages in a sealed and an unsealed store: every search finds
// the same messages in the same order (FTS4 on one, the word index on
// the other).
func TestSealedSearchFindsWhatFTS4Finds(t *testing.T) {
	vocab := strings.Fields(`harbour Harbour HARBOUR café Café cafe naïve naive Straße über Über Привет привет
		don't e-mail email x-ray 42 4x4 tomorrow tomorrows meeting lighthouse Ångström dinner station ticket
		the of and to in is it at on 日本語 Ǆemal ǆemal résumé resume coöperate`)
	rng := rand.New(rand.NewPCG(7, 8))
	stores := map[string]*Store{"unsealed": open(t, t.TempDir(), ""), "sealed": open(t, t.TempDir(), "pass")}
	for _, s := range stores {
		rng := rand.New(rand.NewPCG(1, 2))
		update(t, s, func(tx *Tx) error {
			tx.EnsureContact("a", t0)
			for i := range 400 {
				var b strings.Builder
				for w := range 3 + rng.IntN(10) {
					if w > 0 {
						b.WriteString([]string{" ", ", ", "! ", " -- "}[rng.IntN(4)])
					}
					b.WriteString(vocab[rng.IntN(len(vocab))])
				}
				if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "a", Direction: Incoming, Body: b.String(), State: Received, Sent: t0, Received: t0}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	queries := []string{"harbour", "HARBOUR", "cafe", "CAFÉ", "naive", "strasse", "straße", "uber", "ПРИВЕТ", "don't", "don", "t",
		"e-mail", "mail", "4x4", "tomorrow", "tomor*", "tomorrow*", "harbour café", "harbour -", `"harbour" OR cafe`, "ångström angstrom",
		"日本語", "ǅEMAL", "resume", "coop*", "co*", "nothinghere", "harbour nothinghere", "- ? !", "", "the of and", "x-r*", "e-*",
		"\u19b0", "harbour \u19b0"} // a letter to Go, none to unicode61
	for i := range 40 {
		queries = append(queries, vocab[rng.IntN(len(vocab))]+" "+vocab[rng.IntN(len(vocab))], fmt.Sprint(vocab[i%len(vocab)][:1], "*"))
	}
	for _, q := range queries {
		for _, limit := range []int{1, 7, 1000} {
			results := map[string][]int64{}
			for name, s := range stores {
				view(t, s, func(r *ReadTx) error {
					found, err := r.Search(q, limit)
					if err != nil {
						t.Fatalf("%s: search %q: %v", name, q, err)
					}
					for _, m := range found {
						results[name] = append(results[name], m.Seq)
					}
					return nil
				})
			}
			if !slices.Equal(results["sealed"], results["unsealed"]) {
				t.Fatalf("search %q, limit %d: sealed found %v, unsealed %v", q, limit, results["sealed"], results["unsealed"])
			}
		}
	}
}

// The sealed bodies and the word index, as the file holds them.
func sealedRows(t *testing.T, s *Store) (bodies, words string) {
	t.Helper()
	var b, w []byte
	if err := s.wdb.QueryRow("SELECT coalesce(group_concat(hex(body_sealed), ','), '') FROM (SELECT body_sealed FROM messages ORDER BY seq)").Scan(&b); err != nil {
		t.Fatal(err)
	}
	if err := s.wdb.QueryRow("SELECT coalesce(group_concat(word || ':' || seq, ','), '') FROM (SELECT * FROM message_words ORDER BY word, seq)").Scan(&w); err != nil {
		t.Fatal(err)
	}
	return string(b), string(w)
}

func countRows(t *testing.T, s *Store, query string) int {
	t.Helper()
	var n int
	if err := s.wdb.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func insertConversation(t *testing.T, s *Store, from, n int) {
	t.Helper()
	update(t, s, func(tx *Tx) error {
		if err := tx.PutContact(Contact{PeerID: controlPeer, Name: controlName, State: ContactAccepted}, t0); err != nil {
			return err
		}
		for i := from; i < from+n; i++ {
			body := fmt.Sprintf("message %d: %s", i, secretWords[i%len(secretWords)])
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: controlPeer, Direction: Incoming, Body: body, State: Received, Sent: t0, Received: t0}); err != nil {
				return err
			}
		}
		return nil
	})
}

func checkConversation(t *testing.T, s *Store, n int) {
	t.Helper()
	view(t, s, func(r *ReadTx) error {
		h, err := r.History(controlPeer, Cursor{}, n+1)
		if err != nil || len(h) != n {
			t.Fatalf("history: %d messages, %v", len(h), err)
		}
		for i, m := range h {
			if want := fmt.Sprintf("message %d: %s", i, secretWords[i%len(secretWords)]); m.Body != want {
				t.Fatalf("message %d: %q, want %q", i, m.Body, want)
			}
		}
		found, err := r.Search("pterodactyl", n)
		if err != nil || len(found) != (n+len(secretWords)-1-slices.Index(secretWords, "pterodactyl"))/len(secretWords) {
			t.Fatalf("search: %d found, %v", len(found), err)
		}
		return nil
	})
}

// Between two passphrases only the sealing row changes: the sealed
// bodies and the word index stay byte for byte, and the old wrapping of
// the key is scrubbed from the files. Off and on again rewrite all, and
// scrub.
func TestChangePassphraseRewrapsTheStoreKeyOnly(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "first")
	const n = 300
	insertConversation(t, s, 0, n)
	bodies, words := sealedRows(t, s)
	var oldWrap []byte
	s.wdb.QueryRow("SELECT store_key FROM sealing").Scan(&oldWrap)
	if err := s.ChangePassphrase([]byte("second"), fastKDF); err != nil {
		t.Fatal(err)
	}
	if b, w := sealedRows(t, s); b != bodies || w != words {
		t.Fatal("a change of passphrase rewrote the messages or the word index")
	}
	checkConversation(t, s, n)
	mustContain(t, fileBytes(t, dir), oldWrap, false, "the old wrapping of the store key")
	s.Close()
	if _, err := Open(dir, Options{Passphrase: []byte("first")}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("the old passphrase: %v", err)
	}
	s = open(t, dir, "second")
	if b, w := sealedRows(t, s); b != bodies || w != words {
		t.Fatal("the sealed rows changed on reopening")
	}
	checkConversation(t, s, n)

	// Off: the bodies in clear, FTS4 again, the sealed values gone.
	if err := s.ChangePassphrase(nil, KDFParams{}); err != nil {
		t.Fatal(err)
	}
	if s.SecretsSealed() || countRows(t, s, "SELECT count(*) FROM message_words") != 0 ||
		countRows(t, s, "SELECT count(*) FROM messages WHERE body_sealed IS NOT NULL OR body = ''") != 0 {
		t.Fatal("unsealing left sealed rows")
	}
	checkConversation(t, s, n)
	raw := fileBytes(t, dir)
	mustContain(t, raw, []byte("pterodactyl"), true, "unsealed: the bodies are in clear")
	first, _, _ := strings.Cut(bodies, ",")
	mustContain(t, raw, []byte(first[:40]), false, "unsealed: a sealed body (hex, so the grep is of the hex text, a sanity check)")
	s.Close()
	s = open(t, dir, "")
	checkConversation(t, s, n)
	insertConversation(t, s, n, 10)

	// On again: a new store key; no clear text, no FTS4 segment left.
	if err := s.ChangePassphrase([]byte("third"), fastKDF); err != nil {
		t.Fatal(err)
	}
	if countRows(t, s, "SELECT count(*) FROM messages_fts_segments") != 0 || countRows(t, s, "SELECT count(*) FROM messages_fts_docsize") != 0 {
		t.Fatal("sealing left the full-text index")
	}
	if b, _ := sealedRows(t, s); b == bodies {
		t.Fatal("sealing again reused the old sealing")
	}
	checkConversation(t, s, n+10)
	mustNotLeak(t, dir, "sealed again, open")
	s.Close()
	mustNotLeak(t, dir, "sealed again, closed")
	s = open(t, dir, "third")
	checkConversation(t, s, n+10)

	// A new store key: everything sealed anew, the old passphrase's
	// wrapping useless.
	bodies, words = sealedRows(t, s)
	if err := s.RotateStoreKey([]byte("fourth"), fastKDF); err != nil {
		t.Fatal(err)
	}
	if b, w := sealedRows(t, s); b == bodies || w == words {
		t.Fatal("a new store key kept the sealed rows")
	}
	checkConversation(t, s, n+10)
	mustNotLeak(t, dir, "store key rotated")
}

// A sealed body opens only in its own row.
func TestSealedBodyCannotMoveToAnotherMessage(t *testing.T) {
	s := open(t, t.TempDir(), "pass")
	insertConversation(t, s, 0, 2)
	a, b := msgID(0), msgID(1)
	if _, err := s.wdb.Exec("UPDATE messages SET body_sealed = (SELECT body_sealed FROM messages WHERE id = ?) WHERE id = ?", a[:], b[:]); err != nil {
		t.Fatal(err)
	}
	err := s.View(func(r *ReadTx) error { _, err := r.Message(msgID(1)); return err })
	if !errors.Is(err, errUnseal) {
		t.Fatalf("a body moved to another message: %v", err)
	}
}

// v1Store builds in dir a store as the version before sealed bodies left
// it: the schema before migration 0006, no auto-vacuum, a sealing row of
// version 1 for pass, the secrets sealed under the passphrase key
// itself, n messages in clear, indexed by FTS4.
func v1Store(t testing.TB, dir, pass string, n int) (identity, prekey, session []byte) {
	t.Helper()
	raw, err := sql.Open("sqlite3", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(1)
	if _, err := raw.Exec("PRAGMA journal_mode = WAL"); err != nil {
		t.Fatal(err)
	}
	mine := slices.IndexFunc(migrations(), func(m migration) bool { return strings.HasSuffix(m.name, "_sealed_bodies.sql") })
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	for _, m := range migrations()[:mine] {
		exec(m.sql)
	}
	exec(fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", applicationID, mine))
	salt := bytes.Repeat([]byte{7}, saltSize)
	key, err := passphraseKey([]byte(pass), salt, fastKDF)
	if err != nil {
		t.Fatal(err)
	}
	k := v1Key(key)
	identity, prekey, session = secrets()
	exec("INSERT INTO sealing (id, salt, time, memory, threads, check_value) VALUES (1, ?, ?, ?, ?, ?)",
		salt, fastKDF.Time, fastKDF.MemoryKiB, fastKDF.Threads, k.seal("sealing", []byte(checkValue)))
	exec("INSERT INTO identity (id, public_key, secret, created) VALUES (1, ?, ?, 0)", []byte("public"), k.seal("identity", identity))
	exec("INSERT INTO prekeys (kind, id, public, secret, created) VALUES ('signed', 1, x'70', ?, 0)", k.seal("prekey/signed/1", prekey))
	exec("INSERT INTO contacts (peer_id, name, state, created, updated) VALUES (?, ?, 'accepted', 0, 0)", controlPeer, controlName)
	exec("INSERT INTO contacts (peer_id, created, updated) VALUES ('peer', 0, 0)")
	exec("INSERT INTO sessions (peer_id, blob, updated) VALUES ('peer', ?, 0)", k.seal("session/peer", session))
	st, err := tx.Prepare("INSERT INTO messages (id, peer_id, direction, body, state, sent, received, time) VALUES (?, ?, 'in', ?, 'received', 0, 0, ?)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := msgID(i)
		if _, err := st.Exec(id[:], controlPeer, fmt.Sprintf("message %d: %s", i, secretWords[i%len(secretWords)]), millis(t0)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	exec("INSERT INTO messages_fts (docid, body) SELECT seq, body FROM messages WHERE seq > (SELECT indexed FROM fts_state)")
	exec("UPDATE fts_state SET indexed = (SELECT coalesce(max(seq), 0) FROM messages)")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return identity, prekey, session
}

// A store sealed by the version before (secrets under the passphrase key,
// bodies and FTS4 in clear) is upgraded by the first Open with its
// passphrase: a store key, the secrets and bodies sealed under it, the
// word index in place of FTS4, incremental auto-vacuum, no text left in
// the files.
func TestOpenUpgradesAV1SealedStore(t *testing.T) {
	for _, n := range []int{3, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			identity, prekey, session := v1Store(t, dir, "old pass", n)
			mustContain(t, fileBytes(t, dir), []byte("message 0: Quixotically"), true, "before: the v1 store holds bodies in clear")
			if _, err := Open(dir, Options{Passphrase: []byte("not it")}); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase on a v1 store: %v", err)
			}
			start := time.Now()
			s := open(t, dir, "old pass")
			t.Logf("%d messages: Open upgraded the sealing (and vacuumed) in %v", n, time.Since(start).Round(time.Millisecond))
			if v := countRows(t, s, "SELECT version FROM sealing"); v != sealingV2 {
				t.Fatalf("sealing version %d", v)
			}
			if countRows(t, s, "SELECT count(*) FROM messages WHERE body != '' OR body_sealed IS NULL") != 0 ||
				countRows(t, s, "SELECT count(*) FROM messages_fts_segments") != 0 ||
				countRows(t, s, "SELECT count(*) FROM message_words") < n {
				t.Fatal("the upgrade left clear bodies, the full-text index, or no word index")
			}
			if av := countRows(t, s, "PRAGMA auto_vacuum"); av != autoVacuumIncremental {
				t.Fatalf("auto_vacuum %d", av)
			}
			checkSecrets(t, s, identity, prekey, session)
			checkConversation(t, s, n)
			mustNotLeak(t, dir, "upgraded, open")
			s.Close()
			mustNotLeak(t, dir, "upgraded, closed")
			s = open(t, dir, "old pass")
			checkSecrets(t, s, identity, prekey, session)
			checkConversation(t, s, n)
		})
	}
}

// A store made before incremental auto-vacuum gets it at its first Open;
// Reclaim then gives deleted history back to the file system.
func TestReclaimShrinksTheFile(t *testing.T) {
	for _, pass := range []string{"", "pass"} {
		t.Run(fmt.Sprintf("sealed=%v", pass != ""), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, pass)
			if av := countRows(t, s, "PRAGMA auto_vacuum"); av != autoVacuumIncremental {
				t.Fatalf("a new store: auto_vacuum %d", av)
			}
			update(t, s, func(tx *Tx) error {
				tx.EnsureContact("stranger", t0)
				for i := range 2000 {
					body := strings.Repeat(fmt.Sprintf("kerfuffle %d ", i), 40)
					if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "stranger", Direction: Incoming, Body: body, State: Received, Sent: t0, Received: t0}); err != nil {
						return err
					}
				}
				return nil
			})
			s.Close() // checkpoints: the file holds it all
			full := fileSize(t, dir)
			s = open(t, dir, pass)
			update(t, s, func(tx *Tx) error { _, err := tx.DeleteContact("stranger"); return err })
			if pass == "" {
				// FTS4 deleted by tombstones: the words are still there.
				mustContain(t, fileBytes(t, dir), []byte("kerfuffle"), true, "deleted, before Reclaim")
			}
			freed, err := s.Reclaim()
			if err != nil {
				t.Fatal(err)
			}
			after := fileSize(t, dir)
			t.Logf("%d bytes before, %d freed, %d after", full, freed, after)
			if freed < full/2 || after > full-freed+64<<10 || countRows(t, s, "PRAGMA freelist_count") != 0 {
				t.Fatalf("reclaim: %d bytes, freed %d, now %d", full, freed, after)
			}
			mustContain(t, fileBytes(t, dir), []byte("kerfuffle"), false, "deleted, after Reclaim")
			if n, err := s.Reclaim(); n != 0 || err != nil {
				t.Fatalf("a second reclaim: %d, %v", n, err)
			}
		})
	}
}

func fileSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A store made before auto-vacuum, not sealed, gets it at Open too.
func TestOpenTurnsOnIncrementalVacuum(t *testing.T) {
	dir := t.TempDir()
	raw, err := sql.Open("sqlite3", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations()[:4] {
		if _, err := raw.Exec(m.sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA journal_mode = WAL; PRAGMA application_id = %d; PRAGMA user_version = 4", applicationID)); err != nil {
		t.Fatal(err)
	}
	var av int
	raw.QueryRow("PRAGMA auto_vacuum").Scan(&av)
	raw.Close()
	if av != 0 {
		t.Fatalf("the old store has auto_vacuum %d", av)
	}
	s := open(t, dir, "")
	if av := countRows(t, s, "PRAGMA auto_vacuum"); av != autoVacuumIncremental {
		t.Fatalf("auto_vacuum %d after Open", av)
	}
}

// Deleting a contact on a sealed store deletes its messages' rows of the
// word index (the trigger), and messages stored afterwards, which may
// take the freed seqs, are indexed with no stale row in the way.
func TestDeleteContactOnASealedStore(t *testing.T) {
	s := open(t, t.TempDir(), "pass")
	update(t, s, func(tx *Tx) error {
		for _, p := range []string{"a", "b"} {
			tx.EnsureContact(p, t0)
		}
		for i := range 10 {
			peer := "b"
			if i >= 5 {
				peer = "a" // the highest seqs
			}
			if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: peer, Direction: Outgoing, Body: "walrus " + peer, State: Queued, Sent: t0}); err != nil {
				return err
			}
		}
		return nil
	})
	if n := countRows(t, s, "SELECT count(*) FROM message_words"); n != 20 {
		t.Fatalf("%d index rows, want 20", n)
	}
	update(t, s, func(tx *Tx) error { _, err := tx.DeleteContact("a"); return err })
	if n := countRows(t, s, "SELECT count(*) FROM message_words"); n != 10 {
		t.Fatalf("%d index rows after the delete, want 10", n)
	}
	update(t, s, func(tx *Tx) error {
		tx.EnsureContact("a", t0)
		_, err := tx.InsertMessage(Message{ID: msgID(20), Peer: "a", Direction: Outgoing, Body: "narwhal", State: Queued, Sent: t0})
		return err
	})
	view(t, s, func(r *ReadTx) error {
		if f, err := r.Search("walrus", 100); err != nil || len(f) != 5 || f[0].Peer != "b" {
			t.Errorf("walrus after the delete: %v %v", f, err)
		}
		if f, err := r.Search("narwhal", 10); err != nil || len(f) != 1 || f[0].Seq != 6 {
			t.Errorf("a message in a reused seq: %v %v", f, err)
		}
		if f, err := r.Search("a", 10); err != nil || len(f) != 0 {
			t.Errorf("a deleted message's word in a reused seq: %v %v", f, err)
		}
		return nil
	})
}

// The right passphrase with a damaged wrapped key is a damaged store, not
// a wrong passphrase (which would send the user guessing).
func TestDamagedStoreKeyIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "pass")
	s.wdb.Exec("UPDATE sealing SET store_key = zeroblob(length(store_key))")
	s.Close()
	if _, err := Open(dir, Options{Passphrase: []byte("pass")}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v", err)
	}
	if _, err := Open(dir, Options{Passphrase: []byte("other")}); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("got %v", err)
	}
}

// A rewrite that fails half-way (here on a damaged body) changes nothing:
// the store stays sealed as it was, and goes on working.
func TestFailedRewriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "pass")
	insertConversation(t, s, 0, 2500)
	id := msgID(2000)
	if _, err := s.wdb.Exec("UPDATE messages SET body_sealed = zeroblob(60) WHERE id = ?", id[:]); err != nil {
		t.Fatal(err)
	}
	bodies, words := sealedRows(t, s)
	if err := s.ChangePassphrase(nil, KDFParams{}); !errors.Is(err, errUnseal) {
		t.Fatalf("unsealing over a damaged body: %v", err)
	}
	if !s.SecretsSealed() {
		t.Fatal("the store forgot its keys")
	}
	if b, w := sealedRows(t, s); b != bodies || w != words {
		t.Fatal("a failed rewrite left changes")
	}
	view(t, s, func(r *ReadTx) error {
		if m, err := r.Message(msgID(1999)); err != nil || m.Body != fmt.Sprintf("message 1999: %s", secretWords[1999%len(secretWords)]) {
			t.Fatalf("after the failed rewrite: %q %v", m.Body, err)
		}
		return nil
	})
	insertConversation(t, s, 3000, 1)
	s.Close()
	s = open(t, dir, "pass")
	if b, _ := sealedRows(t, s); !strings.HasPrefix(b, bodies) {
		t.Fatal("reopened: the sealed rows changed")
	}
}
