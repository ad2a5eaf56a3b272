package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

var (
	sAttackers int
	sConc      int
	sPer       int
	sDuration  time.Duration
	sReopen    time.Duration
	sHold      time.Duration
	sKinds     string
	sFresh     bool
)

func streamFlags(fs *flag.FlagSet) func(context.Context, *harness) error {
	fs.IntVar(&sAttackers, "attackers", 20, "attacker peers")
	fs.IntVar(&sConc, "conc", 16, "streams each attacker keeps open or opening at once (the victim allows 8 per peer)")
	fs.IntVar(&sPer, "per", 1000, "streams each attacker opens at most")
	fs.DurationVar(&sDuration, "duration", 30*time.Second, "how long the attackers go on opening streams")
	fs.DurationVar(&sReopen, "reopen", 500*time.Millisecond, "an attacker's pause before it replaces a stream that ended")
	fs.DurationVar(&sHold, "hold", 30*time.Second, "this process's own bound on a stream's life (the victim's is 5 s)")
	fs.StringVar(&sKinds, "kinds", "idle,prefix,trickle", "what the streams do, in turn: idle (nothing), prefix (a length prefix only), "+
		"trickle (a 100-byte frame, a byte every 500 ms), paced (64 KiB frames at 1,280 B/s, above the victim's 1,024 B/s floor), "+
		"close (nothing, closed at once: with -fresh, new peers by the thousand)")
	fs.BoolVar(&sFresh, "fresh", false, "each stream from a new peer identity (a host of its own), not from the attacker's one: what per-peer state costs the victim")
	return runStreams
}

// streamRec is one attacker stream, seen from the attacker.
type streamRec struct {
	attacker       int
	kind           string
	opened, closed time.Time
	// how it ended: "served" (the victim read it and closed it: EOF),
	// "reset" (refused at once by the per-peer or strangers' limit, or
	// reset later), "open failed", or "held" (still open at -hold).
	how string
}

func (r streamRec) lived() time.Duration { return r.closed.Sub(r.opened) }

