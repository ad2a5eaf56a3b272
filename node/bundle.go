package node

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/mailbox"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// Bundles (docs/design.md §4): signing them, serving ours on
// /p2pmsg/bundle/1.0.0 with one-time prekeys within the issuing limits
// (limits.go; docs/node-decisions.md, 7), and fetching a peer's. Their
// publication to the DHT is in publish.go.

// tokenBucket is a rate limit: take succeeds while tokens are left;
// tokens come back at rate per second, up to burst.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func (b *tokenBucket) take(now time.Time, rate, burst float64) bool {
	return b.takeAbove(now, rate, burst, 0)
}

// takeAbove takes a token only if reserve tokens are left after it.
func (b *tokenBucket) takeAbove(now time.Time, rate, burst, reserve float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1+reserve {
		return false
	}
	b.tokens--
	return true
}

// issueOneTime reports whether p may get one-time prekeys now, and if so
// counts them as given. Strangers leave issueReserve of the bucket to
// contacts: while someone drains it, a contact who lost its session still
// gets one-time prekeys.
func (n *Node) issueOneTime(p peer.ID, contact bool, now time.Time) bool {
	reserve := float64(issueReserve)
	if contact {
		reserve = 0
	}
	is := &n.issuing
	is.Lock()
	defer is.Unlock()
	if now.Sub(is.last[p]) < issueEvery || !is.bucket.takeAbove(now, issueRate, issueBurst, reserve) {
		return false
	}
	is.last[p] = now
	if len(is.last) > maxIssueMemory {
		for k, t := range is.last {
			if now.Sub(t) >= issueEvery {
				delete(is.last, k)
			}
		}
	}
	return true
}

// handleBundle serves /p2pmsg/bundle/1.0.0: our bundle, with one fresh
// one-time prekey of each kind, each handed out once.
func (n *Node) handleBundle(s network.Stream) {
	defer s.Close()
	now := time.Now()
	p := s.Conn().RemotePeer()
	oneTime := n.issueOneTime(p, n.isAccepted(p), now)
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
			b, err = signBundle(tx, n.self, now, oneTime, n.cfg.mailboxPowBits())
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
	s.SetWriteDeadline(time.Now().Add(bundleIOTimeout))
	if _, err := s.Write(wire.AppendFrame(nil, b)); err != nil {
		s.Reset()
	}
}

// cachedBundle is the last bundle signed without one-time prekeys, while
// it has bundleCacheMinLife or more to live.
func (n *Node) cachedBundle(now time.Time) []byte {
	pub := &n.publication
	pub.Lock()
	defer pub.Unlock()
	if pub.bundle == nil || pub.expires.Sub(now) < bundleCacheMinLife {
		return nil
	}
	return pub.bundle
}

func (n *Node) cacheBundle(b []byte, now time.Time) {
	parsed, err := e2e.VerifyBundle(b, now)
	if err != nil {
		return
	}
	pub := &n.publication
	pub.Lock()
	pub.bundle, pub.expires = b, parsed.Expires
	pub.Unlock()
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
		// Unreachable is the usual case and says nothing new; a peer
		// that answered wrongly does.
		if errors.Is(derr, ErrPeerNotFound) {
			return nil, fmt.Errorf("%w: not reachable, and no bundle from the DHT: %w", ErrPeerNotFound, err)
		}
		return nil, fmt.Errorf("%w: not reachable (%v), and no bundle from the DHT: %w", ErrPeerNotFound, derr, err)
	}
	// A bundle in the DHT has no one-time prekeys; the peer's mailboxes
	// hand them out (deposit.go).
	if withOTKs := n.prekeysFromMailbox(ctx, b); withOTKs != nil {
		return withOTKs, nil
	}
	return b, nil
}

// fetchDirect asks p for its bundle over a stream (dial.go opens it), and
// checks that the key p's ID names signed it.
func (n *Node) fetchDirect(ctx context.Context, p peer.ID, want e2e.IdentityKey) (*e2e.Bundle, error) {
	s, err := n.openStream(ctx, p, BundleProtocol, "p2pmsg bundle")
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(bundleIOTimeout))
	raw, err := wire.ReadFrame(bufio.NewReader(s), e2e.MaxBundleSize)
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

// signBundle signs the node's current bundle with a new seq; with
// oneTime, it issues one fresh one-time prekey of each kind into it (for
// a direct fetch; never for the DHT).
func signBundle(tx *db.Tx, self *e2e.Identity, now time.Time, oneTime bool, powBits uint8) ([]byte, error) {
	r := tx.Read()
	spkRow, err := currentPrekey(r, db.SignedPrekey)
	if err != nil {
		return nil, err
	}
	spk, err := loadSigned(r, spkRow.ID, now)
	if err != nil {
		return nil, fmt.Errorf("node: current signed prekey: %w", err)
	}
	pqRow, err := currentPrekey(r, db.PQPrekey)
	if err != nil {
		return nil, err
	}
	pq, err := loadPQ(r, db.PQPrekey, pqRow.ID, now)
	if err != nil {
		return nil, fmt.Errorf("node: current PQ prekey: %w", err)
	}
	expires := now.Add(bundleLifetime)
	if spkRow.Expires.Before(expires) {
		expires = spkRow.Expires
	}
	if pqRow.Expires.Before(expires) {
		expires = pqRow.Expires
	}
	// seq: above every seq this store signed, and the clock, so that a
	// store restored from a backup still supersedes what it published
	// since.
	seq := uint64(now.UnixMilli())
	if b, err := r.Setting("bundle-seq"); err == nil && len(b) == 8 {
		if last := binary.BigEndian.Uint64(b); last >= seq {
			seq = last + 1
		}
	}
	if err := tx.PutSetting("bundle-seq", binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return nil, err
	}
	params := e2e.BundleParams{Seq: seq, Expires: expires, SignedPrekey: spk, PQPrekey: pq}
	// Our mailboxes, if we have any, make it a version 2 bundle.
	entries, err := mailboxEntries(r, powBits)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		ext, err := mailbox.EncodeExtension(entries)
		if err != nil {
			return nil, err
		}
		params.Extensions = []e2e.Extension{ext}
	}
	if oneTime {
		if id, _, err := tx.IssueOneTimePrekey(db.OneTimePrekey, now, now.Add(oneTimeUnusedLife)); err == nil {
			if params.OneTimePrekey, err = loadOneTime(r, id); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, db.ErrNotFound) {
			return nil, err
		}
		if id, _, err := tx.IssueOneTimePrekey(db.PQOneTimePrekey, now, now.Add(oneTimeUnusedLife)); err == nil {
			if params.PQOneTimePrekey, err = loadPQ(r, db.PQOneTimePrekey, id, now); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, db.ErrNotFound) {
			return nil, err
		}
	}
	return self.SignBundle(params)
}
