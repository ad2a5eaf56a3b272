package main

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// A worker process's footprint, read by the process itself from /proc and
// the Go runtime (Linux).

// readStats collects the process's memory after a GC that returns what
// it can to the OS, so that RSS is what the nodes hold, not garbage
// waiting for the next cycle. FreeOSMemory runs that GC itself; a
// runtime.GC before it would mark the whole heap twice, which, with
// 125 nodes per worker on a saturated machine, took over a minute.
func readStats(nodes int) procStats {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := procStats{Nodes: nodes, HeapInuse: int64(ms.HeapInuse), HeapAlloc: int64(ms.HeapAlloc), GoSys: int64(ms.Sys),
		Goroutines: runtime.NumGoroutine()}
	status := procStatusOf("/proc/self/status")
	s.RSS, s.HWM = status["VmRSS"]*1024, status["VmHWM"]*1024
	s.Threads = int(status["Threads"])
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(fds)
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		s.FDLimit = int(lim.Cur)
	}
	return s
}

// procStatusOf reads the numeric fields of a /proc file of "Key: value"
// lines (/proc/self/status, /proc/meminfo; sizes in kB).
func procStatusOf(path string) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// raiseFDLimit sets the soft RLIMIT_NOFILE to the hard one. The Go
// runtime does so at start-up too (since Go 1.19), but gives children
// the original limit back; doing it here makes the worker's limit not
// depend on that.
func raiseFDLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= lim.Max {
		return nil
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