func runStreams(ctx context.Context, h *harness) error {
	kinds := strings.Split(sKinds, ",")
	for _, k := range kinds {
		if !slices.Contains([]string{"idle", "prefix", "trickle", "paced", "close"}, k) {
			return fmt.Errorf("-kinds: unknown kind %q", k)
		}
	}
	fmt.Printf("\n=== streams: %d attackers, each keeping %d streams open or opening (at most %d each), for %v; kinds %s\n",
		sAttackers, sConc, sPer, sDuration, sKinds)
	if sFresh {
		fmt.Println("    each stream from a new peer identity: the attackers' counts are of workers, not peers")
	}
	base := h.baseline(ctx)

	var hosts []host.Host
	defer func() {
		for _, a := range hosts {
			a.Close()
		}
	}()
	for range sAttackers {
		a, err := rawHost(nil)
		if err != nil {
			return err
		}
		hosts = append(hosts, a)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.Connect(cctx, h.victim.addr)
		cancel()
		if err != nil {
			return fmt.Errorf("attacker connects: %w", err)
		}
	}

	var (
		mu       sync.Mutex
		recs     []streamRec
		tried    atomic.Int64
		open     atomic.Int64
		served   atomic.Int64
		other    atomic.Int64
		wg       sync.WaitGroup
		attackTo = time.Now().Add(sDuration)
	)
	h.sampler.mu.Lock()
	h.sampler.line = func() string {
		return fmt.Sprintf("streams tried %d, open %d, served %d, refused or held %d", tried.Load(), open.Load(), served.Load(), other.Load())
	}
	h.sampler.mu.Unlock()
	h.phase("attack")
	for i, a := range hosts {
		var next atomic.Int64 // this attacker's streams, for the kinds' turn
		for range sConc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && time.Now().Before(attackTo) {
					j := next.Add(1) - 1
					if j >= int64(sPer) {
						return
					}
					tried.Add(1)
					open.Add(1)
					r := streamFrom(ctx, a, h.victim.addr, kinds[j%int64(len(kinds))])
					open.Add(-1)
					r.attacker = i
					if r.how == "served" {
						served.Add(1)
					} else {
						other.Add(1)
					}
					mu.Lock()
					recs = append(recs, r)
					mu.Unlock()
					sleepCtx(ctx, sReopen)
				}
			}()
		}
	}
	wg.Wait()
	h.attackEnded()
	attackEnd := h.sampler.now()
	h.phase("after")
	sleepCtx(ctx, after)
	end := h.sampler.now()
	h.stopBG()
	h.stopBG = nil
	if ctx.Err() != nil {
		return ctx.Err()
	}

	h.report()
	fmt.Printf("  before %s RSS; at the attack's end %s; %v after %s\n", mbk(base.rss), mbk(attackEnd.rss), after, mbk(end.rss))
	fmt.Println("\nthe attackers' streams:")
	byHow := map[string][]time.Duration{}
	byKind := map[string]map[string]int{}
	for _, r := range recs {
		byHow[r.how] = append(byHow[r.how], r.lived())
		if byKind[r.kind] == nil {
			byKind[r.kind] = map[string]int{}
		}
		byKind[r.kind][r.how]++
	}
	peers := sAttackers
	if sFresh {
		peers = len(recs)
	}
	fmt.Printf("  tried %d from %d peers\n", len(recs), peers)
	for _, how := range []string{"served", "reset", "open failed", "held"} {
		d := byHow[how]
		if len(d) == 0 {
			continue
		}
		slices.Sort(d)
		q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))].Round(time.Millisecond) }
		fmt.Printf("  %-11s %6d; time from opening to its end: p50 %v, p95 %v, max %v\n", how, len(d), q(0.5), q(0.95), q(1))
	}
	for _, k := range kinds {
		fmt.Printf("  %-8s %v\n", k, byKind[k])
	}
	perPeer, all := mostAtOnce(recs)
	fmt.Printf("  streams the victim kept open at once, at most, as the attackers saw them (an upper bound: from asking to seeing the end): %d in all (strangers' limit 64), %d of one attacker (limit %d)\n", all, perPeer, 8)

	var longest time.Duration
	for _, r := range recs {
		longest = max(longest, r.lived())
	}
	ch, pr := h.chatLat.stats("attack"), h.probLat.stats("attack")
	h.check("≥ 1,000 streams from ≤ 20 peers", len(recs) >= 1000 && peers <= 20,
		"%d streams (%d served, %d refused or held) from %d peers", len(recs), len(byHow["served"]), len(recs)-len(byHow["served"]), peers)
	h.check("every attacker stream closed within 10 s of opening", longest <= 10*time.Second && len(byHow["held"]) == 0,
		"longest lived %v; %d still open at this process's own bound of %v", longest.Round(time.Millisecond), len(byHow["held"]), sHold)
	h.check("a contact's message on a new stream delivered in ≤ 1 s median", pr.n > 0 && pr.p50 <= time.Second && pr.failures == 0,
		"probe p50 %v (p95 %v, max %v), %d delivered, %d failed", pr.p50.Round(100*time.Microsecond), pr.p95.Round(100*time.Microsecond), pr.maxd.Round(time.Millisecond), pr.n, pr.failures)
	h.check("the contact daemon's chat (its open stream) delivered in ≤ 1 s median", ch.n > 0 && ch.p50 <= time.Second && ch.failures == 0,
		"p50 %v (p95 %v, max %v), %d delivered, %d failed", ch.p50.Round(100*time.Microsecond), ch.p95.Round(100*time.Microsecond), ch.maxd.Round(time.Millisecond), ch.n, ch.failures)
	h.check("victim alive after the attack", h.victim.alive(), "%v", h.victim.alive())
	return nil
}

