package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// The figures of one network, and the table, growth and targets across
// networks. MB are 10^6 bytes, as in BENCHMARKS.md.

type result struct {
	N, Nodes, Procs, Seeds int
	Failed                 []string `json:",omitempty"` // nodes that did not start

	NewP50, JoinP50, JoinP95, JoinMax time.Duration // node.New; node.Start (bootstrap and refresh)
	JoinWall                          time.Duration // the whole network, seeds to last batch
	PubP50, PubP95                    time.Duration // the republication round
	ReplicasP50, ReplicasMin          int
	PubWait                           time.Duration
	Unpublished                       int

	Conns, RT float64 // per node but the seeds, after the rest
	SeedConns float64 // per seed
	MaxConns  int     // the most of any node
	Load      string  // the load average then
	// The CPU of the machine and of the bench (machine.go), in cores:
	// while the network was built, over the rest's last 20 s, and while
	// the lookups and first contacts ran.
	CPUJoin, CPURest, CPUMeasure phaseCPU
	// Quiet: the CPU beside the bench just before the idle reading and
	// before the measurements, and whether it was below -quiet.
	Quiet []quietCheck

	LookupTried, LookupFound  int
	LookupP50, LookupP95      time.Duration
	LookupMax                 time.Duration
	LookupErrs                []string `json:",omitempty"`
	LookupClientRT            int
	ContactTried, ContactDone int
	ContactConnectedBefore    int
	ContactWaited             int
	ContactP50, ContactP95    time.Duration // Send to "delivered"
	ContactMax                time.Duration
	SendP50, SendP95          time.Duration // Send's return: peer found, bundle fetched, message queued
	ContactErrs               []string      `json:",omitempty"`

	Rested, After mem // at rest before the measurements, and after them
}

type quietCheck struct {
	Others float64
	Quiet  bool
}

// mem is the workers' footprint, per node.
type mem struct {
	RSS, RSSAboveBase, HWM, Heap, HeapAlloc float64 // bytes per node
	FDs, Goroutines, Threads                float64 // per node
	Procs                                   int
}

func memOf(ss []procStats) mem {
	var m mem
	nodes := 0
	for _, s := range ss {
		nodes += s.Nodes
		m.RSS += float64(s.RSS)
		m.RSSAboveBase += float64(s.RSS - s.BaseRSS)
		m.HWM += float64(s.HWM)
		m.Heap += float64(s.HeapInuse)
		m.HeapAlloc += float64(s.HeapAlloc)
		m.FDs += float64(s.FDs)
		m.Goroutines += float64(s.Goroutines)
		m.Threads += float64(s.Threads)
	}
	if nodes == 0 {
		return m
	}
	d := float64(nodes)
	return mem{RSS: m.RSS / d, RSSAboveBase: m.RSSAboveBase / d, HWM: m.HWM / d, Heap: m.Heap / d, HeapAlloc: m.HeapAlloc / d,
		FDs: m.FDs / d, Goroutines: m.Goroutines / d, Threads: m.Threads / d, Procs: len(ss)}
}

func (r *result) setJoin(nw *scaleNet) {
	var news, joins []time.Duration
	for _, n := range nw.nodes {
		news = append(news, n.newT)
		if !n.seed {
			joins = append(joins, n.joinT)
		}
	}
	r.Failed = firstErrors(nw.failed, 5)
	r.NewP50 = pct(news, 50)
	r.JoinP50, r.JoinP95, r.JoinMax = pct(joins, 50), pct(joins, 95), pct(joins, 100)
	r.JoinWall, r.PubWait, r.Unpublished = nw.joinWall, nw.pubWait, nw.unpub
	var pubs []time.Duration
	var reps []int
	for _, p := range nw.published {
		if p.Err == "" {
			pubs = append(pubs, time.Duration(p.NS))
		}
		reps = append(reps, p.Replicas)
	}
	r.PubP50, r.PubP95 = pct(pubs, 50), pct(pubs, 95)
	if len(reps) > 0 {
		slices.Sort(reps)
		r.ReplicasP50, r.ReplicasMin = reps[len(reps)/2], reps[0]
	}
}

// setStatus takes the nodes' connections and routing tables (sts in the
// order of nodes).
func (r *result) setStatus(nodes []*nodeRef, sts []nodeStatus) {
	others, seeds := 0, 0
	for i, s := range sts {
		r.MaxConns = max(r.MaxConns, s.Conns)
		if nodes[i].seed {
			r.SeedConns += float64(s.Conns)
			seeds++
			continue
		}
		r.Conns += float64(s.Conns)
		r.RT += float64(s.RT)
		others++
	}
	if others > 0 {
		r.Conns /= float64(others)
		r.RT /= float64(others)
	}
	if seeds > 0 {
		r.SeedConns /= float64(seeds)
	}
}

