package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Mode of the DHT node.
type Mode int

const (
	// ModeAuto is kad-dht's ModeAuto: a server once AutoNAT finds the node
	// publicly reachable, a client until then (so always a client on
	// loopback).
	ModeAuto Mode = iota
	// ModeServer answers DHT queries and stores records for others.
	ModeServer
	// ModeClient only asks.
	ModeClient
)

// Config configures New.
type Config struct {
	Mode Mode
	// BootstrapPeers are connected to by Bootstrap; kad-dht also falls
	// back on them whenever its routing table empties.
	BootstrapPeers []peer.AddrInfo
	// Now is the validator's clock; nil means time.Now.
	Now func() time.Time
	// Scope limits the DHT to one kind of network: ScopeAll (the zero
	// value) routes through every peer, ScopeLAN and ScopeWAN are the two
	// halves of a Dual.
	Scope Scope
	// Store keeps the records this node holds: its own bundle and, as a
	// server, what others put. Several DHTs may share one, and a peer's
	// quota then counts across them. nil means a store in memory with the
	// default limits, for this DHT alone, closed with it. A Store given
	// here is its caller's to close, after the DHT and its host.
	Store *Store
}

// Errors of the running DHT. They are wrapped with the peer concerned and
// a sentence for the user; test them with errors.Is.
var (
	// ErrNotFound: no valid bundle for that peer in the DHT, or FindPeer
	// found no address for it.
	ErrNotFound = errors.New("dht: not found")
	// ErrStale: the best valid bundle found is older than the seq that
	// the caller already knows.
	ErrStale = errors.New("dht: stale bundle")
	// ErrNotReplicated: Publish got no remote peer to store the record.
	ErrNotReplicated = errors.New("dht: bundle not replicated")
	// ErrNoPeers: this node has no DHT peer to ask, so a miss says nothing
	// about the network. Publish wraps it together with ErrNotReplicated.
	ErrNoPeers = errors.New("dht: no DHT peers")
	// ErrAllAnswersInvalid: DHT nodes answered a lookup with records for
	// that peer, but every one was invalid (forged, expired, malformed),
	// even after the lookup went on past them: nodes near the key
	// misbehave, or only an expired record is left. Distinct from
	// ErrNotFound, where no node had a record at all.
	ErrAllAnswersInvalid = errors.New("dht: every record found was invalid")
)

// kadProtocol is what ProtocolPrefix makes of kad-dht's protocol ID;
// lanProtocol is the LAN half's (dual.go).
const (
	kadProtocol = protocol.ID(ProtocolPrefix + "/kad/1.0.0")
	lanProtocol = protocol.ID(ProtocolPrefix + lanExtension + "/kad/1.0.0")
)

// lookupQuorum is the Quorum given to kad-dht's GetValue: the search
// stops at the (lookupQuorum+1)th answer holding a record (our own store
// counts as one). On 50 nodes on loopback (BENCHMARKS.md, "dht") lookup
// p50 was 1.5-1.9 ms with 1, 1.7-2.6 ms with 2, 1.9-2.6 ms with 3, and
// 4.8-6.2 ms for a full search, which walks to the 20 closest peers. 3
// costs about half a millisecond over 1 and takes the best of four
// answers, so one fast node serving an old bundle is outvoted more
// often. Rollback safety does not rest on it: a result older than what
// the caller knows is retried with a full search (see Lookup).
var lookupQuorum = 3

// peerPutTimeout bounds one replica's store, so that one peer that
// accepts the stream and never answers cannot hold Publish until the
// caller's deadline while the other replicas are long done.
const peerPutTimeout = 10 * time.Second

// bootstrapRTWait bounds the wait for a connected bootstrap peer to pass
// kad-dht's liveness check and enter the routing table, for callers that
// give Bootstrap a context without a deadline.
const bootstrapRTWait = 10 * time.Second

