package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"

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
	ErrNotFound        = errors.New("node: not found")
	ErrInvalid         = errors.New("node: invalid request")
	ErrNameTaken       = errors.New("node: another contact has that name")
	ErrInvalidConfig   = errors.New("node: invalid configuration")
	ErrNoIdentity      = errors.New("node: no identity in the data directory")
	ErrExists          = errors.New("node: the data directory holds an identity already")

	// The store's: another process holds the data directory, and the
	// passphrase that seals the keys is missing or wrong.
	ErrLocked             = db.ErrLocked
	ErrPassphraseRequired = db.ErrPassphraseRequired
	ErrWrongPassphrase    = db.ErrWrongPassphrase
	// ErrNotSealed: a passphrase was given for a store that has none.
	ErrNotSealed = db.ErrNotSealed
	// A backup's: damaged or no backup at all, and a passphrase that
	// does not open it.
	ErrBadBackup             = db.ErrBadBackup
	ErrWrongBackupPassphrase = db.ErrWrongBackupPassphrase
)

// Node is one user's p2pmsg node: its store, its libp2p host, its DHT and
// the pipelines between them. Make one with New, start it with Start (or
// Run), and Close it.
//
// Its state is grouped by concern, each group with its own lock. Two
// mutexes only serialise a whole operation, and are held across store
// transactions and network calls: lifecycle.startMu (Start, and Close's
// teardown) and publication.publishing (one publication at a time); each
// is taken first, and by nothing that any other lock's holder waits for.
// The other locks guard memory only: delivery's is held while kick starts
// a worker, which takes lifecycle's (through spawnIf); publication's may
// be taken under publication.publishing; all others are leaves, with
// nothing locked, and nothing waited for, while one is held. So a
// conversation's batch, the retry loop and the host-event loop may all
// kick at any time.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *db.Store
	self  *e2e.Identity
	priv  crypto.PrivKey
	id    peer.ID

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	// Set by Start before started (host, dht and records under
	// lifecycle's lock, mdns under startMu only: Close reads it holding
	// startMu); read without a lock by whoever learnt from running (or
	// from a goroutine that Start spawned) that the node is started.
	host    host.Host
	dht     *dht.Dual
	records *recordStore // the DHT's records (records.go), set with host
	mbox    *mailboxRole // the mailbox role (mailboxsvc.go), set with host when Config.Mailbox
	mdns    io.Closer

	// lifecycle: Start, Close and the goroutines Close waits for.
	lifecycle struct {
		startMu   sync.Mutex // held by Start, and by Close while it tears down
		closeOnce sync.Once
		closeErr  error

		sync.Mutex // guards started, closed, and wg.Add against Close's wg.Wait
		started    bool
		closed     bool
		wg         sync.WaitGroup
	}

	// convs: one conversation per peer that the node talked with since it
	// started (conversation.go).
	convs struct {
		sync.Mutex
		m map[peer.ID]*conv
	}

	// delivery: one outbox worker per peer with something to deliver
	// (outbox.go).
	delivery struct {
		sync.Mutex
		workers map[peer.ID]*worker
	}

	// owned: the mailboxes we collect from (mailboxes.go).
	owned owned
	// peerBundles: the bundles of peers we deposit for; depositors: the
	// goroutines that deposit (deposit.go).
	peerBundles  peerBundles
	depositors   depositors
	depositHosts depositHosts

	// issuing: who got one-time prekeys when, and the budget of all
	// (bundle.go).
	issuing struct {
		sync.Mutex
		last   map[peer.ID]time.Time // one-time prekeys handed to each peer
		bucket tokenBucket           // one-time prekeys handed to anyone
	}

	// strangers: what limits peers who are not accepted contacts
	// (requests.go).
	strangers struct {
		sync.Mutex
		handshakes          tokenBucket // new sessions started by strangers
		streams             int         // message streams strangers hold open
		perPeer             map[peer.ID]int
		trimming, trimAgain bool // trimLoop runs; run it once more
	}

	// releases: each peer's release generation (requests.go).
	releases struct {
		sync.Mutex
		m map[peer.ID]uint64
	}

	// clocks: peers' clocks as their messages show them (clock.go).
	clocks struct {
		sync.Mutex
		m map[peer.ID]clockSample
	}

	// paths: each contact's path, as last reported in a connectivity
	// event (hostevents.go).
	paths struct {
		sync.Mutex
		m map[peer.ID]Path
	}

	// publication: the bundle served to all and its publication to the
	// DHT (bundle.go, publish.go).
	publication struct {
		publishing sync.Mutex // held through a publication

		sync.Mutex
		bundle    []byte // signed without one-time prekeys, served to all
		expires   time.Time
		published time.Time // last successful publication
		replicas  int
		failure   error         // of the last attempt, nil once one succeeded
		lanOnly   bool          // the last publication found no internet DHT peer
		force     bool          // publish at the next wake, even if not due
		wake      chan struct{} // publish now (cap 1)
	}

	// events: wakes the Watchers when events are committed (events.go).
	events struct {
		sync.Mutex
		ch chan struct{} // closed and replaced at each commit with events
	}

	// nat: what go-libp2p told us of our reachability and of the hole
	// punches that succeeded (nat.go).
	nat natState

	// hostQueue: from the hole-punch tracer and mDNS, on libp2p's
	// goroutines, to the host-event loop (hostevents.go).
	hostQueue   chan hostEvent
	hostDropped atomic.Int64 // events dropped because the queue was full
	// relays: the relays around us (relays.go); netWake: to the wake
	// loop (reach.go), cap 1.
	relays  relays
	netWake chan struct{}
	// retryWake: to the retry loop (outbox.go, retryScheduled), cap 1.
	retryWake chan struct{}
	// expiryWake, purgeWake: to the expiry and purge loops (expiry.go),
	// cap 1.
	expiryWake, purgeWake chan struct{}

	// hostWork: from the host-event loop to the actor that does the store
	// reads and writes they call for (hostevents.go).
	hostWork hostWork
}

