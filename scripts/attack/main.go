// Command attack measures a p2pmsg daemon under the attacks of issue 11
// (docs/design.md §11, "Strangers" and "Streams"), with the victim in a
// process of its own:
//
//	go run ./scripts/attack streams   -bin P2PMSG [flags]
//	go run ./scripts/attack strangers -bin P2PMSG [flags]
//
// Both start a victim daemon and a contact daemon from the binary (on
// 127.0.0.1, bootstrapped to each other, contacts of each other), warm
// them up, and then, while the contact chats with the victim through its
// API (a message every 100 ms, each waited for until "delivered") and a
// second contact in this process sends a message on a new stream every
// 250 ms, run the attack from this process with raw libp2p hosts:
//
//   - streams: attacker peers keep message streams open that idle, send
//     a length prefix only, or trickle a byte every 500 ms (or, with
//     -kinds paced, a 64 KiB frame at just above the victim's minimum
//     rate; with -kinds close -fresh, a new peer for every stream, which
//     opens it and goes); reported: the streams tried, served and
//     refused, how long each lived, the most one attacker held at once;
//   - strangers: fresh identities, each with a host whose key is its
//     identity key, fetch the victim's bundle and send one valid first
//     message (again on "retry later", as a node would); reported: the
//     acks by status and reason, the stored requests, the store's and
//     RSS's growth, and what `contacts requests clear` leaves.
//
// It prints PASS or FAIL against each bound of the acceptance
// and exits 1 on a failure. scripts/attack.sh builds the binaries and
// runs the benchmark's set. Every loop here is bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"time"
)

var (
	binPath  string
	keep     bool
	logLevel string
	chatGap  time.Duration
	probeGap time.Duration
	before   time.Duration
	after    time.Duration
	timeout  time.Duration
)

func commonFlags(fs *flag.FlagSet) {
	fs.StringVar(&binPath, "bin", "", "the p2pmsg binary (required; build it without -race)")
	fs.BoolVar(&keep, "keep", false, "keep the data directories and the daemons' logs")
	fs.StringVar(&logLevel, "log-level", "debug", "the victim's log level (its log is summarised at the end)")
	fs.DurationVar(&chatGap, "chat", 100*time.Millisecond, "the contact daemon sends a message this often")
	fs.DurationVar(&probeGap, "probe", 250*time.Millisecond, "the contact in this process sends a message on a new stream this often")
	fs.DurationVar(&before, "before", 5*time.Second, "chat measured before the attack")
	fs.DurationVar(&after, "after", 10*time.Second, "chat measured after the attack")
	fs.DurationVar(&timeout, "timeout", 15*time.Minute, "the whole run's bound")
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: attack streams|strangers -bin P2PMSG [flags]   (attack streams -h: the flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var run func(context.Context, *harness) error
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	commonFlags(fs)
	switch os.Args[1] {
	case "streams":
		run = streamFlags(fs)
	case "strangers":
		run = strangerFlags(fs)
	default:
		usage()
	}
	fs.Parse(os.Args[2:])
	if binPath == "" || fs.NArg() > 0 {
		usage()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	h, err := setUp(ctx)
	if err == nil {
		err = run(ctx, h)
		h.tearDown()
	}
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "attack:", err)
		os.Exit(1)
	case !h.verdicts():
		os.Exit(1)
	}
}

// harness is what both attacks share: the two daemons, the samplers and
// the contacts' latencies.
type harness struct {
	tmp     string
	victim  *daemon
	contact *daemon
	probe   *probe
	sampler *sampler
	chatLat *latencies
	probLat *latencies
	checks  []check
	cpu     [2]cpuSnap // at the baseline and at the attack's end

	stopBG func()
}

type check struct {
	bound string
	ok    bool
	got   string
}

func (h *harness) check(bound string, ok bool, format string, args ...any) {
	h.checks = append(h.checks, check{bound, ok, fmt.Sprintf(format, args...)})
}

func (h *harness) verdicts() bool {
	fmt.Println("\n=== acceptance")
	all := true
	for _, c := range h.checks {
		v := "PASS"
		if !c.ok {
			v, all = "FAIL", false
		}
		fmt.Printf("%s  %s: %s\n", v, c.bound, c.got)
	}
	return all
}

