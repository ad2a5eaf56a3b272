package node

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// One-time prekeys are handed out at most once per issueEvery to one peer
// and issueBurst at once (issueRate a second on average) to all: peer IDs
// cost nothing, so a per-peer limit alone would let anyone drain them.
// Beyond the limits a fetch gets the bundle with the last-resort keys
// only, as the DHT has it, served from memory without a write.
const (
	issueEvery = 10 * time.Second
	issueBurst = 30
	issueRate  = 0.5
)

// tokenBucket is a rate limit: take succeeds while tokens are left;
// tokens come back at rate per second, up to burst.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// handleBundle serves /p2pmsg/bundle/1.0.0: our bundle, with one fresh
// one-time prekey of each kind, each handed out once.
func (n *Node) handleBundle(s network.Stream) {
	defer s.Close()
	p := s.Conn().RemotePeer()
	now := time.Now()
	n.mu.Lock()
	oneTime := now.Sub(n.lastIssue[p]) >= issueEvery && n.issued.take(now, issueRate, issueBurst)
	if oneTime {
		n.lastIssue[p] = now
		if len(n.lastIssue) > 4096 {
			for k, t := range n.lastIssue {
				if now.Sub(t) >= issueEvery {
					delete(n.lastIssue, k)
				}
			}
		}
	}
	n.mu.Unlock()
	b := n.cachedBundle(now)
	if oneTime || b == nil {
		err := n.store.Update(func(tx *db.Tx) (err error) {
			if oneTime {
				// Top up as soon as they run low, not at the next
				// publication.
				if _, err := maintainPrekeys(tx, now, n.cfg.rotate()); err != nil {
					return err
				}
			}
			b, err = signBundle(tx, n.self, now, oneTime)
			return err
		})
		if err != nil {
			n.log.Error("serve a bundle", "err", err)
			s.Reset()
			return
		}
		if !oneTime {
			n.cacheBundle(b, now)
		}
	}
	s.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write(appendFrame(nil, b)); err != nil {
		s.Reset()
	}
}

// cachedBundle is the last bundle signed without one-time prekeys, while
// it has a day or more to live.
func (n *Node) cachedBundle(now time.Time) []byte {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	if n.bundle == nil || n.bundleExpires.Sub(now) < 24*time.Hour {
		return nil
	}
	return n.bundle
}

func (n *Node) cacheBundle(b []byte, now time.Time) {
	parsed, err := e2e.VerifyBundle(b, now)
	if err != nil {
		return
	}
	n.pubMu.Lock()
	n.bundle, n.bundleExpires = b, parsed.Expires
	n.pubMu.Unlock()
}

// fetchBundle gets p's bundle: from p itself when it is reachable (with
// one-time prekeys), else from the DHT.
func (n *Node) fetchBundle(ctx context.Context, p peer.ID) (*e2e.Bundle, error) {
	want, err := peerIdentity(p)
	if err != nil {
		return nil, err
	}
	direct, derr := n.fetchDirect(ctx, p, want)
	if derr == nil {
		return direct, nil
	}
	lctx, cancel := context.WithTimeout(ctx, n.cfg.lookup())
	defer cancel()
	b, _, err := n.dht.Lookup(lctx, p, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: no bundle for %s: not reachable (%v), and %v", ErrPeerNotFound, p, derr, err)
	}
	return b, nil
}

func (n *Node) fetchDirect(ctx context.Context, p peer.ID, want e2e.IdentityKey) (*e2e.Bundle, error) {
	if err := n.connect(ctx, p); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(network.WithNoDial(network.WithAllowLimitedConn(ctx, "p2pmsg bundle"), "connected above"), 10*time.Second)
	defer cancel()
	s, err := n.host.NewStream(sctx, p, BundleProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, err := readFrame(bufio.NewReader(s), e2e.MaxBundleSize)
	if err != nil {
		s.Reset()
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	b, err := e2e.VerifyBundle(raw, time.Now())
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(b.Identity[:], want[:]) != 1 {
		return nil, fmt.Errorf("%w: %s served a bundle of another identity", dht.ErrWrongIdentity, p)
	}
	return b, nil
}

// PublishBundle rotates prekeys when due, signs a bundle with a new seq
// and publishes it to the DHT. It reports how many peers store it.
func (n *Node) PublishBundle(ctx context.Context) (replicas int, err error) {
	if err := n.running(); err != nil {
		return 0, err
	}
	// One publication at a time: two signed concurrently could reach the
	// DHT in the wrong order, and the peers would refuse the later one
	// (its seq is lower than what they hold).
	n.publishing.Lock()
	defer n.publishing.Unlock()
	now := time.Now()
	var b []byte
	err = n.store.Update(func(tx *db.Tx) error {
		if _, err := maintainPrekeys(tx, now, n.cfg.rotate()); err != nil {
			return err
		}
		b, err = signBundle(tx, n.self, now, false)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("node: sign bundle: %w", err)
	}
	n.cacheBundle(b, now)
	replicas, err = n.dht.Publish(ctx, n.id, b)
	if err == nil {
		n.pubMu.Lock()
		n.published, n.replicas = now, replicas
		n.pubMu.Unlock()
	}
	return replicas, err
}

// Published reports when the bundle was last published and to how many
// peers; the zero time when it never was.
func (n *Node) Published() (time.Time, int) {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	return n.published, n.replicas
}

// publishLoop publishes at start, retries with backoff until a peer
// stores the bundle, then republishes every RepublishInterval; it checks
// hourly whether the prekeys are due for rotation.
func (n *Node) publishLoop() {
	const (
		firstRetry = 2 * time.Second
		maxRetry   = 5 * time.Minute
	)
	retry := firstRetry
	wait := time.Duration(0)
	for {
		select {
		case <-time.After(wait):
		case <-n.ctx.Done():
			return
		}
		if due, err := n.rotationDue(); err != nil {
			n.log.Warn("check prekeys", "err", err)
		} else if last, _ := n.Published(); !due && !last.IsZero() && time.Since(last) < n.cfg.republish() {
			wait = min(time.Hour, n.cfg.republish()-time.Since(last))
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, time.Minute)
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
			wait, retry = retry, min(2*retry, maxRetry)
			continue
		}
		n.log.Info("bundle published", "replicas", replicas)
		retry, wait = firstRetry, min(time.Hour, n.cfg.republish())
	}
}

// rotationDue reports whether the signed prekeys are older than the
// rotation interval.
func (n *Node) rotationDue() (bool, error) {
	var due bool
	err := n.store.View(func(r *db.ReadTx) error {
		p, err := currentPrekey(r, db.SignedPrekey)
		if err != nil {
			return err
		}
		due = time.Since(p.Created) >= n.cfg.rotate()
		return nil
	})
	return due, err
}
