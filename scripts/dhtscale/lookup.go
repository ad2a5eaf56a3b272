package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/p2pmsg/p2pmsg/dht"
)

// The DHT lookup figure. Package node exports no lookup (a node looks a
// bundle up only inside Send, after asking the peer itself), so the
// lookups are made by package dht's Dual, as a node runs it (a LAN half,
// which on loopback is the one that has peers, and an internet half), on
// a libp2p host of its own in the coordinator's process: Dual.Lookup,
// exactly what a node calls when the peer does not answer, on a host like
// a node's (TCP on loopback, Noise, yamux, the same connection caps),
// bootstrapped from the seeds. In client mode (both halves), so that it
// adds nothing to the network it measures.

const lookupTimeout = 10 * time.Second // node's default LookupTimeout

type lookupClient struct {
	h host.Host
	d *dht.Dual
}

func newLookupClient(ctx context.Context, seeds []peer.AddrInfo, low, high int) (*lookupClient, error) {
	cm, err := connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New), libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		return nil, err
	}
	d, err := dht.NewDual(h, dht.Config{Mode: dht.ModeClient, BootstrapPeers: seeds})
	if err != nil {
		h.Close()
		return nil, err
	}
	bctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := d.Bootstrap(bctx); err != nil {
		d.Close()
		h.Close()
		return nil, err
	}
	return &lookupClient{h: h, d: d}, nil
}

func (c *lookupClient) close() {
	c.d.Close()
	c.h.Close()
}

// lookupResult sums up the lookups of one network.
type lookupResult struct {
	tried, found int
	lat          []time.Duration // of the lookups that found the bundle
	errs         []string
	rt, conns    int // the client's routing table and connections at the end
}

// lookups looks up the bundles of count random nodes, one after another,
// after warm lookups that are not counted (the client's first ones also
// fill its routing table and its connections, as a node's first minutes
// do). Each lookup is of a node picked at random, seeds included: any
// peer may be written to.
func (c *lookupClient) lookups(ctx context.Context, nodes []*nodeRef, warm, count int, rng *rand.Rand) lookupResult {
	var r lookupResult
	for i := range warm + count {
		if ctx.Err() != nil {
			break
		}
		target := nodes[rng.IntN(len(nodes))]
		id, err := peer.Decode(target.id)
		if err != nil {
			r.errs = append(r.errs, err.Error())
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		t0 := time.Now()
		b, _, err := c.d.Lookup(lctx, id, 0)
		d := time.Since(t0)
		cancel()
		if i < warm {
			continue
		}
		r.tried++
		switch {
		case err != nil:
			r.errs = append(r.errs, err.Error())
		case b == nil:
			r.errs = append(r.errs, fmt.Sprintf("no bundle for %s, and no error", id))
		default:
			r.found++
			r.lat = append(r.lat, d)
		}
	}
	r.rt = c.d.RoutingTableSize()
	r.conns = len(c.h.Network().Peers())
	return r
}
