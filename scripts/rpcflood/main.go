// Command rpcflood checks that a p2pmsg daemon's local API survives a
// client that pipelines requests and never reads the answers
// (internal/jsonrpc's limits: 1 MiB lines, 64 requests in flight per
// connection, 64 connections). It starts the daemon binary as a process of
// its own, so that what it measures is the daemon and not this program,
// and reports:
//
//   - the daemon's RSS before, during and after the flood (VmRSS and the
//     peak, VmHWM, from /proc);
//   - the latency of another client's `id` and `contacts.list` before,
//     during and after the flood;
//   - what connections beyond the cap see, both a raw client and the
//     p2pmsg CLI itself;
//   - whether the bound (RSS growth ≤ -max-growth) held.
//
// Run it through scripts/rpc-flood.sh, which builds the binaries (without
// -race: the victim's memory is what is measured).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	bin       = flag.String("bin", "", "the p2pmsg binary (required; build it without -race)")
	total     = flag.Int("n", 200000, "requests the flooder pipelines")
	method    = flag.String("method", "contacts.list", "the method the flooder calls")
	batch     = flag.Int("batch", 1, "requests per line: 1 sends single requests, more sends batches (at most 64)")
	flooders  = flag.Int("flooders", 1, "flooding connections, each pipelining -n requests")
	contacts  = flag.Int("contacts", 20, "contacts added first, so that each answer is not empty")
	hold      = flag.Duration("hold", 15*time.Second, "how long the flooder keeps its connection once its writes stall (or end)")
	after     = flag.Duration("after", 10*time.Second, "how long after the flooder has gone RSS is read again")
	probeGap  = flag.Duration("probe", 100*time.Millisecond, "the second client's pause between calls")
	maxGrowth = flag.Int("max-growth", 50, "the bound on RSS growth, MB")
	extra     = flag.Int("extra", 70, "connections opened beyond the flooder and the prober, to find the cap")
	keep      = flag.Bool("keep", false, "keep the data directory")
)

func main() {
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: rpcflood -bin P2PMSG_BINARY [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rpcflood:", err)
		os.Exit(1)
	}
}

// daemon is the victim process.
type daemon struct {
	dir  string
	sock string
	cmd  *exec.Cmd
	log  *os.File
}

