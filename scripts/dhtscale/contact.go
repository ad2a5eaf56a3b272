package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/node"
)

// First contact: a node writes to a peer it never talked to, knowing only
// its peer ID, and the time is taken from Send to the "delivered" state
// event on the sender: finding the peer (node's connect: the DHT's peer
// routing, since the sender knows no address), the connection, the
// bundle fetched from the peer itself, PQXDH, the message, its ack and
// the commit of "delivered". node's own BenchmarkFirstContact measures
// the same thing in a 10-node network.

// contact runs one first contact in the worker.
func (w *worker) contact(req request) *contactTrial {
	t := &contactTrial{}
	if req.Sender < 0 || req.Sender >= len(w.nodes) {
		t.Err = fmt.Sprintf("no node %d here", req.Sender)
		return t
	}
	n := w.nodes[req.Sender]
	target, err := peer.Decode(req.Target)
	if err != nil {
		t.Err = err.Error()
		return t
	}
	h := n.Host()
	t.ConnectedBefore = h.Network().Connectedness(target) == network.Connected
	if req.KnowOnlyID {
		// The DHT or the connection manager may have brought the two
		// together; a user who got a peer ID has neither.
		h.Network().ClosePeer(target)
		h.Peerstore().ClearAddrs(target)
	}
	last, err := n.LastEventID()
	if err != nil {
		t.Err = err.Error()
		return t
	}
	ctx, cancel := context.WithTimeout(context.Background(), contactTimeout)
	defer cancel()
	watch := n.Watch(ctx, last, node.EventMessage, node.EventState)
	t0 := time.Now()
	id, err := n.Send(ctx, target, "hello, stranger: the scale bench")
	t.SendNS = int64(time.Since(t0))
	if err != nil {
		t.Err = "send: " + err.Error()
		return t
	}
	for {
		ev, err := watch.Next()
		if err != nil {
			t.Err = fmt.Sprintf("not delivered within %v (last state %q): %v", contactTimeout, t.State, err)
			return t
		}
		if ev.MessageID != id {
			continue
		}
		t.State = string(ev.State)
		switch ev.State {
		case node.Delivered:
			// Seen now, one store read after the commit: a fraction of a
			// millisecond late at most.
			t.DeliveredNS = int64(time.Since(t0))
			return t
		case node.Failed:
			t.Err = "failed: " + ev.Reason
			return t
		case node.Queued:
			if ev.Reason != "" {
				// Queued without a session (no bundle found) or held:
				// delivery goes on with backoff, and the time shows it.
				t.Waited = ev.Reason
			}
		}
	}
}

// pair is a first contact to try: from node from to node to.
type pair struct{ from, to *nodeRef }

// contactPairs picks count pairs of non-seed nodes: each sender writes
// once, each target is written to once, and the two live in different
// processes (so nothing but loopback TCP joins them). Seeds are left out:
// every node knows them, which no ordinary peer is.
func contactPairs(nodes []*nodeRef, count int, rng *rand.Rand) []pair {
	var pool []*nodeRef
	for _, n := range nodes {
		if !n.seed {
			pool = append(pool, n)
		}
	}
	senders := shuffled(pool, rng)
	targets := shuffled(pool, rng)
	usedTarget := map[*nodeRef]bool{}
	talked := map[[2]*nodeRef]bool{}
	var out []pair
	for _, s := range senders {
		if len(out) == count {
			break
		}
		for _, t := range targets {
			if usedTarget[t] || t.proc == s.proc || talked[[2]*nodeRef{t, s}] {
				continue
			}
			usedTarget[t] = true
			talked[[2]*nodeRef{s, t}] = true
			out = append(out, pair{s, t})
			break
		}
	}
	return out
}

func shuffled[T any](s []T, rng *rand.Rand) []T {
	out := append([]T(nil), s...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// contactResult sums up the first contacts of one network.
type contactResult struct {
	tried, delivered, connectedBefore, waited int
	send, total                               []time.Duration // of the delivered ones
	errs                                      []string
}

// firstContacts runs the pairs one after another (a latency, not a
// throughput: nothing else the bench does runs meanwhile).
func (nw *scaleNet) firstContacts(ctx context.Context, pairs []pair, knowOnlyID bool) contactResult {
	var r contactResult
	for _, p := range pairs {
		if ctx.Err() != nil {
			break
		}
		rep, err := nw.procs[p.from.proc].call(ctx, request{Op: opContact, Sender: p.from.idx, Target: p.to.id, KnowOnlyID: knowOnlyID},
			contactTimeout+10*time.Second)
		r.tried++
		if err != nil {
			r.errs = append(r.errs, err.Error())
			continue
		}
		t := rep.Contact
		if t.ConnectedBefore {
			r.connectedBefore++
		}
		if t.DeliveredNS > 0 {
			r.delivered++
			r.send = append(r.send, time.Duration(t.SendNS))
			r.total = append(r.total, time.Duration(t.DeliveredNS))
		}
		if t.Waited != "" {
			r.waited++
			r.errs = append(r.errs, "waited: "+t.Waited)
		}
		if t.Err != "" {
			r.errs = append(r.errs, t.Err)
		}
	}
	return r
}
