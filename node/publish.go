package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
)

// Publication of the bundle to the DHT (docs/design.md §4): at start,
// every Config.RepublishInterval, and whenever the prekeys rotate; a
// failure is retried with backoff (limits.go).

// PublishBundle rotates prekeys when due, signs a bundle with a new seq
// and publishes it to the DHT. It reports how many peers store it.
func (n *Node) PublishBundle(ctx context.Context) (replicas int, err error) {
	if err := n.running(); err != nil {
		return 0, err
	}
	pub := &n.publication
	// One publication at a time: two signed concurrently could reach the
	// DHT in the wrong order, and the peers would refuse the later one
	// (its seq is lower than what they hold).
	pub.publishing.Lock()
	defer pub.publishing.Unlock()
	now := time.Now()
	var b []byte
	err = n.store.Update(func(tx *db.Tx) error {
		if _, err := maintainPrekeys(tx, now, n.cfg.rotate()); err != nil {
			return err
		}
		if err := tx.ExpireStale(now.Add(-staleLife)); err != nil {
			return err
		}
		b, err = signBundle(tx, n.self, now, false, n.cfg.mailboxPowBits())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("node: sign bundle: %w", err)
	}
	n.cacheBundle(b, now)
	n.refreshMailboxes() // they serve it to first contacts
	replicas, err = n.dht.Publish(ctx, n.id, b)
	pub.Lock()
	pub.failure = err
	if err == nil {
		pub.published, pub.replicas = now, replicas
		// Stored on the LAN only: published again as soon as the
		// internet's DHT has peers (watchLoop), not 12 h later.
		pub.lanOnly = n.dht.WAN.RoutingTableSize() == 0
	}
	pub.Unlock()
	return replicas, err
}

// Published reports when the bundle was last published and to how many
// peers; the zero time when it never was.
func (n *Node) Published() (time.Time, int) {
	pub := &n.publication
	pub.Lock()
	defer pub.Unlock()
	return pub.published, pub.replicas
}

// publicationFailure is the error of the last publication attempt: nil
// once one succeeded, and before the first.
func (n *Node) publicationFailure() error {
	pub := &n.publication
	pub.Lock()
	defer pub.Unlock()
	return pub.failure
}

// wakePublication retries a failed publication now (reach.go); with
// wanJoined (the internet's DHT just got peers), it also publishes again
// a bundle that only the LAN holds.
func (n *Node) wakePublication(wanJoined bool) {
	pub := &n.publication
	pub.Lock()
	again := pub.failure != nil || wanJoined && pub.lanOnly
	pub.force = pub.force || again
	pub.Unlock()
	if !again {
		return
	}
	select {
	case n.publication.wake <- struct{}{}:
	default:
	}
}

// republish publishes a new bundle now: what it says changed (our
// mailboxes).
func (n *Node) republish() {
	pub := &n.publication
	pub.Lock()
	pub.force = true
	pub.Unlock()
	select {
	case n.publication.wake <- struct{}{}:
	default:
	}
}

// takeForce reports whether a publication was asked for out of turn, and
// clears the request.
func (n *Node) takeForce() bool {
	pub := &n.publication
	pub.Lock()
	defer pub.Unlock()
	f := pub.force
	pub.force = false
	return f
}

// publishLoop publishes at start, retries with backoff until a peer
// stores the bundle (at once when the network changes), then republishes
// every RepublishInterval; it checks hourly whether the prekeys are due
// for rotation.
func (n *Node) publishLoop() {
	retry := publishFirstRetry
	wait := time.Duration(0)
	for {
		select {
		case <-time.After(wait):
		case <-n.publication.wake:
		case <-n.ctx.Done():
			return
		}
		if due, err := n.rotationDue(); err != nil {
			n.log.Warn("check prekeys", "err", err)
		} else if last, _ := n.Published(); !due && !n.takeForce() && !last.IsZero() && time.Since(last) < n.cfg.republish() {
			wait = min(publishCheckEvery, n.cfg.republish()-time.Since(last))
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, publishTimeout)
		replicas, err := n.PublishBundle(ctx)
		cancel()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			level := slog.LevelWarn
			if errors.Is(err, dht.ErrNoPeers) {
				level = slog.LevelDebug // no peers yet: normal at start
			}
			n.log.Log(n.ctx, level, "publish bundle", "err", err, "retry", retry)
			wait, retry = retry, min(2*retry, publishMaxRetry)
			continue
		}
		n.log.Info("bundle published", "replicas", replicas)
		retry, wait = publishFirstRetry, min(publishCheckEvery, n.cfg.republish())
	}
}