func run() error {
	dir, err := os.MkdirTemp("", "rpcflood")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	d, err := startDaemon(filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	defer d.stop()
	fmt.Printf("daemon pid %d, socket %s\n", d.cmd.Process.Pid, d.sock)

	if err := addContacts(d.sock, *contacts); err != nil {
		return fmt.Errorf("adding contacts: %w", err)
	}
	time.Sleep(2 * time.Second) // let start-up (bundle publication) settle
	pid := d.cmd.Process.Pid
	rss0, _ := procStatus(pid, "VmRSS")
	fmt.Printf("\nbefore: RSS %s\n", mb(rss0))

	prober, err := newProber(d.sock)
	if err != nil {
		return err
	}
	defer prober.close()
	prober.phase("before")
	prober.runFor(3 * time.Second)

	// The flood: one connection, requests written as fast as the socket
	// takes them, answers never read.
	prober.phase("during")
	stopProbe := prober.start()
	var written atomic.Int64
	var fcs []net.Conn
	floodErrs := make(chan error, *flooders)
	for range *flooders {
		fc, err := net.Dial("unix", d.sock)
		if err != nil {
			return err
		}
		fcs = append(fcs, fc)
		go func() { floodErrs <- flood(fc, *total, &written) }()
	}
	floodDone := make(chan error, 1)
	go func() {
		var first error
		for range *flooders {
			if err := <-floodErrs; err != nil && first == nil {
				first = err
			}
		}
		floodDone <- first
	}()

	var peakRSS int64
	sample := func() int64 {
		r, _ := procStatus(pid, "VmRSS")
		peakRSS = max(peakRSS, r)
		return r
	}
	start := time.Now()
	lastProgress, lastCount := start, int64(0)
	var floodErr error
	floodEnded := false
	tick := time.NewTicker(100 * time.Millisecond)
	nextReport := start
	for {
		<-tick.C
		r := sample()
		n := written.Load()
		now := time.Now()
		if n != lastCount {
			lastProgress, lastCount = now, n
		}
		if !floodEnded {
			select {
			case floodErr = <-floodDone:
				floodEnded = true
				lastProgress = now
			default:
			}
		}
		if now.After(nextReport) {
			fmt.Printf("  t=%5.1fs requests written %6d of %d, RSS %s\n", now.Sub(start).Seconds(), n, *total**flooders, mb(r))
			nextReport = now.Add(2 * time.Second)
		}
		if now.Sub(lastProgress) >= *hold {
			break
		}
	}
	stalled := written.Load()
	switch {
	case floodEnded && floodErr == nil:
		fmt.Printf("flooder: all %d requests written in %.1fs; connection held %v more, never read\n",
			stalled, lastProgress.Sub(start).Seconds(), *hold)
	case floodEnded:
		fmt.Printf("flooder: writing ended after %d requests: %v\n", stalled, floodErr)
	default:
		fmt.Printf("flooder: writes blocked after %d of %d requests (the daemon stopped reading: back-pressure), held %v\n",
			stalled, *total**flooders, *hold)
	}

	// The cap, with the flooder still connected and still not reading.
	fmt.Printf("\nconnections: %d flooding and the prober's; opening up to %d more\n", *flooders, *extra)
	held, refusals := capTest(d.sock, *extra, *flooders+1)
	sample()
	fmt.Printf("  accepted in all: %d (%d flooding, the prober, %d more)\n", len(held)+*flooders+1, *flooders, len(held))
	for _, r := range refusals {
		fmt.Printf("  connection %d refused: %s\n", r.n, r.what)
	}
	if len(refusals) == 0 {
		fmt.Println("  no connection was refused")
	}
	cli := command("--data", d.dir, "id")
	out, err := cli.CombinedOutput()
	fmt.Printf("  `p2pmsg id` while full: exit %s: %s\n", exitOf(err), strings.TrimSpace(string(out)))
	for _, c := range held {
		c.Close()
	}
	stopProbe()
	for _, fc := range fcs {
		fc.Close()
	}
	if !floodEnded {
		<-floodDone
	}
	duringRSS := peakRSS
	hwm, _ := procStatus(pid, "VmHWM")

	// After: the flooder and the extra connections have gone.
	prober.phase("after")
	time.Sleep(*after)
	prober.runFor(3 * time.Second)
	rss1, _ := procStatus(pid, "VmRSS")
	cli = command("--data", d.dir, "id", "--json")
	out, freshErr := cli.CombinedOutput()
	fresh := "answers"
	if freshErr != nil {
		fresh = "fails: " + strings.TrimSpace(string(out))
	}
	state, _ := procState(pid)
	alive := state != "" && state != "Z"

	fmt.Printf("\nRSS: before %s; during (peak of 100 ms samples) %s; VmHWM %s; %v after the flooder went %s\n",
		mb(rss0), mb(duringRSS), mb(hwm), *after, mb(rss1))
	fmt.Printf("growth: during %+.1f MB, after %+.1f MB (bound %d MB)\n",
		float64(duringRSS-rss0)/1024, float64(rss1-rss0)/1024, *maxGrowth)
	prober.report()
	fmt.Printf("a new client after the flood: %s; daemon alive: %v\n", fresh, alive)

	ok := alive && freshErr == nil && (duringRSS-rss0) <= int64(*maxGrowth)*1024 && (rss1-rss0) <= int64(*maxGrowth)*1024 &&
		len(refusals) > 0 && refusals[0].n == maxConns+1 && prober.errorsDuring() == 0
	if !ok {
		return errors.New("FAILED: see above")
	}
	fmt.Println("PASS")
	return nil
}

func startDaemon(dir string) (*daemon, error) {
	if out, err := command("--data", dir, "init").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("init: %v: %s", err, out)
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	cmd := command("--data", dir, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map")
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "p2pmsg.sock"), cmd: cmd, log: logf}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logf.Name())
		if bytes.Contains(b, []byte("msg=ready")) {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("the daemon is not ready after 30 s: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command runs the binary on an unsealed store: whatever P2PMSG_*
// variables the caller has are not for this one.
func command(args ...string) *exec.Cmd {
	c := exec.Command(*bin, args...)
	c.Env = slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "P2PMSG_") })
	return c
}

