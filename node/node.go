package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Errors that callers branch on.
var (
	ErrBadPeer         = errors.New("node: not a p2pmsg peer")
	ErrPeerNotFound    = errors.New("node: peer not found")
	ErrIdentityChanged = errors.New("node: the peer's identity key changed; compare safety numbers, then trust the new key")
	ErrBlocked         = errors.New("node: the peer is blocked")
	ErrTooLong         = errors.New("node: message too long")
	ErrNotStarted      = errors.New("node: not started")
	ErrClosed          = errors.New("node: closed")
)

// Node is one user's p2pmsg node: its store, its libp2p host, its DHT and
// the pipelines between them. Make one with New, start it with Start (or
// Run), and Close it.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *db.Store
	self  *e2e.Identity
	priv  crypto.PrivKey
	id    peer.ID

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Set by Start.
	host host.Host
	dht  *dht.DHT
	mdns io.Closer

	startMu   sync.Mutex // held by Start, and by Close while it tears down
	closeOnce sync.Once
	closeErr  error
	mu        sync.Mutex
	started   bool
	closed    bool
	convs     map[peer.ID]*conv
	workers   map[peer.ID]*worker
	lastIssue map[peer.ID]time.Time // one-time prekeys handed to each peer
	paths     map[peer.ID]Path      // contacts' paths, as last reported
	issued    tokenBucket           // one-time prekeys handed to anyone

	nat natState

	evMu sync.Mutex
	evCh chan struct{} // closed and replaced when events are committed

	publishing    sync.Mutex // held through a publication
	pubMu         sync.Mutex
	bundle        []byte // signed without one-time prekeys, served to all
	bundleExpires time.Time
	published     time.Time // last successful publication
	replicas      int
}

// New opens (or creates) the store and the identity in cfg.DataDir. It
// starts no networking.
func New(cfg Config) (*Node, error) {
	if cfg.DataDir == "" {
		d, err := DefaultDataDir()
		if err != nil {
			return nil, err
		}
		cfg.DataDir = d
	}
	store, err := db.Open(cfg.DataDir, db.Options{Passphrase: cfg.Passphrase})
	if err != nil {
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	cfg.Passphrase = nil // the store derived its key; keep no copy
	n, err := newNode(cfg, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	return n, nil
}

func newNode(cfg Config, store *db.Store) (*Node, error) {
	now := time.Now()
	self, err := loadIdentity(store, now)
	if err != nil {
		return nil, err
	}
	if err := store.Update(func(tx *db.Tx) error {
		_, err := maintainPrekeys(tx, now, cfg.rotate())
		return err
	}); err != nil {
		return nil, fmt.Errorf("node: prekeys: %w", err)
	}
	priv, id, err := libp2pKey(self)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: cfg, log: cfg.logger().With("self", id.String()), store: store, self: self, priv: priv, id: id,
		ctx: ctx, cancel: cancel, convs: map[peer.ID]*conv{}, workers: map[peer.ID]*worker{},
		lastIssue: map[peer.ID]time.Time{}, paths: map[peer.ID]Path{}, evCh: make(chan struct{}),
		nat: natState{punched: map[peer.ID]time.Time{}}}
	n.nat.onPunch = func(p peer.ID) {
		n.spawn(func() {
			if n.isContact(p) {
				n.pathChanged(p)
			}
		})
	}
	return n, nil
}

// ID is the node's peer ID: its user's address.
func (n *Node) ID() peer.ID { return n.id }

// Identity is the node's public identity.
func (n *Node) Identity() e2e.PublicIdentity { return n.self.Public() }

// Host is the libp2p host: nil before Start; read it after Start returns.
func (n *Node) Host() host.Host { return n.host }

// DHT is the node's DHT: nil before Start; read it after Start returns.
func (n *Node) DHT() *dht.DHT { return n.dht }

// Store is the node's store, for reads beyond what Node offers.
func (n *Node) Store() *db.Store { return n.store }

// Addrs are the node's listen addresses with /p2p/<id>, for others to
// bootstrap from or connect to.
func (n *Node) Addrs() []ma.Multiaddr {
	if n.host == nil {
		return nil
	}
	p2p, _ := ma.NewComponent("p2p", n.id.String())
	var out []ma.Multiaddr
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(p2p.Multiaddr()))
	}
	return out
}

