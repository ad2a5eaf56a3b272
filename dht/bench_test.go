package dht

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDHT50 measures Publish and Lookup latency on 50 DHT servers on
// 127.0.0.1, all in this process, bootstrapped through one node. Every
// node has published once before the measurements, so lookups find
// records. Lookup runs with each quorum that lookupQuorum could take
// (0 = a full search).
func BenchmarkDHT50(b *testing.B) {
	const n = 50
	before := runtime.NumGoroutine()
	nodes := startNetwork(b, n)
	seq := make([]uint64, n)
	ctx := context.Background()
	for i, nd := range nodes {
		seq[i] = 1
		if _, err := nd.d.Publish(ctx, nd.u.peer, nd.u.bundle(b, 1, week(), false)); err != nil {
			b.Fatal(err)
		}
	}
	goroutines := float64(runtime.NumGoroutine()-before) / n

	b.Run("publish", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		replicas := 0
		for i := range b.N {
			k := i % n
			nd := nodes[k]
			seq[k]++
			bundle := nd.u.bundle(b, seq[k], week(), false)
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			start := time.Now()
			r, err := nd.d.Publish(pctx, nd.u.peer, bundle)
			lat = append(lat, time.Since(start))
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			replicas += r
		}
		reportLatency(b, lat)
		b.ReportMetric(float64(replicas)/float64(b.N), "replicas/op")
		b.ReportMetric(goroutines, "goroutines/node")
	})

	for _, q := range []int{1, 2, 3, 0} {
		b.Run(fmt.Sprintf("lookup/quorum-%d", q), func(b *testing.B) {
			for _, nd := range nodes {
				nd.d.quorum = q
			}
			defer func() {
				for _, nd := range nodes {
					nd.d.quorum = lookupQuorum
				}
			}()
			lat := make([]time.Duration, 0, b.N)
			stale := 0
			for range b.N {
				i, j := rand.IntN(n), rand.IntN(n-1)
				if j >= i {
					j++
				}
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				bundle, _, err := nodes[i].d.Lookup(lctx, nodes[j].u.peer, 0)
				lat = append(lat, time.Since(start))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				// With a quorum a lookup can return an older bundle than the
				// newest: that is what minSeq is for. Count it.
				if bundle.Seq != seq[j] {
					stale++
				}
			}
			reportLatency(b, lat)
			b.ReportMetric(float64(stale)/float64(b.N), "stale/op")
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p int) float64 {
		i := min(len(lat)*p/100, len(lat)-1)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(95), "p95-ms")
}

// childEnv makes the test binary, re-executed, run TestDHTMemoryChild with
// that many nodes.
const childEnv = "P2PMSG_DHT_MEMORY_CHILD_NODES"

// BenchmarkDHTMemory measures the resident memory of n nodes in a
// process of their own (the test binary re-executed), so that nothing of
// the benchmark itself is counted: VmRSS once the nodes have bootstrapped,
// published and looked up, divided by n. nodes-1 is one daemon's DHT
// part, process overhead included; nodes-50 spreads that overhead.
func BenchmarkDHTMemory(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("nodes-%d", n), func(b *testing.B) {
			for range b.N {
				rss, hwm, base, goroutines, conns := runMemoryChild(b, n)
				b.ReportMetric(float64(rss)/1024/float64(n), "MB-RSS/node")
				b.ReportMetric(float64(rss-base)/1024/float64(n), "MB-above-start/node")
				b.ReportMetric(float64(hwm)/1024/float64(n), "MB-peak/node")
				b.ReportMetric(float64(goroutines)/float64(n), "goroutines/node")
				b.ReportMetric(float64(conns)/float64(n), "conns/node")
			}
		})
	}
}

// runMemoryChild returns the child's VmRSS and VmHWM, its VmRSS before it
// started any node (all in KiB), its goroutine count and the number of
// connections its nodes hold (each counted at both ends).
func runMemoryChild(b *testing.B, n int) (rss, hwm, base, goroutines, conns int) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDHTMemoryChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		go io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			b.Errorf("child: %v", err)
		}
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "DHTCHILD ready goroutines=%d rss0=%d conns=%d", &goroutines, &base, &conns); err == nil {
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			if err != nil {
				b.Fatal(err)
			}
			return statusKiB(b, status, "VmRSS:"), statusKiB(b, status, "VmHWM:"), base, goroutines, conns
		}
		b.Log("child: ", sc.Text())
	}
	b.Fatal("the child exited before its nodes were up")
	return
}

func statusKiB(tb testing.TB, status []byte, field string) int {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatal(err)
			}
			return kb
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestDHTMemoryChild is BenchmarkDHTMemory's child; it runs only there.
// It starts the nodes, does what a node does (bootstrap, publish, look
// up), reports, and holds everything until its stdin closes.
func TestDHTMemoryChild(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(childEnv))
	if err != nil {
		t.Skip("only run by BenchmarkDHTMemory")
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	base := statusKiB(t, status, "VmRSS:")
	before := runtime.NumGoroutine()
	nodes := startNetwork(t, n)
	ctx := context.Background()
	for _, nd := range nodes {
		if _, err := nd.d.Publish(ctx, nd.u.peer, nd.u.bundle(t, 1, week(), false)); err != nil && n > 1 {
			t.Fatal(err)
		}
	}
	for range 2 * n {
		if n == 1 {
			break
		}
		i, j := rand.IntN(n), rand.IntN(n)
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err := nodes[i].d.Lookup(lctx, nodes[j].u.peer, 1)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What a long-running daemon settles to, not the last burst.
	runtime.GC()
	time.Sleep(2 * time.Second)
	conns := 0
	for _, nd := range nodes {
		conns += len(nd.h.Network().Conns())
	}
	fmt.Printf("DHTCHILD ready goroutines=%d rss0=%d conns=%d\n", runtime.NumGoroutine()-before, base, conns)
	io.Copy(io.Discard, os.Stdin)
}