// DHT is a p2pmsg node's part of the bundle DHT.
type DHT struct {
	inner     *kaddht.IpfsDHT
	host      host.Host
	proto     protocol.ID // the kad protocol it speaks
	bootstrap []peer.AddrInfo
	validator Validator
	// local reads and writes the datastore behind inner's own value store,
	// since kad-dht exports no local put or get. Its put locks are its
	// own, but the Store selects again under its lock, so an older record
	// racing ours cannot overwrite it.
	local     *records.ValueStore
	messenger *pb.ProtocolMessenger
	quorum    int
	store     *Store
	ownStore  bool // made by New, closed by Close

	closeOnce sync.Once
	closeErr  error
}

// New starts a DHT node on h, under /p2pmsg/kad/1.0.0, storing and
// accepting bundle records only. It does not connect anywhere: call
// Bootstrap. Closing the DHT leaves h open.
func New(h host.Host, cfg Config) (*DHT, error) {
	var mode kaddht.ModeOpt
	switch cfg.Mode {
	case ModeAuto:
		mode = kaddht.ModeAuto
	case ModeServer:
		mode = kaddht.ModeServer
	case ModeClient:
		mode = kaddht.ModeClient
	default:
		return nil, fmt.Errorf("dht: unknown mode %d", cfg.Mode)
	}
	v := Validator{Now: cfg.Now}
	// Only our namespace: kad-dht's default /pk and /ipns validators
	// would make every node store records nobody here needs.
	nsv := record.NamespacedValidator{Namespace: v}
	store, ownStore := cfg.Store, false
	if store == nil {
		var err error
		if store, err = NewStore(nil, StoreConfig{Now: cfg.Now}); err != nil {
			return nil, err
		}
		ownStore = true
	}
	bootstrap := append([]peer.AddrInfo(nil), cfg.BootstrapPeers...)
	opts := []kaddht.Option{
		kaddht.ProtocolPrefix(ProtocolPrefix),
		kaddht.Mode(mode),
		kaddht.Validator(nsv),
		kaddht.DisableProviders(),
		kaddht.ValueDatastore(datastore{store}),
		// Who sent each PUT, for the quota (store.go).
		kaddht.OnRequestHook(store.onRequest),
		// The Store prunes expired records itself, in bounded batches;
		// kad-dht's sweep would read every record back once a day.
		kaddht.ValueGCInterval(0),
	}
	proto := kadProtocol
	switch cfg.Scope {
	case ScopeAll:
		// No filter: plain kaddht.New filters none, and LAN and loopback
		// peers stay routable.
	case ScopeLAN:
		opts = append(opts, lanOptions()...)
		proto = lanProtocol
	case ScopeWAN:
		opts = append(opts, wanOptions(h)...)
	default:
		return nil, fmt.Errorf("dht: unknown scope %d", cfg.Scope)
	}
	if len(bootstrap) > 0 {
		opts = append(opts, kaddht.BootstrapPeers(bootstrap...))
	}
	closeStore := func() error {
		if ownStore {
			return store.Close()
		}
		return nil
	}
	inner, err := kaddht.New(h, opts...)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dht: starting kad-dht: %w", err), closeStore())
	}
	messenger, err := pb.NewProtocolMessenger(inner.MessageSender())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("dht: starting kad-dht: %w", err), inner.Close(), closeStore())
	}
	return &DHT{
		inner:     inner,
		host:      h,
		proto:     proto,
		bootstrap: bootstrap,
		validator: v,
		local:     records.NewValueStore(datastore{store}, nsv, maxRecordAge),
		messenger: messenger,
		quorum:    lookupQuorum,
		store:     store,
		ownStore:  ownStore,
	}, nil
}

// RecordStore returns the store of the records this node holds.
func (d *DHT) RecordStore() *Store { return d.store }

// Inner returns the kad-dht node, for what this package does not wrap.
func (d *DHT) Inner() *kaddht.IpfsDHT { return d.inner }

