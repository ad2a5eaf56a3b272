package dht

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// testNode is a libp2p host on 127.0.0.1 with its DHT, under a user's
// identity.
type testNode struct {
	u *user
	h host.Host
	d *DHT
}

func (n *testNode) info() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }

func (n *testNode) close() {
	n.d.Close()
	n.h.Close()
}

// startNode starts a node; it is closed when the test ends, if not before.
func startNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	u := newUser(t)
	h, err := libp2p.New(libp2p.Identity(u.priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(h, cfg)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	n := &testNode{u: u, h: h, d: d}
	t.Cleanup(n.close)
	return n
}

// joinBatch is how many nodes bootstrap at once: the default resource
// manager refuses bursts of about 80 simultaneous handshakes.
const joinBatch = 10

// startNetwork starts n DHT servers, all bootstrapped through the first.
func startNetwork(t testing.TB, n int) []*testNode {
	t.Helper()
	nodes := []*testNode{startNode(t, Config{Mode: ModeServer})}
	for len(nodes) < n {
		batch := min(joinBatch, n-len(nodes))
		fresh := make([]*testNode, batch)
		for i := range fresh {
			fresh[i] = startNode(t, Config{Mode: ModeServer, BootstrapPeers: []peer.AddrInfo{nodes[0].info()}})
		}
		join(t, fresh...)
		nodes = append(nodes, fresh...)
	}
	return nodes
}

// join bootstraps the nodes concurrently.
func join(t testing.TB, nodes ...*testNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.d.Bootstrap(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// holds reports whether the node itself stores exactly value under key.
// It reads the node's value store directly: kad-dht's GetValue with
// routing.Offline ignores Offline in v0.42.2 and runs a network lookup
// (so it would find the record on other nodes, and copy it around).
func (n *testNode) holds(key string, value []byte) bool {
	rec, err := n.d.local.Get(context.Background(), key)
	return err == nil && rec != nil && bytes.Equal(rec.GetValue(), value)
}

func (n *testNode) holdsAny(key string) bool {
	rec, err := n.d.local.Get(context.Background(), key)
	return err == nil && rec != nil
}

func week() time.Time { return time.Now().Add(7 * 24 * time.Hour) }

// Twenty servers on 127.0.0.1, one bootstrap node: each publishes its
// bundle; the replica count Publish reports is exactly the number of
// other nodes holding the record; lookups from random nodes return the
// right bundle; missing, stale, invalid and rolled-back bundles give the
// documented errors; a client-mode node publishes and looks up through
// the servers without entering their routing tables.
func TestPublishAndLookupOn20Nodes(t *testing.T) {
	const n = 20
	nodes := startNetwork(t, n)
	for i, nd := range nodes {
		if nd.d.RoutingTableSize() == 0 {
			t.Fatalf("node %d has an empty routing table after Bootstrap", i)
		}
	}

	bundles := make([][]byte, n)
	for i, nd := range nodes {
		bundles[i] = nd.u.bundle(t, 1, week(), false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	replicas := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() { replicas[i], errs[i] = nd.d.Publish(ctx, nd.u.peer, bundles[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// Counted before any lookup: a full lookup copies the best record to
	// the closest peers that lack it, which would blur the count.
	for i, nd := range nodes {
		key := Key(nd.u.peer)
		holders := 0
		for j, other := range nodes {
			if j != i && other.holds(key, bundles[i]) {
				holders++
			}
		}
		if !nd.holds(key, bundles[i]) {
			t.Errorf("node %d does not hold its own bundle", i)
		}
		// GetClosestPeers never returns the node itself, so at most n-1.
		if replicas[i] < 1 || replicas[i] > n-1 {
			t.Errorf("node %d: %d replicas reported, want 1..%d", i, replicas[i], n-1)
		}
		if holders != replicas[i] {
			t.Errorf("node %d: Publish reported %d replicas, %d other nodes hold the record", i, replicas[i], holders)
		}
	}
	t.Logf("replicas per publish: %v", replicas)
	// Republishing the same bundle (what a node does every 12 hours) is
	// accepted again everywhere: that renews the records' 48-hour age.
	if r, err := nodes[0].d.Publish(ctx, nodes[0].u.peer, bundles[0]); err != nil || r != replicas[0] {
		t.Fatalf("republishing the same bundle: %d replicas (first time %d), %v", r, replicas[0], err)
	}

	identity := func(id peer.ID) []byte {
		_, raw, err := keyIdentity(Key(id))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for range 40 {
		i, j := rand.IntN(n), rand.IntN(n)
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		b, raw, err := nodes[i].d.Lookup(lctx, nodes[j].u.peer, 1)
		lcancel()
		if err != nil {
			t.Fatalf("node %d looking up node %d: %v", i, j, err)
		}
		if !bytes.Equal(raw, bundles[j]) || b.Seq != 1 || !bytes.Equal(b.Identity[:], identity(nodes[j].u.peer)) {
			t.Fatalf("node %d looking up node %d: got another bundle (seq %d)", i, j, b.Seq)
		}
	}

	t.Run("not found", func(t *testing.T) {
		stranger := newUser(t)
		const timeout = 10 * time.Second
		lctx, lcancel := context.WithTimeout(ctx, timeout)
		defer lcancel()
		start := time.Now()
		b, raw, err := nodes[7].d.Lookup(lctx, stranger.peer, 0)
		took := time.Since(start)
		if !errors.Is(err, ErrNotFound) || errors.Is(err, context.DeadlineExceeded) || b != nil || raw != nil {
			t.Fatalf("got %v (bundle %v), want ErrNotFound from a completed search", err, b != nil)
		}
		if !strings.Contains(err.Error(), stranger.peer.String()) || !strings.Contains(err.Error(), "never published") {
			t.Fatalf("message does not tell the user what happened: %q", err)
		}
		if took >= timeout {
			t.Fatalf("took %v", took)
		}
		t.Logf("not found after %v: %v", took, err)

		if _, err := nodes[7].d.FindPeer(lctx, stranger.peer); !errors.Is(err, ErrNotFound) {
			t.Fatalf("FindPeer of a peer that never joined: %v", err)
		}
		ai, err := nodes[3].d.FindPeer(lctx, nodes[17].h.ID())
		if err != nil || ai.ID != nodes[17].h.ID() || len(ai.Addrs) == 0 {
			t.Fatalf("FindPeer: %v %v", ai, err)
		}
	})

	t.Run("stale", func(t *testing.T) {
		owner, asker := nodes[5], nodes[6]
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		defer lcancel()
		b, raw, err := asker.d.Lookup(lctx, owner.u.peer, 2)
		if !errors.Is(err, ErrStale) || b == nil || b.Seq != 1 || !bytes.Equal(raw, bundles[5]) {
			t.Fatalf("got %v, bundle %v, want ErrStale with the seq 1 bundle", err, b)
		}
		t.Logf("stale: %v", err)

		// The newer bundle on one node only: the quorum search may well
		// stop on nodes serving seq 1; the full search must find seq 2.
		newer := owner.u.bundle(t, 2, week(), false)
		var lone *testNode
		for _, nd := range nodes {
			if nd != owner && nd != asker && nd.holds(Key(owner.u.peer), bundles[5]) {
				lone = nd
				break
			}
		}
		if lone == nil {
			t.Fatal("no third node holds the seq 1 bundle")
		}
		if err := owner.d.messenger.PutValue(lctx, lone.h.ID(), record.MakePutRecord(Key(owner.u.peer), newer)); err != nil {
			t.Fatal(err)
		}
		b, raw, err = asker.d.Lookup(lctx, owner.u.peer, 2)
		if err != nil || b.Seq != 2 || !bytes.Equal(raw, newer) {
			t.Fatalf("with seq 2 on one node: %v (seq %v)", err, b)
		}

		if r, err := owner.d.Publish(lctx, owner.u.peer, newer); err != nil || r < 1 {
			t.Fatalf("publishing seq 2: %d replicas, %v", r, err)
		}
		if b, _, err := asker.d.Lookup(lctx, owner.u.peer, 2); err != nil || b.Seq != 2 {
			t.Fatalf("after publishing seq 2: %v", err)
		}
		// Publishing seq 1 again would roll the peer back: refused here
		// before anything is sent.
		r, err := owner.d.Publish(lctx, owner.u.peer, bundles[5])
		if !errors.Is(err, records.ErrOldRecord) || r != 0 {
			t.Fatalf("republishing seq 1 after seq 2: %d replicas, %v", r, err)
		}
		for i, nd := range nodes {
			if nd.holds(Key(owner.u.peer), bundles[5]) {
				t.Fatalf("node %d still holds seq 1", i)
			}
		}
	})

	t.Run("invalid bundles are refused", func(t *testing.T) {
		victim, mallory := newUser(t), newUser(t)
		cases := []struct {
			name   string
			bundle []byte
			want   error
		}{
			{"signed by another identity", mallory.bundle(t, 1, week(), false), ErrWrongIdentity},
			{"expired", victim.bundle(t, 1, time.Now().Add(-time.Minute), false), e2e.ErrBundleExpired},
			{"one-time prekeys", victim.bundle(t, 1, week(), true), ErrOneTimeInRecord},
		}
		for _, c := range cases {
			r, err := nodes[2].d.Publish(ctx, victim.peer, c.bundle)
			if !errors.Is(err, c.want) || r != 0 {
				t.Fatalf("%s: %d replicas, %v, want %v", c.name, r, err, c.want)
			}
		}
		for i, nd := range nodes {
			if nd.holdsAny(Key(victim.peer)) {
				t.Fatalf("node %d stores a record for the victim", i)
			}
		}
	})

	t.Run("client mode", func(t *testing.T) {
		c := startNode(t, Config{Mode: ModeClient, BootstrapPeers: []peer.AddrInfo{nodes[0].info()}})
		join(t, c)
		bundle := c.u.bundle(t, 1, week(), false)
		r, err := c.d.Publish(ctx, c.u.peer, bundle)
		if err != nil {
			t.Fatal(err)
		}
		holders := 0
		for i, nd := range nodes {
			if nd.holds(Key(c.u.peer), bundle) {
				holders++
			}
			if nd.d.Inner().RoutingTable().Find(c.h.ID()) != "" {
				t.Fatalf("server %d has the client in its routing table", i)
			}
		}
		if r < 1 || r != holders {
			t.Fatalf("client publish: %d replicas reported, %d holders", r, holders)
		}
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		defer lcancel()
		if _, raw, err := c.d.Lookup(lctx, nodes[11].u.peer, 0); err != nil || !bytes.Equal(raw, bundles[11]) {
			t.Fatalf("client looking up a server's bundle: %v", err)
		}
		if _, raw, err := nodes[12].d.Lookup(lctx, c.u.peer, 1); err != nil || !bytes.Equal(raw, bundle) {
			t.Fatalf("server looking up the client's bundle: %v", err)
		}
	})
}

// A node without peers: Publish stores locally but reports
// ErrNotReplicated (and ErrNoPeers); lookups say there is no one to ask
// rather than that the peer never published.
func TestLonelyNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd := startNode(t, Config{Mode: ModeServer})
	if err := nd.d.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap with no bootstrap peers configured: %v", err)
	}
	bundle := nd.u.bundle(t, 1, week(), false)
	r, err := nd.d.Publish(ctx, nd.u.peer, bundle)
	if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrNoPeers) || r != 0 {
		t.Fatalf("got %d replicas, %v; want ErrNotReplicated", r, err)
	}
	t.Logf("publish: %v", err)
	if !nd.holds(Key(nd.u.peer), bundle) {
		t.Fatal("the bundle was not stored locally")
	}
	other := newUser(t)
	if _, _, err := nd.d.Lookup(ctx, other.peer, 0); !errors.Is(err, ErrNoPeers) || errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup: %v, want ErrNoPeers", err)
	}
	if _, err := nd.d.FindPeer(ctx, other.peer); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("FindPeer: %v, want ErrNoPeers", err)
	}
}

// Publishing to peers that all refuse (here: they hold a newer record)
// is ErrNotReplicated with the peers' errors, not a silent success.
func TestPublishRefusedByAllPeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := startNetwork(t, 4)
	owner := nodes[0].u
	newer, older := owner.bundle(t, 9, week(), false), owner.bundle(t, 3, week(), false)
	if r, err := nodes[0].d.Publish(ctx, owner.peer, newer); err != nil || r != 3 {
		t.Fatalf("%d replicas, %v", r, err)
	}
	// A node that has not seen seq 9 itself (a fresh one) tries to push
	// the old bundle: every replica refuses it.
	stray := startNode(t, Config{Mode: ModeServer, BootstrapPeers: []peer.AddrInfo{nodes[0].info()}})
	join(t, stray)
	r, err := stray.d.Publish(ctx, owner.peer, older)
	if !errors.Is(err, ErrNotReplicated) || errors.Is(err, ErrNoPeers) || r != 0 {
		t.Fatalf("got %d replicas, %v; want ErrNotReplicated", r, err)
	}
	t.Logf("refused: %v", err)
	for i, nd := range nodes {
		if !nd.holds(Key(owner.peer), newer) {
			t.Fatalf("node %d lost seq 9", i)
		}
	}
}

// Bootstrap says why it failed: nobody reachable, or nobody serving the
// DHT.
func TestBootstrapFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	gone := startNode(t, Config{Mode: ModeServer})
	goneInfo := gone.info()
	gone.close()
	nd := startNode(t, Config{Mode: ModeServer, BootstrapPeers: []peer.AddrInfo{goneInfo}})
	err := nd.d.Bootstrap(ctx)
	if err == nil || !strings.Contains(err.Error(), "could not reach any") {
		t.Fatalf("unreachable bootstrap peer: %v", err)
	}
	t.Logf("unreachable: %v", err)

	client := startNode(t, Config{Mode: ModeClient})
	nd2 := startNode(t, Config{Mode: ModeServer, BootstrapPeers: []peer.AddrInfo{client.info()}})
	err = nd2.d.Bootstrap(ctx)
	if err == nil || !strings.Contains(err.Error(), "none serves /p2pmsg/kad/1.0.0") {
		t.Fatalf("client-mode bootstrap peer: %v", err)
	}
	t.Logf("client-only: %v", err)

	// One of two unreachable is fine.
	server := startNode(t, Config{Mode: ModeServer})
	nd3 := startNode(t, Config{Mode: ModeServer, BootstrapPeers: []peer.AddrInfo{goneInfo, server.info()}})
	if err := nd3.d.Bootstrap(ctx); err != nil || nd3.d.RoutingTableSize() != 1 {
		t.Fatalf("one reachable bootstrap peer: %v (table size %d)", err, nd3.d.RoutingTableSize())
	}

	if _, err := New(nd.h, Config{Mode: Mode(7)}); err == nil {
		t.Fatal("New accepted an unknown mode")
	}
}

// ModeAuto on loopback stays a client (AutoNAT never finds it public):
// it bootstraps and looks up, but does not serve the DHT protocol.
func TestModeAutoIsAClientOnLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	server := startNode(t, Config{Mode: ModeServer})
	auto := startNode(t, Config{BootstrapPeers: []peer.AddrInfo{server.info()}})
	join(t, auto)
	if slices.Contains(auto.h.Mux().Protocols(), kadProtocol) {
		t.Fatal("the ModeAuto node serves the DHT protocol on loopback")
	}
	if server.d.Inner().RoutingTable().Find(auto.h.ID()) != "" {
		t.Fatal("the server took the ModeAuto node into its routing table")
	}
	bundle := server.u.bundle(t, 1, week(), false)
	if r, err := server.d.Publish(ctx, server.u.peer, bundle); !errors.Is(err, ErrNotReplicated) || r != 0 {
		t.Fatalf("publish with only a client as peer: %d replicas, %v", r, err)
	}
	if _, raw, err := auto.d.Lookup(ctx, server.u.peer, 1); err != nil || !bytes.Equal(raw, bundle) {
		t.Fatalf("lookup from the ModeAuto node: %v", err)
	}
}

// After Close on every DHT and host, the goroutines that the network
// started are gone.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	// Package-level goroutines that libp2p starts on first use, and
	// those of earlier tests winding down, are not this test's business.
	warm := startNode(t, Config{Mode: ModeServer})
	warm.close()
	before := settledGoroutines(0, 5*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := startNetwork(t, 6)
	for _, nd := range nodes {
		if _, err := nd.d.Publish(ctx, nd.u.peer, nd.u.bundle(t, 1, week(), false)); err != nil {
			t.Fatal(err)
		}
	}
	for i, nd := range nodes {
		// A full search too: it leaves record fix-ups running behind it.
		nd.d.quorum = i % 2 * 3
		if _, _, err := nd.d.Lookup(ctx, nodes[(i+1)%len(nodes)].u.peer, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := nd.d.FindPeer(ctx, nodes[(i+2)%len(nodes)].h.ID()); err != nil {
			t.Fatal(err)
		}
	}
	during := runtime.NumGoroutine()
	for _, nd := range nodes {
		if err := nd.d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := nd.d.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		nd.h.Close()
	}
	after := settledGoroutines(before, 20*time.Second)
	t.Logf("goroutines: %d before, %d with 6 nodes, %d after closing", before, during, after)
	if after > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines left behind:\n%s", after-before, buf)
	}
}

// settledGoroutines waits until the goroutine count is at most target or
// stops changing (same count for a second), within limit.
func settledGoroutines(target int, limit time.Duration) int {
	deadline := time.Now().Add(limit)
	last, stable := runtime.NumGoroutine(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n <= target {
			return n
		}
		if n != last {
			last, stable = n, time.Now()
		} else if target == 0 && time.Since(stable) > time.Second {
			return n
		}
	}
	return runtime.NumGoroutine()
}
