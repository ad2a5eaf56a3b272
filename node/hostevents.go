package node

import (
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"

	"github.com/p2pmsg/p2pmsg/db"
)

// The host-event loop: two goroutines of ours that learn what the host
// does and act on it.
//
// Its sources:
//   - go-libp2p's event bus, through one subscription (buildHost makes
//     it, before the DHT dials anyone): EvtPeerConnectednessChanged (a
//     peer went from not connected to limited, i.e. relayed only, to
//     connected, or back; a relayed connection upgraded to a direct one
//     changes limited to connected), EvtLocalReachabilityChanged
//     (AutoNAT's verdict, for Status) and EvtLocalProtocolsUpdated
//     (DCUtR's protocol appears once the node knows a public address of
//     its own), EvtPeerIdentificationCompleted (a peer that offers
//     circuit relay v2 wakes AutoRelay's candidate feed: relays.go) and
//     EvtLocalAddressesUpdated (our relay reservations: reach.go);
//   - hostQueue, fed by the hole-punch tracer (a punch succeeded), mDNS
//     (a peer on the LAN) and the conversations (a peer became a contact:
//     its connection may predate it). They never wait: when the queue is
//     full their event is dropped and counted, and the count is logged.
//     What a dropped event would have done comes later anyway: the peer's
//     next connectedness change re-evaluates its path (the punch itself is
//     recorded at once, so Path and Status report it), and the retry loop
//     delivers what is due within retryEvery.
//
// The loop (hostEventLoop) only reads those and gathers what they call
// for into hostWork; it never waits for the store or the network, because
// go-libp2p's emitter blocks (holding the swarm's lock, on the dial and
// accept path) when the subscription's buffer is full. The actor
// (hostActor) takes what was gathered, all at once, and acts on it:
//   - a contact that connects (relayed or directly) gets its worker
//     kicked, so that what waits for it goes at once;
//   - a contact whose path changed (connected, disconnected, relayed to
//     direct, punched) gets a connectivity event: the actor is the only
//     one that records paths, so their events come in order;
//   - a peer found on the LAN: its addresses go to the peerstore (at
//     once, on mDNS's goroutine) and its worker is kicked;
//   - when DCUtR comes up, the relayed-only connections certainly older
//     than it are dropped, to be dialled again and upgraded (nat.go);
//   - when our addresses change, a relay reservation gained wakes what
//     waits on the network and greets the contacts (reach.go).
//
// It does so with at most one store read (which peers are contacts; none
// while no contact changed) and one write (their connectivity events)
// per round, never on libp2p's goroutines (a
// re-seal of the store holds its lock a while), and a burst of
// connections costs one commit, not one each.

type hostEventKind int

const (
	hostPunched hostEventKind = iota // a hole punch with the peer succeeded
	hostFound                        // mDNS found the peer on the LAN
	hostContact                      // the peer became a contact
)

type hostEvent struct {
	kind hostEventKind
	peer peer.ID
}

// queueHostEvent hands e to the loop without waiting.
func (n *Node) queueHostEvent(e hostEvent) {
	select {
	case n.hostQueue <- e:
	default:
		n.hostDropped.Add(1)
	}
}

// holePunchTracer hears go-libp2p's hole-punch service
// (holepunch.WithTracer).
type holePunchTracer struct{ n *Node }

// Trace implements holepunch.EventTracer.
func (t holePunchTracer) Trace(evt *holepunch.Event) {
	t.n.nat.triedWith(evt.Remote, time.Now())
	if evt.Type != holepunch.EndHolePunchEvtT {
		return
	}
	if end, ok := evt.Evt.(*holepunch.EndHolePunchEvt); ok && end.Success {
		t.n.nat.punchedWith(evt.Remote, time.Now())
		t.n.queueHostEvent(hostEvent{hostPunched, evt.Remote})
	}
}

type mdnsNotifee struct{ n *Node }

// HandlePeerFound implements mdns.Notifee.
func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.id {
		return
	}
	m.n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, mdnsAddrTTL)
	m.n.queueHostEvent(hostEvent{hostFound, ai.ID})
}

// hostBatch is what a batch of host events asks for.
type hostBatch struct {
	n          int
	kick       map[peer.ID]bool // kick when a contact: it connected
	kickAny    map[peer.ID]bool // kick: found on the LAN
	path       map[peer.ID]bool // report the path of, when a contact
	punchReady bool             // DCUtR came up
	localAddrs bool             // our addresses changed (a relay reservation?)
	// punchBefore: connections opened before it are certainly older than
	// DCUtR (the zero time: none is known to be).
	punchBefore time.Time
}

func newHostBatch() hostBatch {
	return hostBatch{kick: map[peer.ID]bool{}, kickAny: map[peer.ID]bool{}, path: map[peer.ID]bool{}}
}

// merge adds what b asks for to w.
func (w *hostBatch) merge(b *hostBatch) {
	w.n += b.n
	for _, m := range [][2]map[peer.ID]bool{{w.kick, b.kick}, {w.kickAny, b.kickAny}, {w.path, b.path}} {
		for p := range m[1] {
			m[0][p] = true
		}
	}
	if b.punchReady {
		w.punchReady, w.punchBefore = true, b.punchBefore
	}
	w.localAddrs = w.localAddrs || b.localAddrs
}

// hostWork is what the loop gathered and the actor has not taken yet: a
// set per peer, so it holds at most one entry per peer however many
// events come.
type hostWork struct {
	sync.Mutex
	pending hostBatch
	wake    chan struct{} // cap 1
}