// New opens (or creates) the store and the identity in cfg.DataDir. It
// starts no networking.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		d, err := DefaultDataDir()
		if err != nil {
			return nil, err
		}
		cfg.DataDir = d
	}
	if cfg.NoCreate && !Exists(cfg.DataDir) {
		return nil, fmt.Errorf("%w: %s", ErrNoIdentity, cfg.DataDir)
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
		ctx: ctx, cancel: cancel, hostQueue: make(chan hostEvent, hostQueueSize),
		hostWork: hostWork{wake: make(chan struct{}, 1)}, netWake: make(chan struct{}, 1),
		retryWake: make(chan struct{}, 1), expiryWake: make(chan struct{}, 1), purgeWake: make(chan struct{}, 1)}
	n.relays.wake = make(chan struct{}, 1)
	n.relays.finderUp = make(chan struct{})
	n.relays.away = map[peer.ID]chan struct{}{}
	for _, ai := range redialTargets(cfg, id) {
		n.relays.away[ai.ID] = make(chan struct{}, 1)
	}
	n.publication.wake = make(chan struct{}, 1)
	n.convs.m = map[peer.ID]*conv{}
	n.delivery.workers = map[peer.ID]*worker{}
	n.issuing.last = map[peer.ID]time.Time{}
	n.paths.m = map[peer.ID]Path{}
	n.clocks.m = map[peer.ID]clockSample{}
	n.releases.m = map[peer.ID]uint64{}
	n.strangers.perPeer = map[peer.ID]int{}
	n.events.ch = make(chan struct{})
	n.nat.punched = map[peer.ID]time.Time{}
	n.nat.tried = map[peer.ID]time.Time{}
	n.nat.retry = map[peer.ID]*punchRetry{}
	n.nat.up = make(chan struct{})
	return n, nil
}

// SecretsSealed reports whether the keys are sealed with a passphrase.
func (n *Node) SecretsSealed() bool { return n.store.SecretsSealed() }

