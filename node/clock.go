package node

import (
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Peers' clocks, as their messages show them (docs/node-decisions.md,
// 21). A message carries its sender's clock; what we see on arrival is
// our clock minus theirs plus the message's delay, and the delay is never
// negative. The smallest difference over a peer's recent messages is
// then the best estimate of the clocks' offset: it is exact when one
// message came promptly, and a peer whose clock runs ahead of ours shows
// as a negative difference that no delay can explain. A positive one can
// also be delay (messages that waited while we were offline, or were held
// until we accepted their sender, come in one late burst), so it is
// reported only when it persists: over clockBatches batches at least
// clockSpread apart in time, one of which would have come promptly if
// the clock were right. Only accepted contacts are watched: a stranger
// must not fill the map nor the warnings. A skewed clock
// first shows as wrong "sent" times (they are the sender's clock), and
// past a week its owner's bundles are refused (bundle.go): status warns
// long before, beyond clockWarn (limits.go).

type clockSample struct {
	offset  time.Duration // our clock minus theirs, at most
	since   time.Time     // the first batch of the window
	last    time.Time
	batches int // in the window
}

// clock notes a message's sender clock in the batch.
func (st *batchState) clock(sentMillis int64, now time.Time) {
	if sentMillis <= 0 {
		return
	}
	d := now.Sub(time.UnixMilli(sentMillis))
	if !st.skewSeen || d < st.skew {
		st.skew, st.skewSeen = d, true
	}
}

// observeClock takes a batch's smallest difference into p's estimate.
func (n *Node) observeClock(p peer.ID, d time.Duration, now time.Time) {
	cl := &n.clocks
	cl.Lock()
	defer cl.Unlock()
	s, ok := cl.m[p]
	switch {
	case !ok || now.Sub(s.since) > clockWindow:
		s = clockSample{offset: d, since: now}
	case d < s.offset:
		s.offset = d
	}
	s.last = now
	s.batches++
	if !ok && len(cl.m) >= maxClockPeers {
		var oldest peer.ID
		for k, v := range cl.m {
			if oldest == "" || v.last.Before(cl.m[oldest].last) {
				oldest = k
			}
		}
		delete(cl.m, oldest)
	}
	cl.m[p] = s
}

// ClockSkew is a peer whose clock differs from ours.
type ClockSkew struct {
	PeerID peer.ID
	// Offset is our clock minus the peer's: positive when the peer's
	// clock is behind ours (or its messages all came late).
	Offset time.Duration
}

// clockSkews lists the peers whose last window of messages showed a
// clock more than clockWarn away from ours.
func (n *Node) clockSkews(now time.Time) []ClockSkew {
	cl := &n.clocks
	cl.Lock()
	defer cl.Unlock()
	var out []ClockSkew
	for p, s := range cl.m {
		persistent := s.batches >= clockBatches && s.last.Sub(s.since) >= clockSpread
		if now.Sub(s.last) <= clockStale && (s.offset < -clockWarn || s.offset > clockWarn && persistent) {
			out = append(out, ClockSkew{PeerID: p, Offset: s.offset.Round(time.Second)})
		}
	}
	slices.SortFunc(out, func(a, b ClockSkew) int { return strings.Compare(string(a.PeerID), string(b.PeerID)) })
	return out
}
