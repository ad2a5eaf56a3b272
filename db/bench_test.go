package db

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The benchmarks of issue 3; BENCHMARKS.md records the figures. All run
// with synchronous=FULL on a real file in a temporary directory.

var benchBlob = bytes.Repeat([]byte{0x5a}, 2048) // a session blob of 2 KB

// BenchmarkFsync is the physical limit: one 4 KiB write and fdatasync, as
// a WAL commit does, in the directory the other benchmarks use.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	for b.Loop() {
		if _, err := f.WriteAt(page, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsync/s")
}

// benchPass seals the stores of the Sealed benchmarks (with fastKDF:
// Argon2id runs at Open only and is not what they measure).
const benchPass = "bench"

func benchStore(b *testing.B, pass string) *Store {
	s := open(b, b.TempDir(), pass)
	update(b, s, func(tx *Tx) error { _, err := tx.EnsureContact("peer", t0); return err })
	return s
}

// BenchmarkReceive is one receive transaction per message: load the
// session, store the 2 KB session, the message and an event, commit.
func BenchmarkReceive(b *testing.B)       { benchReceive(b, "") }
func BenchmarkReceiveSealed(b *testing.B) { benchReceive(b, benchPass) }

func benchReceive(b *testing.B, pass string) {
	s := benchStore(b, pass)
	i := 0
	for b.Loop() {
		i++
		update(b, s, func(tx *Tx) error { _, err := receive(tx, "peer", i, benchBlob, t0); return err })
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkReceiveGroup64 is the same work, 64 messages to a transaction,
// as node does with a burst it has read. ns/op is per message.
func BenchmarkReceiveGroup64(b *testing.B)       { benchReceiveGroup64(b, "") }
func BenchmarkReceiveGroup64Sealed(b *testing.B) { benchReceiveGroup64(b, benchPass) }

func benchReceiveGroup64(b *testing.B, pass string) {
	s := benchStore(b, pass)
	i := 0
	for b.Loop() {
		// Every 64th iteration commits a group: ns/op is per message.
		i++
		if i%64 != 0 {
			continue
		}
		base := i
		update(b, s, func(tx *Tx) error {
			for j := base - 63; j <= base; j++ {
				if _, err := receive(tx, "peer", j, benchBlob, t0); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkReceiveConcurrent is 64 goroutines each calling Update for one
// message at a time: group commit folds them into shared commits.
func BenchmarkReceiveConcurrent(b *testing.B) {
	s := benchStore(b, "")
	var next sync.Mutex
	i := 0
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			i++
			n := i
			next.Unlock()
			if err := s.Update(func(tx *Tx) error { _, err := receive(tx, "peer", n, benchBlob, t0); return err }); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

var words = strings.Fields(`the of and to in is you that it he was for on are as with his they at be this
	have from or one had by word but not what all were we when your can said there use an each which she do how
	their if will up other about out many then them these so some her would make like him into time has look two
	more write go see number no way could people my than first water been call who oil its now find long down day
	did get come made may part harbour lighthouse meeting tomorrow dinner station ticket`)

// fixture stores 100,000 messages (two conversations, bodies of 8 to 20
// common words) once per benchmark.
func fixture(b *testing.B, pass string) *Store {
	s := benchStore(b, pass)
	update(b, s, func(tx *Tx) error { _, err := tx.EnsureContact("other", t0); return err })
	rng := rand.New(rand.NewPCG(3, 4))
	const n, per = 100_000, 5_000
	for g := 0; g < n; g += per {
		update(b, s, func(tx *Tx) error {
			for i := g; i < g+per; i++ {
				var body strings.Builder
				for w := range 8 + rng.IntN(13) {
					if w > 0 {
						body.WriteByte(' ')
					}
					body.WriteString(words[rng.IntN(len(words))])
				}
				peer := "peer"
				if i%10 == 0 {
					peer = "other"
				}
				at := t0.Add(time.Duration(i) * time.Second)
				if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: peer, Direction: Incoming, Body: body.String(), State: Read, Sent: at, Received: at}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return s
}

// BenchmarkHistoryPage reads a page of 50 at a random point of a
// conversation of 90,000 messages in a store of 100,000.
func BenchmarkHistoryPage(b *testing.B)       { benchHistoryPage(b, "") }
func BenchmarkHistoryPageSealed(b *testing.B) { benchHistoryPage(b, benchPass) }

func benchHistoryPage(b *testing.B, pass string) {
	s := fixture(b, pass)
	rng := rand.New(rand.NewPCG(5, 6))
	for b.Loop() {
		at := t0.Add(time.Duration(rng.IntN(100_000)) * time.Second)
		view(b, s, func(r *ReadTx) error {
			page, err := r.History("peer", Cursor{Time: at, Seq: 1 << 62}, 50)
			if err != nil || len(page) == 0 {
				b.Fatalf("%d messages, %v", len(page), err)
			}
			return nil
		})
	}
}

// BenchmarkSearch runs full-text searches over the 100,000 messages: a
// rare word, a common one, and two words together, 50 results at most;
// a prefix, and a prefix that matches nothing (which a sealed store
// answers by reading every message).
func BenchmarkSearch(b *testing.B)       { benchSearch(b, "") }
func BenchmarkSearchSealed(b *testing.B) { benchSearch(b, benchPass) }

func benchSearch(b *testing.B, pass string) {
	s := fixture(b, pass)
	for _, q := range []string{"lighthouse", "the", "harbour dinner", "tomor*", "zebra*"} {
		b.Run(strings.ReplaceAll(q, " ", "+"), func(b *testing.B) {
			for b.Loop() {
				view(b, s, func(r *ReadTx) error {
					found, err := r.Search(q, 50)
					if err != nil || len(found) == 0 && q != "zebra*" {
						b.Fatalf("%q: %d found, %v", q, len(found), err)
					}
					return nil
				})
			}
		})
	}
}

// BenchmarkOpen100k opens a store of 100,000 messages: the cost of the
// quick_check that Open runs.
func BenchmarkOpen100k(b *testing.B) {
	s := fixture(b, "")
	dir := filepath.Dir(s.Path())
	s.Close()
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkChangePassphrase100k changes the passphrase of a sealed store
// of 100,000 messages (with fastKDF): the store key is wrapped again,
// nothing else is written, whatever the size.
func BenchmarkChangePassphrase100k(b *testing.B) {
	s := fixture(b, benchPass)
	i := 0
	for b.Loop() {
		i++
		if err := s.ChangePassphrase([]byte(fmt.Sprint("pass ", i)), fastKDF); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealUnseal100k turns sealing on, then off, on a store of
// 100,000 messages: each op is one rewrite of every body and index.
func BenchmarkSealUnseal100k(b *testing.B) {
	s := fixture(b, "")
	sealed := false
	for b.Loop() {
		var pass []byte
		if !sealed {
			pass = []byte(benchPass)
		}
		if err := s.ChangePassphrase(pass, fastKDF); err != nil {
			b.Fatal(err)
		}
		sealed = !sealed
	}
}

// BenchmarkUpgradeV1_100k opens a store of 100,000 messages sealed by the
// version before sealed bodies: Open upgrades it (seals every body,
// builds the word index, drops FTS4) and turns on auto-vacuum (VACUUM).
func BenchmarkUpgradeV1_100k(b *testing.B) {
	template := b.TempDir()
	v1Store(b, template, benchPass, 100_000)
	original, err := os.ReadFile(filepath.Join(template, FileName))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), original, 0o600); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := Open(dir, Options{Passphrase: []byte(benchPass)})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// store100k is a clear store of 100,000 messages from one contact.
func store100k(b *testing.B) *Store {
	s := open(b, b.TempDir(), "")
	update(b, s, func(tx *Tx) error {
		return tx.PutContact(Contact{PeerID: "a", State: ContactAccepted}, t0)
	})
	const n = 100_000
	for start := 0; start < n; start += 1000 {
		update(b, s, func(tx *Tx) error {
			for i := start; i < start+1000; i++ {
				if _, err := tx.InsertMessage(Message{ID: msgID(i), Peer: "a", Direction: Incoming,
					Body: fmt.Sprintf("message %d about the weather and the trains", i), State: Received, Sent: t0, Received: t0}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return s
}

// BenchmarkBackup100k is a backup of a store of 100,000 messages (the
// Argon2id of the test's cheap costs): the copy, which the writer waits
// for, then its encryption.
func BenchmarkBackup100k(b *testing.B) {
	s := store100k(b)
	path := filepath.Join(b.TempDir(), "b")
	for b.Loop() {
		if err := s.Backup(path, []byte("pw"), fastKDF); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPurge100k is what scrubbing deleted text costs in a clear
// store of 100,000 messages: one message deleted for everyone, then
// Reclaim (the full-text index merged, free pages given back, the WAL
// checkpointed), as the node's purge loop does at most every 10 s.
func BenchmarkPurge100k(b *testing.B) {
	s := store100k(b)
	i := 0
	for b.Loop() {
		update(b, s, func(tx *Tx) error {
			_, err := tx.DeleteForEveryone("a", msgID(i), Incoming, t0)
			return err
		})
		i++
		if _, err := s.Reclaim(); err != nil {
			b.Fatal(err)
		}
	}
}
