package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The coordinator's side of its worker processes: starting them, one
// request at a time to each, stopping them.

type workerProc struct {
	n     int // its number
	cmd   *exec.Cmd
	stdin io.WriteCloser
	conn  *lineConn
	log   string // its stderr
	mu    sync.Mutex
	dead  error // set once a call failed: the process is killed
}

// workerFlags are what every worker gets besides its directory.
type workerFlags struct {
	dhtMode           string
	connLow, connHigh int
	logLevel          string
	profileDir        string
}

func startWorker(n int, dir string, f workerFlags) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	wdir := filepath.Join(dir, fmt.Sprintf("w%02d", n))
	if err := os.MkdirAll(wdir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("w%02d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own copy
	cmd := exec.Command(self, "worker", "-n", strconv.Itoa(n), "-dir", wdir, "-dht-mode", f.dhtMode,
		"-conn-low", strconv.Itoa(f.connLow), "-conn-high", strconv.Itoa(f.connHigh), "-log-level", f.logLevel,
		"-profile", f.profileDir)
	cmd.Stderr = logFile
	cmd.SysProcAttr = workerProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &workerProc{n: n, cmd: cmd, stdin: stdin, conn: newLineConn(stdout, stdin), log: logPath}, nil
}

// call sends req and waits for the reply, at most limit (and ctx). A
// worker that does not answer in time is killed: its state is unknown.
func (w *workerProc) call(ctx context.Context, req request, limit time.Duration) (reply, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead != nil {
		return reply{}, w.dead
	}
	type result struct {
		rep reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		if r.err = w.conn.write(req); r.err == nil {
			r.err = w.conn.read(&r.rep)
		}
		done <- r
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var r result
	select {
	case r = <-done:
	case <-timer.C:
		r.err = fmt.Errorf("no answer to %q within %v%s", req.Op, limit, w.dumpGoroutines())
	case <-ctx.Done():
		r.err = fmt.Errorf("%q: %w", req.Op, ctx.Err())
	}
	if r.err != nil {
		w.dead = fmt.Errorf("worker %d: %w%s", w.n, r.err, w.logTail())
		// SIGTERM: the worker finishes a profile under way and removes
		// its directory; stop kills it if it does not exit.
		w.cmd.Process.Signal(syscall.SIGTERM)
		return reply{}, w.dead
	}
	if r.rep.Err != "" {
		return r.rep, fmt.Errorf("worker %d: %s: %s", w.n, req.Op, r.rep.Err)
	}
	return r.rep, nil
}

// stop asks the worker to close its nodes and exit, and kills it if it
// does not within the bound.
func (w *workerProc) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout+10*time.Second)
	defer cancel()
	w.call(ctx, request{Op: opStop}, closeTimeout+5*time.Second)
	w.stdin.Close()
	exited := make(chan struct{})
	go func() { w.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-exited
	}
}

// dumpGoroutines has a worker that does not answer print its goroutines
// (SIGQUIT: the Go runtime writes every stack to stderr and exits), and
// keeps its log where the run's cleanup does not remove it, for finding
// where it was stuck. It returns where, for the error message.
func (w *workerProc) dumpGoroutines() string {
	w.cmd.Process.Signal(syscall.SIGQUIT)
	exited := make(chan struct{})
	go func() { w.cmd.Process.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
	}
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("dhtscale-stuck-w%02d-%s.log", w.n, time.Now().Format("150405")))
	b, err := os.ReadFile(w.log)
	if err != nil || os.WriteFile(kept, b, 0o644) != nil {
		return ""
	}
	return "; its goroutines are in " + kept
}

// logTail is the end of the worker's stderr, for an error message.
func (w *workerProc) logTail() string {
	b, err := os.ReadFile(w.log)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	lines = lines[max(0, len(lines)-10):]
	return "\n\tits stderr ends:\n\t" + strings.ReplaceAll(string(bytes.Join(lines, []byte("\n"))), "\n", "\n\t")
}

// callAll sends each worker its request (nil: none) at once and waits
// for all.
func callAll(ctx context.Context, procs []*workerProc, limit time.Duration, req func(i int) *request) ([]reply, error) {
	reps := make([]reply, len(procs))
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, w := range procs {
		r := req(i)
		if r == nil {
			continue
		}
		wg.Go(func() { reps[i], errs[i] = w.call(ctx, *r, limit) })
	}
	wg.Wait()
	return reps, errors.Join(errs...)
}
