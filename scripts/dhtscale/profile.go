package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"
)

// Profiles of the workers, for finding what bounds a network size
// (coordinator flag -profile DIR). Each worker writes a CPU profile of
// every profileWindow, one file each, so that a run cut short (or one that
// takes an hour to build) still leaves the windows it finished; the
// coordinator's progress lines carry the time of day, to tell which
// window is which phase. At the end, a heap profile of each worker.

const profileWindow = 30 * time.Second

// profileCPU writes CPU profiles into dir, one per profileWindow, named
// w<worker>-cpu-<time of day>, until ctx ends; then it finishes the one
// under way.
func profileCPU(ctx context.Context, dir string, worker int) error {
	for {
		name := filepath.Join(dir, fmt.Sprintf("w%02d-cpu-%s", worker, time.Now().Format("150405")))
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		select {
		case <-time.After(profileWindow):
		case <-ctx.Done():
		}
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// writeHeap writes the heap profile, after a GC, to path.
func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileHeap has every worker write its heap profile into the -profile
// directory; nothing without one.
func (nw *scaleNet) profileHeap(ctx context.Context) error {
	if nw.cfg.flags.profileDir == "" {
		return nil
	}
	_, err := callAll(ctx, nw.procs, time.Minute, func(i int) *request {
		return &request{Op: opHeap, Path: filepath.Join(nw.cfg.flags.profileDir, fmt.Sprintf("n%d-w%02d-heap", nw.cfg.n, i))}
	})
	return err
}