// RoutingTableSize is the number of DHT servers in the routing table.
func (d *DHT) RoutingTableSize() int { return d.inner.RoutingTable().Size() }

// Stored returns the bundle record that this node itself holds for id,
// without asking the network (kad-dht's GetValue ignores routing.Offline
// in v0.42.2), or ErrNotFound.
func (d *DHT) Stored(ctx context.Context, id peer.ID) ([]byte, error) {
	rec, err := d.local.Get(ctx, Key(id))
	if err != nil || rec == nil {
		return nil, fmt.Errorf("%w: no record for %s in this node's store", ErrNotFound, id)
	}
	return rec.GetValue(), nil
}

// Close stops the DHT (not the host). Later calls return the first
// call's result.
func (d *DHT) Close() error {
	d.closeOnce.Do(func() {
		if err := d.inner.Close(); err != nil {
			d.closeErr = fmt.Errorf("dht: closing: %w", err)
		}
		// The host may still run a handler that reads the store: a closed
		// store answers it with an error.
		if d.ownStore {
			d.store.Close()
		}
	})
	return d.closeErr
}

// Bootstrap connects to the configured bootstrap peers, waits until one
// of them is in the routing table, then refreshes the routing table and
// waits for that refresh, all within ctx. It fails if bootstrap peers are
// configured and none can be reached or none is a DHT server; with none
// configured it refreshes from the peers already connected (mDNS, cached
// addresses), and having none is not an error.
func (d *DHT) Bootstrap(ctx context.Context) error {
	return bootstrap(ctx, d.host, d.bootstrap, d)
}

// bootstrap is Bootstrap for the DHTs ds, which share one host and one
// list of bootstrap peers: it dials them once, and succeeds when any of
// ds has one in its routing table.
func bootstrap(ctx context.Context, h host.Host, peers []peer.AddrInfo, ds ...*DHT) error {
	self := h.ID()
	var (
		mu        sync.Mutex
		connected []peer.ID
		errs      []string
		wg        sync.WaitGroup
	)
	// A config shared by all nodes lists the bootstrap node itself too.
	targets := slices.DeleteFunc(slices.Clone(peers), func(ai peer.AddrInfo) bool { return ai.ID == self })
	for _, ai := range targets {
		wg.Go(func() {
			err := h.Connect(ctx, ai)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", ai.ID, err))
				return
			}
			connected = append(connected, ai.ID)
		})
	}
	wg.Wait()
	if len(errs) > 0 && len(connected) == 0 {
		return fmt.Errorf("dht: could not reach any of the %d bootstrap peers: %s", len(errs), strings.Join(errs, "; "))
	}

	if len(connected) > 0 {
		if err := waitForRoutingTable(ctx, h, connected, ds); err != nil {
			return err
		}
	}

	size := 0
	for _, d := range ds {
		size += d.RoutingTableSize()
	}
	if size == 0 {
		if len(targets) == 0 {
			return nil
		}
		return fmt.Errorf("dht: connected to bootstrap peers, but none passed the DHT liveness check")
	}
	errc := make(chan error, len(ds))
	for _, d := range ds {
		// A refresh fails for any bucket whose query failed; with peers in
		// the table the node can still route, and kad-dht refreshes again
		// on its own every 10 minutes. A DHT with an empty table (the WAN
		// half on a LAN) has nothing to refresh.
		if d.RoutingTableSize() == 0 {
			errc <- nil
			continue
		}
		refreshed := d.inner.RefreshRoutingTable()
		go func() {
			select {
			case err := <-refreshed:
				if err != nil && d.RoutingTableSize() == 0 {
					err = fmt.Errorf("dht: refreshing the routing table: %w", err)
				} else {
					err = nil
				}
				errc <- err
			case <-ctx.Done():
				errc <- fmt.Errorf("dht: bootstrap interrupted while refreshing the routing table: %w", ctx.Err())
			}
		}()
	}
	var failed []error
	for range ds {
		if err := <-errc; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) == len(ds) {
		return errors.Join(failed...)
	}
	return nil
}

