package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Building one network: worker processes, seed nodes, the other nodes in
// batches, and the publication of every bundle.

// nodeRef is a node as the coordinator knows it.
type nodeRef struct {
	proc  int // the worker that runs it
	idx   int // its number in that worker
	id    string
	addrs []string
	seed  bool
	newT  time.Duration // node.New
	joinT time.Duration // node.Start
}

type netConfig struct {
	n     int // nodes wanted
	procs int
	seeds int
	// bootPeers: each node's BootstrapPeers are this many seeds, picked
	// at random (0: every seed); seedLow and seedHigh are the seeds'
	// connection caps (0: as the other nodes'). See seedCount.
	bootPeers         int
	seedLow, seedHigh int
	batch             int // nodes joining at once, in all processes together
	parallel          int // publications at once in each process
	republish         bool
	flags             workerFlags // with flags.profileDir, profiles (profile.go)
}

type scaleNet struct {
	cfg   netConfig
	procs []*workerProc
	nodes []*nodeRef
	seeds []*nodeRef

	failed    []string      // nodes that did not start, with the reason
	joinWall  time.Duration // from the first seed's start to the last batch's
	published []published   // the republication, when asked
	pubWait   time.Duration // from the end of the joins until every node had published
	unpub     int           // nodes still not published (or with no replica) at the deadline
}

// startCallLimit bounds an opStart: the Starts are cut at startTimeout,
// but node.New takes no context, and on a saturated machine (a network
// of 1,000 on two cores) a worker's timers fire tens of seconds late.
const startCallLimit = startTimeout + 7*time.Minute

// publishWait bounds the wait for every node to have published.
const publishWait = 3 * time.Minute

func buildNetwork(ctx context.Context, dir string, cfg netConfig, rng *rand.Rand, progress func(string)) (*scaleNet, error) {
	nw := &scaleNet{cfg: cfg}
	for i := range cfg.procs {
		w, err := startWorker(i, dir, cfg.flags)
		if err != nil {
			nw.close()
			return nil, fmt.Errorf("starting worker %d: %w", i, err)
		}
		nw.procs = append(nw.procs, w)
	}
	quota := make([]int, cfg.procs) // nodes each process is still to start
	for i := range cfg.n {
		quota[i%cfg.procs]++
	}
	t0 := time.Now()
	// Seeds one at a time, spread over the processes, each bootstrapped
	// from those before it.
	for i := range min(cfg.seeds, cfg.n) {
		p := i % cfg.procs
		spec := nodeSpec{Boot: nw.bootFor(rng), ConnLow: cfg.seedLow, ConnHigh: cfg.seedHigh}
		rep, err := nw.procs[p].call(ctx, request{Op: opStart, Nodes: []nodeSpec{spec}}, startCallLimit)
		if err != nil {
			nw.close()
			return nil, fmt.Errorf("seed %d: %w", i, err)
		}
		quota[p]--
		nw.add(p, rep.Started, true)
		if len(nw.seeds) == 0 {
			nw.close()
			return nil, fmt.Errorf("seed %d did not start: %s", i, rep.Started[0].Err)
		}
	}
	// The others in batches: all at once would exceed what the seeds'
	// resource managers accept in a burst of handshakes.
	lastReport := time.Now()
	for rest := sum(quota); rest > 0; rest = sum(quota) {
		share := make([]int, cfg.procs)
		for b, p := min(cfg.batch, rest), 0; b > 0; p = (p + 1) % cfg.procs {
			if quota[p] > share[p] {
				share[p]++
				b--
			}
		}
		specs := make([][]nodeSpec, cfg.procs)
		for p := range specs {
			for range share[p] {
				specs[p] = append(specs[p], nodeSpec{Boot: nw.bootFor(rng)})
			}
		}
		reps, err := callAll(ctx, nw.procs, startCallLimit, func(i int) *request {
			if share[i] == 0 {
				return nil
			}
			return &request{Op: opStart, Nodes: specs[i]}
		})
		if err != nil {
			nw.close()
			return nil, err
		}
		for p, rep := range reps {
			quota[p] -= share[p]
			nw.add(p, rep.Started, false)
		}
		if time.Since(lastReport) > 15*time.Second || sum(quota) == 0 {
			progress(fmt.Sprintf("%d nodes up, %d failed (%v)", len(nw.nodes), len(nw.failed), time.Since(t0).Round(time.Second)))
			lastReport = time.Now()
		}
	}
	nw.joinWall = time.Since(t0)

	t1 := time.Now()
	if cfg.republish {
		// Records published while the network was growing sit on the
		// closest nodes of a smaller network. A running network
		// republishes every 12 hours; this is that round, so that each
		// record is where a lookup in this network looks for it.
		// A worker publishes its nodes parallel at a time, each within
		// publishTimeout.
		perProc := (cfg.n + cfg.procs - 1) / cfg.procs
		par := max(1, cfg.parallel)
		bound := time.Duration((perProc+par-1)/par) * publishTimeout
		reps, err := callAll(ctx, nw.procs, bound+time.Minute, func(int) *request {
			return &request{Op: opPublish, Parallel: cfg.parallel}
		})
		if err != nil {
			nw.close()
			return nil, err
		}
		for _, rep := range reps {
			nw.published = append(nw.published, rep.Published...)
		}
	}
	if err := nw.waitPublished(ctx); err != nil {
		nw.close()
		return nil, err
	}
	nw.pubWait = time.Since(t1)
	return nw, nil
}

