package node

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	relayproto "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Relays found by themselves (docs/design.md §8; docs/node-decisions.md,
// 22): any connected peer that offers circuit relay v2 — a bootstrap
// node started with --relay, a peer met in the DHT — is a relay
// candidate, the pinned ones (Config.Relays) first. A node whose
// addresses are all private says so to go-libp2p at once, so that
// AutoRelay takes a reservation within a round trip instead of waiting
// for AutoNAT (15 s and more). The bootstrap peers and pinned relays are
// dialled again while they are away, so that a relay that returns is
// used again within seconds; and a sender that cannot dial a peer tries
// it through the relays it knows.

// relays is the node's view of the relays around it. Its lock is a leaf.
type relays struct {
	host atomic.Pointer[host.Host] // set once libp2p.New returned
	// wake tells the candidate feed that a peer offering relay was
	// identified (cap 1).
	wake chan struct{}
	// away wakes the redial goroutine of a bootstrap peer or pinned relay
	// (cap 1 each) when the host-event loop sees it go away; made in New,
	// read-only after.
	away map[peer.ID]chan struct{}

	// claim emits our private reachability (claimPrivate); closed with
	// the node.
	claim event.Emitter
	// finderUp is closed when AutoRelay first asks us for candidates:
	// it has taken our claim, and started its relay finder.
	finderUp   chan struct{}
	finderOnce sync.Once

	mu       sync.Mutex
	reserved []peer.ID // the relays of our circuit addresses, as last seen
	greeted  time.Time // contacts last greeted for a new reservation
	greeting bool      // a greeting round runs
	lost     bool      // a reservation was lost since the last round
}

// autoRelayOptions make AutoRelay take the first candidate at once and
// retry a relay soon: go-libp2p's defaults wait for 4 candidates or 3
// minutes, and back off an hour from a relay that refused once.
func (n *Node) autoRelayOptions() libp2p.Option {
	return libp2p.EnableAutoRelay(
		autorelay.WithPeerSource(n.relayCandidates),
		autorelay.WithMinCandidates(1),
		autorelay.WithMaxCandidates(relayCandidatesMax),
		autorelay.WithNumRelays(n.cfg.relays()),
		autorelay.WithBootDelay(0),
		autorelay.WithBackoff(relayBackoff),
		autorelay.WithMinInterval(relaySourceInterval),
	)
}

// relayCandidates is AutoRelay's peer source: the pinned relays, then the
// connected peers that offer relaying (relayPeers), again each time one
// is identified and every relayBackoff, until num were sent. AutoRelay
// calls it again only once the channel is closed, so it stays open: a
// relay that comes back is offered again as soon as it is identified,
// and one that refused a reservation once its backoff is over.
// (AutoRelay picks among its candidates at random: pinned relays come
// first here, but are not preferred there.)
func (n *Node) relayCandidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	n.relays.finderOnce.Do(func() { close(n.relays.finderUp) })
	out := make(chan peer.AddrInfo)
	go func() {
		defer close(out)
		sent := 0
		send := func(ai peer.AddrInfo) bool {
			select {
			case out <- ai:
				sent++
				return sent < num
			case <-ctx.Done():
			case <-n.ctx.Done():
			}
			return false
		}
		again := time.NewTicker(relayBackoff)
		defer again.Stop()
		for {
			for _, ai := range n.cfg.Relays {
				if !send(ai) {
					return
				}
			}
			for _, p := range n.relayPeers() {
				if slices.ContainsFunc(n.cfg.Relays, func(ai peer.AddrInfo) bool { return ai.ID == p }) {
					continue // sent above
				}
				if !send(peer.AddrInfo{ID: p}) {
					return
				}
			}
			select {
			case <-n.relays.wake:
			case <-again.C:
			case <-ctx.Done():
				return
			case <-n.ctx.Done():
				return
			}
		}
	}()
	return out
}

