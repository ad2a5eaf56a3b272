package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/p2pmsg/p2pmsg/db"
)

// testConfig is a node on loopback only, a DHT server (ModeAuto stays a
// client on loopback), no mDNS (it would multicast beyond loopback), and
// short retries.
func testConfig(dir string, boot ...peer.AddrInfo) Config {
	cfg := Config{DataDir: dir, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, NoMDNS: true, NoPortMap: true,
		DHTMode: DHTServer, BootstrapPeers: boot, RetryMin: 200 * time.Millisecond, RetryMax: 2 * time.Second,
		LookupTimeout: 5 * time.Second, relaysWanted: raceRelaysWanted}
	if os.Getenv("P2PMSG_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

// startNode starts a node in dir and closes it at the end of the test.
func startNode(t testing.TB, dir string, boot ...peer.AddrInfo) *Node {
	t.Helper()
	return startConfig(t, testConfig(dir, boot...))
}

func startConfig(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// history reads a whole conversation, oldest first.
func history(t testing.TB, n *Node, p peer.ID) []db.Message {
	t.Helper()
	var h []db.Message
	err := n.store.View(func(r *db.ReadTx) (err error) {
		h, err = r.History(p.String(), db.Cursor{}, 100000)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// count counts a conversation's messages by direction and state.
func count(h []db.Message, dir db.Direction, state db.MessageState) int {
	c := 0
	for _, m := range h {
		if m.Direction == dir && (state == "" || m.State == state) {
			c++
		}
	}
	return c
}

// checkConversation asserts that h holds exactly the texts want in that
// order for one direction, each once.
func checkConversation(t testing.TB, h []db.Message, dir db.Direction, want []string) {
	t.Helper()
	var got []string
	for _, m := range h {
		if m.Direction == dir {
			got = append(got, m.Body)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages, want %d", dir, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s message %d: %q, want %q (order or duplicates)", dir, i, got[i], want[i])
		}
	}
}

func texts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %03d", prefix, i)
	}
	return out
}

// checkNoLeaks fails the test if goroutines started during it outlive
// it. Call it first; it runs after the other cleanups (they run last in,
// first out).
func checkNoLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent(),
		// go-libp2p's process-wide helpers, started once and kept.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("goroutines leaked after Close: %v", err)
		}
	})
}

// storedContact reads a contact as the store holds it.
func storedContact(t testing.TB, n *Node, p peer.ID) db.Contact {
	t.Helper()
	var c db.Contact
	if err := n.store.View(func(r *db.ReadTx) (err error) {
		c, err = r.Contact(p.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// accepts makes from an accepted contact of n, as the user does when
// someone they know writes: a stranger gets one message through until
// then (requests.go).
func accepts(t testing.TB, n, from *Node) {
	t.Helper()
	if err := n.AddContact(from.ID(), ""); err != nil {
		t.Fatal(err)
	}
}

// raceRelaysWanted replaces relaysWanted in the tests' configs when set
// (race_test.go).
var raceRelaysWanted int
