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
	// tried is the latest hole-punch event with each peer, of either
	// side and any outcome; upAt is when DCUtR came up here. The punch
	// loop owns retry.
	tried map[peer.ID]time.Time
	upAt  time.Time
	up    chan struct{} // closed with upAt set
	retry map[peer.ID]*punchRetry
}

func (s *natState) triedWith(p peer.ID, at time.Time) {
	s.mu.Lock()
	s.tried[p] = at
	s.mu.Unlock()
}

// forget drops what is known of a peer gone: the maps hold only
// connected peers.
func (s *natState) forget(p peer.ID) {
	s.mu.Lock()
	delete(s.punched, p)
	delete(s.tried, p)
	delete(s.retry, p)
	s.mu.Unlock()
}

func (s *natState) punchUp(at time.Time) {
	s.mu.Lock()
	if s.upAt.IsZero() {
		s.upAt = at
		close(s.up)
	}
	s.mu.Unlock()
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
// later is the punch loop's.
func (n *Node) dropRelayedOpenedBefore(before time.Time) {
	var dropped []peer.ID
	for _, c := range n.host.Network().Conns() {
		if isRelayed(c) && c.Stat().Opened.Before(before) && n.Path(c.RemotePeer()) == PathRelayed &&
			!slices.Contains(dropped, c.RemotePeer()) {
			dropped = append(dropped, c.RemotePeer())
		}
	}
	n.redialRelayed(dropped, before)
}

func isRelayed(c network.Conn) bool {
	return c.Stat().Limited || isCircuit(c.RemoteMultiaddr())
}

// redialRelayed closes the relayed connections to each peer opened
// before a time, and dials it again: the peer on the receiving end of the
// new connection (either side may be) starts a hole punch over it.
func (n *Node) redialRelayed(peers []peer.ID, openedBefore time.Time) {
	if len(peers) == 0 {
		return
	}
	for _, p := range peers {
		for _, c := range n.host.Network().ConnsToPeer(p) {
			if isRelayed(c) && c.Stat().Opened.Before(openedBefore) {
				n.log.Debug("relayed connection dropped, to be upgraded", "peer", p.String())
				c.Close()
			}
		}
	}
	n.spawn(func() {
		sem := make(chan struct{}, greetConcurrency)
		var wg sync.WaitGroup
		for _, p := range peers {
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

// punchRetry is what the punch loop did for a contact reached only
// through a relay.
type punchRetry struct {
	at      time.Time // the last redial; zero before the first
	backoff time.Duration
}

// punchLoop gets a hole punch tried again for contacts that stay
// relayed (docs/node-decisions.md, 25). go-libp2p tries once, when a
// relayed connection arrives at the side that starts the punch, and
// never again: not when that side's DCUtR came up a moment after the
// connection, not when the other side's came up a moment after the
// punch began (the punch dies on "protocol not supported"), not when all
// three tries failed. Neither end can start a punch by itself (the
// service is go-libp2p's own), so the loop makes the relayed connection
// new, which starts one at the other end: when no punch was seen within
// punchGrace, and again with a backoff while the path stays relayed. It
// waits while envelopes of ours are on the wire; the peer's own, cut,
// are sent again by its outbox.
func (n *Node) punchLoop() {
	// Nothing to punch with until DCUtR is up here (on loopback, never):
	// no ticks for a thousand idle nodes on one machine.
	select {
	case <-n.nat.up:
	case <-n.ctx.Done():
		return
	}
	tick := time.NewTicker(punchCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-n.ctx.Done():
			return
		}
		now := time.Now()
		n.redialRelayed(n.punchDue(now), now)
	}
}

// punchDue reports the contacts whose relayed connection is due to be
// made new, and forgets the peers that are no longer relayed.
func (n *Node) punchDue(now time.Time) []peer.ID {
	s := &n.nat
	s.mu.Lock()
	up := s.upAt
	s.mu.Unlock()
	if up.IsZero() {
		return nil // nothing to punch with (and on loopback, ever)
	}
	type relayedPeer struct {
		opened time.Time // the newest relayed connection
		busy   bool      // our envelopes are on the wire to it
	}
	relayed := map[peer.ID]*relayedPeer{}
	for _, c := range n.host.Network().Conns() {
		if !isRelayed(c) {
			continue
		}
		p := c.RemotePeer()
		r := relayed[p]
		if r == nil {
			r = &relayedPeer{}
			relayed[p] = r
		}
		if o := c.Stat().Opened; o.After(r.opened) {
			r.opened = o
		}
	}
	for p, r := range relayed {
		if n.Path(p) != PathRelayed {
			delete(relayed, p)
		} else {
			r.busy = n.sending(p)
		}
	}

	s.mu.Lock()
	for p := range s.retry {
		if relayed[p] == nil {
			delete(s.retry, p) // direct now: a later relayed path starts afresh
		}
	}
	s.mu.Unlock()
	if len(relayed) == 0 {
		return nil
	}

	set := make(map[peer.ID]bool, len(relayed))
	for p := range relayed {
		set[p] = true
	}
	contacts := n.contactsAmong(set)

	var due []peer.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, r := range relayed {
		if !contacts[p] || r.busy {
			continue
		}
		w := s.retry[p]
		if w == nil {
			w = &punchRetry{}
			s.retry[p] = w
		}
		// ref is when a punch could last have begun or failed.
		ref, wait := later(r.opened, up), punchGrace
		if !w.at.IsZero() {
			ref, wait = later(ref, w.at), w.backoff
		}
		if t := s.tried[p]; t.After(ref) {
			// A punch was tried and failed: a NAT that maps each
			// destination apart fails every time, so not soon again.
			ref, wait = t, max(w.backoff, punchRetryFirst)
		}
		if now.Sub(ref) < wait {
			continue
		}
		w.at = now
		w.backoff = min(max(2*w.backoff, punchRetryFirst), punchRetryMax)
		due = append(due, p)
	}
	return due
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
