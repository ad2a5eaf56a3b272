package node

import (
	"maps"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/time/rate"

	"github.com/p2pmsg/p2pmsg/db"
)

// What waits on the network goes as soon as the network changes
// (docs/node-decisions.md, 22): messages queued for peers that could not
// be reached or found, and a bundle not yet published, are retried at
// once, not at their next backoff step, when a bootstrap peer or relay
// comes back, a relay is identified, the DHT stops being empty, or we
// get a relay reservation (then our contacts are greeted too: they learn
// our new address, and deliver what they queued for us).

// networkChanged asks the wake loop to retry what waits on the network.
// It never blocks.
func (n *Node) networkChanged() {
	select {
	case n.netWake <- struct{}{}:
	default:
	}
}

// wakeLoop retries what waits on the network when networkChanged asks,
// at most every networkWakeEvery: a burst of changes costs one round. A
// peer is woken at most wakeBurst times in a row, then once per
// wakeCooldown, and a round wakes at most wakeMax peers (the others are
// woken by the next rounds, or come at their own backoff): a relay that
// drops and takes back its clients, or a flapping link, must not turn
// every queued message into a DHT search each time. A burst, not a plain
// cooldown: a peer woken by one change (our reservation at start) must
// be woken again by the next one a few seconds later (the relay back
// after a restart), or its message waits out the cooldown.
func (n *Node) wakeLoop() {
	woken := map[string]*rate.Limiter{}
	for {
		select {
		case <-n.netWake:
		case <-n.ctx.Done():
			return
		}
		n.wakePublication(false)
		var waiting []string
		now := time.Now()
		err := n.store.View(func(r *db.ReadTx) (err error) {
			// Due or not: the backoff was for a network that changed.
			waiting, err = r.DuePeers(now.Add(100*365*24*time.Hour), maxDuePeers)
			return err
		})
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("read the outbox", "err", err)
		}
		maps.DeleteFunc(woken, func(_ string, l *rate.Limiter) bool { return l.TokensAt(now) >= wakeBurst })
		kicked := 0
		for _, key := range waiting {
			if kicked == wakeMax {
				break
			}
			p, err := peer.Decode(key)
			if err != nil {
				continue
			}
			l := woken[key]
			if l == nil {
				l = rate.NewLimiter(rate.Every(wakeCooldown), wakeBurst)
				woken[key] = l
			}
			if l.AllowN(now, 1) {
				kicked++
				n.kick(p)
			}
		}
		select {
		case <-time.After(networkWakeEvery):
		case <-n.ctx.Done():
			return
		}
	}
}

// reservationsChanged is called by the host actor with our addresses
// after they changed: a relay reservation gained wakes what waits, and
// greets the contacts (at most every greetEvery).
func (n *Node) reservationsChanged(addrs []ma.Multiaddr) {
	var now []peer.ID
	for _, a := range addrs {
		if r, ok := relayOf(a); ok && !slices.Contains(now, r) {
			now = append(now, r)
		}
	}
	r := &n.relays
	r.mu.Lock()
	gained := slices.ContainsFunc(now, func(p peer.ID) bool { return !slices.Contains(r.reserved, p) })
	lost := slices.ContainsFunc(r.reserved, func(p peer.ID) bool { return !slices.Contains(now, p) })
	r.reserved = now
	r.lost = r.lost || lost
	// One round at a time (a round may take minutes: 64 contacts, dials
	// and DHT searches), and at most every greetEvery, unless a
	// reservation was lost since the last round: then our contacts lost
	// their way to us (a relay that restarted), and nothing but a
	// greeting tells them at once that it is back.
	greet := gained && !r.greeting && (r.lost || time.Since(r.greeted) >= greetEvery)
	if greet {
		r.greeted, r.greeting, r.lost = time.Now(), true, false
	}
	r.mu.Unlock()
	if gained || lost {
		n.log.Info("relay reservations", "relays", len(now))
	}
	if gained {
		n.networkChanged()
	}
	if greet && !n.spawn(func() {
		defer func() {
			r.mu.Lock()
			r.greeting = false
			r.mu.Unlock()
		}()
		n.greetContacts()
	}) {
		r.mu.Lock()
		r.greeting = false
		r.mu.Unlock()
	}
}
