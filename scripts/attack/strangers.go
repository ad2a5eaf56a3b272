package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pmsg/p2pmsg/node/wire"
)

var (
	nStrangers int
	bodySize   int
	xConc      int
	xTime      time.Duration
	xRetry     time.Duration
	xRetries   int
	xCap       int
	maxDB      float64
	maxRSS     float64
	maxP95     time.Duration
)

func strangerFlags(fs *flag.FlagSet) func(context.Context, *harness) error {
	fs.IntVar(&nStrangers, "n", 2000, "fresh identities, each sending one first message")
	fs.IntVar(&bodySize, "body", 100, "bytes of text in each first message (60 KB: -body 61440)")
	fs.IntVar(&xConc, "conc", 32, "strangers at work at once")
	fs.DurationVar(&xTime, "attack-time", 5*time.Minute, "the bound on the attack; strangers not through by then give up")
	fs.DurationVar(&xRetry, "retry", time.Second, `a stranger answered "retry later" sends the same envelope again after this (a node's first backoff)`)
	fs.IntVar(&xRetries, "retries", -1, `how many times a stranger answered "retry later" sends again before it gives up (-1: until -attack-time); a flood that does not wait`)
	fs.IntVar(&xCap, "cap", 500, "the victim's cap on stored contact requests (node/limits.go maxRequests)")
	fs.Float64Var(&maxDB, "max-db", 10, "bound on the store's growth, MB")
	fs.Float64Var(&maxRSS, "max-rss", 30, "bound on the victim's RSS growth, MB")
	fs.DurationVar(&maxP95, "max-p95", 500*time.Millisecond, "bound on the contact's p95 during the attack")
	return runStrangers
}

// strangerText is a first message of n bytes: words, as a person writes,
// so that the full-text index grows as it would.
func strangerText(i, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hello, I am stranger %d and I would like to talk to you about", i)
	words := []string{"the", "keys", "of", "our", "meeting", "tomorrow", "at", "noon", "please", "answer", "soon"}
	for j := 0; b.Len() < n; j++ {
		b.WriteByte(' ')
		b.WriteString(words[(i+j)%len(words)])
	}
	return b.String()[:n]
}

type strangerResult struct {
	acks     []string  // each attempt's ack, in order
	fail     string    // the stage that failed, when no ack ended it
	err      string    // and when, and how
	storedAt time.Time // zero unless stored
}