// AddrInfo is the node's ID and listen addresses.
func (n *Node) AddrInfo() peer.AddrInfo {
	if n.host == nil {
		return peer.AddrInfo{ID: n.id}
	}
	return peer.AddrInfo{ID: n.id, Addrs: n.host.Addrs()}
}

// Start builds the host, joins the DHT through the bootstrap peers,
// serves the protocols and starts publishing the bundle and delivering
// the outbox. It returns once the node listens and has dialled its
// bootstrap peers (bounded by ctx). After a failed Start, Start may be
// called again; Close stops a Start under way.
func (n *Node) Start(ctx context.Context) error {
	n.startMu.Lock()
	defer n.startMu.Unlock()
	n.mu.Lock()
	closed, started := n.closed, n.started
	n.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case started:
		return errors.New("node: already started")
	}
	// Close cancels n.ctx before it waits for startMu: a bootstrap under
	// way ends at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()

	h, d, err := n.buildHost()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.host, n.dht = h, d
	n.mu.Unlock()
	n.spawn(n.followReachability)
	n.spawn(n.upgradeWhenPunchingReady)
	h.SetStreamHandler(MsgProtocol, n.handleMsg)
	h.SetStreamHandler(BundleProtocol, n.handleBundle)
	h.Network().Notify(&network.NotifyBundle{ConnectedF: n.connected, DisconnectedF: n.disconnected})
	if !n.cfg.NoMDNS {
		svc := mdns.NewMdnsService(h, "p2pmsg", mdnsNotifee{n})
		if err := svc.Start(); err != nil {
			n.log.Warn("mDNS off", "err", err)
		} else {
			n.mdns = svc
		}
	}
	if len(n.cfg.BootstrapPeers) > 0 {
		if err := d.Bootstrap(ctx); err != nil {
			n.log.Warn("DHT bootstrap", "err", err)
		}
	}
	n.mu.Lock()
	n.started = true
	n.mu.Unlock()
	n.spawn(n.publishLoop)
	n.spawn(n.retryLoop)
	n.spawn(n.greetContacts)
	n.log.Info("node started", "addrs", h.Addrs())
	return nil
}

// testHostOptions, set by a test around a Start, adds host options (a
// connection gater that forces a relayed path, say).
var testHostOptions []libp2p.Option

// buildHost makes the libp2p host and the DHT, and undoes its steps when
// one fails.
func (n *Node) buildHost() (host.Host, *dht.DHT, error) {
	cm, err := connmgr.NewConnManager(or(n.cfg.ConnLow, 64), or(n.cfg.ConnHigh, 256), connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, nil, err
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.DefaultLimits.AutoScale()))
	if err != nil {
		cm.Close()
		return nil, nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(n.priv),
		libp2p.ListenAddrStrings(n.cfg.listenAddrs()...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableMetrics(),
		libp2p.EnableRelay(), // reach peers through relays
		libp2p.EnableHolePunching(holepunch.WithTracer(&n.nat)),
	}
	if !n.cfg.NoPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	switch n.cfg.Reachability {
	case network.ReachabilityPublic:
		opts = append(opts, libp2p.ForceReachabilityPublic())
	case network.ReachabilityPrivate:
		opts = append(opts, libp2p.ForceReachabilityPrivate())
	}
	if len(n.cfg.Relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(n.cfg.Relays))
	}
	opts = append(opts, testHostOptions...)
	if n.cfg.RelayService {
		// go-libp2p runs the relay service only while the node believes
		// itself publicly reachable; the user says it is.
		opts = append(opts, libp2p.EnableRelayService(), libp2p.ForceReachabilityPublic(), libp2p.EnableNATService())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, nil, fmt.Errorf("node: start host: %w", err)
	}
	mode := n.cfg.DHTMode
	if n.cfg.RelayService {
		mode = dht.ModeServer // a public relay serves the DHT too
	}
	d, err := dht.New(h, dht.Config{Mode: mode, BootstrapPeers: n.cfg.BootstrapPeers})
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("node: start DHT: %w", err)
	}
	return h, d, nil
}

