package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// One network's run: build it, let it rest, measure, take it down.

// runSize builds a network of n nodes, measures it and takes it down.
func runSize(ctx context.Context, n int, o options) (*result, error) {
	procs := max(o.minProcs, (n+o.perProc-1)/o.perProc)
	dir, err := os.MkdirTemp("", fmt.Sprintf("dhtscale-%d-", n))
	if err != nil {
		return nil, err
	}
	progress := func(s string) { fmt.Fprintf(os.Stderr, "%s [N=%d] %s\n", time.Now().Format("15:04:05"), n, s) }
	if o.keep {
		progress("keeping " + dir)
	} else {
		defer os.RemoveAll(dir)
	}
	seeds := seedCount(n, o)
	progress(fmt.Sprintf("%d processes, %d seeds, batches of %d", procs, seeds, o.batch))
	rng := rand.New(rand.NewPCG(o.seed, uint64(n)))
	m0 := markCPU(nil)
	nw, err := buildNetwork(ctx, dir, netConfig{n: n, procs: procs, seeds: seeds, bootPeers: o.bootPeers,
		seedLow: o.seedLow, seedHigh: o.seedHigh, batch: o.batch, parallel: o.parallel,
		republish: o.republish, flags: o.flags}, rng, progress)
	if err != nil {
		return nil, err
	}
	defer nw.close()
	if len(nw.nodes) < 2 {
		return nil, errors.New("fewer than two nodes started")
	}
	r := &result{N: n, Nodes: len(nw.nodes), Procs: procs, Seeds: len(nw.seeds)}
	r.setJoin(nw)
	r.CPUJoin = cpuBetween(m0, markCPU(nw.pids()))
	progress(fmt.Sprintf("joined in %v; published (%v); resting %v", nw.joinWall.Round(time.Second), nw.pubWait.Round(time.Second), o.settle))

	// The rest: past the connection manager's one-minute grace period,
	// so that connections are trimmed to the caps before anything is
	// measured; the idle CPU is read over its last idleWindow.
	if !sleepCtx(ctx, o.settle-idleWindow) {
		return nil, ctx.Err()
	}
	quiet := func() {
		others, ok := waitQuiet(ctx, nw.pids, o.quiet, o.quietWait, progress)
		r.Quiet = append(r.Quiet, quietCheck{others, ok})
	}
	quiet()
	progress(fmt.Sprintf("reading the idle CPU for %v", idleWindow))
	m1 := markCPU(nw.pids())
	if !sleepCtx(ctx, idleWindow) {
		return nil, ctx.Err()
	}
	m2 := markCPU(nw.pids())
	r.CPURest = cpuBetween(m1, m2)
	rested, err := nw.stats(ctx)
	if err != nil {
		return nil, err
	}
	r.Rested = memOf(rested)
	r.Load = loadAvg()
	sts, err := nw.status(ctx)
	if err != nil {
		return nil, err
	}
	r.setStatus(nw.nodes, sts)

	boot, err := nw.bootInfos(rng)
	if err != nil {
		return nil, err
	}
	quiet()
	m3 := markCPU(nw.pids())
	progress(fmt.Sprintf("%d lookups", o.lookups))
	if lc, err := newLookupClient(ctx, boot, o.flags.connLow, o.flags.connHigh); err != nil {
		// Reported, and the first contacts are still measured: a network
		// whose seeds refuse newcomers is a finding, not a crash.
		r.LookupErrs = []string{"the lookup client could not join: " + err.Error()}
	} else {
		r.setLookups(lc.lookups(ctx, nw.nodes, o.warm, o.lookups, rng))
		lc.close()
	}

	pairs := contactPairs(nw.nodes, o.contacts, rng)
	progress(fmt.Sprintf("%d first contacts", len(pairs)))
	r.setContacts(nw.firstContacts(ctx, pairs, o.knowOnlyID))
	r.CPUMeasure = cpuBetween(m3, markCPU(nw.pids()))

	after, err := nw.stats(ctx)
	if err != nil {
		return nil, err
	}
	r.After = memOf(after)
	if err := nw.profileHeap(ctx); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r, nil
}

// seedCount is the number of seeds for n nodes: at least -seeds, and
// enough that no seed is the bootstrap peer of more than -seed-load
// nodes. node's redialLoop keeps every bootstrap peer connected, dialling
// it again every 2 s while it is away: a seed must keep a connection to
// every node that names it, and its resource manager takes at most 252
// inbound connections (go-libp2p's defaults scaled to this machine). Four
// seeds named by every node of a network of 300 trim those connections
// (the cap) and are dialled again at once, by hundreds of nodes every
// 2 s, until they refuse every new connection (BENCHMARKS.md).
func seedCount(n int, o options) int {
	if o.bootPeers == 0 {
		return o.seeds
	}
	return min(n, max(o.seeds, (n*o.bootPeers+o.seedLoad-1)/o.seedLoad))
}

// idleWindow: the end of the rest, over which the idle CPU is read.
const idleWindow = 20 * time.Second

// sleepCtx waits d, or less if ctx ends first; it reports whether it
// waited d.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
