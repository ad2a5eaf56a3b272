package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// What else the machine was doing. The nodes share its cores with
// whatever else runs there (a test suite, a build), and latencies on two
// cores follow the load: each phase records the CPU that the whole
// machine used and the part the bench's own processes used, so that a
// run measured beside other work shows it.

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture Go runs on.
const clockTick = 100

// cpuMark is the CPU used so far, in seconds of one core.
type cpuMark struct {
	at      time.Time
	machine float64 // every process and the kernel, since boot
	bench   float64 // the coordinator and the workers given
}

// markCPU reads the machine's and the bench's CPU (workers: their pids).
func markCPU(workers []int) cpuMark {
	m := cpuMark{at: time.Now(), machine: machineBusy(), bench: procCPU("self")}
	for _, pid := range workers {
		m.bench += procCPU(strconv.Itoa(pid))
	}
	return m
}

// phaseCPU is the CPU used between two marks, in cores.
type phaseCPU struct {
	Machine, Bench float64
}

func cpuBetween(a, b cpuMark) phaseCPU {
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 {
		return phaseCPU{}
	}
	return phaseCPU{Machine: (b.machine - a.machine) / d, Bench: (b.bench - a.bench) / d}
}

// machineBusy is the CPU time of every core less idle and I/O wait, from
// /proc/stat's first line.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i > 7 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTick
}

// procCPU is a process's user and system time (pid or "self"), from
// /proc/PID/stat; 0 once it has gone.
func procCPU(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in brackets, may hold spaces: count fields after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTick
}

// quietWindow is what waitQuiet looks at each time.
const quietWindow = 5 * time.Second

// waitQuiet waits, at most bound, until the machine beside the bench (the
// workers pids(), and this process) used at most limit cores over a
// quietWindow, so that what is measured next is the nodes and not a test
// suite that happens to run beside them. It returns the last window's
// CPU beside the bench, and whether it was quiet.
func waitQuiet(ctx context.Context, pids func() []int, limit float64, bound time.Duration, progress func(string)) (float64, bool) {
	deadline := time.Now().Add(bound)
	said := false
	for {
		a := markCPU(pids())
		if !sleepCtx(ctx, quietWindow) {
			return 0, false
		}
		c := cpuBetween(a, markCPU(pids()))
		others := c.Machine - c.Bench
		if others <= limit {
			return others, true
		}
		if time.Now().After(deadline) {
			progress(fmt.Sprintf("the machine is still busy beside the bench (%.2f cores); measuring all the same", others))
			return others, false
		}
		if !said {
			progress(fmt.Sprintf("the machine is busy beside the bench (%.2f cores): waiting up to %v for it to be quiet", others, bound))
			said = true
		}
	}
}
