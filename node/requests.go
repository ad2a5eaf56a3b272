package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// Strangers (docs/design.md §11; docs/node-decisions.md, 20): a peer who
// is not an accepted contact may make one contact request with one
// message of at most maxRequestText, and no more until the user accepts
// it; its further messages are refused unread (wire.ReasonNotAccepted)
// and held by its node, which sends them again when our user accepts (a
// reply, or the acceptance notice sent from here). The requests are
// capped at maxRequests, the oldest deleted first; new sessions from
// strangers are rate-limited (handshakeRate), and so are their streams
// (maxStrangerStreams, strangerStreamsPerPeer). Contacts pass every one
// of these gates.

// releaseGen is p's release generation: it grows each time a batch sees
// that p accepted us (a message or an acceptance notice from it), so that
// a refusal written before that and answered after does not hold a
// message (outbox.go, commitAcks).
func (n *Node) releaseGen(p peer.ID) uint64 {
	r := &n.releases
	r.Lock()
	defer r.Unlock()
	return r.m[p]
}

func (n *Node) bumpRelease(p peer.ID) {
	r := &n.releases
	r.Lock()
	r.m[p]++
	r.Unlock()
}

// isAccepted reports whether p is an accepted contact (blocked or not:
// the block has its own rules).
func (n *Node) isAccepted(p peer.ID) bool {
	ok := false
	n.store.View(func(r *db.ReadTx) error {
		c, err := r.Contact(p.String())
		ok = err == nil && c.State == db.ContactAccepted
		return nil
	})
	return ok
}

// takeHandshake reports whether a stranger may start a session now.
func (n *Node) takeHandshake(now time.Time) bool {
	rate, burst := n.cfg.handshakes()
	g := &n.strangers
	g.Lock()
	defer g.Unlock()
	return g.handshakes.take(now, rate, burst)
}

// admitStranger takes one of the strangers' stream slots for p; release
// gives it back. It reports false when all are taken, or p has its share.
func (n *Node) admitStranger(p peer.ID) (release func(), ok bool) {
	g := &n.strangers
	g.Lock()
	defer g.Unlock()
	if g.streams >= maxStrangerStreams || g.perPeer[p] >= strangerStreamsPerPeer {
		return nil, false
	}
	g.streams++
	g.perPeer[p]++
	return func() {
		g.Lock()
		g.streams--
		if g.perPeer[p]--; g.perPeer[p] == 0 {
			delete(g.perPeer, p)
		}
		g.Unlock()
	}, true
}

// strangerGate runs before a stranger's envelope is decrypted: it refuses
// what the stranger may not send now, without decrypting it (so that the
// sender can send the same envelope again once accepted), and reports
// whether it did.
func (c *conv) strangerGate(tx *db.Tx, o *recvOp, st *batchState) (bool, error) {
	if st.contact != nil {
		// A handshake is the stranger's one message even when what it
		// carried was no text (a control content): a stranger must not
		// make us decrypt and write without end.
		if st.contact.IdentityKey != nil {
			o.reject(wire.ReasonNotAccepted, "a stranger's message beyond its first")
			return true, nil
		}
		has, err := tx.Read().HasIncoming(c.key)
		if err != nil {
			return false, err
		}
		if has {
			o.reject(wire.ReasonNotAccepted, "a stranger's message beyond its first")
			return true, nil
		}
	}
	if len(o.env) > e2e.PrekeyOverhead+wire.ContentHeader+wire.MaxMessageExtra+maxRequestText {
		o.reject(wire.ReasonTooLarge, "a stranger's first message is too long")
		return true, nil
	}
	return false, nil
}

// trimRequests deletes the oldest contact requests beyond maxRequests,
// each through its own conversation (its sessions may be in memory), and
// announces each. A batch that made a request kicks it; one runs at a
// time, so the deletions never overlap.
func (n *Node) trimRequests() {
	g := &n.strangers
	g.Lock()
	if g.trimming {
		g.trimAgain = true
		g.Unlock()
		return
	}
	g.trimming = true
	g.Unlock()
	if !n.spawn(n.trimLoop) {
		g.Lock()
		g.trimming = false
		g.Unlock()
	}
}