func runStrangers(ctx context.Context, h *harness) error {
	fmt.Printf("\n=== strangers: %d fresh identities, one first message of %d bytes each, %d at once, \"retry later\" retried every %v, within %v\n",
		nStrangers, bodySize, xConc, xRetry, xTime)
	base := h.baseline(ctx)
	baseMsgs := h.chatLat.stats("before").n

	var (
		mu       sync.Mutex
		results  = make([]strangerResult, 0, nStrangers)
		through  atomic.Int64
		done     atomic.Int64
		peakReqs atomic.Int64
		nextJob  atomic.Int64
		wg       sync.WaitGroup
		start    = time.Now()
	)
	attackCtx, cancelAttack := context.WithTimeout(ctx, xTime)
	defer cancelAttack()
	h.sampler.mu.Lock()
	h.sampler.line = func() string {
		return fmt.Sprintf("strangers done %d of %d, stored %d, requests at most %d", done.Load(), nStrangers, through.Load(), peakReqs.Load())
	}
	h.sampler.mu.Unlock()

	// The pending requests, as the victim's status counts them, while the
	// attack runs: the cap is enforced after each commit, so a peak
	// shows how far behind the trimming runs.
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pollCtx.Err() == nil {
			cctx, cancel := context.WithTimeout(pollCtx, 5*time.Second)
			st, err := h.victim.api.Status(cctx)
			cancel()
			if err == nil && int64(st.Requests) > peakReqs.Load() {
				peakReqs.Store(int64(st.Requests))
			}
			sleepCtx(pollCtx, 500*time.Millisecond)
		}
	}()

	h.phase("attack")
	for range xConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attackCtx.Err() == nil {
				i := int(nextJob.Add(1) - 1)
				if i >= nStrangers {
					return
				}
				r := oneStranger(attackCtx, h, i)
				if !r.storedAt.IsZero() {
					through.Add(1)
				}
				done.Add(1)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	h.attackEnded()
	attackTook := time.Since(start)
	if ctx.Err() != nil {
		stopPoll()
		<-polled
		return ctx.Err()
	}
	attack := h.sampler.peakOf("attack")

	// After: the requests settle to the cap (trimming runs behind the
	// commits), with the contact still chatting.
	h.phase("after")
	settled := waitSettled(ctx, h)
	sleepCtx(ctx, after)
	stopPoll()
	<-polled
	afterS := h.sampler.now()
	afterPeak := h.sampler.peakOf("after")
	h.stopBG()
	h.stopBG = nil
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := cli(cctx, h.victim.dir, "contacts", "requests", "--json")
	var reqs []json.RawMessage
	if err == nil {
		err = json.Unmarshal(out, &reqs)
	}
	if err != nil {
		return fmt.Errorf("contacts requests: %w", err)
	}
	if keep {
		// The store as the attack left it, for dbstat: the chat has
		// stopped, so nothing writes while it is copied.
		if err := copyStore(h.victim.dir, h.victim.dir+"-before-clear"); err != nil {
			return err
		}
	}
	before := storeSize(h.victim.dir)
	t := time.Now()
	clearOut, err := cli(cctx, h.victim.dir, "contacts", "requests", "clear", "--yes")
	clearTook := time.Since(t)
	if err != nil {
		return err
	}
	cleared := storeSize(h.victim.dir)
	sleepCtx(ctx, 5*time.Second)
	cleared5 := storeSize(h.victim.dir)
	contacts, err := h.victim.api.Contacts(cctx)
	if err != nil {
		return err
	}
	left, err := h.victim.api.Requests(cctx)
	if err != nil {
		return err
	}

	h.report()
	fmt.Printf("\nthe strangers (%d tried in %v):\n", len(results), attackTook.Round(time.Millisecond))
	acks, final := map[string]int{}, map[string]int{}
	var storedTimes []time.Time
	attempts := 0
	for _, r := range results {
		for _, a := range r.acks {
			acks[a]++
		}
		attempts += len(r.acks)
		switch {
		case r.fail != "":
			final[r.fail]++
		case len(r.acks) > 0:
			final[r.acks[len(r.acks)-1]]++
		}
		if !r.storedAt.IsZero() {
			storedTimes = append(storedTimes, r.storedAt)
		}
	}
	fmt.Printf("  %d envelopes sent (first tries and resends); acks by status and reason:\n", attempts)
	for _, k := range slices.Sorted(maps.Keys(acks)) {
		fmt.Printf("    %-40s %6d\n", k, acks[k])
	}
	fmt.Println("  how each stranger ended:")
	for _, k := range slices.Sorted(maps.Keys(final)) {
		fmt.Printf("    %-40s %6d\n", k, final[k])
	}
	shown := 0
	for _, r := range results {
		if r.err != "" && shown < 5 {
			fmt.Printf("    %s: %s\n", r.fail, r.err)
			shown++
		}
	}
	rate, peak := perSecond(storedTimes, start)
	fmt.Printf("  stored first messages: %d, %.1f a second on average over the attack, %d in the busiest second\n", len(storedTimes), rate, peak)
	fmt.Printf("  pending requests: at most %d while it ran (status, every 0.5 s); %d once settled (%s); `contacts requests --json` lists %d\n",
		peakReqs.Load(), settled, "status", len(reqs))
	chatMsgs := h.chatLat.stats("attack").n + h.chatLat.stats("after").n + baseMsgs
	fmt.Printf("  the store: before %s; peak during the attack %s; after %s\n", base.files, attack.files, afterS.files)
	fmt.Printf("    (the contact's own messages in that time: %d, stored too)\n", chatMsgs)
	fmt.Printf("  RSS: before %s; peak during the attack %s; after %s (peak after %s)\n", mbk(base.rss), mbk(attack.rss), mbk(afterS.rss), mbk(afterPeak.rss))
	fmt.Printf("\n`contacts requests clear --yes` in %v: %s\n", clearTook.Round(time.Millisecond), strings.TrimSpace(string(clearOut)))
	fmt.Printf("  the store before clearing %s\n  at once after %s\n  5 s after %s\n", before, cleared, cleared5)
	names := []string{}
	for _, c := range contacts {
		names = append(names, c.Name+"/"+c.State)
	}
	fmt.Printf("  contacts left: %v; requests left: %d\n", names, len(left))

	ch := h.chatLat.stats("attack")
	pr := h.probLat.stats("attack")
	dbGrowth := attack.store - base.store
	rssGrowth := (attack.rss - base.rss) * 1024
	onlyReal := len(left) == 0 && len(contacts) == 2
	for _, c := range contacts {
		onlyReal = onlyReal && c.State == "accepted" && (c.PeerID == h.contact.id || c.PeerID == h.probe.h.ID().String())
	}
	h.check("2,000 fresh identities each send a valid first message", len(results) == nStrangers && nStrangers >= 2000,
		"%d tried, %d stored, %d refused or still waiting at the end (first messages of %d bytes)", len(results), len(storedTimes), len(results)-len(storedTimes), bodySize)
	h.check("the contact's messages keep flowing, p95 ≤ 500 ms", ch.n > 0 && ch.p95 <= maxP95 && ch.failures == 0,
		"contact daemon p95 %v (p50 %v, max %v), %d delivered, %d failed; new-stream probe p95 %v, %d failed",
		ch.p95.Round(100*time.Microsecond), ch.p50.Round(100*time.Microsecond), ch.maxd.Round(time.Millisecond), ch.n, ch.failures, pr.p95.Round(100*time.Microsecond), pr.failures)
	h.check(fmt.Sprintf("stored requests ≤ the cap (%d)", xCap), settled <= xCap && len(reqs) <= xCap,
		"%d once settled, %d listed; peak seen while it ran %d", settled, len(reqs), peakReqs.Load())
	h.check(fmt.Sprintf("database growth ≤ %g MB", maxDB), float64(dbGrowth) <= maxDB*1e6,
		"%+.2f MB at the peak of the attack (db+wal+shm; %+.2f MB after)", float64(dbGrowth)/1e6, float64(afterS.store-base.store)/1e6)
	h.check(fmt.Sprintf("RSS growth ≤ %g MB", maxRSS), float64(rssGrowth) <= maxRSS*1e6,
		"%+.1f MB at the peak of the attack (%+.1f MB after)", float64(rssGrowth)/1e6, float64((afterS.rss-base.rss)*1024)/1e6)
	h.check("`contacts requests clear` leaves only real contacts", onlyReal, "contacts %v, requests %d", names, len(left))
	h.check("victim alive after the attack", h.victim.alive(), "%v", h.victim.alive())
	// What clearing frees cannot be told apart from the contact's own
	// messages, stored meanwhile: the file must shrink, and by how much
	// is reported.
	if len(reqs) == 0 {
		fmt.Println("  (no requests to clear: whether clearing reclaims space is not measured by this run)")
		return nil
	}
	h.check("clear reclaims the space (the store's files shrink)", cleared5.db < before.db && cleared5.store() < before.store(),
		"store %s before the attack, %s before clearing, %s 5 s after (main file %s → %s)",
		mbs(base.store), mbs(before.store()), mbs(cleared5.store()), mbs(before.db), mbs(cleared5.db))
	return nil
}