// Run starts the node, runs it until ctx ends, and closes it.
func (n *Node) Run(ctx context.Context) error {
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	<-ctx.Done()
	return n.Close()
}

// Close stops the node and closes its store; it waits for every
// goroutine the node started. It is idempotent; concurrent calls all
// return once the node is closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel()
		n.startMu.Lock() // a Start under way has seen the cancel
		defer n.startMu.Unlock()
		var errs []error
		if n.mdns != nil {
			errs = append(errs, n.mdns.Close())
		}
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		n.wg.Wait()
		errs = append(errs, n.store.Close())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// spawn runs f in a goroutine that Close waits for, unless the node is
// closing; it reports whether f runs.
func (n *Node) spawn(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

func (n *Node) running() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrClosed
	case !n.started:
		return ErrNotStarted
	}
	return nil
}

// greetContacts connects to the accepted contacts at start: a node that
// was offline tells its contacts it is back, and they deliver what they
// queued for it at once instead of at their next backoff step.
func (n *Node) greetContacts() {
	const (
		maxGreet    = 64
		concurrency = 4
	)
	contacts, err := n.Contacts()
	if err != nil {
		n.log.Warn("greet contacts", "err", err)
		return
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	greeted := 0
	for i := len(contacts) - 1; i >= 0 && greeted < maxGreet; i-- {
		c := contacts[i]
		p, err := peer.Decode(c.PeerID)
		if err != nil || c.Blocked || c.State != db.ContactAccepted {
			continue
		}
		greeted++
		select {
		case sem <- struct{}{}:
		case <-n.ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := n.connect(n.ctx, p); err != nil {
				n.log.Debug("contact not reachable", "peer", p.ShortString(), "err", err)
			}
		}()
	}
	wg.Wait()
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.id {
		return
	}
	m.n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
	m.n.kick(ai.ID)
}

// connected delivers what waits for a peer as soon as it connects, and
// tells subscribers when a contact comes online.
// The notifiee runs in the swarm's path: it reads nothing from the store
// there (a re-seal holds the store's lock), only in its own goroutine.
func (n *Node) connected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	n.spawn(func() {
		if !n.isContact(p) {
			return
		}
		n.kick(p)
		n.pathChanged(p)
	})
}

func (n *Node) disconnected(_ network.Network, c network.Conn) {
	p := c.RemotePeer()
	n.spawn(func() {
		if n.isContact(p) {
			n.pathChanged(p)
		}
	})
}

// pathChanged raises a connectivity event when a contact's path changed:
// it came online or went offline, or moved between relayed and direct.
func (n *Node) pathChanged(p peer.ID) {
	path := n.Path(p)
	n.mu.Lock()
	old, known := n.paths[p]
	n.paths[p] = path
	n.mu.Unlock()
	if known && old == path || !known && path == PathOffline {
		return
	}
	n.connectivity(p, path)
}

func (n *Node) isContact(p peer.ID) bool {
	err := n.store.View(func(r *db.ReadTx) error {
		_, err := r.Contact(p.String())
		return err
	})
	return err == nil
}

func (n *Node) connectivity(p peer.ID, path Path) {
	up := path != PathOffline
	err := n.store.Update(func(tx *db.Tx) error {
		return appendEvent(tx, EventConnectivity, payload{Peer: p.String(), Connected: &up, Path: string(path)}, time.Now())
	})
	if err == nil {
		n.notifyEvents()
	}
}
