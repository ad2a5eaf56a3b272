package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	yamuxcore "github.com/libp2p/go-yamux/v5"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/mailbox"
)

// The host's configuration (docs/design.md §8): transports, security,
// muxer, resource and connection managers, relays, hole punching, NAT
// port mapping, and the DHT on top.

// buildHost makes the libp2p host and the DHT over records, and undoes
// its steps when one fails (records stay the caller's).
func (n *Node) buildHost(records *dht.Store) (host.Host, *dht.Dual, event.Subscription, error) {
	cm, err := connmgr.NewConnManager(n.cfg.connLow(), n.cfg.connHigh(), connmgr.WithGracePeriod(connGrace))
	if err != nil {
		return nil, nil, nil, err
	}
	limits := rcmgr.DefaultLimits
	limits.AddProtocolPeerLimit(MsgProtocol, rcmgr.BaseLimit{StreamsInbound: msgStreamsPerPeer,
		StreamsOutbound: msgStreamsPerPeer, Streams: 2 * msgStreamsPerPeer, Memory: 64 << 20}, rcmgr.BaseLimitIncrease{})
	// The mailbox's streams (mailboxsvc.go): a service scope for the
	// memory its handlers hold, and streams counted per protocol, so that
	// senders (anyone, from throwaway identities) cannot take the
	// streams of the owners' subscriptions; a few per peer.
	limits.AddServiceLimit(mailbox.ServiceName, rcmgr.BaseLimit{StreamsInbound: mailboxOwnerStreams + mailboxDepositStreams,
		StreamsOutbound: mailboxOwnerStreams + mailboxDepositStreams, Streams: mailboxOwnerStreams + mailboxDepositStreams,
		Memory: mailboxMemory}, rcmgr.BaseLimitIncrease{})
	for proto, n := range map[protocol.ID]int{mailbox.OwnerProtocol: mailboxOwnerStreams, mailbox.DepositProtocol: mailboxDepositStreams} {
		limits.AddProtocolLimit(proto, rcmgr.BaseLimit{StreamsInbound: n, StreamsOutbound: n, Streams: n, Memory: mailboxMemory}, rcmgr.BaseLimitIncrease{})
		limits.AddProtocolPeerLimit(proto, rcmgr.BaseLimit{StreamsInbound: mailboxStreamsPerPeer, StreamsOutbound: mailboxStreamsPerPeer,
			Streams: mailboxStreamsPerPeer, Memory: mailboxMemory / 8}, rcmgr.BaseLimitIncrease{})
	}
	limits.AddProtocolPeerLimit(BundleProtocol, rcmgr.BaseLimit{StreamsInbound: bundleStreamsPerPeer,
		StreamsOutbound: bundleStreamsPerPeer, Streams: 2 * bundleStreamsPerPeer, Memory: 1 << 20}, rcmgr.BaseLimitIncrease{})
	// Its Prometheus reporter (on unless disabled, whatever
	// libp2p.DisableMetrics says) counted every stream and connection
	// event for metrics nobody reads: a few per cent of an idle node's
	// CPU in the scale bench.
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithMetricsDisabled())
	if err != nil {
		cm.Close()
		return nil, nil, nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(n.priv),
		libp2p.ListenAddrStrings(n.cfg.listenAddrs()...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, muxer()),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableMetrics(),
		libp2p.EnableRelay(), // reach peers through relays
		libp2p.EnableHolePunching(holepunch.WithTracer(holePunchTracer{n})),
	}
	if !n.cfg.NoPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	switch n.cfg.Reachability {
	case ReachabilityPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case ReachabilityPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	opts = append(opts, n.autoRelayOptions())
	opts = append(opts, n.cfg.hostOptions...)
	if n.cfg.RelayService {
		// go-libp2p runs the relay service only while the node believes
		// itself publicly reachable; the user says it is.
		opts = append(opts, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic(), libp2p.EnableNATService())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, nil, nil, fmt.Errorf("node: start host: %w", err)
	}
	// Subscribed before the DHT dials its bootstrap peers: the host-event
	// loop sees every change of a peer's connectedness from here on (an
	// inbound connection can come only in the instant since listening).
	sub, err := h.EventBus().Subscribe([]any{new(event.EvtPeerConnectednessChanged),
		new(event.EvtLocalReachabilityChanged), new(event.EvtLocalProtocolsUpdated),
		new(event.EvtPeerIdentificationCompleted), new(event.EvtLocalAddressesUpdated)},
		eventbus.BufSize(hostEventBuffer), eventbus.Name("p2pmsg host events"))
	if err != nil {
		h.Close()
		return nil, nil, nil, fmt.Errorf("node: subscribe to host events: %w", err)
	}
	mode := n.cfg.DHTMode.dht()
	if n.cfg.RelayService || n.cfg.Mailbox {
		mode = dht.ModeServer // a public relay or mailbox serves the DHT too
	}
	d, err := dht.NewDual(h, dht.Config{Mode: mode, BootstrapPeers: n.cfg.BootstrapPeers, Store: records})
	if err != nil {
		sub.Close()
		h.Close()
		return nil, nil, nil, fmt.Errorf("node: start DHT: %w", err)
	}
	return h, d, sub, nil
}

// muxer is go-libp2p's yamux, measuring each connection's round trip
// at its start and then every rttEvery, not every 30 s: both
// ends measured on every connection, so on an idle connection two of
// every three pings were these, and they cost an idle node more than
// anything else on it (docs/node-decisions.md, 26). The keepalive stays
// yamux's: a ping every 30 s on a connection with nothing received.
func muxer() *yamux.Transport {
	cfg := *(*yamuxcore.Config)(yamux.DefaultTransport)
	cfg.MeasureRTTInterval = rttEvery
	return (*yamux.Transport)(&cfg)
}

// Host is the libp2p host: nil before Start; read it after Start returns.
func (n *Node) Host() host.Host { return n.currentHost() }

// currentHost is the host, or nil before Start made it; safe while Start
// runs (the daemon serves its API then).
func (n *Node) currentHost() host.Host {
	n.lifecycle.Lock()
	defer n.lifecycle.Unlock()
	return n.host
}

// Addrs are the node's listen addresses with /p2p/<id>, for others to
// bootstrap from or connect to.
func (n *Node) Addrs() []ma.Multiaddr {
	h := n.currentHost()
	if h == nil {
		return nil
	}
	p2p, _ := ma.NewComponent("p2p", n.id.String())
	var out []ma.Multiaddr
	for _, a := range h.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()))
	}
	return out
}

// AddrInfo is the node's ID and listen addresses.
func (n *Node) AddrInfo() peer.AddrInfo {
	h := n.currentHost()
	if h == nil {
		return peer.AddrInfo{ID: n.id}
	}
	return peer.AddrInfo{ID: n.id, Addrs: h.Addrs()}
}
