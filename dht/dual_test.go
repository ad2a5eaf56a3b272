package dht

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// dualNode is a host on 127.0.0.1 with both halves.
type dualNode struct {
	u *user
	d *Dual
	h interface {
		ID() peer.ID
		Close() error
	}
	info peer.AddrInfo
}

func startDual(t *testing.T, cfg Config) *dualNode {
	t.Helper()
	u := newUser(t)
	h, err := libp2p.New(libp2p.Identity(u.priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDual(h, cfg)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		h.Close()
	})
	return &dualNode{u: u, d: d, h: h, info: peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}}
}

// The halves speak distinct protocols under our prefix, and which of them
// a node serves follows its mode: the LAN half always but for a client,
// the WAN half per mode (auto: not on loopback, where nothing is public).
func TestDualProtocols(t *testing.T) {
	if lanProtocol != "/p2pmsg/lan/kad/1.0.0" || kadProtocol != "/p2pmsg/kad/1.0.0" {
		t.Fatalf("protocol IDs: LAN %s, WAN %s", lanProtocol, kadProtocol)
	}
	for _, c := range []struct {
		mode     Mode
		lan, wan bool
	}{{ModeAuto, true, false}, {ModeServer, true, true}, {ModeClient, false, false}} {
		n := startDual(t, Config{Mode: c.mode})
		if n.d.LAN.Protocol() != string(lanProtocol) || n.d.WAN.Protocol() != string(kadProtocol) {
			t.Fatalf("mode %d: halves speak %s and %s", c.mode, n.d.LAN.Protocol(), n.d.WAN.Protocol())
		}
		if lan, wan := n.d.Serving(); lan != c.lan || wan != c.wan {
			t.Fatalf("mode %d: serves LAN %v, WAN %v; want %v, %v", c.mode, lan, wan, c.lan, c.wan)
		}
		protos := n.d.host.Mux().Protocols()
		if got := slices.Contains(protos, protocol.ID(lanProtocol)); got != c.lan {
			t.Fatalf("mode %d: host handles %s: %v (protocols %v)", c.mode, lanProtocol, got, protos)
		}
	}
}

// Three nodes on one machine in the default mode, the second and third
// given only the first as bootstrap peer: they publish and find each
// other's bundles and addresses through the LAN half (the WAN half stays
// empty: nothing here is public), also when not connected, which needs
// the loopback addresses that kad-dht's stock LAN filter would drop.
func TestDualOnLoopbackWithNoFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := startDual(t, Config{})
	boot := []peer.AddrInfo{first.info}
	second, third := startDual(t, Config{BootstrapPeers: boot}), startDual(t, Config{BootstrapPeers: boot})
	for _, n := range []*dualNode{second, third} {
		if err := n.d.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []*dualNode{first, second, third} {
		if n.d.WAN.RoutingTableSize() != 0 {
			t.Fatalf("node %d: %d peers in the WAN table on loopback", i, n.d.WAN.RoutingTableSize())
		}
	}
	waitUntil(t, 20*time.Second, "the first node's LAN table holds both others", func() bool { return first.d.LAN.RoutingTableSize() == 2 })

	bundle := third.u.bundle(t, 1, week(), false)
	if r, err := third.d.Publish(ctx, third.u.peer, bundle); err != nil || r < 1 {
		t.Fatalf("publish: %d replicas, %v", r, err)
	}
	_, raw, err := second.d.Lookup(ctx, third.u.peer, 0)
	if err != nil || !bytes.Equal(raw, bundle) {
		t.Fatalf("lookup through the LAN half: %v", err)
	}

	// The second forgets the third; only the first can tell where it is
	// (with kad-dht's stock LAN filter, it would tell no address).
	sh := second.d.host
	sh.Network().ClosePeer(third.h.ID())
	sh.Peerstore().ClearAddrs(third.h.ID())
	second.d.LAN.inner.RoutingTable().RemovePeer(third.h.ID())
	ai, err := second.d.FindPeer(ctx, third.h.ID())
	if err != nil || len(ai.Addrs) == 0 {
		t.Fatalf("find peer through the LAN half: %v %v", ai, err)
	}
	if err := sh.Connect(ctx, ai); err != nil {
		t.Fatalf("dialling the addresses found: %v", err)
	}
}

// A node with nobody to ask says so for both halves at once.
func TestDualLonelyNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := startDual(t, Config{})
	other := newUser(t)
	_, _, err := n.d.Lookup(ctx, other.peer, 0)
	if !errors.Is(err, ErrNoPeers) {
		t.Fatalf("lookup on a lonely node: %v", err)
	}
	if _, err := n.d.Publish(ctx, n.u.peer, n.u.bundle(t, 1, week(), false)); !errors.Is(err, ErrNoPeers) || !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("publish on a lonely node: %v", err)
	}
	if _, err := n.d.Stored(ctx, n.u.peer); err != nil {
		t.Fatalf("the bundle is not kept locally: %v", err)
	}
}

// Of two halves' errors, the one from a half that had peers to ask is
// reported, and an invalid answer before a miss.
func TestPickReportsTheInformativeHalf(t *testing.T) {
	noPeers := &dhtError{msg: "no peers", errs: []error{ErrNoPeers}}
	notFound := &dhtError{msg: "not found", errs: []error{ErrNotFound}}
	invalid := &dhtError{msg: "invalid", errs: []error{ErrAllAnswersInvalid}}
	for _, c := range []struct {
		a, b error
		want error
	}{{noPeers, notFound, ErrNotFound}, {notFound, noPeers, ErrNotFound}, {notFound, invalid, ErrAllAnswersInvalid},
		{invalid, notFound, ErrAllAnswersInvalid}, {noPeers, noPeers, ErrNoPeers}} {
		if got := pick(c.a, c.b); !errors.Is(got, c.want) {
			t.Errorf("pick(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
	if got := pick(noPeers, noPeers).Error(); got != "no peers (neither on the LAN nor on the internet)" {
		t.Errorf("both halves without peers: %q", got)
	}
}
