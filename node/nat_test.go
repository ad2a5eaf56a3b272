package node

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
)

// A contact reached only through a relay has its relayed connection made
// new when no hole punch was seen (go-libp2p tries once, and misses
// connections that came while DCUtR was coming up), and again with a
// backoff while the path stays relayed; never while DCUtR is down, nor
// while our envelopes are on the wire through it. On loopback DCUtR
// never comes up (no public address), so the test says when it did.
func TestPunchRetried(t *testing.T) {
	checkNoLeaks(t)
	_, _, a, b := relayedPair(t, false)
	send(t, a, b, "through the relay")
	waitDelivered(t, a, b.ID(), 1)
	if p := a.Path(b.ID()); p != PathRelayed {
		t.Fatalf("path to b: %s, want relayed", p)
	}

	// The worker says it has nothing in flight a moment after the ack
	// it committed.
	waitFor(t, 5*time.Second, "a's worker to see the ack", func() (bool, string) {
		return !a.sending(b.ID()), ""
	})
	due := func(at time.Time) []peer.ID {
		t.Helper()
		return a.punchDue(at)
	}
	if got := due(time.Now().Add(time.Hour)); got != nil {
		t.Fatalf("DCUtR down: due %v, want none", got)
	}
	// DCUtR up an hour from now, so that the loop itself (on the real
	// clock) leaves the connection alone while the test asks at
	// chosen times.
	up := time.Now().Add(time.Hour)
	a.nat.punchUp(up)
	want := []peer.ID{b.ID()}
	if got := due(up.Add(punchGrace - time.Millisecond)); got != nil {
		t.Fatalf("within the grace: due %v, want none", got)
	}
	// A punch seen: no redial until punchRetryFirst after it.
	tried := up.Add(time.Second)
	a.nat.triedWith(b.ID(), tried)
	if got := due(up.Add(punchGrace + time.Second)); got != nil {
		t.Fatalf("after a punch was tried: due %v, want none yet", got)
	}
	if got := due(tried.Add(punchRetryFirst)); !slices.Equal(got, want) {
		t.Fatalf("%v after a failed punch: due %v, want %v", punchRetryFirst, got, want)
	}
	// Then again after the same wait, and after twice that.
	last := tried.Add(punchRetryFirst)
	for _, wait := range []time.Duration{punchRetryFirst, 2 * punchRetryFirst} {
		if got := due(last.Add(wait - time.Millisecond)); got != nil {
			t.Fatalf("%v after a redial: due %v, want none before %v", wait-time.Millisecond, got, wait)
		}
		last = last.Add(wait)
		if got := due(last); !slices.Equal(got, want) {
			t.Fatalf("%v after a redial: due %v, want %v", wait, got, want)
		}
	}
	// Envelopes of ours on the wire: not cut. (The worker that sent the
	// message idles with its stream open; it says so itself when it
	// writes.)
	a.delivery.Lock()
	w := a.delivery.workers[b.ID()]
	a.delivery.Unlock()
	if w == nil {
		t.Fatal("no delivery worker for b")
	}
	w.inFlight.Store(true)
	if got := due(last.Add(punchRetryMax)); got != nil {
		t.Fatalf("envelopes in flight: due %v, want none", got)
	}
	w.inFlight.Store(false)
	if got := due(last.Add(punchRetryMax)); !slices.Equal(got, want) {
		t.Fatalf("nothing in flight: due %v, want %v", got, want)
	}

	// On the real clock: DCUtR up now, nothing tried; the loop makes the
	// connection new after punchGrace, and it still carries messages.
	a.nat.mu.Lock()
	clear(a.nat.retry)
	clear(a.nat.tried)
	a.nat.upAt = time.Now()
	a.nat.mu.Unlock()
	start := time.Now()
	waitFor(t, punchGrace+5*time.Second, "a new relayed connection to b", func() (bool, string) {
		for _, c := range a.host.Network().ConnsToPeer(b.ID()) {
			if isRelayed(c) && c.Stat().Opened.After(start) {
				return true, ""
			}
		}
		return false, string(a.Path(b.ID()))
	})
	if d := time.Since(start); d < punchGrace {
		t.Fatalf("redialled after %v, before the grace of %v", d, punchGrace)
	}
	send(t, a, b, "through the new connection")
	waitDelivered(t, a, b.ID(), 2)
	checkConversation(t, history(t, b, a.ID()), db.Incoming, []string{"through the relay", "through the new connection"})

	// What the loop knows of a peer goes with its last connection (any
	// peer's punch fills it, a stranger's too).
	a.nat.triedWith(b.ID(), time.Now())
	if err := a.host.Network().ClosePeer(b.ID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a to forget b's punches", func() (bool, string) {
		a.nat.mu.Lock()
		defer a.nat.mu.Unlock()
		_, tried := a.nat.tried[b.ID()]
		_, retry := a.nat.retry[b.ID()]
		return !tried && !retry, fmt.Sprintf("tried %v, retry %v", tried, retry)
	})
}