// oneStranger is one fresh identity: its host, the victim's bundle, a
// session, one first message, sent again (the same bytes, as a node
// resends) while the victim answers "retry later".
func oneStranger(ctx context.Context, h *harness, i int) strangerResult {
	var r strangerResult
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	sp, stage, err := newSpeaker(cctx, h.victim.addr)
	cancel()
	if err != nil {
		r.fail, r.err = "failed: "+stage, time.Now().Format("15:04:05.000 ")+err.Error()
		return r
	}
	defer sp.h.Close()
	env, err := sp.envelope(strangerText(i, bodySize))
	if err != nil {
		r.fail = "failed: encrypt"
		return r
	}
	for tries := 0; ctx.Err() == nil; tries++ {
		if xRetries >= 0 && tries > xRetries {
			r.fail = `gave up after "retry later"`
			return r
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		a, err := sp.deliver(cctx, h.victim.addr.ID, env)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.fail, r.err = "failed: stream ("+firstWord(err)+")", time.Now().Format("15:04:05.000 ")+err.Error()
			}
			return r
		}
		r.acks = append(r.acks, ackName(a))
		switch a.Status {
		case wire.Stored:
			r.storedAt = time.Now()
			return r
		case wire.Retry:
			sleepCtx(ctx, xRetry)
		default:
			return r
		}
	}
	r.fail = "gave up at -attack-time"
	return r
}

func firstWord(err error) string {
	s, _, _ := strings.Cut(err.Error(), ":")
	return s
}

// perSecond is the average rate of the times from start to the last, and
// the most in one second.
func perSecond(ts []time.Time, start time.Time) (float64, int) {
	if len(ts) == 0 {
		return 0, 0
	}
	bins := map[int]int{}
	last := start
	for _, t := range ts {
		bins[int(t.Sub(start)/time.Second)]++
		if t.After(last) {
			last = t
		}
	}
	peak := 0
	for _, n := range bins {
		peak = max(peak, n)
	}
	return float64(len(ts)) / max(last.Sub(start).Seconds(), 1), peak
}

// waitSettled waits until the victim's pending requests stop changing
// (trimming is done) or a minute has passed, and returns their count.
func waitSettled(ctx context.Context, h *harness) int {
	last, since := -1, time.Now()
	for end := time.Now().Add(time.Minute); time.Now().Before(end) && ctx.Err() == nil; {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := h.victim.api.Status(cctx)
		cancel()
		if err == nil {
			if st.Requests != last {
				last, since = st.Requests, time.Now()
			} else if time.Since(since) >= 3*time.Second {
				return last
			}
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return last
}

func copyStore(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, name := range []string{"p2pmsg.db", "p2pmsg.db-wal"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