func (d *daemon) stop() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-done
		}
	}
	d.log.Close()
}

// flood writes n requests on c (in lines of -batch), never reading. They
// go out in chunks of about 100 so that the count of those the socket took
// stays close.
func flood(c net.Conn, n int, written *atomic.Int64) error {
	var buf bytes.Buffer
	per := max(1, 100 / *batch) * *batch
	for i := 0; i < n; {
		buf.Reset()
		j := min(i+per, n)
		start := i
		for ; i < j; i++ {
			if *batch > 1 {
				switch {
				case (i-start)%*batch == 0:
					buf.WriteByte('[')
				default:
					buf.WriteByte(',')
				}
			}
			fmt.Fprintf(&buf, `{"jsonrpc":"2.0","id":%d,"method":%q}`, i+1, *method)
			if *batch == 1 || (i-start)%*batch == *batch-1 || i == j-1 {
				if *batch > 1 {
					buf.WriteByte(']')
				}
				buf.WriteByte('\n')
			}
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			return err
		}
		written.Add(int64(j - start))
	}
	return nil
}

// rpcConn is a minimal JSON-RPC client: one call at a time, its answer
// read before the next, as a person's client does.
type rpcConn struct {
	c  net.Conn
	r  *bufio.Reader
	id int
}

type answer struct {
	ID     json.RawMessage `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func dialRPC(sock string) (*rpcConn, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	return &rpcConn{c: c, r: bufio.NewReaderSize(c, 1<<16)}, nil
}

func (rc *rpcConn) call(method string, params any, timeout time.Duration) (json.RawMessage, error) {
	rc.id++
	req := map[string]any{"jsonrpc": "2.0", "id": rc.id, "method": method}
	if params != nil {
		req["params"] = params
	}
	b, _ := json.Marshal(req)
	rc.c.SetDeadline(time.Now().Add(timeout))
	defer rc.c.SetDeadline(time.Time{})
	if _, err := rc.c.Write(append(b, '\n')); err != nil {
		// A refused connection may be closed before the request is
		// written; its answer can still be read.
		if a, rerr := rc.read(); rerr == nil && a.Error != nil {
			return nil, fmt.Errorf("error %d: %s", a.Error.Code, a.Error.Message)
		}
		return nil, err
	}
	a, err := rc.read()
	if err != nil {
		return nil, err
	}
	if a.Error != nil {
		return nil, fmt.Errorf("error %d: %s", a.Error.Code, a.Error.Message)
	}
	if string(a.ID) != strconv.Itoa(rc.id) {
		return nil, fmt.Errorf("answer for id %s, want %d", a.ID, rc.id)
	}
	return a.Result, nil
}

func (rc *rpcConn) read() (*answer, error) {
	line, err := rc.r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var a answer
	if err := json.Unmarshal(line, &a); err != nil {
		return nil, fmt.Errorf("answer %q: %v", line, err)
	}
	return &a, nil
}

func (rc *rpcConn) Close() error { return rc.c.Close() }

func addContacts(sock string, n int) error {
	rc, err := dialRPC(sock)
	if err != nil {
		return err
	}
	defer rc.Close()
	for i := range n {
		if _, err := rc.call("contacts.add", map[string]string{"peer": randomPeerID(), "name": fmt.Sprintf("contact-%02d", i)}, 10*time.Second); err != nil {
			return err
		}
	}
	res, err := rc.call("contacts.list", nil, 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("%d contacts; a contacts.list answer is %d bytes of result\n", n, len(res))
	return nil
}

// prober is the second client: `id` and `contacts.list` in turn on one
// connection, timed, labelled by phase.
type prober struct {
	rc *rpcConn

	mu    sync.Mutex
	cur   string
	order []string
	lat   map[string][]time.Duration // by phase/method
	errs  map[string][]string
}

func newProber(sock string) (*prober, error) {
	rc, err := dialRPC(sock)
	if err != nil {
		return nil, err
	}
	return &prober{rc: rc, lat: map[string][]time.Duration{}, errs: map[string][]string{}}, nil
}

func (p *prober) close() { p.rc.Close() }

func (p *prober) phase(name string) {
	p.mu.Lock()
	p.cur = name
	p.order = append(p.order, name)
	p.mu.Unlock()
}

func (p *prober) once() {
	for _, m := range []string{"id", "contacts.list"} {
		t := time.Now()
		_, err := p.rc.call(m, nil, 10*time.Second)
		d := time.Since(t)
		p.mu.Lock()
		key := p.cur + "/" + m
		if err != nil {
			p.errs[p.cur] = append(p.errs[p.cur], fmt.Sprintf("%s: %v", m, err))
		} else {
			p.lat[key] = append(p.lat[key], d)
		}
		p.mu.Unlock()
	}
}

func (p *prober) runFor(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		p.once()
		time.Sleep(*probeGap)
	}
}

// start probes until the returned function is called.
func (p *prober) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			p.once()
			time.Sleep(*probeGap)
		}
	}()
	return func() { cancel(); <-done }
}

func (p *prober) errorsDuring() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.errs {
		n += len(e)
	}
	return n
}

func (p *prober) report() {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Println("second client's latency (one connection, a call at a time):")
	for _, ph := range p.order {
		for _, m := range []string{"id", "contacts.list"} {
			l := p.lat[ph+"/"+m]
			if len(l) == 0 {
				continue
			}
			slices.Sort(l)
			q := func(f float64) time.Duration { return l[min(len(l)-1, int(f*float64(len(l))))] }
			fmt.Printf("  %-6s %-13s %4d calls: p50 %8v  p99 %8v  max %8v\n", ph, m, len(l),
				q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), l[len(l)-1].Round(time.Microsecond))
		}
		for _, e := range p.errs[ph] {
			fmt.Printf("  %-6s error: %s\n", ph, e)
		}
	}
}

// maxConns is the daemon's cap on connections (internal/jsonrpc.MaxConns).
const maxConns = 64

type refusal struct {
	n    int // the connection's number, counting the flooders' and the prober's first
	what string
}

// capTest opens connections one at a time, each making one call, and
// keeps those that are answered. It stops after three refusals.
func capTest(sock string, n, already int) (held []*rpcConn, refused []refusal) {
	for i := range n {
		num := i + already + 1
		rc, err := dialRPC(sock)
		if err != nil {
			refused = append(refused, refusal{num, "dial: " + err.Error()})
		} else if _, err := rc.call("id", nil, 5*time.Second); err != nil {
			refused = append(refused, refusal{num, err.Error()})
			rc.Close()
		} else {
			held = append(held, rc)
			continue
		}
		if len(refused) == 3 {
			break
		}
	}
	return held, refused
}

// procState is the one-letter state of a process ("Z": a zombie, dead).
func procState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	return string(rest[:1]), nil
}

func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64) // kB
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func exitOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strconv.Itoa(ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "0"
}

// randomPeerID is the text form of a random Ed25519 libp2p peer ID: the
// identity multihash of the protobuf-encoded key, in base58btc.
func randomPeerID() string {
	b := []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}
	k := make([]byte, 32)
	rand.Read(k)
	return base58(append(b, k...))
}

func base58(b []byte) string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	x := new(big.Int).SetBytes(b)
	var out []byte
	base, mod := big.NewInt(58), new(big.Int)
	for x.Sign() > 0 {
		x.DivMod(x, base, mod)
		out = append(out, alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, alphabet[0])
	}
	slices.Reverse(out)
	return string(out)
}
