package node

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pmsg/p2pmsg/dht"
)

// What keeps the node from being found or reached, said in one sentence
// with what to do (docs/node-decisions.md, 23): Status lists it, and the
// watch loop logs each problem at INFO when it appears and when it is
// gone.

// Problem codes, stable for scripts.
const (
	ProblemAlone         = "alone"                 // no bootstrap peer, nobody on the LAN
	ProblemBootstrapDown = "bootstrap-unreachable" // no bootstrap peer answers
	ProblemNoDHTServer   = "no-dht-server"         // the bootstrap peers serve no DHT we can use
	ProblemUnreachable   = "unreachable"           // private, and no relay reservation
	ProblemNotPublished  = "not-published"         // the bundle is on no other node
	ProblemMailboxHidden = "mailbox-unreachable"   // a mailbox that AutoNAT finds behind NAT
)

// Problem is something that keeps others from finding or reaching the
// node, with what to do about it.
type Problem struct {
	Code string
	Text string
}

// DHTStatus is the node's part in the two DHTs (dht.Dual).
type DHTStatus struct {
	Mode      DHTMode // as configured: it applies to the WAN half
	LANServer bool    // answering queries in the LAN DHT
	WANServer bool    // answering queries in the internet's DHT
	LANPeers  int     // servers in the LAN routing table
	WANPeers  int     // servers in the WAN routing table
}

// facts are what the diagnosis looks at.
type facts struct {
	DHTStatus
	bootstrap  int // bootstrap peers configured
	connected  int // of which connected now
	reachable  Reachability
	relayAddrs int
}

func (n *Node) facts() facts {
	lan, wan := n.dht.Serving()
	mode := or(n.cfg.DHTMode, DHTAuto)
	if n.cfg.RelayService || n.cfg.Mailbox {
		mode = DHTServer // buildHost: a relay or mailbox serves the DHT
	}
	st := facts{DHTStatus: DHTStatus{Mode: mode, LANServer: lan, WANServer: wan,
		LANPeers: n.dht.LAN.RoutingTableSize(), WANPeers: n.dht.WAN.RoutingTableSize()},
		reachable: n.reachability(), relayAddrs: len(n.relayAddrs())}
	for _, ai := range n.cfg.BootstrapPeers {
		if ai.ID == n.id {
			continue
		}
		st.bootstrap++
		if c := n.host.Network().Connectedness(ai.ID); c == network.Connected || c == network.Limited {
			st.connected++
		}
	}
	return st
}

// problems says what is wrong now.
func (n *Node) problems(st facts) []Problem {
	var out []Problem
	add := func(code, format string, args ...any) {
		out = append(out, Problem{code, fmt.Sprintf(format, args...)})
	}
	if st.LANPeers+st.WANPeers == 0 {
		switch {
		case n.cfg.RelayService || n.cfg.Mailbox || n.cfg.DHTMode == DHTServer:
			// A root node: others join through it.
		case st.bootstrap == 0 && len(n.host.Network().Peers()) == 0:
			how := "no p2pmsg node answered on your LAN (mDNS)"
			if n.cfg.NoMDNS {
				how = "LAN discovery is off (--no-mdns)"
			}
			add(ProblemAlone, "nobody can find you: no bootstrap peer is set and %s; give --bootstrap with the address of a running node (p2pmsg id on it prints them)", how)
		case st.bootstrap > 0 && st.connected == 0:
			add(ProblemBootstrapDown, "none of your %d bootstrap peers answers: check their addresses (p2pmsg id on each prints them) and that they run", st.bootstrap)
		case st.bootstrap > 0:
			if why := n.bootstrapServesNoDHT(); why != "" {
				add(ProblemNoDHTServer, "%s", why)
			}
		}
	}
	if st.reachable == ReachabilityPrivate && st.relayAddrs == 0 && n.internetFacing(st) {
		add(ProblemUnreachable, "nobody outside your network can reach you: add a relay (a node with a public address started with --relay, given as --bootstrap)")
	}
	if n.cfg.Mailbox && st.reachable == ReachabilityPrivate {
		add(ProblemMailboxHidden, "this mailbox is not reachable from the internet (AutoNAT says so): owners and senders outside your network cannot use it; run it on a machine with a public address, or forward its port")
	}
	// A server of the internet's DHT with nobody to store its bundle on
	// is the DHT that others ask: they find the bundle there.
	rootAlone := st.WANServer && errors.Is(n.publicationFailure(), dht.ErrNoPeers)
	if pubAt, _ := n.Published(); pubAt.IsZero() && !rootAlone {
		add(ProblemNotPublished, "your bundle is not published yet, so nobody can start a conversation with you: %s", n.publicationReason())
	}
	return out
}