// relayPeers are the peers offering circuit relay v2 (as identify told
// us) that we chose to talk to: bootstrap peers, and peers we dialled
// ourselves, directly (a relay reached through a relay is no relay). A
// stranger that connects to us does not get to be our relay: a relay
// sees who reaches us through it, and can cut them off.
func (n *Node) relayPeers() []peer.ID {
	hp := n.relays.host.Load()
	if hp == nil {
		return nil
	}
	h := *hp
	var out []peer.ID
	for _, p := range h.Network().Peers() {
		if h.Network().Connectedness(p) != network.Connected {
			continue
		}
		chosen := slices.ContainsFunc(n.cfg.BootstrapPeers, func(ai peer.AddrInfo) bool { return ai.ID == p }) ||
			slices.ContainsFunc(h.Network().ConnsToPeer(p), func(c network.Conn) bool {
				return c.Stat().Direction == network.DirOutbound && !isCircuit(c.RemoteMultiaddr())
			})
		if !chosen {
			continue
		}
		if ok, _ := h.Peerstore().SupportsProtocols(p, relayproto.ProtoIDv2Hop); len(ok) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// relayOffered is called by the host-event loop when a peer is
// identified: one offering relaying wakes the candidate feed.
func (n *Node) relayOffered(protos []string) {
	if slices.Contains(protos, relayproto.ProtoIDv2Hop) {
		select {
		case n.relays.wake <- struct{}{}:
		default:
		}
	}
}

// circuitsTo are addresses of p through the relays we trust with its
// peer ID (a circuit's CONNECT names it): those of our reservations
// first (p may hold a reservation where we hold one), the pinned ones,
// and the bootstrap peers that offer relaying; at most maxCircuitTries.
func (n *Node) circuitsTo(p peer.ID) []ma.Multiaddr {
	var via []peer.ID
	add := func(r peer.ID) {
		if r != p && r != n.id && !slices.Contains(via, r) {
			via = append(via, r)
		}
	}
	for _, a := range n.host.Addrs() {
		if r, ok := relayOf(a); ok {
			add(r)
		}
	}
	for _, ai := range n.cfg.Relays {
		add(ai.ID)
	}
	for _, ai := range n.cfg.BootstrapPeers {
		if ok, _ := n.host.Peerstore().SupportsProtocols(ai.ID, relayproto.ProtoIDv2Hop); len(ok) > 0 {
			add(ai.ID)
		}
	}
	var out []ma.Multiaddr
	for _, r := range via[:min(len(via), maxCircuitTries)] {
		if a, err := ma.NewMultiaddr("/p2p/" + r.String() + "/p2p-circuit"); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// clearDialBackoff forgets go-libp2p's dial backoff for p, for a caller
// that paces its own dials.
func clearDialBackoff(h host.Host, p peer.ID) {
	if s, ok := h.Network().(*swarm.Swarm); ok {
		s.Backoff().Clear(p)
	}
}

// relayOf returns the relay of a circuit address of ours.
func relayOf(a ma.Multiaddr) (peer.ID, bool) {
	if !isCircuit(a) {
		return "", false
	}
	relayed, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_CIRCUIT })
	id, err := peer.IDFromP2PAddr(relayed)
	return id, err == nil
}

// claimPrivate tells go-libp2p that the node is not reachable from the
// internet when none of its addresses is public: AutoRelay then takes a
// reservation at once. AutoNAT still runs and overrides it with its own
// verdict when it has one (a port mapping can make the node public).
// The emitter stays open until the host closes.
func (n *Node) claimPrivate(h host.Host) {
	if n.cfg.Reachability == ReachabilityPublic || n.cfg.Reachability == ReachabilityPrivate || n.cfg.RelayService {
		return // the user said; go-libp2p emitted it already
	}
	if slices.ContainsFunc(h.Addrs(), manet.IsPublicAddr) {
		return // maybe reachable: AutoNAT decides
	}
	em, err := h.EventBus().Emitter(new(event.EvtLocalReachabilityChanged), eventbus.Stateful)
	if err != nil {
		n.log.Warn("claim private reachability", "err", err)
		return
	}
	if err := em.Emit(event.EvtLocalReachabilityChanged{Reachability: network.ReachabilityPrivate}); err != nil {
		n.log.Warn("claim private reachability", "err", err)
	}
	n.log.Info("no public address: reachable from the internet only through a relay; asking relays for a reservation")
	// Closing the emitter would not undo the event; the host's bus goes
	// with the host.
	n.relays.claim = em
}

// redialTargets are the peers redialLoop keeps connected: pinned relays,
// then bootstrap peers, each once, never ourselves.
func redialTargets(cfg Config, self peer.ID) []peer.AddrInfo {
	targets := append(slices.Clone(cfg.Relays), cfg.BootstrapPeers...)
	seen := map[peer.ID]bool{self: true}
	return slices.DeleteFunc(targets, func(ai peer.AddrInfo) bool {
		dup := seen[ai.ID]
		seen[ai.ID] = true
		return dup
	})
}

// redialLoop keeps the bootstrap peers and pinned relays connected: when
// one is away it is dialled again about every relayRedialMin at first
// (so that a restarted relay is back in use within a second or two), less
// often once it has been away a long time. Each reconnection wakes what
// waits on the network (reconnected).
func (n *Node) redialLoop() {
	for _, ai := range redialTargets(n.cfg, n.id) {
		n.spawn(func() { n.keepConnected(ai, n.relays.away[ai.ID]) })
	}
}

// peerAway is called by the host-event loop when a peer is no longer
// directly connected: a redial goroutine waiting on it wakes. It never
// blocks.
func (n *Node) peerAway(p peer.ID) {
	if ch := n.relays.away[p]; ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// keepConnected dials ai again whenever it is away. Each attempt is cut
// short (redialTimeout): a dial to a peer that is down gets no answer
// (QUIC ignores the ICMP errors; an unreachable host drops the SYN), and
// a long one would notice the peer back only at its next retransmission,
// seconds later, since both retransmit with a doubling backoff.
func (n *Node) keepConnected(ai peer.AddrInfo, away <-chan struct{}) {
	h := n.host
	var since, next time.Time // zero while connected
	rejoined := false
	// The first look after a pace: the DHT dials the bootstrap peers as
	// it starts.
	select {
	case <-time.After(relayRedialMin):
	case <-n.ctx.Done():
		return
	}
	for {
		now := time.Now()
		if h.Network().Connectedness(ai.ID) == network.Connected {
			since = time.Time{}
			// Connected: nothing to do until the host-event loop says
			// the peer went away (a timer a second on each of a
			// thousand idle nodes on one machine was felt), or, should
			// its word be lost, redialCheckEvery.
			select {
			case <-away:
			case <-time.After(redialCheckEvery):
			case <-n.ctx.Done():
				return
			}
			continue
		}
		if since.IsZero() {
			since, next = now, now
		}
		if now.Before(next) {
			// Away: looked at four times between attempts, since an
			// attempt that joined a dial someone else began earlier
			// (go-libp2p makes one dial per peer and address) ends with
			// it, and the fresh one after it should not wait long.
			select {
			case <-time.After(min(next.Sub(now), relayRedialMin/4)):
			case <-n.ctx.Done():
				return
			}
			continue
		}
		wait := relayRedialMin
		if now.Sub(since) > relayRedialFast {
			wait = relayRedialSlow
		}
		// ±25 %: the clients of a relay that restarts do not all come
		// back in the same instant.
		next = now.Add(wait*3/4 + rand.N(wait/2))
		// go-libp2p backs off from a peer whose dial failed (5 s and
		// growing): we pace these dials ourselves.
		clearDialBackoff(h, ai.ID)
		ctx, cancel := context.WithTimeout(n.ctx, redialTimeout(h.Peerstore().LatencyEWMA(ai.ID)))
		err := h.Connect(ctx, ai)
		ours := ctx.Err() != nil
		cancel()
		if err != nil {
			n.log.Debug("redial", "peer", ai.ID.String(), "away", now.Sub(since).Round(time.Millisecond), "err", err)
			// Failed before our deadline, and not at once (a refusal
			// would): we joined another caller's dial, begun before
			// ours and maybe long before the peer came back. A fresh
			// one goes next, once, a moment later: go-libp2p hands the
			// failed dial's error to whoever asks until all its callers
			// have returned.
			if !ours && !rejoined && time.Since(now) > relayRedialMin/4 {
				next, rejoined = time.Now().Add(relayRedialMin/4), true
			} else {
				rejoined = false
			}
			continue
		}
		since = time.Time{}
		n.log.Info("reconnected", "peer", ai.ID.String())
		n.networkChanged()
	}
}

// redialTimeout bounds one attempt to reconnect to a peer whose round
// trip was last rtt (0 when never measured): a handshake takes a few
// round trips, and one that has not ended well after those is waiting
// on a peer that is not there.
func redialTimeout(rtt time.Duration) time.Duration {
	return min(relayRedialAttempt+4*rtt, dialTimeout)
}
