package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pmsg/p2pmsg/node"
)

// The worker role: a process that runs many nodes and does what the
// coordinator asks of them, one request at a time (proto.go). It keeps
// its nodes' data directories under -dir and removes them when it ends:
// on "stop", when its stdin closes (the coordinator has gone), and on
// SIGTERM (what the kernel sends it when the coordinator dies: see
// procattr_linux.go).

// Per-operation bounds: every wait of a worker ends.
const (
	startTimeout   = 3 * time.Minute  // one batch's Starts (a Start cut short logs the bootstrap's error and goes on)
	publishTimeout = time.Minute      // one node's publication
	contactTimeout = 60 * time.Second // one first contact, Send to "delivered"
	closeTimeout   = time.Minute      // closing every node
)

type worker struct {
	dir  string
	cfg  node.Config // the template: DataDir and BootstrapPeers are per node
	base procStats   // before the first node
	// nodes in the order the coordinator numbers them: the successful
	// starts of each opStart, in request order.
	nodes []*node.Node
	seq   int // data directories made, failed starts included
}

func workerMain(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	dir := fs.String("dir", "", "the directory for this worker's nodes (removed at the end)")
	mode := fs.String("dht-mode", "", "node.Config.DHTMode; empty: the node's default")
	low := fs.Int("conn-low", 0, "node.Config.ConnLow")
	high := fs.Int("conn-high", 0, "node.Config.ConnHigh")
	logLevel := fs.String("log-level", "", "the nodes' log level, to stderr (empty: no logs)")
	profileDir := fs.String("profile", "", "write CPU profiles here, one per 30 s (profile.go)")
	number := fs.Int("n", 0, "this worker's number, for the profiles' names")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("worker: -dir is required")
	}
	// The coordinator handles Ctrl-C and then stops us in order; the
	// SIGINT that the terminal sends the whole process group must not
	// kill us first.
	signal.Ignore(syscall.SIGINT)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		// The coordinator died, or gave up on us: leave nothing behind
		// but the profile under way, finished. The nodes' open files go
		// with the process.
		pprof.StopCPUProfile()
		os.RemoveAll(*dir)
		os.Exit(1)
	}()
	defer os.RemoveAll(*dir)
	if *profileDir != "" {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			if err := profileCPU(ctx, *profileDir, *number); err != nil {
				fmt.Fprintln(os.Stderr, "worker: CPU profile:", err)
			}
			close(done)
		}()
		defer func() { stop(); <-done }()
	}

	if err := raiseFDLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "worker: raising RLIMIT_NOFILE:", err)
	}
	w := &worker{dir: *dir, cfg: node.Config{
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		NoMDNS:      true, // multicast would leave loopback
		NoPortMap:   true, // and so would UPnP
		DHTMode:     node.DHTMode(*mode),
		ConnLow:     *low,
		ConnHigh:    *high,
	}}
	if *logLevel != "" {
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
			return fmt.Errorf("worker: -log-level: %w", err)
		}
		w.cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	w.base = readStats(0)

	conn := newLineConn(os.Stdin, os.Stdout)
	for {
		var req request
		err := conn.read(&req)
		if errors.Is(err, io.EOF) {
			w.closeAll()
			return nil
		}
		if err != nil {
			w.closeAll()
			return err
		}
		rep := w.handle(req)
		if err := conn.write(rep); err != nil {
			w.closeAll()
			return err
		}
		if req.Op == opStop {
			return nil
		}
	}
}

