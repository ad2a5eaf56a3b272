// Command dhtscale measures p2pmsg networks of many nodes on one machine
// (issue 12, item 7): DHT lookups and first contacts at each network
// size, the memory, file descriptors and join time per node, and how each
// grows with the number of nodes.
//
//	go run ./scripts/dhtscale [-n 100,300,1000] [flags]
//
// One binary, two roles. Run plainly, it is the coordinator; it starts
// itself again as "dhtscale worker" processes, each running up to
// -per-proc real nodes (package node, a data directory each, TCP on
// 127.0.0.1 only), and tells them what to do over their stdin and stdout
// (proto.go). Several processes, because a node holds 50 to 110 file
// descriptors (its SQLite files, a listener, its connections: both ends
// of a connection between two nodes of one process are in that process),
// so one process stops near 170 nodes on a limit of 20,000; and so that
// one garbage collector does not pause every node.
//
// For each N it (network.go) starts the seeds one at a time, then the
// other nodes in batches of -batch across the processes (node.Start
// returns once a node has bootstrapped and refreshed its routing table),
// each node bootstrapping from -boot-peers seeds picked at random (more
// seeds for larger networks: seedCount in run.go says why); has every
// node publish its bundle once more on the whole network (the 12-hourly
// republication: a record published while the network was small sits
// elsewhere) and waits until each has published to at least one peer.
// After -settle at rest, and once the machine beside the bench is quiet
// (machine.go), it reads the idle CPU and measures, one at a time so that
// each figure is a latency:
//
//   - lookups (lookup.go): dht.Dual.Lookup, as a node calls it, of
//     random nodes' bundles, by a DHT client in this process on a libp2p
//     host of its own;
//   - first contacts (contact.go): a node that knows only a peer ID sends
//     it a message, timed from Send to the "delivered" state event;
//
// and each worker's RSS, Go heap and open descriptors, after a GC. Every
// loop is bounded in count and time, every wait has a deadline; the
// workers die with the coordinator (procattr_linux.go) and remove their
// directories. scripts/dht-scale.sh builds it and runs the default set;
// report.go prints the table, the growth with N and the targets.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	sizes         []int
	perProc       int
	minProcs      int
	seeds         int
	bootPeers     int
	seedLoad      int
	seedLow       int
	seedHigh      int
	batch         int
	parallel      int
	republish     bool
	lookups, warm int
	contacts      int
	knowOnlyID    bool
	settle        time.Duration
	quiet         float64
	quietWait     time.Duration
	seed          uint64
	keep          bool
	flags         workerFlags
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := workerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "dhtscale worker:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	sizes := flag.String("n", "100,300,1000", "the network sizes, comma-separated, each a network of its own")
	flag.IntVar(&o.perProc, "per-proc", 125, "nodes per worker process at most")
	flag.IntVar(&o.minProcs, "min-procs", 2, "worker processes at least, however small the network")
	flag.IntVar(&o.seeds, "seeds", 4, "seed nodes at least (the nodes' BootstrapPeers are seeds)")
	flag.IntVar(&o.bootPeers, "boot-peers", 2, "each node's BootstrapPeers: this many seeds picked at random; 0: every seed")
	flag.IntVar(&o.seedLoad, "seed-load", 100, "nodes per seed at most: more seeds for larger networks (with -boot-peers > 0)")
	flag.IntVar(&o.seedLow, "seed-conn-low", 200, "the seeds' ConnLow (0: -conn-low), above the nodes that keep a connection to them")
	flag.IntVar(&o.seedHigh, "seed-conn-high", 240, "the seeds' ConnHigh (0: -conn-high), below their resource manager's 252 inbound connections")
	flag.IntVar(&o.batch, "batch", 32, "nodes joining at once, across all processes (the seeds take each one's handshake)")
	flag.IntVar(&o.parallel, "publish-parallel", 4, "publications at once in each process, in the republication round")
	flag.BoolVar(&o.republish, "republish", true, "every node publishes once more when all have joined")
	flag.IntVar(&o.lookups, "lookups", 200, "lookups measured per network")
	flag.IntVar(&o.warm, "lookup-warmup", 10, "lookups made first and not counted")
	flag.IntVar(&o.contacts, "contacts", 50, "first contacts per network (pairs of distinct nodes in different processes)")
	flag.BoolVar(&o.knowOnlyID, "know-only-id", true, "the sender forgets the target's addresses and connection first: the DHT must find it")
	flag.DurationVar(&o.settle, "settle", 90*time.Second, "rest between the last publication and the measurements (the idle CPU is read over its last 20 s)")
	flag.Float64Var(&o.quiet, "quiet", 0.3, "before the idle reading and the measurements, wait for the machine beside the bench to use at most this many cores")
	flag.DurationVar(&o.quietWait, "quiet-wait", 10*time.Minute, "how long to wait for that, at most, each time (0: do not wait)")
	flag.Uint64Var(&o.seed, "seed", 1, "the random seed of the choice of lookups and pairs")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (the nodes' stores, the workers' logs)")
	flag.StringVar(&o.flags.dhtMode, "dht-mode", "", "node.Config.DHTMode of every node: auto, server, client; empty: the node's default")
	flag.IntVar(&o.flags.connLow, "conn-low", 16, "node.Config.ConnLow of every node (and the lookup client)")
	flag.IntVar(&o.flags.connHigh, "conn-high", 32, "node.Config.ConnHigh of every node (and the lookup client)")
	flag.StringVar(&o.flags.logLevel, "log-level", "", "the nodes' log level, into each worker's log (empty: none)")
	flag.StringVar(&o.flags.profileDir, "profile", "", "each worker writes a CPU profile of every 30 s, and a heap profile at the end, into this directory")
	jsonOut := flag.String("json", "", "also write the results to this file, as JSON")
	timeout := flag.Duration("timeout", 4*time.Hour, "the whole run's bound (1,000 nodes on 2 cores took an hour to join)")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "dhtscale: -n: %q is not a network size\n", s)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.perProc < 1 || o.minProcs < 1 || o.batch < 1 || o.seeds < 1 || o.seedLoad < 1 || o.bootPeers < 0 ||
		o.flags.connLow > o.flags.connHigh || o.seedLow > o.seedHigh || o.settle < idleWindow {
		fmt.Fprintln(os.Stderr, "dhtscale: -per-proc, -min-procs, -batch, -seeds and -seed-load must be positive, -conn-low at most -conn-high (and for seeds), -settle at least 20s")
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	printSetup(o)
	var results []*result
	failed := false
	for _, n := range o.sizes {
		r, err := runSize(ctx, n, o)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dhtscale: N=%d: %v\n", n, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		r.print()
		results = append(results, r)
	}
	ok := report(results, o)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "dhtscale:", err)
		}
	}
	if failed || !ok {
		os.Exit(1)
	}
}

func printSetup(o options) {
	host, _ := os.Hostname()
	fmt.Printf("dhtscale: %s, %d cores (GOMAXPROCS %d per process), %s, %s\n", host, runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), runtime.Version())
	mode := o.flags.dhtMode
	if mode == "" {
		mode = "(the node's default)"
	}
	boot := fmt.Sprintf("%d random seeds", o.bootPeers)
	if o.bootPeers == 0 {
		boot = "every seed"
	}
	fmt.Printf("nodes: TCP on 127.0.0.1, no mDNS, no port mapping, DHT mode %s, connections %d-%d; bootstrap peers: %s (%d seeds at least, %d nodes per seed at most; seeds' connections %d-%d); batches of %d; at most %d nodes a process, %d processes at least\n",
		mode, o.flags.connLow, o.flags.connHigh, boot, o.seeds, o.seedLoad, or(o.seedLow, o.flags.connLow), or(o.seedHigh, o.flags.connHigh), o.batch, o.perProc, o.minProcs)
	fmt.Printf("per network: %d lookups (after %d not counted), %d first contacts (know-only-id %v), republish %v, rest %v, seed %d\n\n",
		o.lookups, o.warm, o.contacts, o.knowOnlyID, o.republish, o.settle, o.seed)
}
