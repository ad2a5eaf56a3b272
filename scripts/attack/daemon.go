package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/internal/api"
)

// daemon is a p2pmsg daemon in a process of its own: what is measured is
// its process, not this one.
type daemon struct {
	name string
	dir  string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	api  *api.Client
	id   string
	addr peer.AddrInfo
}

// command runs the binary on an unsealed store: the caller's P2PMSG_*
// variables (a passphrase, a data directory) are not for these daemons.
func command(args ...string) *exec.Cmd {
	c := exec.Command(binPath, args...)
	c.Env = slices.DeleteFunc(os.Environ(), func(v string) bool { return strings.HasPrefix(v, "P2PMSG_") })
	return c
}

// cli runs a verb of the binary against a data directory.
func cli(ctx context.Context, dir string, args ...string) ([]byte, error) {
	c := command(append([]string{"--data", dir}, args...)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = c.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if c.Process != nil {
			c.Process.Kill()
		}
		<-done
	}
	if err != nil {
		return out, fmt.Errorf("p2pmsg %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

func startDaemon(ctx context.Context, name, dir, logLevel string, bootstrap []string) (*daemon, error) {
	if _, err := cli(ctx, dir, "init"); err != nil {
		return nil, err
	}
	if logLevel != "" {
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("log_level = "+strconv.Quote(logLevel)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return nil, err
	}
	args := []string{"--data", dir, "daemon", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns", "--no-port-map", "--dht-mode", "server"}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	cmd := command(args...)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	d := &daemon{name: name, dir: dir, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logf.Name())
		if bytes.Contains(b, []byte("msg=ready")) {
			break
		}
		select {
		case <-d.done:
			d.stop()
			return nil, fmt.Errorf("%s daemon exited: %s", name, b)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("%s daemon not ready after 30 s: %s", name, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.api, err = api.Dial(dir); err != nil {
		d.stop()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id, err := d.api.ID(cctx)
	if err != nil {
		d.stop()
		return nil, err
	}
	d.id = id.PeerID
	for _, a := range id.Addrs {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/tcp/") {
			continue
		}
		ai, err := peer.AddrInfoFromString(a)
		if err == nil {
			d.addr = *ai
			return d, nil
		}
	}
	d.stop()
	return nil, fmt.Errorf("%s daemon has no 127.0.0.1 TCP address: %v", name, id.Addrs)
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) bootAddr() string { return d.addr.Addrs[0].String() + "/p2p/" + d.id }

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *daemon) stop() {
	if d.api != nil {
		d.api.Close()
	}
	if d.alive() {
		d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	d.log.Close()
}

// procKB reads a field of /proc/PID/status, in kB.
func procKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuTime is the CPU the process has used (user and system), from
// /proc/PID/stat; the clock tick is 100 Hz on Linux.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// machineCPU is the CPU time of all cores, busy and in all, from
// /proc/stat (in 100 Hz ticks).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	tick := 10 * time.Millisecond
	busy = time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]+v[7]) * tick
	return busy, busy + time.Duration(v[3]+v[4])*tick
}

// dbFiles are the sizes of the store's files: the message store
// (p2pmsg.db and its WAL and shared-memory index) and, apart, the DHT
// records a DHT server keeps, which strangers do not reach through the
// message protocol.
type dbFiles struct {
	db, wal, shm, records int64
}

func (f dbFiles) store() int64 { return f.db + f.wal + f.shm }

func storeSize(dir string) dbFiles {
	size := func(name string) int64 {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return 0
		}
		return st.Size()
	}
	var f dbFiles
	f.db, f.wal, f.shm = size("p2pmsg.db"), size("p2pmsg.db-wal"), size("p2pmsg.db-shm")
	matches, _ := filepath.Glob(filepath.Join(dir, "dht-records*"))
	for _, m := range matches {
		f.records += size(filepath.Base(m))
	}
	return f
}

func (f dbFiles) String() string {
	return fmt.Sprintf("%s (db %s, wal %s, shm %s; DHT records %s)",
		mbs(f.store()), mbs(f.db), mbs(f.wal), mbs(f.shm), mbs(f.records))
}

// mbs is bytes in MB of 10^6 bytes: the bounds are checked in these,
// the stricter reading of "MB".
func mbs(b int64) string { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

// mbk is kB (KiB, as /proc counts them) in MB of 10^6 bytes.
func mbk(kb int64) string { return mbs(kb * 1024) }

// sampler reads the victim's RSS and store size every 100 ms, and keeps
// the peak of each phase.
type sampler struct {
	d     *daemon
	start time.Time

	mu    sync.Mutex
	phase string
	order []string
	peak  map[string]*sample
	line  func() string // extra progress, from the attack
}

type sample struct {
	rss   int64 // kB
	store int64 // bytes
	files dbFiles
}

func newSampler(d *daemon) *sampler {
	return &sampler{d: d, start: time.Now(), peak: map[string]*sample{}}
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.order = append(s.order, p)
	s.peak[p] = &sample{}
	s.mu.Unlock()
	fmt.Printf("  t=%5.1fs --- %s\n", time.Since(s.start).Seconds(), p)
}

func (s *sampler) now() sample {
	f := storeSize(s.d.dir)
	return sample{rss: procKB(s.d.pid(), "VmRSS"), store: f.store(), files: f}
}

// run samples until ctx ends, printing a progress line every 5 s.
func (s *sampler) run(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	next, prev := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// A late tick means this process did not run: the machine, not
		// the victim, stalled then.
		if gap := time.Since(prev); gap > time.Second {
			fmt.Printf("  %s this process was not scheduled for %v\n", time.Now().Format("15:04:05.000"), gap.Round(time.Millisecond))
		}
		prev = time.Now()
		cur := s.now()
		s.mu.Lock()
		if p := s.peak[s.phase]; p != nil {
			p.rss = max(p.rss, cur.rss)
			if cur.store > p.store {
				p.store, p.files = cur.store, cur.files
			}
		}
		phase, line := s.phase, s.line
		s.mu.Unlock()
		if time.Now().After(next) {
			extra := ""
			if line != nil {
				extra = "; " + line()
			}
			fmt.Printf("  %s t=%5.1fs %-8s RSS %s, store %s%s\n", time.Now().Format("15:04:05"), time.Since(s.start).Seconds(), phase, mbk(cur.rss), mbs(cur.store), extra)
			next = time.Now().Add(5 * time.Second)
		}
	}
}

func (s *sampler) peakOf(phase string) sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.peak[phase]; p != nil {
		return *p
	}
	return sample{}
}

// logSummary counts the victim's log lines by message, the most frequent
// first: what it spent its time saying is a cheap profile.
func logSummary(path string, top int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	counts := map[string]int{}
	for line := range strings.SplitSeq(string(b), "\n") {
		i := strings.Index(line, " msg=")
		if i < 0 {
			continue
		}
		m := line[i+5:]
		if strings.HasPrefix(m, `"`) {
			if j, err := strconv.QuotedPrefix(m); err == nil {
				m = j
			}
		} else if j := strings.IndexByte(m, ' '); j >= 0 {
			m = m[:j]
		}
		lvl := ""
		if k := strings.Index(line, "level="); k >= 0 {
			lvl, _, _ = strings.Cut(line[k+6:], " ")
		}
		counts[lvl+" "+m]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var out []string
	for _, k := range keys[:min(top, len(keys))] {
		out = append(out, fmt.Sprintf("%6d  %s", counts[k], k))
	}
	return out
}
