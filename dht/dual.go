package dht

import (
	"context"
	"errors"
	"fmt"
	"slices"

	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// Two DHTs on one host, as kubo runs them (docs/dht-decisions.md, "LAN
// and WAN"): a LAN DHT of the peers on private networks and loopback,
// which every node serves, so that nodes on one machine or one LAN find
// each other with no public node and no flag; and a WAN DHT of publicly
// reachable peers, which a node serves only once it is reachable itself
// (ModeAuto), so that laptops behind NAT never become servers that
// nobody outside can dial. Records, validator and store are the same;
// the protocols differ, so the halves never mix.

// Scope is the kind of network a DHT routes through.
type Scope int

const (
	// ScopeAll: every peer, whatever its addresses (a single DHT).
	ScopeAll Scope = iota
	// ScopeLAN: peers reached on private or loopback addresses; it speaks
	// /p2pmsg/lan/kad/1.0.0.
	ScopeLAN
	// ScopeWAN: peers with public addresses; it speaks /p2pmsg/kad/1.0.0.
	ScopeWAN
)

// lanExtension goes after ProtocolPrefix. (kad-dht's dual package adds
// its own "/lan" with ProtocolExtension before the caller's options, so
// a ProtocolPrefix given to both halves would erase it and both would
// speak one protocol.)
const lanExtension = "/lan"

// lanOptions are kad-dht's dual LAN filters but for two: loopback counts
// as a local network (dual drops loopback addresses, and nodes on one
// machine would then know each other only while connected); and no query
// filter (dual's skips peers whose addresses the peerstore no longer
// holds, so a peer still in the routing table after its addresses
// expired is never asked for, and FindPeer then misses it even when the
// peers asked return its new addresses).
func lanOptions() []kaddht.Option {
	return []kaddht.Option{
		kaddht.ProtocolExtension(lanExtension),
		kaddht.RoutingTableFilter(kaddht.PrivateRoutingTableFilter),
		kaddht.AddressFilter(func(addrs []ma.Multiaddr) []ma.Multiaddr {
			return ma.FilterAddrs(addrs, manet.IsPrivateAddr) // loopback included
		}),
	}
}

// wanOptions are kad-dht's dual WAN filters.
func wanOptions(h host.Host) []kaddht.Option {
	return []kaddht.Option{
		kaddht.QueryFilter(kaddht.PublicQueryFilter),
		kaddht.RoutingTableFilter(kaddht.PublicRoutingTableFilter),
		kaddht.RoutingTablePeerDiversityFilter(kaddht.NewRTPeerDiversityFilter(h, amino.DefaultMaxPeersPerIPGroupPerCpl, amino.DefaultMaxPeersPerIPGroup)),
		kaddht.AddressFilter(func(addrs []ma.Multiaddr) []ma.Multiaddr { return ma.FilterAddrs(addrs, manet.IsPublicAddr) }),
	}
}

// Dual is a node's LAN and WAN DHTs, used as one.
type Dual struct {
	LAN, WAN *DHT
	host     host.Host
	boot     []peer.AddrInfo
	store    *Store
	ownStore bool
}

// NewDual starts both halves on h. cfg.Mode is the WAN half's; the LAN
// half serves unless the mode is ModeClient. cfg.Scope is ignored. Both
// share cfg.Store (nil: one in memory, closed with the Dual).
func NewDual(h host.Host, cfg Config) (*Dual, error) {
	ownStore := cfg.Store == nil
	if ownStore {
		s, err := NewStore(nil, StoreConfig{Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		cfg.Store = s
	}
	closeStore := func() error {
		if ownStore {
			return cfg.Store.Close()
		}
		return nil
	}
	wcfg, lcfg := cfg, cfg
	wcfg.Scope, lcfg.Scope = ScopeWAN, ScopeLAN
	if cfg.Mode != ModeClient {
		lcfg.Mode = ModeServer
	}
	wan, err := New(h, wcfg)
	if err != nil {
		return nil, errors.Join(err, closeStore())
	}
	lan, err := New(h, lcfg)
	if err != nil {
		return nil, errors.Join(err, wan.Close(), closeStore())
	}
	return &Dual{LAN: lan, WAN: wan, host: h, boot: slices.Clone(cfg.BootstrapPeers), store: cfg.Store, ownStore: ownStore}, nil
}

// Close stops both halves (not the host).
func (d *Dual) Close() error {
	err := errors.Join(d.WAN.Close(), d.LAN.Close())
	if d.ownStore {
		err = errors.Join(err, d.store.Close())
	}
	return err
}

// RecordStore returns the store both halves keep their records in.
func (d *Dual) RecordStore() *Store { return d.store }

// RoutingTableSize is the number of DHT servers in both routing tables.
func (d *Dual) RoutingTableSize() int { return d.LAN.RoutingTableSize() + d.WAN.RoutingTableSize() }

// Stored returns the record this node holds for id (both halves share
// one store).
func (d *Dual) Stored(ctx context.Context, id peer.ID) ([]byte, error) { return d.LAN.Stored(ctx, id) }

// Bootstrap dials the bootstrap peers once and waits until either half
// has one of them in its routing table (see DHT.Bootstrap).
func (d *Dual) Bootstrap(ctx context.Context) error {
	return bootstrap(ctx, d.host, d.boot, d.LAN, d.WAN)
}

// Serving reports whether the node answers DHT queries on each half.
func (d *Dual) Serving() (lan, wan bool) { return d.LAN.Serving(), d.WAN.Serving() }

// Publish stores self's bundle locally and on the closest servers of
// both halves at once; it returns the replicas of both, and fails only
// when neither half stored it anywhere.
func (d *Dual) Publish(ctx context.Context, self peer.ID, bundle []byte) (int, error) {
	rec, err := d.LAN.storeOwn(ctx, self, bundle)
	if err != nil {
		return 0, err
	}
	type result struct {
		n   int
		err error
	}
	wan := make(chan result, 1)
	go func() {
		n, err := d.WAN.replicate(ctx, self, rec)
		wan <- result{n, err}
	}()
	ln, lerr := d.LAN.replicate(ctx, self, rec)
	w := <-wan
	if ln+w.n > 0 {
		return ln + w.n, nil
	}
	return 0, pick(lerr, w.err)
}

// Lookup asks both halves at once and returns the newest valid bundle
// either found (see DHT.Lookup). Both are waited for: the one answering
// first may hold an older bundle.
func (d *Dual) Lookup(ctx context.Context, id peer.ID, minSeq uint64) (*e2e.Bundle, []byte, error) {
	type result struct {
		b   *e2e.Bundle
		raw []byte
		err error
	}
	wan := make(chan result, 1)
	go func() {
		b, raw, err := d.WAN.Lookup(ctx, id, minSeq)
		wan <- result{b, raw, err}
	}()
	lb, lraw, lerr := d.LAN.Lookup(ctx, id, minSeq)
	w := <-wan
	switch {
	case lerr == nil && (w.err != nil || w.b.Seq <= lb.Seq):
		return lb, lraw, nil
	case w.err == nil:
		return w.b, w.raw, nil
	}
	// Both failed. A stale bundle still beats nothing: its caller learns
	// that the peer exists.
	if lb != nil && (w.b == nil || w.b.Seq <= lb.Seq) {
		return lb, lraw, lerr
	}
	if w.b != nil {
		return w.b, w.raw, w.err
	}
	return nil, nil, pick(lerr, w.err)
}

// FindPeer asks both halves at once and returns the first answer with
// addresses.
func (d *Dual) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ai  peer.AddrInfo
		err error
	}
	ch := make(chan result, 2)
	for _, h := range []*DHT{d.LAN, d.WAN} {
		go func() {
			ai, err := h.FindPeer(ctx, id)
			ch <- result{ai, err}
		}()
	}
	var errs [2]error
	for i := range errs {
		r := <-ch
		if r.err == nil {
			return r.ai, nil
		}
		errs[i] = r.err
	}
	return peer.AddrInfo{}, pick(errs[0], errs[1])
}

// pick chooses which of two halves' errors to report: one from a half
// that had peers to ask says more than "no DHT peers", and an invalid
// answer more than a miss. When both halves had no peers at all, the
// error says so for the node as a whole.
func pick(a, b error) error {
	rank := func(err error) int {
		switch {
		case errors.Is(err, ErrAllAnswersInvalid), errors.Is(err, ErrStale):
			return 3
		case errors.Is(err, ErrNoPeers):
			return 0
		case errors.Is(err, ErrNotFound):
			return 2
		}
		return 1
	}
	if rank(b) > rank(a) {
		a = b
	}
	if rank(a) == 0 {
		var de *dhtError
		if errors.As(a, &de) {
			return &dhtError{msg: fmt.Sprintf("%s (neither on the LAN nor on the internet)", de.msg), errs: de.errs}
		}
	}
	return a
}

// Serving reports whether the DHT answers queries now (server mode).
func (d *DHT) Serving() bool { return slices.Contains(d.host.Mux().Protocols(), d.proto) }

// Protocol is the kad protocol ID the DHT speaks.
func (d *DHT) Protocol() string { return string(d.proto) }
