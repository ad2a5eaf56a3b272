package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/internal/api"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// latencies are a contact's delivery times, by phase of the run.
type latencies struct {
	mu    sync.Mutex
	phase string
	order []string
	lat   map[string][]time.Duration
	fails map[string][]string
	// slowest are the slowest deliveries and when they began, to be
	// lined up with the victim's log and the sampler's stalls.
	slowest []slow
}

type slow struct {
	at time.Time
	d  time.Duration
}

func newLatencies() *latencies {
	return &latencies{lat: map[string][]time.Duration{}, fails: map[string][]string{}}
}

func (l *latencies) setPhase(p string) {
	l.mu.Lock()
	l.phase = p
	l.order = append(l.order, p)
	l.mu.Unlock()
}

func (l *latencies) add(d time.Duration, fail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fail != "" {
		l.fails[l.phase] = append(l.fails[l.phase], time.Now().Format("15:04:05.000")+" "+fail)
		return
	}
	l.lat[l.phase] = append(l.lat[l.phase], d)
	l.slowest = append(l.slowest, slow{time.Now().Add(-d), d})
	slices.SortFunc(l.slowest, func(a, b slow) int { return int(b.d - a.d) })
	l.slowest = l.slowest[:min(len(l.slowest), 3)]
}

type stats struct {
	n, failures         int
	p50, p95, p99, maxd time.Duration
}

func (l *latencies) stats(phase string) stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.lat[phase])
	s := stats{n: len(d), failures: len(l.fails[phase])}
	if len(d) == 0 {
		return s
	}
	slices.Sort(d)
	q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))] }
	s.p50, s.p95, s.p99, s.maxd = q(0.5), q(0.95), q(0.99), d[len(d)-1]
	return s
}

func (s stats) String() string {
	if s.n == 0 {
		return fmt.Sprintf("no deliveries, %d failures", s.failures)
	}
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("%4d delivered, %d failed: p50 %v, p95 %v, p99 %v, max %v", s.n, s.failures, r(s.p50), r(s.p95), r(s.p99), r(s.maxd))
}

func (l *latencies) report(title string) {
	fmt.Println(title)
	l.mu.Lock()
	order := slices.Clone(l.order)
	l.mu.Unlock()
	for _, p := range order {
		fmt.Printf("  %-8s %s\n", p, l.stats(p))
		l.mu.Lock()
		fails := l.fails[p]
		for i, f := range fails {
			if i == 5 {
				fmt.Printf("  %-8s ... and %d more failures\n", "", len(fails)-5)
				break
			}
			fmt.Printf("  %-8s failure: %s\n", "", f)
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.slowest {
		fmt.Printf("  slowest: %v, begun at %s\n", s.d.Round(time.Millisecond), s.at.Format("15:04:05.000"))
	}
}

// chat is the contact daemon writing to the victim through its API, as
// a person's client does: one message at a time, every gap, each waited
// for until "delivered". Its worker keeps one stream to the victim while
// it has something to send (node's idleStream), so this measures a
// conversation that was going on when the attack began.
func chat(ctx context.Context, from *daemon, to string, gap time.Duration, l *latencies) {
	for i := 0; ctx.Err() == nil; i++ {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		r, err := from.api.Send(cctx, sendParams(to, fmt.Sprintf("chat message %d, sent at %s", i, start.Format(time.StampMilli))))
		cancel()
		d := time.Since(start)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.add(d, err.Error())
		case r.State != "delivered":
			l.add(d, fmt.Sprintf("%s after %v: %s", r.State, d.Round(time.Millisecond), r.Error))
		default:
			l.add(d, "")
		}
		sleepCtx(ctx, time.Until(start.Add(gap)))
	}
}

// probe is a contact of the victim in this process that sends each
// message on a stream of its own, opened for it: the acceptance's "a
// contact's message on a new stream", which the daemon contact gives only
// when its stream has idled out.
type probe struct {
	*speaker
	victim peer.ID
}

func newProbe(ctx context.Context, victim *daemon) (*probe, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	sp, stage, err := newSpeaker(cctx, victim.addr)
	if err != nil {
		return nil, fmt.Errorf("probe contact: %s: %w", stage, err)
	}
	// The victim accepts it first: a contact passes every stranger gate.
	if _, err := victim.api.AddContact(cctx, api.ContactParams{Peer: sp.h.ID().String(), Name: "probe"}); err != nil {
		sp.h.Close()
		return nil, fmt.Errorf("probe contact: contacts.add: %w", err)
	}
	p := &probe{speaker: sp, victim: victim.addr.ID}
	if err := p.once(ctx, "probe warm-up"); err != nil {
		sp.h.Close()
		return nil, err
	}
	return p, nil
}

func (p *probe) once(ctx context.Context, text string) error {
	env, err := p.envelope(text)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, err := p.deliver(cctx, p.victim, env)
	if err != nil {
		return err
	}
	if a.Status != wire.Stored {
		return fmt.Errorf("ack: %s", ackName(a))
	}
	return nil
}

// run sends a message on a new stream every gap, timed from opening the
// stream to the "stored" ack.
func (p *probe) run(ctx context.Context, gap time.Duration, l *latencies) {
	for i := 0; ctx.Err() == nil; i++ {
		start := time.Now()
		err := p.once(ctx, fmt.Sprintf("probe %d", i))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.add(0, err.Error())
		} else {
			l.add(time.Since(start), "")
		}
		sleepCtx(ctx, time.Until(start.Add(gap)))
	}
}

func (p *probe) close() { p.h.Close() }

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func contactParams(peer, name string) api.ContactParams {
	return api.ContactParams{Peer: peer, Name: name}
}

// sendParams: wait for "delivered", as `p2pmsg send --wait` does, but
// not the default 30 s: a message that takes 10 s is a failure here.
func sendParams(peer, text string) api.SendParams {
	return api.SendParams{Peer: peer, Text: text, Wait: true, Timeout: "10s"}
}
