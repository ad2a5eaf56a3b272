package node

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// NAT traversal as the node sees it (docs/design.md §8;
// docs/node-decisions.md, 14, 15): how each contact is reached, what
// AutoNAT says of us, and the relayed connections dropped so that DCUtR
// upgrades them. The host-event loop (hostevents.go) feeds it.

// Path is how a contact is reached right now.
type Path string

const (
	PathDirect      Path = "direct"       // a connection to one of its addresses
	PathHolePunched Path = "hole-punched" // direct, opened by DCUtR through NATs
	PathRelayed     Path = "relayed"      // only through a relay (limited: envelopes only)
	PathOffline     Path = "offline"
)

// natState is what go-libp2p told us about our reachability and the hole
// punches that succeeded. Its lock is a leaf.
type natState struct {
	mu           sync.Mutex
	reachability network.Reachability
	punched      map[peer.ID]time.Time
}

func (s *natState) punchedWith(p peer.ID, at time.Time) {
	s.mu.Lock()
	s.punched[p] = at
	s.mu.Unlock()
}

func (s *natState) setReachability(r network.Reachability) {
	s.mu.Lock()
	s.reachability = r
	s.mu.Unlock()
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

func (n *Node) reachability() Reachability {
	n.nat.mu.Lock()
	defer n.nat.mu.Unlock()
	switch n.nat.reachability {
	case network.ReachabilityPublic:
		return ReachabilityPublic
	case network.ReachabilityPrivate:
		return ReachabilityPrivate
	}
	return ReachabilityUnknown
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

// dropRelayedOpenedBefore drops the relayed-only connections opened
// before a time that is certainly before DCUtR came up: DCUtR upgrades a
// relayed connection only when it arrives, so those would stay relayed
// for ever. They are dialled again through the relay at once, and then
// upgraded (nothing else would dial them: a first message delivered
// before DCUtR came up leaves nothing queued). A connection that came
// later may already be under a hole punch, and is left alone.
func (n *Node) dropRelayedOpenedBefore(before time.Time) {
	var dropped []peer.ID
	for _, c := range n.host.Network().Conns() {
		if (c.Stat().Limited || isCircuit(c.RemoteMultiaddr())) && c.Stat().Opened.Before(before) &&
			n.Path(c.RemotePeer()) == PathRelayed {
			n.log.Debug("relayed connection dropped, to be upgraded", "peer", c.RemotePeer().String())
			c.Close()
			if !slices.Contains(dropped, c.RemotePeer()) {
				dropped = append(dropped, c.RemotePeer())
			}
		}
	}
	if len(dropped) == 0 {
		return
	}
	n.spawn(func() {
		sem := make(chan struct{}, greetConcurrency)
		var wg sync.WaitGroup
		for _, p := range dropped {
			select {
			case sem <- struct{}{}:
			case <-n.ctx.Done():
				wg.Wait()
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
				defer cancel()
				if err := n.connect(ctx, p); err != nil {
					n.log.Debug("redial after the drop", "peer", p.String(), "err", err)
				}
			})
		}
		wg.Wait()
	})
}
