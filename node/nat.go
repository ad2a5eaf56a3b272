package node

import (
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	ma "github.com/multiformats/go-multiaddr"
)

// Path is how a contact is reached right now.
type Path string

const (
	PathDirect      Path = "direct"       // a connection to one of its addresses
	PathHolePunched Path = "hole-punched" // direct, opened by DCUtR through NATs
	PathRelayed     Path = "relayed"      // only through a relay (limited: envelopes only)
	PathOffline     Path = "offline"
)

// natState follows what go-libp2p learns about our reachability and the
// hole punches that succeeded.
type natState struct {
	mu           sync.Mutex
	reachability network.Reachability
	punched      map[peer.ID]time.Time
	onPunch      func(peer.ID) // after a successful hole punch
}

// Trace implements holepunch.EventTracer.
func (s *natState) Trace(evt *holepunch.Event) {
	if evt.Type != holepunch.EndHolePunchEvtT {
		return
	}
	if end, ok := evt.Evt.(*holepunch.EndHolePunchEvt); ok && end.Success {
		s.mu.Lock()
		s.punched[evt.Remote] = time.Now()
		s.mu.Unlock()
		if s.onPunch != nil {
			s.onPunch(evt.Remote)
		}
	}
}

// Path reports how p is reached now.
func (n *Node) Path(p peer.ID) Path {
	if n.running() != nil {
		return PathOffline
	}
	path := PathOffline
	for _, c := range n.host.Network().ConnsToPeer(p) {
		if c.Stat().Limited || isCircuit(c.RemoteMultiaddr()) {
			if path == PathOffline {
				path = PathRelayed
			}
			continue
		}
		n.nat.mu.Lock()
		_, punched := n.nat.punched[p]
		n.nat.mu.Unlock()
		if punched {
			return PathHolePunched
		}
		return PathDirect
	}
	return path
}

func isCircuit(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// followReachability keeps the latest AutoNAT verdict for Status.
func (n *Node) followReachability() {
	sub, err := n.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		n.log.Warn("reachability unknown", "err", err)
		return
	}
	defer sub.Close()
	for {
		select {
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			r := e.(event.EvtLocalReachabilityChanged).Reachability
			n.nat.mu.Lock()
			n.nat.reachability = r
			n.nat.mu.Unlock()
			n.log.Info("reachability", "now", r.String())
		case <-n.ctx.Done():
			return
		}
	}
}

func (n *Node) reachability() string {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	switch n.nat.reachability {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}

// relayAddrs are our addresses through relays: one per reservation.
func (n *Node) relayAddrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		if isCircuit(a) {
			out = append(out, a.String())
		}
	}
	return out
}

// upgradeWhenPunchingReady waits until DCUtR is up (go-libp2p starts it
// once the node knows a public address of its own), then drops the
// relayed-only connections made before: DCUtR upgrades a relayed
// connection only when it arrives, so those would stay relayed for
// ever. They are dialled again through the relay when next needed, and
// then upgraded.
func (n *Node) upgradeWhenPunchingReady() {
	const poll = 50 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	for !slices.Contains(n.host.Mux().Protocols(), holepunch.Protocol) {
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
	}
	// Only connections certainly older than the service: one that came
	// in the last poll interval may already have been seen by it.
	before := time.Now().Add(-poll)
	for _, c := range n.host.Network().Conns() {
		if (c.Stat().Limited || isCircuit(c.RemoteMultiaddr())) && c.Stat().Opened.Before(before) &&
			n.Path(c.RemotePeer()) == PathRelayed {
			n.log.Debug("relayed connection dropped, to be upgraded", "peer", c.RemotePeer().String())
			c.Close()
		}
	}
}