// internetFacing: the node is set up to be reached across the internet
// (a relay given, an internet DHT peer, a bootstrap peer with a public
// address). On a LAN alone, being unreachable from the internet is no
// problem, and a LAN relay's reservation gives no address to show.
func (n *Node) internetFacing(st facts) bool {
	if len(n.cfg.Relays) > 0 || st.WANPeers > 0 {
		return true
	}
	for _, ai := range n.cfg.BootstrapPeers {
		if slices.ContainsFunc(ai.Addrs, manet.IsPublicAddr) {
			return true
		}
	}
	return false
}

// bootstrapServesNoDHT explains why connected bootstrap peers are in
// neither routing table, once identify told us what they serve; "" when
// it cannot tell yet or they do serve (they are joining).
func (n *Node) bootstrapServesNoDHT() string {
	lan, wan := protocol.ID(n.dht.LAN.Protocol()), protocol.ID(n.dht.WAN.Protocol())
	lanOnly, none := 0, 0
	for _, ai := range n.cfg.BootstrapPeers {
		if ai.ID == n.id || n.host.Network().Connectedness(ai.ID) == network.NotConnected {
			continue
		}
		protos, err := n.host.Peerstore().GetProtocols(ai.ID)
		if err != nil || len(protos) == 0 {
			return "" // not identified yet
		}
		switch {
		case slices.Contains(protos, wan):
			return ""
		case slices.Contains(protos, lan) && !reachedOnLAN(n, ai.ID):
			lanOnly++
		case slices.Contains(protos, lan):
			return ""
		default:
			none++
		}
	}
	switch {
	case lanOnly > 0:
		return "your bootstrap peers serve the DHT only to their own network, not to the internet yet: start one with --dht-mode server (or --relay) on a machine with a public address"
	case none > 0:
		return "your bootstrap peers are DHT clients: start one with --dht-mode server (or use another bootstrap peer)"
	}
	return ""
}

// reachedOnLAN: our connection to p is to a private or loopback address,
// as the LAN DHT requires.
func reachedOnLAN(n *Node, p peer.ID) bool {
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if manet.IsPrivateAddr(c.RemoteMultiaddr()) && !isCircuit(c.RemoteMultiaddr()) {
			return true
		}
	}
	return false
}

// publicationReason says why the bundle is not published, in words.
func (n *Node) publicationReason() string {
	err := n.publicationFailure()
	switch {
	case err == nil:
		return "the first publication is under way"
	case errors.Is(err, dht.ErrNoPeers):
		return "this node knows no DHT server to store it on; it is published as soon as it knows one"
	}
	return fmt.Sprintf("the last attempt failed (%v); it is retried", err)
}

// watchLoop checks every watchEvery what is wrong, logs what appeared and
// what went, and wakes what waits on the network when the DHT stops
// being empty.
func (n *Node) watchLoop() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	known := map[string]string{}
	empty, wanEmpty := true, true
	for {
		// First after one period: what a start goes through (the first
		// publication, AutoRelay's reservation) is not worth a line.
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
		st := n.facts()
		now := map[string]string{}
		for _, p := range n.problems(st) {
			now[p.Code] = p.Text
			if known[p.Code] != p.Text && !(p.Code == ProblemNotPublished && known[p.Code] != "") {
				n.log.Info("problem: "+p.Text, "code", p.Code)
			}
		}
		for code := range known {
			if _, still := now[code]; !still {
				n.log.Info("resolved", "code", code)
			}
		}
		known = now
		if e := st.LANPeers+st.WANPeers == 0; e != empty {
			empty = e
			if !e {
				n.networkChanged()
			}
		}
		if w := st.WANPeers == 0; w != wanEmpty {
			wanEmpty = w
			if !w {
				n.wakePublication(true)
			}
		}
	}
}
