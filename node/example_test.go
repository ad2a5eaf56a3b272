package node_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// Two users on one machine: Bob joins through Alice's node, Alice writes
// to Bob knowing only his peer ID, and Bob reads it from his event stream.
func Example() {
	ctx := context.Background()
	var dirs []string
	start := func(boot ...peer.AddrInfo) *node.Node {
		dir, err := os.MkdirTemp("", "p2pmsg-example")
		if err != nil {
			log.Fatal(err)
		}
		dirs = append(dirs, dir)
		n, err := node.New(node.Config{
			DataDir:        dir,
			ListenAddrs:    []string{"/ip4/127.0.0.1/tcp/0"},
			BootstrapPeers: boot,
			NoMDNS:         true, // stay on loopback: no multicast
			NoPortMap:      true,
			DHTMode:        node.DHTServer, // Auto stays a client on loopback
		})
		if err != nil {
			log.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			log.Fatal(err)
		}
		return n
	}
	alice := start()
	bob := start(alice.AddrInfo())
	defer func() {
		alice.Close()
		bob.Close()
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}()

	events := bob.Watch(ctx, 0, node.EventMessage)
	if _, err := alice.Send(ctx, bob.ID(), "Hi Bob, it's Alice."); err != nil {
		log.Fatal(err)
	}
	e, err := events.Next()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Text)
	// Output: Hi Bob, it's Alice.
}