// add records the nodes a worker started.
func (nw *scaleNet) add(proc int, ss []started, seed bool) {
	idx := 0
	for _, w := range nw.nodes {
		if w.proc == proc {
			idx++
		}
	}
	for _, s := range ss {
		if s.Err != "" {
			nw.failed = append(nw.failed, s.Err)
			continue
		}
		r := &nodeRef{proc: proc, idx: idx, id: s.ID, addrs: s.Addrs, seed: seed,
			newT: time.Duration(s.NewNS), joinT: time.Duration(s.JoinNS)}
		idx++
		nw.nodes = append(nw.nodes, r)
		if seed {
			nw.seeds = append(nw.seeds, r)
		}
	}
}

// pids are the workers' process ids.
func (nw *scaleNet) pids() []int {
	var out []int
	for _, w := range nw.procs {
		out = append(out, w.cmd.Process.Pid)
	}
	return out
}

// bootFor picks a node's bootstrap peers: cfg.bootPeers seeds at random
// (every seed when bootPeers is 0 or there are fewer), their addresses.
func (nw *scaleNet) bootFor(rng *rand.Rand) []string {
	seeds := nw.seeds
	if k := nw.cfg.bootPeers; k > 0 && k < len(seeds) {
		seeds = shuffled(seeds, rng)[:k]
	}
	var out []string
	for _, s := range seeds {
		out = append(out, s.addrs...)
	}
	return out
}

// bootInfos are bootstrap peers picked as for a node, as AddrInfos, for
// the lookup client.
func (nw *scaleNet) bootInfos(rng *rand.Rand) ([]peer.AddrInfo, error) {
	var addrs []ma.Multiaddr
	for _, s := range nw.bootFor(rng) {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	return peer.AddrInfosFromP2pAddrs(addrs...)
}

// waitPublished polls every node until each has published its bundle to
// at least one peer, within publishWait; the stragglers are counted.
func (nw *scaleNet) waitPublished(ctx context.Context) error {
	deadline := time.Now().Add(publishWait)
	for {
		sts, err := nw.status(ctx)
		if err != nil {
			return err
		}
		nw.unpub = 0
		for _, st := range sts {
			if !st.Published || st.Replicas == 0 {
				nw.unpub++
			}
		}
		if nw.unpub == 0 || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// status is every node's status, in the order of nw.nodes.
func (nw *scaleNet) status(ctx context.Context) ([]nodeStatus, error) {
	reps, err := callAll(ctx, nw.procs, time.Minute, func(int) *request { return &request{Op: opStatus} })
	if err != nil {
		return nil, err
	}
	out := make([]nodeStatus, len(nw.nodes))
	for i, n := range nw.nodes {
		if st := reps[n.proc].Status; n.idx < len(st) {
			out[i] = st[n.idx]
		}
	}
	return out, nil
}

// statsTimeout bounds a worker's stats, whose full GC of a thousand
// nodes' heaps, every worker at once on two busy cores, took more than a
// minute.
const statsTimeout = 10 * time.Minute

// stats is every worker's footprint.
func (nw *scaleNet) stats(ctx context.Context) ([]procStats, error) {
	reps, err := callAll(ctx, nw.procs, statsTimeout, func(int) *request { return &request{Op: opStats} })
	if err != nil {
		return nil, err
	}
	var out []procStats
	for _, rep := range reps {
		out = append(out, *rep.Stats)
	}
	return out, nil
}

// close stops every worker, all at once.
func (nw *scaleNet) close() {
	done := make(chan struct{}, len(nw.procs))
	for _, w := range nw.procs {
		go func() { w.stop(); done <- struct{}{} }()
	}
	for range nw.procs {
		<-done
	}
}

func sum(s []int) int {
	t := 0
	for _, v := range s {
		t += v
	}
	return t
}

// firstErrors is the distinct messages of errs, the most frequent first,
// with their counts, at most limit of them.
func firstErrors(errs []string, limit int) []string {
	count := map[string]int{}
	for _, e := range errs {
		count[e]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return count[keys[i]] > count[keys[j]] })
	var out []string
	for _, k := range keys[:min(limit, len(keys))] {
		out = append(out, fmt.Sprintf("%d× %s", count[k], k))
	}
	return out
}