// hostActor acts on what the loop gathers, until the node closes.
func (n *Node) hostActor() {
	for {
		select {
		case <-n.hostWork.wake:
		case <-n.ctx.Done():
			return
		}
		n.hostWork.Lock()
		b := n.hostWork.pending
		n.hostWork.pending = newHostBatch()
		n.hostWork.Unlock()
		n.actOnHostEvents(&b)
	}
}

func (n *Node) hostEventLoop(sub event.Subscription) {
	defer sub.Close()
	// lastEmpty is the latest time at which both queues were seen empty:
	// every event received since was emitted after it. Zero until the
	// first time: the subscription replays, from before it existed, the
	// last event of each stateful kind (the local protocols are one).
	var lastEmpty time.Time
	for {
		b := newHostBatch()
		select {
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			n.noteBusEvent(&b, e, lastEmpty)
		case e := <-n.hostQueue:
			b.note(e)
		case <-n.ctx.Done():
			return
		}
	drain:
		for b.n < maxHostBatch {
			t := time.Now() // before the look: an event missed by it came after t
			select {
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				n.noteBusEvent(&b, e, lastEmpty)
			case e := <-n.hostQueue:
				b.note(e)
			default:
				lastEmpty = t
				break drain
			}
		}
		n.hostWork.Lock()
		if n.hostWork.pending.kick == nil {
			n.hostWork.pending = newHostBatch()
		}
		n.hostWork.pending.merge(&b)
		n.hostWork.Unlock()
		select {
		case n.hostWork.wake <- struct{}{}:
		default: // the actor is woken already
		}
	}
}

func (b *hostBatch) note(e hostEvent) {
	b.n++
	switch e.kind {
	case hostPunched:
		b.path[e.peer] = true
	case hostFound:
		b.kickAny[e.peer] = true
	case hostContact:
		b.path[e.peer] = true
	}
}

func (n *Node) noteBusEvent(b *hostBatch, e any, lastEmpty time.Time) {
	b.n++
	switch e := e.(type) {
	case event.EvtPeerConnectednessChanged:
		b.path[e.Peer] = true
		if e.Connectedness != network.Connected {
			n.peerAway(e.Peer)
		}
		if e.Connectedness != network.NotConnected {
			b.kick[e.Peer] = true
		} else if n.host.Network().Connectedness(e.Peer) == network.NotConnected {
			// Not back already: a punch that succeeded since stays known.
			n.nat.forget(e.Peer)
		}
	case event.EvtLocalReachabilityChanged:
		n.nat.setReachability(e.Reachability)
		n.log.Info("reachability", "now", e.Reachability.String())
	case event.EvtPeerIdentificationCompleted:
		protos := make([]string, len(e.Protocols))
		for i, p := range e.Protocols {
			protos[i] = string(p)
		}
		n.relayOffered(protos)
	case event.EvtLocalAddressesUpdated:
		b.localAddrs = true
	case event.EvtLocalProtocolsUpdated:
		if slices.Contains(e.Added, holepunch.Protocol) {
			// go-libp2p adds DCUtR's handler, emits this event, and only
			// then starts watching for relayed connections: one opened
			// before the event was emitted, which is after lastEmpty, was
			// never seen by it. (The poll this replaces knew the time only
			// to its interval.)
			b.punchReady, b.punchBefore = true, lastEmpty
			n.nat.punchUp(time.Now())
		}
	}
}

func (n *Node) actOnHostEvents(b *hostBatch) {
	if dropped := n.hostDropped.Swap(0); dropped > 0 {
		n.log.Warn("host events dropped: the loop was behind", "count", dropped)
	}
	if b.punchReady && !b.punchBefore.IsZero() {
		n.dropRelayedOpenedBefore(b.punchBefore)
	}
	if b.localAddrs {
		n.reservationsChanged(n.host.Addrs())
	}
	for p := range b.kickAny {
		n.kick(p)
	}
	if len(b.kick) == 0 && len(b.path) == 0 {
		return
	}
	contacts := n.contactsAmong(b.kick, b.path)
	for p := range b.kick {
		if contacts[p] {
			n.kick(p)
		}
	}
	var changes []pathChange
	for p := range b.path {
		if contacts[p] {
			if c, ok := n.updatePath(p); ok {
				changes = append(changes, c)
			}
		}
	}
	n.connectivity(changes...)
}

// contactsAmong tells which of the peers are accepted contacts, from the
// store's copy of them in memory (read again only after a contact
// changed): a stranger's request gets no path nor connectivity events (they
// would cost memory and rows per peer ID), and we queue nothing for it.
func (n *Node) contactsAmong(sets ...map[peer.ID]bool) map[peer.ID]bool {
	accepted, err := n.store.AcceptedContacts()
	if err != nil {
		return nil // the store is closing: no one is a contact
	}
	out := map[peer.ID]bool{}
	for _, set := range sets {
		for p := range set {
			out[p] = accepted[p.String()]
		}
	}
	return out
}

type pathChange struct {
	peer peer.ID
	path Path
}

// updatePath records a contact's path, and reports whether it changed:
// it came online or went offline, or moved between relayed and direct.
func (n *Node) updatePath(p peer.ID) (pathChange, bool) {
	path := n.Path(p)
	n.paths.Lock()
	old, known := n.paths.m[p]
	n.paths.m[p] = path
	n.paths.Unlock()
	if known && old == path || !known && path == PathOffline {
		return pathChange{}, false
	}
	return pathChange{p, path}, true
}

// connectivity raises connectivity events, in one transaction.
func (n *Node) connectivity(changes ...pathChange) {
	if len(changes) == 0 {
		return
	}
	now := time.Now()
	err := n.store.Update(func(tx *db.Tx) error {
		for _, c := range changes {
			if err := appendEvent(tx, EventConnectivity, payload{Peer: c.peer.String(), Path: string(c.path)}, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		n.notifyEvents()
	}
}
