package node

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Reaching a peer (docs/design.md §8; docs/node-decisions.md, 14): a live
// connection, relayed ones included, else the addresses the peerstore
// knows, else a DHT lookup; and streams opened on that connection without
// dialling again.

// connect makes sure there is a connection to p: already connected, else
// the addresses we know together with p's addresses through the relays
// we know (relays.go), else the DHT.
func (n *Node) connect(ctx context.Context, p peer.ID) error {
	h := n.host
	// A relayed (limited) connection carries envelopes too.
	if c := h.Network().Connectedness(p); c == network.Connected || c == network.Limited {
		return nil
	}
	// A relayed connection will do: without this, a dial that reached
	// the peer through its relay would go on trying its direct addresses
	// (behind a NAT: until they time out).
	ctx = network.WithAllowLimitedConn(ctx, "p2pmsg envelopes")
	// Dialled with the others: go-libp2p tries direct addresses first and
	// relayed ones a moment later, so a peer behind NAT that holds a
	// reservation on a relay we know is reached at once, without waiting
	// for its direct addresses to time out, or for the DHT.
	circuits := n.circuitsTo(p)
	var errs []error
	if len(h.Peerstore().Addrs(p))+len(circuits) > 0 {
		cctx, cancel := context.WithTimeout(ctx, dialTimeout)
		err := h.Connect(cctx, peer.AddrInfo{ID: p, Addrs: circuits})
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	lctx, cancel := context.WithTimeout(ctx, n.cfg.lookup())
	defer cancel()
	ai, err := n.dht.FindPeer(lctx, p)
	if err != nil {
		return fmt.Errorf("%w: %s is not connected and the DHT does not know its addresses: %v", ErrPeerNotFound, p, errors.Join(append(errs, err)...))
	}
	if err := h.Connect(lctx, ai); err != nil {
		return fmt.Errorf("%w: %s is unreachable at its addresses: %v", ErrPeerNotFound, p, err)
	}
	return nil
}

// openStream connects to p (connect), then opens a stream of proto on
// that connection: the one way the node opens its streams (envelopes,
// bundles). Both may cross a relayed (limited) connection, since they are
// small: why says so to go-libp2p. No dial: connect made sure of a
// connection, and NewStream would otherwise try the peer's direct
// addresses first even over a live relayed one, and wait for them to time
// out behind a NAT.
func (n *Node) openStream(ctx context.Context, p peer.ID, proto protocol.ID, why string) (network.Stream, error) {
	if err := n.connect(ctx, p); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(network.WithNoDial(network.WithAllowLimitedConn(ctx, why), "connected above"), streamOpenTimeout)
	defer cancel()
	s, err := n.host.NewStream(sctx, p, proto)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return s, nil
}

// Connect dials a peer at known addresses (a bootstrap peer, a friend's
// address from a QR code).
func (n *Node) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := n.running(); err != nil {
		return err
	}
	return n.host.Connect(ctx, ai)
}

// greetContacts connects to the accepted contacts at start: a node that
// was offline tells its contacts it is back, and they deliver what they
// queued for it at once instead of at their next backoff step
// (docs/node-decisions.md, 5).
func (n *Node) greetContacts() {
	contacts, err := n.Contacts()
	if err != nil {
		n.log.Warn("greet contacts", "err", err)
		return
	}
	sem := make(chan struct{}, greetConcurrency)
	var wg sync.WaitGroup
	greeted := 0
greet:
	for i := len(contacts) - 1; i >= 0 && greeted < maxGreet; i-- {
		c := contacts[i]
		p := c.PeerID
		if c.Blocked || c.State != ContactAccepted {
			continue
		}
		greeted++
		select {
		case sem <- struct{}{}:
		case <-n.ctx.Done():
			break greet // and wait for the dials under way: Close waits for us
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A greeting follows a change (a start, a reservation taken):
			// go-libp2p's backoff from dials before it is stale.
			clearDialBackoff(n.host, p)
			if err := n.connect(n.ctx, p); err != nil {
				n.log.Debug("contact not reachable", "peer", p.ShortString(), "err", err)
			}
		}()
	}
	wg.Wait()
}
