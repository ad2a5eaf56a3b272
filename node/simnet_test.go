package node

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/marcopolo/simnet"

	"github.com/p2pmsg/p2pmsg/db"
)

// The hole-punch path without root: go-libp2p's simnet carries QUIC
// between the nodes in memory, and its firewall router lets a node
// receive only from addresses it has sent to, as a NAT does. The NAT lab
// (cmd/p2pmsg, root) does the same with real kernels' NAT.

type sourceIP struct{ ip atomic.Pointer[net.IP] }

func (m *sourceIP) PreferredSourceIPForDestination(*net.UDPAddr) (net.IP, error) {
	return *m.ip.Load(), nil
}

// simQUIC puts a node's QUIC sockets on the simulated network. quic-go
// does not close a socket it was handed, so the test closes them after
// the nodes (or their readers would outlive the test).
func simQUIC(t *testing.T, router *simnet.SimpleFirewallRouter, public bool) libp2p.Option {
	m := &sourceIP{}
	return libp2p.QUICReuse(quicreuse.NewConnManager,
		quicreuse.OverrideSourceIPSelector(func() (quicreuse.SourceIPSelector, error) { return m, nil }),
		quicreuse.OverrideListenUDP(func(_ string, addr *net.UDPAddr) (net.PacketConn, error) {
			m.ip.Store(&addr.IP)
			if public {
				router.SetAddrPubliclyReachable(addr)
			}
			c := simnet.NewSimConn(addr)
			t.Cleanup(func() { c.Close() })
			c.SetUpPacketReceiver(router)
			router.AddNode(addr, c)
			return c, nil
		}))
}

func startSim(t *testing.T, router *simnet.SimpleFirewallRouter, public bool, addr string, cfg Config) *Node {
	t.Helper()
	cfg.ListenAddrs = []string{addr}
	cfg.hostOptions = []libp2p.Option{simQUIC(t, router, public)}
	return startConfig(t, cfg)
}

func TestHolePunchSimnet(t *testing.T) {
	checkNoLeaks(t)
	router := &simnet.SimpleFirewallRouter{}
	rcfg := testConfig(t.TempDir())
	rcfg.RelayService = true
	relay := startSim(t, router, true, "/ip4/1.2.0.1/udp/8000/quic-v1", rcfg)
	private := func(dir string) Config {
		cfg := testConfig(dir, relay.AddrInfo())
		cfg.Relays = []peer.AddrInfo{relay.AddrInfo()}
		cfg.Reachability = ReachabilityPrivate
		return cfg
	}
	a := startSim(t, router, false, "/ip4/2.2.0.1/udp/8000/quic-v1", private(t.TempDir()))
	b := startSim(t, router, false, "/ip4/2.2.0.2/udp/8001/quic-v1", private(t.TempDir()))
	for _, n := range []*Node{a, b} {
		waitFor(t, 10*time.Second, "hole punching up", func() (bool, string) {
			st, err := n.Status()
			return err == nil && st.HolePunching, "not yet"
		})
	}
	circuit := relay.Addrs()[0].String() + "/p2p-circuit/p2p/" + b.ID().String()
	ai, err := peer.AddrInfoFromString(circuit)
	if err != nil {
		t.Fatal(err)
	}
	// DCUtR runs when a relayed connection arrives at b. Connections the
	// two made while joining are dropped on both sides first: one kept
	// by b was reused by a's Connect, and then no punch ran (2 runs in 8
	// before). A node would try again on its next relayed connection, and
	// so does the test, up to three times (8 runs of 8 punched at the
	// first).
	punched := false
	for attempt := 1; attempt <= 3 && !punched; attempt++ {
		a.Host().Network().ClosePeer(b.ID())
		b.Host().Network().ClosePeer(a.ID())
		waitFor(t, 10*time.Second, "a relayed connection", func() (bool, string) {
			err := a.Connect(t.Context(), *ai)
			return err == nil, fmt.Sprint(err)
		})
		if attempt == 1 {
			send(t, a, b, "through the simulated NAT")
			waitDelivered(t, a, b.ID(), 1)
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if a.Path(b.ID()) == PathHolePunched {
				punched = true
				break
			}
		}
		t.Logf("attempt %d: path %s", attempt, a.Path(b.ID()))
	}
	if !punched {
		t.Fatalf("no hole-punched connection in three attempts; path: %s", a.Path(b.ID()))
	}
	// The host-event loop reported the move off the relay to a's event
	// log, as the NAT lab's clients see it.
	waitFor(t, 10*time.Second, "a connectivity event with the hole-punched path", func() (bool, string) {
		evs, _, err := a.Events(0, MaxPage, EventConnectivity)
		if err != nil {
			return false, err.Error()
		}
		var seen []Path
		for _, e := range evs {
			if e.Peer == b.ID() {
				seen = append(seen, e.Path)
				if e.Path == PathHolePunched {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("paths reported for b: %v", seen)
	})
	send(t, b, a, "and back, directly")
	waitDelivered(t, b, a.ID(), 1)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"through the simulated NAT"})
}