// streamFrom runs one attack stream from a, or with -fresh from a new
// peer, connected for it and closed after.
func streamFrom(ctx context.Context, a host.Host, victim peer.AddrInfo, kind string) streamRec {
	if !sFresh {
		return attackStream(ctx, a, victim.ID, kind)
	}
	start := time.Now()
	fresh, err := rawHost(nil)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = fresh.Connect(cctx, victim)
		cancel()
	}
	if err != nil {
		if fresh != nil {
			fresh.Close()
		}
		return streamRec{kind: kind, opened: start, closed: time.Now(), how: "open failed"}
	}
	defer fresh.Close()
	return attackStream(ctx, fresh, victim.ID, kind)
}

// attackStream opens one message stream and does what its kind says
// until the victim ends it (or this process's bound, -hold, does).
func attackStream(ctx context.Context, a host.Host, victim peer.ID, kind string) streamRec {
	r := streamRec{kind: kind, opened: time.Now()}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	s, err := a.NewStream(octx, victim, node.MsgProtocol)
	cancel()
	if err != nil {
		r.closed, r.how = time.Now(), "open failed"
		return r
	}
	defer s.Reset()
	s.SetDeadline(r.opened.Add(sHold))
	// Reading also negotiates the protocol (libp2p opens streams lazily
	// once it knows the peer speaks it): an idle stream must read, or the
	// victim never sees it.
	ended := make(chan error, 1)
	go func() {
		var buf [64]byte
		for {
			if _, err := s.Read(buf[:]); err != nil {
				ended <- err
				return
			}
		}
	}()
	var err2 error
	switch kind {
	case "idle":
		err2 = <-ended
	case "close":
		s.CloseWrite()
		err2 = <-ended
	case "prefix":
		s.Write([]byte{0x80, 0x80, 0x01}) // a 16 KiB frame's length, and nothing after
		err2 = <-ended
	case "trickle":
		err2 = writeEvery(s.Write, []byte{100}, []byte{'x'}, 500*time.Millisecond, 100, ended)
	case "paced":
		// 64 KiB frames, 128 bytes every 100 ms: a slow link by the
		// victim's measure (minFrameRate), so it keeps reading.
		err2 = writeEvery(s.Write, []byte{0x80, 0x80, 0x04}, make([]byte, 128), 100*time.Millisecond, int(sHold/(100*time.Millisecond)), ended)
	}
	r.closed = time.Now()
	switch {
	case errors.Is(err2, io.EOF):
		r.how = "served"
	case isTimeout(err2):
		r.how = "held"
	default:
		r.how = "reset"
	}
	return r
}

// isTimeout: yamux's deadline error is not os.ErrDeadlineExceeded, but
// says it is a timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// writeEvery writes head, then chunk every gap (n times at most), until
// the stream ends; it returns how the stream's reading ended.
func writeEvery(write func([]byte) (int, error), head, chunk []byte, gap time.Duration, n int, ended chan error) error {
	write(head)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for range n {
		select {
		case err := <-ended:
			return err
		case <-tick.C:
			if _, err := write(chunk); err != nil {
				return <-ended
			}
		}
	}
	return <-ended
}

// mostAtOnce is the most streams the victim kept (served, or held to
// this process's bound) open at the same time, of one attacker and of
// all. The times are the attacker's: from asking for the stream to
// seeing it end, a little longer than the victim held it.
func mostAtOnce(recs []streamRec) (perPeer, all int) {
	type ev struct {
		t     time.Time
		delta int
		who   int
	}
	var evs []ev
	for _, r := range recs {
		if r.how != "served" && r.how != "held" {
			continue
		}
		evs = append(evs, ev{r.opened, 1, r.attacker}, ev{r.closed, -1, r.attacker})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.delta - b.delta // ends before starts at the same instant
	})
	cur, curAll := map[int]int{}, 0
	for _, e := range evs {
		cur[e.who] += e.delta
		curAll += e.delta
		perPeer = max(perPeer, cur[e.who])
		all = max(all, curAll)
	}
	return perPeer, all
}
