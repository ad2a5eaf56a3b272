package node

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
)

// The hole-punch tracer and mDNS run on libp2p's goroutines and never
// wait for the host-event loop: with its queue full (here no loop runs),
// their events are dropped and counted, and a punch is still recorded,
// so that Path reports it.
func TestHostEventsNeverBlockLibp2p(t *testing.T) {
	checkNoLeaks(t)
	n, err := New(testConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	p, err := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	if err != nil {
		t.Fatal(err)
	}
	const extra = 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range hostQueueSize + extra - 1 {
			n.queueHostEvent(hostEvent{hostFound, p})
		}
		holePunchTracer{n}.Trace(&holepunch.Event{Remote: p, Type: holepunch.EndHolePunchEvtT,
			Evt: &holepunch.EndHolePunchEvt{Success: true}})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("queueing host events blocked with no loop to take them")
	}
	if got := n.hostDropped.Load(); got != extra {
		t.Fatalf("%d host events counted as dropped, want %d", got, extra)
	}
	n.nat.mu.Lock()
	_, punched := n.nat.punched[p]
	n.nat.mu.Unlock()
	if !punched {
		t.Fatal("a successful punch whose event was dropped was not recorded")
	}
}