// waitForRoutingTable waits until one of the connected bootstrap peers
// is in the routing table of one of ds: kad-dht admits a peer only after
// identify and a FIND_NODE probe, both run in the background, and a
// refresh started before that would find an empty table. (Connect does
// not wait for identify when kad-dht's own bootstrapping already opened
// the connection.) It fails as soon as identify shows that none of them
// serves the protocol of any of ds.
func waitForRoutingTable(ctx context.Context, h host.Host, ps []peer.ID, ds []*DHT) error {
	deadline := time.NewTimer(bootstrapRTWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	pstore := h.Peerstore()
	var protos []string
	for _, d := range ds {
		protos = append(protos, string(d.proto))
	}
	for {
		identified, servers := 0, 0
		for _, p := range ps {
			for _, d := range ds {
				if d.inner.RoutingTable().Find(p) != "" {
					return nil
				}
			}
			// Identify sets the agent version after the protocols: a
			// protocol list alone may be one stream's negotiation (the
			// host records each), before identify answered.
			if _, err := pstore.Get(p, "AgentVersion"); err != nil {
				continue
			}
			if known, err := pstore.GetProtocols(p); err == nil {
				identified++
				if slices.ContainsFunc(ds, func(d *DHT) bool { return slices.Contains(known, d.proto) }) {
					servers++
				}
			}
		}
		if identified == len(ps) && servers == 0 {
			return fmt.Errorf("dht: reached %d bootstrap peers, but none serves %s: they are DHT clients or not p2pmsg nodes", len(ps), strings.Join(protos, " or "))
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return nil // Bootstrap reports the empty table
		case <-ctx.Done():
			return fmt.Errorf("dht: bootstrap interrupted while waiting for the bootstrap peers to answer: %w", ctx.Err())
		}
	}
}

// Publish stores self's bundle in this node and on the DHT servers
// closest to its key, and returns how many remote servers confirmed
// storing it. An invalid bundle is refused with the validator's error.
//
// kad-dht's own PutValue returns nil even when every remote store failed,
// so Publish sends the stores itself. A peer answers a PUT_VALUE only
// after its value store accepted the record (validated it and found
// nothing newer), and the messenger checks that the answer echoes the
// record, so each success is a true replica: no verification round trip
// is needed, and the record goes out once per peer (calling PutValue
// first and verifying would send it twice and read it back).
func (d *DHT) Publish(ctx context.Context, self peer.ID, bundle []byte) (replicas int, err error) {
	rec, err := d.storeOwn(ctx, self, bundle)
	if err != nil {
		return 0, err
	}
	return d.replicate(ctx, self, rec)
}

// storeOwn validates self's bundle and stores it in this node's own
// store, where lookups and, as a server, others find it.
func (d *DHT) storeOwn(ctx context.Context, self peer.ID, bundle []byte) (*recpb.Record, error) {
	key := Key(self)
	if _, err := d.validator.bundle(key, bundle); err != nil {
		return nil, err
	}
	rec := record.MakePutRecord(key, bundle)
	// Stored locally in client mode too: our own lookups see it, and a
	// ModeAuto node that becomes a server serves it.
	if err := d.local.Put(ctx, key, rec); err != nil {
		if errors.Is(err, records.ErrOldRecord) {
			return nil, fmt.Errorf("dht: refusing to publish the bundle of %s: a bundle with a higher seq was already published (%w)", self, err)
		}
		return nil, fmt.Errorf("dht: storing the bundle locally: %w", err)
	}
	return rec, nil
}

// replicate sends rec to the DHT servers closest to its key.
func (d *DHT) replicate(ctx context.Context, self peer.ID, rec *recpb.Record) (replicas int, err error) {
	key := string(rec.GetKey())
	if d.RoutingTableSize() == 0 {
		return 0, notReplicated(self, ErrNoPeers, "this node is connected to no DHT peer to send it to")
	}
	lctx, cancel := context.WithCancel(ctx)
	peers, err := d.inner.GetClosestPeers(lctx, key)
	cancel()
	if err != nil {
		if errors.Is(err, kb.ErrLookupFailure) {
			return 0, notReplicated(self, ErrNoPeers, "this node is connected to no DHT peer to send it to")
		}
		return 0, notReplicated(self, err, fmt.Sprintf("finding the closest peers failed: %v", err))
	}

	var (
		mu   sync.Mutex
		errs []error
		msgs []string
		wg   sync.WaitGroup
	)
	selfID := d.host.ID()
	asked := 0
	for _, p := range peers {
		if p == selfID {
			continue
		}
		asked++
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, peerPutTimeout)
			defer cancel()
			err := d.messenger.PutValue(pctx, p, rec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("dht: peer %s: %w", p, err))
				msgs = append(msgs, fmt.Sprintf("%s: %v", p, err))
				return
			}
			replicas++
		})
	}
	wg.Wait()
	if replicas > 0 {
		return replicas, nil
	}
	if asked == 0 {
		return 0, notReplicated(self, ErrNoPeers, "the DHT knows no other server")
	}
	// A peer that refuses a record (it holds a newer one, or finds it
	// invalid) resets the stream: the errors below cannot say which.
	return 0, notReplicated(self, errors.Join(errs...),
		fmt.Sprintf("all %d closest peers refused it (a newer bundle or an invalid one) or failed: %s", asked, strings.Join(msgs, "; ")))
}