func (r *result) setLookups(l lookupResult) {
	r.LookupTried, r.LookupFound = l.tried, l.found
	r.LookupP50, r.LookupP95, r.LookupMax = pct(l.lat, 50), pct(l.lat, 95), pct(l.lat, 100)
	r.LookupErrs = firstErrors(l.errs, 5)
	r.LookupClientRT = l.rt
}

func (r *result) setContacts(c contactResult) {
	r.ContactTried, r.ContactDone = c.tried, c.delivered
	r.ContactConnectedBefore, r.ContactWaited = c.connectedBefore, c.waited
	r.ContactP50, r.ContactP95, r.ContactMax = pct(c.total, 50), pct(c.total, 95), pct(c.total, 100)
	r.SendP50, r.SendP95 = pct(c.send, 50), pct(c.send, 95)
	r.ContactErrs = firstErrors(c.errs, 5)
}

// pct is the p-th percentile by nearest rank (p 100: the maximum); 0 for
// no samples.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	v := float64(d) / 1e6
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func mb(b float64) string { return fmt.Sprintf("%.2f MB", b/1e6) }

// print gives one network's figures in full.
func (r *result) print() {
	fmt.Printf("=== N = %d: %d nodes up in %d processes (%d seeds)\n", r.N, r.Nodes, r.Procs, r.Seeds)
	for _, f := range r.Failed {
		fmt.Printf("  node failed to start: %s\n", f)
	}
	fmt.Printf("  join: node.New p50 %s; node.Start p50 %s, p95 %s, max %s; whole network %v\n",
		ms(r.NewP50), ms(r.JoinP50), ms(r.JoinP95), ms(r.JoinMax), r.JoinWall.Round(100*time.Millisecond))
	fmt.Printf("  republication: p50 %s, p95 %s, replicas p50 %d (min %d); all published after %v, %d not\n",
		ms(r.PubP50), ms(r.PubP95), r.ReplicasP50, r.ReplicasMin, r.PubWait.Round(100*time.Millisecond), r.Unpublished)
	fmt.Printf("  at rest: %.1f connections and %.1f routing-table peers per node (seeds: %.1f connections; most: %d); load average %s\n",
		r.Conns, r.RT, r.SeedConns, r.MaxConns, r.Load)
	fmt.Printf("  CPU, in cores, of the bench's processes / of the whole machine: building %.2f / %.2f; at rest %.2f / %.2f (%.2f ms a second per node); measuring %.2f / %.2f\n",
		r.CPUJoin.Bench, r.CPUJoin.Machine, r.CPURest.Bench, r.CPURest.Machine, 1000*r.CPURest.Bench/float64(r.Nodes), r.CPUMeasure.Bench, r.CPUMeasure.Machine)
	for i, q := range r.Quiet {
		when := [...]string{"before the idle reading", "before the measurements"}[min(i, 1)]
		verdict := "quiet"
		if !q.Quiet {
			verdict = "NOT quiet"
		}
		fmt.Printf("  the machine beside the bench %s: %.2f cores (%s)\n", when, q.Others, verdict)
	}
	fmt.Printf("  lookups: %d of %d found; p50 %s, p95 %s, max %s (client's routing table: %d)\n",
		r.LookupFound, r.LookupTried, ms(r.LookupP50), ms(r.LookupP95), ms(r.LookupMax), r.LookupClientRT)
	for _, e := range r.LookupErrs {
		fmt.Printf("    %s\n", e)
	}
	fmt.Printf("  first contacts: %d of %d delivered (%d were connected before, %d waited for a bundle); Send→delivered p50 %s, p95 %s, max %s; Send returned p50 %s, p95 %s\n",
		r.ContactDone, r.ContactTried, r.ContactConnectedBefore, r.ContactWaited, ms(r.ContactP50), ms(r.ContactP95), ms(r.ContactMax), ms(r.SendP50), ms(r.SendP95))
	for _, e := range r.ContactErrs {
		fmt.Printf("    %s\n", e)
	}
	for _, m := range []struct {
		when string
		m    mem
	}{{"at rest", r.Rested}, {"after  ", r.After}} {
		fmt.Printf("  per node %s: RSS %s (%s above the workers' empty start; peak %s), Go heap %s in use, %.1f fds, %.0f goroutines, %.2f threads\n",
			m.when, mb(m.m.RSS), mb(m.m.RSSAboveBase), mb(m.m.HWM), mb(m.m.Heap), m.m.FDs, m.m.Goroutines, m.m.Threads)
	}
	fmt.Println()
}

