package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// cmdDemo runs a small network of real nodes in this process, on
// 127.0.0.1, in temporary directories it removes afterwards: three DHT
// nodes, and Alice and Bob, who know nothing of each other but the
// bootstrap node and a peer ID.
func cmdDemo(e *env, args []string) error {
	fs := e.flags("demo")
	if _, err := e.parse(fs, args, 0, "p2pmsg demo"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "p2pmsg-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	start := func(name string, boot ...peer.AddrInfo) (*node.Node, error) {
		n, err := node.New(node.Config{DataDir: tmp + "/" + name, ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
			NoMDNS: true, NoPortMap: true, BootstrapPeers: boot})
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		return n, n.Start(ctx)
	}
	say := func(format string, args ...any) { fmt.Fprintf(e.stdout, format+"\n", args...) }

	boot, err := start("bootstrap")
	if err != nil {
		return err
	}
	say("bootstrap node %s on %s", boot.ID().String()[46:], boot.Addrs()[0])
	for i := range 2 {
		if _, err := start(fmt.Sprintf("dht%d", i), boot.AddrInfo()); err != nil {
			return err
		}
	}
	alice, err := start("alice", boot.AddrInfo())
	if err != nil {
		return err
	}
	bob, err := start("bob", boot.AddrInfo())
	if err != nil {
		return err
	}
	say("alice %s and bob %s joined through the bootstrap node", alice.ID().String()[46:], bob.ID().String()[46:])
	for _, n := range []*node.Node{alice, bob} {
		r, err := n.PublishBundle(ctx)
		if err != nil {
			return err
		}
		say("%s published its prekey bundle to %d DHT peers", n.ID().String()[46:], r)
	}
	// Alice knows only Bob's peer ID: forget any address she picked up.
	alice.Host().Network().ClosePeer(bob.ID())
	alice.Host().Peerstore().ClearAddrs(bob.ID())
	t0 := time.Now()
	if _, err := alice.Send(ctx, bob.ID(), "Hi Bob! Found you through the DHT."); err != nil {
		return err
	}
	if err := waitDelivered(ctx, alice, bob.ID(), 1); err != nil {
		return err
	}
	say("alice → bob: first message delivered %v after she started: DHT lookup, bundle, PQXDH, encrypt, ack", time.Since(t0).Round(time.Millisecond))
	if _, err := bob.Send(ctx, alice.ID(), "Hi Alice, no server in between."); err != nil {
		return err
	}
	if _, err := alice.Send(ctx, bob.ID(), "Let's compare safety numbers."); err != nil {
		return err
	}
	if err := waitDelivered(ctx, alice, bob.ID(), 2); err != nil {
		return err
	}
	if err := waitDelivered(ctx, bob, alice.ID(), 1); err != nil {
		return err
	}
	say("\nthe conversation, as bob's history holds it:")
	h, err := bob.History(alice.ID(), node.Page{Limit: 10})
	if err != nil {
		return err
	}
	for _, m := range h {
		who := "alice"
		if m.Direction == node.Outgoing {
			who = "bob  "
		}
		say("  %s: %s  [%s]", who, m.Text, m.State)
	}
	sa, _ := alice.SafetyNumber(bob.ID())
	sb, _ := bob.SafetyNumber(alice.ID())
	if sa != sb {
		return fmt.Errorf("safety numbers differ: %s / %s", sa, sb)
	}
	say("\nsafety number (the same on both sides):\n%s", sa)
	return nil
}

func waitDelivered(ctx context.Context, n *node.Node, p peer.ID, want int) error {
	for {
		h, err := n.History(p, node.Page{Limit: node.MaxPage})
		if err != nil {
			return err
		}
		got := 0
		for _, m := range h {
			if m.Direction == node.Outgoing && m.State == node.Delivered {
				got++
			}
		}
		if got >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: %d of %d messages delivered: %w", got, want, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