func notReplicated(self peer.ID, cause error, why string) error {
	return &dhtError{
		msg:  fmt.Sprintf("dht: the bundle of %s is stored on no other DHT node: %s", self, why),
		errs: []error{ErrNotReplicated, cause},
	}
}

// Lookup finds the newest valid bundle of id in the DHT, within ctx (give
// it a timeout). minSeq is the highest seq the caller already holds for
// id (0 if none): a result older than that is returned with ErrStale.
//
// The search stops after a quorum of answers (lookupQuorum). If the best
// of those is older than minSeq, Lookup runs a full search before
// concluding ErrStale, so an old record served by a few nodes does not
// hide a newer one held by others. If kad-dht's search finds no valid
// record, Lookup walks on past the peers that answered invalid ones
// (lookup.go) before it concludes: ErrNotFound when no node had a record,
// ErrAllAnswersInvalid when records were found but none was valid, and
// ErrNoPeers when there was nobody to ask.
func (d *DHT) Lookup(ctx context.Context, id peer.ID, minSeq uint64) (*e2e.Bundle, []byte, error) {
	key := Key(id)
	if _, _, err := keyIdentity(key); err != nil {
		return nil, nil, err
	}
	var opts []routing.Option
	if d.quorum > 0 {
		opts = append(opts, kaddht.Quorum(d.quorum))
	}
	b, raw, err := d.search(ctx, id, key, opts...)
	if err == nil && b.Seq < minSeq && d.quorum > 0 {
		if b2, raw2, err2 := d.search(ctx, id, key); err2 == nil && b2.Seq > b.Seq {
			b, raw = b2, raw2
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if b.Seq < minSeq {
		return b, raw, &dhtError{
			msg: fmt.Sprintf("dht: the newest bundle found for %s has seq %d, older than seq %d already known: a node serves an old bundle, or the newer one has not reached the DHT",
				id, b.Seq, minSeq),
			errs: []error{ErrStale},
		}
	}
	return b, raw, nil
}

func (d *DHT) search(ctx context.Context, id peer.ID, key string, opts ...routing.Option) (*e2e.Bundle, []byte, error) {
	// When a quorum ends the search, kad-dht leaves its query goroutines
	// blocked on sending further answers until ctx ends: cancel it here
	// rather than at the caller's deadline.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	val, err := d.inner.GetValue(ctx, key, opts...)
	// On timeout kad-dht still returns the best value seen so far: use it.
	if val == nil {
		switch {
		case err == nil, errors.Is(err, routing.ErrNotFound):
			if d.RoutingTableSize() == 0 {
				return nil, nil, &dhtError{
					msg:  fmt.Sprintf("dht: cannot look up the bundle of %s: this node is connected to no DHT peer", id),
					errs: []error{ErrNoPeers},
				}
			}
			// kad-dht stops at the closest peers even when all they had
			// was garbage: walk on past them (lookup.go).
			res := d.searchPast(ctx, key, d.quorum)
			if len(res.values) > 0 {
				i, _ := d.validator.Select(key, res.values)
				val = res.values[i]
				break
			}
			if res.invalid > 0 {
				return nil, nil, &dhtError{
					msg: fmt.Sprintf("dht: no valid bundle for %s: the %d DHT nodes that answered with a record (of %d asked) all gave an invalid one (forged, expired or malformed): nodes near the key misbehave, or only an expired record is left",
						id, res.invalid, res.asked),
					errs: []error{ErrAllAnswersInvalid},
				}
			}
			if ctx.Err() != nil {
				return nil, nil, &dhtError{
					msg:  fmt.Sprintf("dht: no bundle for %s found before the lookup was cut short (%v)", id, ctx.Err()),
					errs: []error{ErrNotFound, ctx.Err()},
				}
			}
			return nil, nil, &dhtError{
				msg:  fmt.Sprintf("dht: no bundle for %s in the DHT: the peer never published or its record expired", id),
				errs: []error{ErrNotFound},
			}
		case ctx.Err() != nil:
			return nil, nil, &dhtError{
				msg:  fmt.Sprintf("dht: no bundle for %s found before the lookup was cut short (%v)", id, ctx.Err()),
				errs: []error{ErrNotFound, ctx.Err()},
			}
		default:
			return nil, nil, fmt.Errorf("dht: looking up the bundle of %s: %w", id, err)
		}
	}
	// kad-dht validated it on receipt; checking again yields the parsed
	// bundle and catches a record that expired since.
	b, err := d.validator.bundle(key, val)
	if err != nil {
		return nil, nil, fmt.Errorf("dht: the bundle found for %s is not valid: %w", id, err)
	}
	return b, val, nil
}

// FindPeer returns the addresses of id found through the DHT (or the
// peerstore, if already connected).
func (d *DHT) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	fctx, cancel := context.WithCancel(ctx)
	ai, err := d.inner.FindPeer(fctx, id)
	cancel()
	switch {
	case err == nil:
		return ai, nil
	case errors.Is(err, kb.ErrLookupFailure) || (errors.Is(err, routing.ErrNotFound) && d.RoutingTableSize() == 0):
		return peer.AddrInfo{}, &dhtError{
			msg:  fmt.Sprintf("dht: cannot look for peer %s: this node is connected to no DHT peer", id),
			errs: []error{ErrNoPeers},
		}
	case errors.Is(err, routing.ErrNotFound):
		return peer.AddrInfo{}, &dhtError{
			msg:  fmt.Sprintf("dht: peer %s not found in the DHT: it is offline, or not reachable by the DHT servers", id),
			errs: []error{ErrNotFound},
		}
	case ctx.Err() != nil:
		return peer.AddrInfo{}, &dhtError{
			msg:  fmt.Sprintf("dht: peer %s not found before the search was cut short (%v)", id, ctx.Err()),
			errs: []error{ErrNotFound, ctx.Err()},
		}
	default:
		return peer.AddrInfo{}, fmt.Errorf("dht: looking for peer %s: %w", id, err)
	}
}

// dhtError carries a message for the user and the sentinel errors that
// callers test with errors.Is.
type dhtError struct {
	msg  string
	errs []error
}

func (e *dhtError) Error() string   { return e.msg }
func (e *dhtError) Unwrap() []error { return e.errs }