func (w *worker) handle(req request) reply {
	switch req.Op {
	case opStart:
		s, err := w.start(req.Nodes)
		return reply{Started: s, Err: errString(err)}
	case opPublish:
		return reply{Published: w.publish(req.Parallel)}
	case opStatus:
		return reply{Status: w.status()}
	case opContact:
		return reply{Contact: w.contact(req)}
	case opStats:
		s := readStats(len(w.nodes))
		s.BaseRSS, s.BaseFDs = w.base.RSS, w.base.FDs
		return reply{Stats: &s}
	case opStop:
		return reply{Err: errString(w.closeAll())}
	case opHeap:
		return reply{Err: errString(writeHeap(req.Path))}
	}
	return reply{Err: fmt.Sprintf("unknown op %q", req.Op)}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// start makes the nodes and starts them all at once. A node that fails
// is closed and reported; the others stay.
func (w *worker) start(specs []nodeSpec) ([]started, error) {
	count := len(specs)
	if err := w.roomFor(count); err != nil {
		return nil, err
	}
	cfgs := make([]node.Config, count)
	for i, spec := range specs {
		peers, err := addrInfos(spec.Boot)
		if err != nil {
			return nil, err
		}
		cfg := w.cfg
		cfg.DataDir = filepath.Join(w.dir, fmt.Sprintf("n%04d", w.seq+i))
		cfg.BootstrapPeers = peers
		cfg.ConnLow, cfg.ConnHigh = or(spec.ConnLow, cfg.ConnLow), or(spec.ConnHigh, cfg.ConnHigh)
		cfgs[i] = cfg
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out := make([]started, count)
	nodes := make([]*node.Node, count)
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() {
			t0 := time.Now()
			n, err := node.New(cfg)
			out[i].NewNS = int64(time.Since(t0))
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			t1 := time.Now()
			err = n.Start(ctx)
			out[i].JoinNS = int64(time.Since(t1))
			if err != nil {
				out[i].Err = err.Error()
				n.Close()
				return
			}
			out[i].ID = n.ID().String()
			for _, a := range n.Addrs() {
				out[i].Addrs = append(out[i].Addrs, a.String())
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	w.seq += count
	for _, n := range nodes {
		if n != nil {
			w.nodes = append(w.nodes, n)
		}
	}
	return out, nil
}

func addrInfos(addrs []string) ([]peer.AddrInfo, error) {
	if len(addrs) == 0 {
		return nil, nil
	}
	mas := make([]ma.Multiaddr, 0, len(addrs))
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap address %q: %w", s, err)
		}
		mas = append(mas, a)
	}
	return peer.AddrInfosFromP2pAddrs(mas...)
}

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// roomFor refuses a batch that would take the process past its file
// descriptor limit, judged by what its nodes use so far (64 each before
// the first): a clear error instead of nodes failing on "too many open
// files" halfway through a run.
func (w *worker) roomFor(count int) error {
	s := readStats(len(w.nodes))
	per := 64.0
	if len(w.nodes) > 0 {
		per = float64(s.FDs-w.base.FDs) / float64(len(w.nodes))
	}
	if need := float64(s.FDs) + 1.5*per*float64(count); s.FDLimit > 0 && need > float64(s.FDLimit) {
		return fmt.Errorf("file descriptors: %d open, %.0f per node, %d more nodes would need about %.0f of the limit of %d: use more processes (-per-proc)",
			s.FDs, per, count, need, s.FDLimit)
	}
	return nil
}

// publish makes every node publish its bundle again, parallel at a time.
func (w *worker) publish(parallel int) []published {
	out := make([]published, len(w.nodes))
	sem := make(chan struct{}, max(1, parallel))
	var wg sync.WaitGroup
	for i, n := range w.nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			defer cancel()
			t0 := time.Now()
			r, err := n.PublishBundle(ctx)
			out[i] = published{NS: int64(time.Since(t0)), Replicas: r, Err: errString(err)}
		})
	}
	wg.Wait()
	return out
}

func (w *worker) status() []nodeStatus {
	out := make([]nodeStatus, len(w.nodes))
	for i, n := range w.nodes {
		st, err := n.Status()
		if err != nil {
			continue
		}
		out[i] = nodeStatus{Published: !st.Published.IsZero(), Replicas: st.Replicas, Conns: st.ConnectedPeers, RT: st.RoutingTable}
	}
	return out
}

// closeAll closes every node, a few at a time (each Close waits for its
// goroutines), within closeTimeout.
func (w *worker) closeAll() error {
	nodes := w.nodes
	w.nodes = nil
	done := make(chan error, 1)
	go func() {
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for _, n := range nodes {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := n.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		done <- errors.Join(errs...)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(closeTimeout):
		return fmt.Errorf("closing %d nodes took over %v", len(nodes), closeTimeout)
	}
}
