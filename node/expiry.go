package node

import (
	"time"

	"github.com/p2pmsg/p2pmsg/db"
)

// Disappearing messages and the scrubbing of deleted text.
//
// A message with a timer starts counting when it is delivered (ours) or
// read (theirs); the expiry loop deletes it when its time comes, row,
// reactions and index entries. Deleted text (those, and deletions for
// everyone) still sits in the full-text index's old segments, in free
// pages and in the WAL: the purge loop then merges the index, frees the
// pages (secure_delete zeroes them) and checkpoints the WAL to nothing,
// so that the database files hold no copy of it (db.Store.Reclaim): a
// second after the first deletion, and then at most every 10 s.

const (
	// expireBatch: messages deleted per transaction.
	expireBatch = 500
	// expiryIdle: how often the loop looks when nothing counts down (a
	// wake missed, a clock that jumped).
	expiryIdle = time.Hour
	// purgeDelay gathers the deletions of a burst into one purge;
	// purgeEvery spaces purges out: each rewrites the whole full-text
	// index, and a peer (or a one-second timer) may delete as often as
	// it likes.
	purgeDelay = time.Second
	purgeEvery = 10 * time.Second
	// purgeRetry: a purge that a reader held back is tried again.
	purgeRetry = 5 * time.Second
)

// kickExpiry wakes the expiry loop: a timer started.
func (n *Node) kickExpiry() {
	select {
	case n.expiryWake <- struct{}{}:
	default:
	}
}

// purgeSoon asks for deleted text to be scrubbed from the files.
func (n *Node) purgeSoon() {
	select {
	case n.purgeWake <- struct{}{}:
	default:
	}
}

func (n *Node) expiryLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-n.expiryWake:
		case <-n.ctx.Done():
			return
		}
		wait, err := n.expireDue(time.Now())
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("delete disappearing messages", "err", err)
			wait = time.Minute
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// expireDue deletes the messages due by now and returns how long until
// the next one is.
func (n *Node) expireDue(now time.Time) (time.Duration, error) {
	for {
		var gone []db.Expired
		err := n.store.Update(func(tx *db.Tx) (err error) {
			if gone, err = tx.DeleteExpired(now, expireBatch); err != nil {
				return err
			}
			for _, e := range gone {
				if err := appendEvent(tx, EventDelete, payload{Peer: e.Peer, MessageID: msgIDString(e.ID), Reason: "expired"}, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if len(gone) > 0 {
			n.notifyEvents()
			n.purgeSoon()
		}
		if len(gone) < expireBatch {
			break
		}
	}
	var next time.Time
	var some bool
	err := n.store.View(func(r *db.ReadTx) (err error) {
		next, some, err = r.NextExpiry()
		return err
	})
	if err != nil || !some {
		return expiryIdle, err
	}
	return min(max(time.Until(next), 0), expiryIdle), nil
}

func (n *Node) purgeLoop() {
	var last time.Time
	for {
		select {
		case <-n.purgeWake:
		case <-n.ctx.Done():
			return
		}
		if !sleepCtx(n.ctx, max(purgeDelay, time.Until(last.Add(purgeEvery)))) {
			return
		}
		// Deletions made while we slept are in this purge.
		select {
		case <-n.purgeWake:
		default:
		}
		for {
			_, err := n.store.Reclaim()
			last = time.Now() // the spacing counts from the end of the last one
			if err == nil || n.ctx.Err() != nil {
				break
			}
			n.log.Debug("scrub deleted text", "err", err)
			if !sleepCtx(n.ctx, purgeRetry) {
				return
			}
		}
	}
}
