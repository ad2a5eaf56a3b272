package dht

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// A lookup that survives bad answers (docs/dht-decisions.md, 2).
//
// kad-dht's search ends once the 20 peers closest to the key that it
// knows of have answered, whatever they answered: it drops an invalid
// record and goes on, but a peer that gave one still counts among those
// 20. So 20 DHT servers placed closer to a key than every honest one,
// each answering with garbage, end every search before an honest node is
// asked, and the record looks missing. Its Resiliency and Concurrency
// options change how many paths run and how many answers end one, not
// who counts. searchPast walks again when kad-dht found nothing valid,
// with the one rule changed: a peer that answered an invalid record, or
// did not answer, does not count among the closest, so the walk goes on
// past as many bad peers as there are, up to searchMaxPeers; and the
// peers that a bad one names are not asked on its word.

const (
	// searchK is how many peers closest to the key must have answered
	// (without an invalid record) before the walk ends: kad-dht's K.
	searchK = 20
	// searchAlpha is how many queries run at once.
	searchAlpha = 10
	// searchMaxPeers bounds the peers one walk asks, so that an attacker
	// who hands out endless made-up peers cannot make it go on for ever:
	// room for the 20 honest peers beyond several times 20 bad ones.
	searchMaxPeers = 150
	// searchPeerTimeout bounds one peer's answer.
	searchPeerTimeout = 5 * time.Second
)

// searchResult is what a walk found.
type searchResult struct {
	values  [][]byte // valid records
	invalid int      // peers that answered an invalid record
	asked   int
}

type walkState int

const (
	unasked walkState = iota
	asking
	answered // no record, or a valid one
	bad      // an invalid record, or no answer
)

type walkPeer struct {
	id    peer.ID
	dist  []byte
	state walkState
}

type walkAnswer struct {
	p      *walkPeer
	value  []byte
	closer []*peer.AddrInfo
	err    error
}

// searchPast walks toward key as a Kademlia lookup does, except that bad
// peers do not count among the closest. It stops after quorum+1 valid
// records (0: it does not stop early), when the searchK closest peers
// that are not bad have answered, after searchMaxPeers, or when ctx ends.
func (d *DHT) searchPast(ctx context.Context, key string, quorum int) searchResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	target := kb.ConvertKey(key)
	self := d.host.ID()
	known := map[peer.ID]*walkPeer{}
	var order []*walkPeer // by distance to the key
	add := func(ids ...peer.ID) {
		fresh := false
		for _, id := range ids {
			if id == self || id == "" || known[id] != nil {
				continue
			}
			p := &walkPeer{id: id, dist: kb.Xor(kb.ConvertPeerID(id), target)}
			known[id], order, fresh = p, append(order, p), true
		}
		if fresh {
			slices.SortFunc(order, func(a, b *walkPeer) int { return bytes.Compare(a.dist, b.dist) })
		}
	}
	add(d.inner.RoutingTable().NearestPeers(target, 2*searchK)...)

	// next is the closest unasked peer among the searchK closest that are
	// not bad, or nil.
	next := func() *walkPeer {
		n := 0
		for _, p := range order {
			if p.state == bad {
				continue
			}
			if p.state == unasked {
				return p
			}
			if n++; n == searchK {
				return nil
			}
		}
		return nil
	}

	var (
		res      searchResult
		wg       sync.WaitGroup
		answers  = make(chan walkAnswer, searchAlpha) // never blocks a query: at most searchAlpha run
		inflight int
	)
	defer wg.Wait() // after cancel: each query ends with its context
	pstore := d.host.Peerstore()
	for {
		for inflight < searchAlpha && res.asked < searchMaxPeers {
			p := next()
			if p == nil {
				break
			}
			p.state = asking
			inflight++
			res.asked++
			wg.Go(func() {
				qctx, qcancel := context.WithTimeout(ctx, searchPeerTimeout)
				defer qcancel()
				rec, closer, err := d.messenger.GetValue(qctx, p.id, key)
				answers <- walkAnswer{p: p, value: rec.GetValue(), closer: closer, err: err}
			})
		}
		if inflight == 0 {
			return res
		}
		var a walkAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			return res
		}
		inflight--
		switch {
		case a.err != nil:
			a.p.state = bad
			continue
		case a.value == nil:
			a.p.state = answered
		case d.validator.Validate(key, a.value) == nil:
			a.p.state = answered
			res.values = append(res.values, a.value)
		default:
			// Nor are its referrals followed: peer IDs cost nothing, and
			// made-up ones near the key would use up the walk.
			a.p.state = bad
			res.invalid++
			continue
		}
		for _, ai := range a.closer {
			if ai.ID != self && len(ai.Addrs) > 0 {
				pstore.AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
			}
		}
		ids := make([]peer.ID, 0, len(a.closer))
		for _, ai := range a.closer {
			ids = append(ids, ai.ID)
		}
		add(ids...)
		if quorum > 0 && len(res.values) > quorum {
			return res
		}
	}
}