func setUp(ctx context.Context) (*harness, error) {
	tmp, err := os.MkdirTemp("", "attack")
	if err != nil {
		return nil, err
	}
	h := &harness{tmp: tmp, chatLat: newLatencies(), probLat: newLatencies()}
	fail := func(err error) (*harness, error) {
		h.tearDown()
		return nil, err
	}
	fmt.Printf("binary %s; this process: GOMAXPROCS %d; data in %s\n", binPath, runtime.GOMAXPROCS(0), tmp)
	if h.victim, err = startDaemon(ctx, "victim", filepath.Join(tmp, "victim"), logLevel, nil); err != nil {
		return fail(err)
	}
	if h.contact, err = startDaemon(ctx, "contact", filepath.Join(tmp, "contact"), "", []string{h.victim.bootAddr()}); err != nil {
		return fail(err)
	}
	fmt.Printf("victim  pid %d, %s\ncontact pid %d, %s\n", h.victim.pid(), h.victim.bootAddr(), h.contact.pid(), h.contact.id)

	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := h.victim.api.AddContact(cctx, contactParams(h.contact.id, "contact")); err != nil {
		return fail(fmt.Errorf("victim adds the contact: %w", err))
	}
	if _, err := h.contact.api.AddContact(cctx, contactParams(h.victim.id, "victim")); err != nil {
		return fail(fmt.Errorf("contact adds the victim: %w", err))
	}
	// Warm-up: the first message starts the session (bundle, PQXDH), the
	// reply confirms it, so that what is measured is a conversation.
	warm := newLatencies()
	warm.setPhase("warm-up")
	for range 20 {
		chatOnce(cctx, h.contact, h.victim.id, warm)
	}
	if r, err := h.victim.api.Send(cctx, sendParams(h.contact.id, "hello back")); err != nil || r.State != "delivered" {
		return fail(fmt.Errorf("victim's reply in the warm-up: %+v, %v", r, err))
	}
	if s := warm.stats("warm-up"); s.failures > 0 || s.n == 0 {
		warm.report("warm-up failed:")
		return fail(errors.New("the contact cannot write to the victim"))
	}
	if h.probe, err = newProbe(ctx, h.victim); err != nil {
		return fail(err)
	}
	// Start-up work (publication, the first DHT refresh) out of the way.
	sleepCtx(ctx, 3*time.Second)

	h.sampler = newSampler(h.victim)
	bg, cancelBG := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	go func() { h.sampler.run(bg); done <- struct{}{} }()
	go func() { chat(bg, h.contact, h.victim.id, chatGap, h.chatLat); done <- struct{}{} }()
	go func() { h.probe.run(bg, probeGap, h.probLat); done <- struct{}{} }()
	h.stopBG = func() {
		cancelBG()
		for range 3 {
			<-done
		}
	}
	return h, nil
}

// phase names what the samplers and the contacts measure from now on.
func (h *harness) phase(p string) {
	h.chatLat.setPhase(p)
	h.probLat.setPhase(p)
	h.sampler.setPhase(p)
}

func (h *harness) tearDown() {
	if h.stopBG != nil {
		h.stopBG()
		h.stopBG = nil
	}
	if h.probe != nil {
		h.probe.close()
	}
	for _, d := range []*daemon{h.contact, h.victim} {
		if d != nil {
			d.stop()
		}
	}
	if h.victim != nil && logLevel != "" {
		fmt.Printf("\nthe victim's log, lines by message (%s.log):\n", h.victim.dir)
		for _, l := range logSummary(h.victim.dir+".log", 12) {
			fmt.Println(" ", l)
		}
	}
	if keep {
		fmt.Println("kept", h.tmp)
	} else {
		os.RemoveAll(h.tmp)
	}
}

// baseline measures the quiet before the attack.
func (h *harness) baseline(ctx context.Context) sample {
	h.phase("before")
	sleepCtx(ctx, before)
	h.cpu[0] = h.cpuNow()
	return h.sampler.now()
}

// attackEnded marks the end of the attack for the CPU accounting.
func (h *harness) attackEnded() { h.cpu[1] = h.cpuNow() }

// cpuSnap is the CPU used so far by each process of the bench and by the
// whole machine: the cores are shared, so a latency is read together with
// who had them.
type cpuSnap struct {
	at                    time.Time
	victim, contact, self time.Duration
	busy, total           time.Duration // the machine's, all cores
}

func (h *harness) cpuNow() cpuSnap {
	busy, total := machineCPU()
	return cpuSnap{at: time.Now(), victim: cpuTime(h.victim.pid()), contact: cpuTime(h.contact.pid()), self: cpuTime(os.Getpid()), busy: busy, total: total}
}

// report prints the contacts' latencies, the victim's RSS and store by
// phase, and its CPU since the baseline.
func (h *harness) report() {
	fmt.Println()
	h.chatLat.report("the contact daemon's messages (API send, wait until delivered; its open stream):")
	h.probLat.report("the contact in this process (a new stream per message, open to stored ack):")
	fmt.Println("the victim, peak of 100 ms samples:")
	for _, p := range h.sampler.order {
		s := h.sampler.peakOf(p)
		fmt.Printf("  %-8s RSS %s, store %s\n", p, mbk(s.rss), s.files)
	}
	fmt.Printf("  VmHWM %s\n", mbk(procKB(h.victim.pid(), "VmHWM")))
	if a, b := h.cpu[0], h.cpu[1]; !b.at.IsZero() {
		wall := b.at.Sub(a.at)
		share := func(d time.Duration) string {
			return fmt.Sprintf("%v (%.0f %% of a core)", d.Round(10*time.Millisecond), 100*d.Seconds()/wall.Seconds())
		}
		ours := (b.victim - a.victim) + (b.contact - a.contact) + (b.self - a.self)
		fmt.Printf("CPU during the attack (%v, %d cores): victim %s, contact %s, attacker (this process) %s; the machine %.0f %% busy, other processes %s\n",
			wall.Round(100*time.Millisecond), runtime.NumCPU(), share(b.victim-a.victim), share(b.contact-a.contact), share(b.self-a.self),
			100*float64(b.busy-a.busy)/float64(max(b.total-a.total, 1)), share(max(b.busy-a.busy-ours, 0)))
	}
}

func chatOnce(ctx context.Context, from *daemon, to string, l *latencies) {
	start := time.Now()
	r, err := from.api.Send(ctx, sendParams(to, "warm-up"))
	switch {
	case err != nil:
		l.add(0, err.Error())
	case r.State != "delivered":
		l.add(0, r.State+": "+r.Error)
	default:
		l.add(time.Since(start), "")
	}
}
