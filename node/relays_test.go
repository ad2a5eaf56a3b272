package node

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
)

// B says nothing of its reachability: its only bootstrap peer is a
// relay, and its addresses (loopback) are all private, so it takes a
// reservation there by itself (pinned: the relay is also named as one).
// A, which may reach B only through a relay, reaches it through the
// relay it knows (its own bootstrap peer), without being told B's
// circuit address. The relay then restarts: A and B dial it again, B
// reserves again, and A's next message goes through it.
func TestRelayFoundByItself(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%v", pinned), func(t *testing.T) {
			checkNoLeaks(t)
			rcfg, relay, a, b := relayedPair(t, pinned)

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
		})
	}
}

// relayedPair starts a relay (the bootstrap peer of both others), b
// behind it (with pinned, also named as b's relay), and a, which may
// reach b only through a relay; b accepts a. rcfg is the relay's
// config, to start it again.
func relayedPair(t *testing.T, pinned bool) (rcfg Config, relay, a, b *Node) {
	t.Helper()
	rcfg = testConfig(t.TempDir())
	rcfg.RelayService = true
	relay = startConfig(t, rcfg)
	bcfg := testConfig(t.TempDir(), relay.AddrInfo())
	bcfg.DHTMode = ""
	if pinned {
		bcfg.Relays = []peer.AddrInfo{relay.AddrInfo()}
	}
	b = startConfig(t, bcfg)
	acfg := testConfig(t.TempDir(), relay.AddrInfo())
	acfg.DHTMode = ""
	acfg.hostOptions = []libp2p.Option{libp2p.ConnectionGater(onlyRelayedTo{b.ID()})}
	a = startConfig(t, acfg)
	accepts(t, b, a)
	return rcfg, relay, a, b
}

// refuseFirst is a relay's ACL that refuses the first reservation.
type refuseFirst struct{ calls, granted atomic.Int32 }

func (r *refuseFirst) AllowReserve(peer.ID, ma.Multiaddr) bool {
	if r.calls.Add(1) == 1 {
		return false
	}
	r.granted.Add(1)
	return true
}
func (r *refuseFirst) AllowConnect(peer.ID, ma.Multiaddr, peer.ID) bool { return true }

// A relay that refused a reservation is asked again once its backoff is
// over, while we stay connected to it (nothing else would offer it
// again: no identify, no reconnection).
func TestRefusedReservationAskedAgain(t *testing.T) {
	checkNoLeaks(t)
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ForceReachabilityPublic(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	acl := &refuseFirst{}
	r, err := relayv2.New(h, relayv2.WithACL(acl))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg := testConfig(t.TempDir(), peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	cfg.DHTMode = ""
	startConfig(t, cfg)
	waitFor(t, 10*time.Second, "a first reservation, refused", func() (bool, string) { return acl.calls.Load() >= 1, "" })
	// relayBackoff, then at most relayBackoff until the feed offers it.
	waitFor(t, 2*relayBackoff+5*time.Second, "the relay asked again", func() (bool, string) {
		return acl.granted.Load() >= 1, fmt.Sprint(acl.calls.Load(), " asks")
	})
}