// Start builds the host, joins the DHT through the bootstrap peers,
// serves the protocols and starts publishing the bundle and delivering
// the outbox. It returns once the node listens and has dialled its
// bootstrap peers (bounded by ctx). After a failed Start, Start may be
// called again; Close stops a Start under way.
func (n *Node) Start(ctx context.Context) error {
	lc := &n.lifecycle
	lc.startMu.Lock()
	defer lc.startMu.Unlock()
	lc.Lock()
	closed, started := lc.closed, lc.started
	lc.Unlock()
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

	records, err := n.openRecords()
	if err != nil {
		return err
	}
	h, d, sub, err := n.buildHost(records.store)
	if err != nil {
		return errors.Join(err, records.Close())
	}
	var mbox *mailboxRole
	if n.cfg.Mailbox {
		if mbox, err = n.startMailbox(h); err != nil {
			d.Close()
			h.Close()
			return errors.Join(err, records.Close())
		}
	}
	lc.Lock()
	n.host, n.dht, n.records, n.mbox = h, d, records, mbox
	lc.Unlock()
	n.relays.host.Store(&h)
	n.claimPrivate(h)
	if !n.spawn(func() { n.hostEventLoop(sub) }) {
		sub.Close()
		return ErrClosed // Close, under way, tears the host down
	}
	n.spawn(n.hostActor)
	h.SetStreamHandler(MsgProtocol, n.handleMsg)
	h.SetStreamHandler(BundleProtocol, n.handleBundle)
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
	lc.Lock()
	lc.started = true
	lc.Unlock()
	n.spawn(n.publishLoop)
	n.spawn(n.retryLoop)
	n.spawn(n.greetContacts)
	n.spawn(n.wakeLoop)
	n.spawn(n.redialLoop)
	n.spawn(n.watchLoop)
	n.spawn(n.punchLoop)
	n.spawn(n.expiryLoop)
	n.spawn(n.rehandshakeLoop)
	n.spawn(n.purgeLoop)
	n.startMailboxes()
	n.log.Info("node started", "addrs", h.Addrs())
	return nil
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
	lc := &n.lifecycle
	lc.closeOnce.Do(func() {
		lc.Lock()
		lc.closed = true
		lc.Unlock()
		n.cancel()
		lc.startMu.Lock() // a Start under way has seen the cancel
		defer lc.startMu.Unlock()
		var errs []error
		if n.mdns != nil {
			errs = append(errs, n.mdns.Close())
		}
		if n.mbox != nil {
			n.mbox.close()
		}
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		if n.relays.claim != nil {
			// go-libp2p v0.51's AutoRelay, closed while our claim waits
			// in its queue, starts its relay finder after stopping it,
			// and the finder runs on for ever: let it take the claim
			// first (a node closed at once after Start).
			t := time.NewTimer(finderStartWait)
			select {
			case <-n.relays.finderUp:
			case <-t.C:
			}
			t.Stop()
			errs = append(errs, n.relays.claim.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		lc.wg.Wait()
		errs = append(errs, n.closeDepositHosts())
		if n.records != nil {
			errs = append(errs, n.records.Close())
		}
		if n.mbox != nil {
			errs = append(errs, n.mbox.store.Close())
		}
		errs = append(errs, n.store.Close())
		lc.closeErr = errors.Join(errs...)
	})
	return lc.closeErr
}

// spawn runs f in a goroutine that Close waits for, unless the node is
// closing; it reports whether f runs.
func (n *Node) spawn(f func()) bool {
	return n.spawnIf(false, f)
}

// spawnIf is spawn, and with needHost also refuses before Start built the
// host. The lifecycle lock is a leaf: callers may hold delivery's.
func (n *Node) spawnIf(needHost bool, f func()) bool {
	lc := &n.lifecycle
	lc.Lock()
	defer lc.Unlock()
	if lc.closed || needHost && n.host == nil {
		return false
	}
	lc.wg.Add(1)
	go func() {
		defer lc.wg.Done()
		f()
	}()
	return true
}

func (n *Node) running() error {
	lc := &n.lifecycle
	lc.Lock()
	defer lc.Unlock()
	switch {
	case lc.closed:
		return ErrClosed
	case !lc.started:
		return ErrNotStarted
	}
	return nil
}