func (n *Node) trimLoop() {
	g := &n.strangers
	for {
		if err := n.trimOnce(); err != nil && n.ctx.Err() == nil {
			n.log.Warn("trim contact requests", "err", err)
		}
		g.Lock()
		if !g.trimAgain || n.ctx.Err() != nil {
			g.trimming = false
			g.Unlock()
			return
		}
		g.trimAgain = false
		g.Unlock()
	}
}

func (n *Node) trimOnce() error {
	var oldest []string
	err := n.store.View(func(r *db.ReadTx) error {
		count, err := r.RequestCount()
		if err != nil || count <= n.cfg.maxRequests() {
			return err
		}
		oldest, err = r.OldestRequests(count - n.cfg.maxRequests())
		return err
	})
	if err != nil {
		return err
	}
	for _, key := range oldest {
		p, err := peer.Decode(key)
		if err != nil {
			continue
		}
		o := newRemoveOp()
		o.onlyRequest, o.dropped = true, true
		if err := n.runOp(p, o); err != nil {
			return err
		}
		if o.err != nil {
			continue // accepted or deleted meanwhile
		}
		n.forgetPeer(p)
		n.log.Info("contact request dropped: too many pending", "peer", key, "cap", n.cfg.maxRequests())
	}
	return nil
}

// Requests lists the pending contact requests, the oldest first.
func (n *Node) Requests() ([]Contact, error) {
	return n.listContacts((*db.ReadTx).Requests)
}

// ClearRequests deletes every pending contact request with its messages
// and sessions, gives the space back to the file system, and returns how
// many it deleted. Requests that arrive meanwhile may stay.
func (n *Node) ClearRequests() (int, error) {
	reqs, err := n.Requests()
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, c := range reqs {
		o := newRemoveOp()
		o.onlyRequest = true
		if err := n.runOp(c.PeerID, o); err != nil {
			return deleted, err
		}
		if o.err == nil {
			n.forgetPeer(c.PeerID)
			deleted++
		}
	}
	if deleted > 0 {
		if _, err := n.store.Reclaim(); err != nil {
			return deleted, fmt.Errorf("node: requests deleted, but their space is not reclaimed: %w", err)
		}
	}
	return deleted, nil
}

// noticeOp encrypts an acceptance notice under the current session.
type noticeOp struct {
	done
	env []byte
	err error
}

func (o *noticeOp) fail(err error) { o.err = err }

func (o *noticeOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	s := c.rec.current()
	if s == nil || st.contact == nil || st.contact.State != db.ContactAccepted || st.contact.Blocked {
		return nil // no session: our next message will carry the news
	}
	_, env, err := s.Encrypt(wire.EncodeControl(now.UnixMilli(), wire.ControlAccepted))
	if err != nil {
		o.err = err
		return nil
	}
	st.dirty = true
	o.env = env
	return nil
}

// sendAcceptance tells p that our user accepted it, so that its node
// sends what it held for us at once. It is best effort: the notice is not
// queued, and if p is offline its node finds out at its next probe
// (holdRetry) or from our next message.
func (n *Node) sendAcceptance(p peer.ID) {
	n.spawnIf(true, func() {
		o := &noticeOp{done: newDone()}
		if err := n.runOp(p, o); err != nil || o.err != nil || o.env == nil {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.lookup()+streamOpenTimeout)
		defer cancel()
		if err := n.writeOne(ctx, p, o.env); err != nil {
			n.log.Debug("acceptance notice not delivered", "peer", p, "err", err)
		}
	})
}

// writeOne sends one envelope on a stream of its own and waits for its
// ack.
func (n *Node) writeOne(ctx context.Context, p peer.ID, env []byte) error {
	s, err := n.openStream(ctx, p, MsgProtocol, "p2pmsg envelopes")
	if err != nil {
		return err
	}
	defer s.Close()
	deadline, _ := ctx.Deadline()
	s.SetDeadline(deadline)
	if _, err := s.Write(wire.AppendFrame(nil, env)); err != nil {
		s.Reset()
		return err
	}
	a, err := wire.ReadAck(bufio.NewReader(s))
	if err != nil {
		s.Reset()
		return err
	}
	switch a.Status {
	case wire.Stored:
		return nil
	case wire.Retry:
		return errors.New("the recipient asked to retry later")
	}
	return errors.New(a.Reason.String())
}