// report prints the table across networks, the growth with N and the
// targets; it reports whether every target that could be judged was met.
func report(rs []*result, o options) bool {
	if len(rs) == 0 {
		fmt.Println("no network was measured")
		return false
	}
	fmt.Println("| N (processes) | lookup p50 / p95 | first contact p50 / p95 | RSS / node | heap / node | fds / node | join p50 / p95 (network) | conns / node |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Printf("| %d (%d) | %s / %s | %s / %s | %s | %s | %.1f | %s / %s (%v) | %.1f |\n",
			r.Nodes, r.Procs, ms(r.LookupP50), ms(r.LookupP95), ms(r.ContactP50), ms(r.ContactP95),
			mb(r.After.RSS), mb(r.After.Heap), r.After.FDs, ms(r.JoinP50), ms(r.JoinP95), r.JoinWall.Round(time.Second), r.Conns)
	}
	first := rs[0]
	if len(rs) > 1 {
		fmt.Printf("\ngrowth from N = %d (log N ratio in brackets):\n", first.Nodes)
		for _, r := range rs[1:] {
			logRatio := math.Log(float64(r.Nodes)) / math.Log(float64(first.Nodes))
			fmt.Printf("  N = %d (×%.1f nodes, log ×%.2f): lookup p50 ×%.2f, p95 ×%.2f; first contact p50 ×%.2f, p95 ×%.2f; RSS/node ×%.2f; heap/node ×%.2f; fds/node ×%.2f; join p50 ×%.2f\n",
				r.Nodes, float64(r.Nodes)/float64(first.Nodes), logRatio,
				ratio(r.LookupP50, first.LookupP50), ratio(r.LookupP95, first.LookupP95),
				ratio(r.ContactP50, first.ContactP50), ratio(r.ContactP95, first.ContactP95),
				r.After.RSS/first.After.RSS, r.After.Heap/first.After.Heap, r.After.FDs/first.After.FDs,
				ratio(r.JoinP50, first.JoinP50))
		}
	}

	fmt.Println("\ntargets (issue 12):")
	ok := true
	verdict := func(name string, judged, met bool, got string) {
		v := "PASS"
		switch {
		case !judged:
			v = "n/a "
		case !met:
			v, ok = "FAIL", false
		}
		fmt.Printf("  %s  %s: %s\n", v, name, got)
	}
	small, large := find(rs, 100), find(rs, 1000)
	if small != nil && large != nil {
		lim := time.Duration(1.5 * float64(small.LookupP95))
		verdict("lookup p95 at 1,000 ≤ 1.5 × p95 at 100", true, small.LookupFound > 0 && large.LookupTried > 0 &&
			large.LookupP95 <= lim && large.LookupFound == large.LookupTried,
			fmt.Sprintf("%s against 1.5 × %s = %s (×%.2f); %d of %d found", ms(large.LookupP95), ms(small.LookupP95), ms(lim),
				ratio(large.LookupP95, small.LookupP95), large.LookupFound, large.LookupTried))
	} else {
		verdict("lookup p95 at 1,000 ≤ 1.5 × p95 at 100", false, false, "needs both N = 100 and N = 1000")
	}
	if large != nil {
		verdict("first contact p50 ≤ 100 ms at 1,000 nodes", true, large.ContactP50 > 0 && large.ContactP50 <= 100*time.Millisecond && 2*large.ContactDone > large.ContactTried,
			fmt.Sprintf("%s (%d of %d delivered)", ms(large.ContactP50), large.ContactDone, large.ContactTried))
	} else {
		verdict("first contact p50 ≤ 100 ms at 1,000 nodes", false, false, "N = 1000 not measured")
	}
	for _, r := range rs {
		verdict(fmt.Sprintf("≤ 10 MB per node at N = %d", r.Nodes), true, r.After.RSS <= 10e6,
			fmt.Sprintf("RSS %s, Go heap %s", mb(r.After.RSS), mb(r.After.Heap)))
	}
	return ok
}

func find(rs []*result, n int) *result {
	for _, r := range rs {
		if r.N == n {
			return r
		}
	}
	return nil
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func memTotal() string {
	s := procStatusOf("/proc/meminfo")
	if s["MemTotal"] == 0 {
		return "memory ?"
	}
	return fmt.Sprintf("%.1f GiB", float64(s["MemTotal"])/(1<<20))
}
