package node

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Peers that never met find each other through the DHT alone, and the DHT
// keeps only valid, newest bundles: in a 20-node network where every node
// publishes its bundle, 10 random pairs that were never connected complete
// a first message; a forged bundle, an expired one and one with an older
// seq are refused by every node asked to store them.
func TestNetworkOfTwenty(t *testing.T) {
	checkNoLeaks(t)
	const size = 20
	boot := startNode(t, t.TempDir())
	nodes := []*Node{boot}
	for len(nodes) < size {
		nodes = append(nodes, startNode(t, t.TempDir(), boot.AddrInfo()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, n := range nodes {
		// The routing tables fill as nodes join: refresh so that each
		// knows the network, as the periodic refresh would.
		<-n.dht.LAN.Inner().RefreshRoutingTable()
	}
	for i, n := range nodes {
		r, err := n.PublishBundle(ctx)
		if err != nil {
			t.Fatalf("node %d publishes: %v", i, err)
		}
		if r < 1 {
			t.Fatalf("node %d: bundle stored by %d peers", i, r)
		}
	}

	// With k = 20, every node met every other while the DHT filled. Cut
	// those connections and forget the addresses learned from them, but
	// for the bootstrap node: a pair then meets only through DHT lookups.
	for _, n := range nodes[1:] {
		for _, p := range n.Host().Network().Peers() {
			if p != boot.ID() {
				n.Host().Network().ClosePeer(p)
				n.Host().Peerstore().ClearAddrs(p)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	done := 0
	for tries := 0; done < 10 && tries < 1000; tries++ {
		// Pairs among the non-bootstrap nodes, never connected so far.
		a, b := nodes[1+rng.IntN(size-1)], nodes[1+rng.IntN(size-1)]
		if a == b || a.Host().Network().Connectedness(b.ID()) == network.Connected {
			continue
		}
		if _, err := a.Contact(b.ID()); err == nil {
			continue // talked already
		}
		start := time.Now()
		send(t, a, b, "found you through the DHT")
		waitFor(t, 10*time.Second, "first message delivered", func() (bool, string) {
			return count(history(t, a, b.ID()), db.Outgoing, db.Delivered) == 1, "not yet"
		})
		checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"found you through the DHT"})
		t.Logf("pair %d: first message acknowledged in %v", done, time.Since(start).Round(time.Millisecond))
		done++
	}
	if done < 10 {
		t.Fatalf("only %d unconnected pairs found", done)
	}

	// Bad records, pushed straight to every node by a peer that speaks
	// the DHT protocol.
	victim := nodes[3]
	key := dht.Key(victim.ID())
	attacker := startNode(t, t.TempDir(), boot.AddrInfo())
	msgr, err := pb.NewProtocolMessenger(attacker.dht.LAN.Inner().MessageSender())
	if err != nil {
		t.Fatal(err)
	}
	newest := signTestBundle(t, victim, 0, time.Now().Add(24*time.Hour))
	for _, n := range nodes {
		if n == victim {
			continue
		}
		if err := msgr.PutValue(ctx, n.ID(), record.MakePutRecord(key, newest)); err != nil {
			t.Fatalf("node %s refuses the victim's newest bundle: %v", n.ID().ShortString(), err)
		}
	}
	mallory := e2e.NewIdentity()
	forged, err := mallory.SignBundle(e2e.BundleParams{Seq: ^uint64(0), Expires: time.Now().Add(24 * time.Hour),
		SignedPrekey: e2e.NewSignedPrekey(1), PQPrekey: e2e.NewPQPrekey(1, false)})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"forged (signed by another key)": forged,
		"expired":                        signTestBundle(t, victim, ^uint64(0), time.Now().Add(-time.Minute)),
		"older seq":                      signTestBundle(t, victim, 1, time.Now().Add(24*time.Hour)),
	}
	for name, value := range bad {
		for _, n := range nodes {
			if n == victim {
				continue
			}
			if err := msgr.PutValue(ctx, n.ID(), record.MakePutRecord(key, value)); err == nil {
				t.Errorf("%s bundle: node %s accepted it", name, n.ID().ShortString())
			}
			got, err := n.dht.Stored(ctx, victim.ID())
			if err != nil || !bytes.Equal(got, newest) {
				t.Errorf("%s bundle: node %s holds another record than the newest (err %v)", name, n.ID().ShortString(), err)
			}
		}
	}
}

// signTestBundle signs a DHT bundle of n's with the given seq (0: a fresh
// one above everything published) and expiry.
func signTestBundle(t testing.TB, n *Node, seq uint64, expires time.Time) []byte {
	t.Helper()
	var out []byte
	err := n.store.Update(func(tx *db.Tx) error {
		b, err := signBundle(tx, n.self, time.Now(), false, 0)
		if err != nil || seq == 0 {
			out = b
			return err
		}
		r := tx.Read()
		spkRow, _ := currentPrekey(r, db.SignedPrekey)
		spk, err := loadSigned(r, spkRow.ID, time.Now())
		if err != nil {
			return err
		}
		pqRow, _ := currentPrekey(r, db.PQPrekey)
		pq, err := loadPQ(r, db.PQPrekey, pqRow.ID, time.Now())
		if err != nil {
			return err
		}
		out, err = n.self.SignBundle(e2e.BundleParams{Seq: seq, Expires: expires, SignedPrekey: spk, PQPrekey: pq})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
