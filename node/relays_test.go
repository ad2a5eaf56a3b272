package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/p2pmsg/p2pmsg/db"
)

// B names no relay and says nothing of its reachability: its only
// bootstrap peer is a relay, and its addresses (loopback) are all
// private, so it takes a reservation there by itself. A, which may reach
// B only through a relay, reaches it through the relay it knows (its own
// bootstrap peer), without being told B's circuit address. The relay
// then restarts: A and B dial it again, B reserves again, and A's next
// message goes through it.
func TestRelayFoundByItself(t *testing.T) {
	checkNoLeaks(t)
	rcfg := testConfig(t.TempDir())
	rcfg.RelayService = true
	relay := startConfig(t, rcfg)
	bcfg := testConfig(t.TempDir(), relay.AddrInfo())
	bcfg.DHTMode = ""
	b := startConfig(t, bcfg)
	acfg := testConfig(t.TempDir(), relay.AddrInfo())
	acfg.DHTMode = ""
	acfg.hostOptions = []libp2p.Option{libp2p.ConnectionGater(onlyRelayedTo{b.ID()})}
	a := startConfig(t, acfg)
	accepts(t, b, a)

	send(t, a, b, "found through the relay")
	waitDelivered(t, a, b.ID(), 1)
	if p := a.Path(b.ID()); p != PathRelayed {
		t.Fatalf("path to b: %s, want relayed", p)
	}
	if st, err := b.Status(); err != nil || st.Reachability != ReachabilityPrivate {
		t.Fatalf("b's reachability: %v %v, want private at once (no public address)", st.Reachability, err)
	}

	// The relay restarts on the same address, with the same identity.
	listen := relay.AddrInfo().Addrs[0].String()
	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b to see the relay go", func() (bool, string) {
		return b.Path(relay.ID()) == PathOffline, string(b.Path(relay.ID()))
	})
	rcfg.ListenAddrs = []string{listen}
	startConfig(t, rcfg)
	start := time.Now()
	send(t, a, b, "after the relay came back")
	waitDelivered(t, a, b.ID(), 2)
	t.Logf("delivered %v after the relay was back", time.Since(start).Round(time.Millisecond))
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"found through the relay", "after the relay came back"})
	if p := a.Path(b.ID()); p != PathRelayed {
		t.Fatalf("path to b after the restart: %s, want relayed", p)
	}
}
