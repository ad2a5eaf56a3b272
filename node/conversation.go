package node

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// A conv serialises everything that touches one peer's sessions. Sends and
// receives queue up as ops; one goroutine at a time (started on demand,
// gone when the queue is empty) takes all that are waiting and runs them
// in one store transaction: encrypt or decrypt in order, write the session
// record once, the messages, outbox rows and events, commit, then answer
// each op. Under load a batch holds many messages, so one fsync serves
// them all; the store's own group commit folds batches of different peers
// together (docs/node-decisions.md, 3).
//
// The session record in memory may run ahead of the store only while a
// batch is being committed; if the commit fails it is dropped and read
// again, so memory never holds a state the disk lacks.
type conv struct {
	n       *Node
	peer    peer.ID
	key     string // peer.String(), the store's peer id
	peerKey e2e.IdentityKey

	mu      sync.Mutex
	queue   []op
	running bool
	// dead: dropped from the node's map while idle (dropConv); an op
	// submitted to it goes to the peer's new conversation.
	dead bool

	// Only the running goroutine touches these.
	rec    *sessionRecord // nil: not loaded
	pruned time.Time
	// stranger: the last batch found no accepted contact (a stranger, or
	// a contact just removed): the conversation is dropped when idle, so
	// that peer IDs, which cost nothing, cost us no memory.
	stranger bool

	// sessions is whether the store holds a session with the peer, as the
	// last committed batch left it (sessionsUnknown before the first, and
	// after a failed one). Only the batches write sessions, so Send can
	// trust it without reading the store (send.go).
	sessions atomic.Int32
}

const (
	sessionsUnknown = iota
	sessionsNone
	sessionsSome
)

// An op is one thing a conversation's batch does, inside the batch's
// transaction: sendOp (encrypt.go), recvOp (decrypt.go), resetOp and
// removeOp (trust.go). Each carries only its own inputs and results,
// valid once its done channel is closed.
type op interface {
	// apply runs the op. An error returned is the store's and aborts the
	// whole batch; the op's own failure (a refused envelope, a blocked
	// peer) is kept in the op, and the batch goes on.
	apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error
	// fail records that the batch was not stored (or never ran): err says
	// why, and the op's sender may retry.
	fail(err error)
	// finish wakes whoever waits for the op: once after apply's commit,
	// or after fail.
	finish()
}

// done is every op's completion: closed once the op is committed or
// refused.
type done chan struct{}

func newDone() done    { return make(done) }
func (d done) finish() { close(d) }
func (d done) wait()   { <-d }

// batchState is what one batch learned, for the ops after, and what it
// must act on after commit.
type batchState struct {
	// contact is the peer's contact row as the batch left it; nil: the
	// peer is a stranger.
	contact *db.Contact
	// newContact: the batch made the peer a contact; after commit its
	// path is reported from then on (its connection may predate it).
	newContact bool
	// dirty: the session record changed and is written at the end.
	dirty bool
	// keyChange: the key-change event was raised (once per batch).
	keyChange bool
	// receipts: messages stored from a mailbox, receipted at the end of
	// the batch, in its transaction (control.go).
	receipts []e2e.MessageID
	// grant: the batch made the peer an accepted contact, or started a
	// session with one; after commit it is granted tokens for our
	// mailboxes (mailboxes.go).
	grant bool
	// released: what was held for the peer was released (decrypt.go).
	released bool
	// held, once heldKnown: something is held for the peer (encrypt.go).
	held, heldKnown bool
	// newRequest: the batch made a contact request; after commit the
	// requests are trimmed to their cap (requests.go).
	newRequest bool
	// skew: the smallest difference seen in the batch between our clock
	// and the peer's (clock.go); skewSeen says whether there was one.
	skew     time.Duration
	skewSeen bool
	// received: the messages stored, logged after commit.
	received []e2e.MessageID
	// expiry: a disappearing timer started; purge: text was deleted, to
	// be scrubbed from the index's free pages and the WAL (expiry.go).
	expiry, purge bool
	// After commit: notify wakes the Watchers (events were appended), kick
	// starts the peer's outbox worker (envelopes were queued).
	notify, kick bool
}

// event appends an event in the batch's transaction; the Watchers wake
// after the commit.
func (st *batchState) event(tx *db.Tx, kind EventKind, p payload, now time.Time) error {
	st.notify = true
	return appendEvent(tx, kind, p, now)
}

// dropConv forgets an idle conversation, unless an op came meanwhile.
// Lock order: the map's, then the conversation's.
func (n *Node) dropConv(c *conv) {
	n.convs.Lock()
	defer n.convs.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running || len(c.queue) > 0 || n.convs.m[c.peer] != c {
		return
	}
	c.dead = true
	delete(n.convs.m, c.peer)
}

func (n *Node) conv(p peer.ID) (*conv, error) {
	n.convs.Lock()
	defer n.convs.Unlock()
	if c, ok := n.convs.m[p]; ok {
		return c, nil
	}
	k, err := peerIdentity(p)
	if err != nil {
		return nil, err
	}
	c := &conv{n: n, peer: p, key: p.String(), peerKey: k}
	n.convs.m[p] = c
	return c, nil
}

// submit queues an op; it finishes once it is committed or refused.
func (c *conv) submit(o op) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		next, err := c.n.conv(c.peer)
		if err != nil {
			o.fail(err)
			o.finish()
			return
		}
		next.submit(o)
		return
	}
	c.queue = append(c.queue, o)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start && !c.n.spawn(c.run) {
		c.mu.Lock()
		queued := c.queue
		c.queue, c.running = nil, false
		c.mu.Unlock()
		for _, o := range queued {
			o.fail(ErrClosed)
			o.finish()
		}
	}
}

// runOp runs an op in p's conversation, so that no batch of the peer
// runs meanwhile, and waits for it.
func (n *Node) runOp(p peer.ID, o interface {
	op
	wait()
}) error {
	c, err := n.conv(p)
	if err != nil {
		return err
	}
	c.submit(o)
	o.wait()
	return nil
}

func (c *conv) run() {
	for {
		c.mu.Lock()
		batch := c.queue[:min(len(c.queue), maxBatch)]
		c.queue = c.queue[len(batch):]
		if len(batch) == 0 {
			c.queue = nil
			c.running = false
			// Idle: drop the sessions from memory (the store has them).
			// Conversations with many peers then cost memory only while
			// they are active.
			c.rec = nil
			drop := c.stranger
			c.mu.Unlock()
			if drop {
				c.n.dropConv(c)
			}
			return
		}
		c.mu.Unlock()
		c.process(batch)
	}
}

func (c *conv) process(batch []op) {
	now := time.Now()
	var st batchState
	err := c.n.store.Update(func(tx *db.Tx) error {
		st = batchState{}
		r := tx.Read()
		if c.rec == nil {
			rec, err := loadRecord(r, c.key, c.n.log)
			if err != nil {
				return err
			}
			c.rec = rec
		}
		if now.Sub(c.pruned) > pruneEvery {
			for _, s := range c.rec.sessions {
				if s.Prune(now) > 0 {
					st.dirty = true
				}
			}
			c.pruned = now
		}
		ct, err := r.Contact(c.key)
		if err == nil {
			st.contact = &ct
		} else if !errors.Is(err, db.ErrNotFound) {
			return err
		}
		for _, o := range batch {
			if err := o.apply(c, tx, &st, now); err != nil {
				return err
			}
		}
		if err := c.queueReceipts(tx, &st, now); err != nil {
			return err
		}
		if !st.dirty {
			return nil
		}
		blob, err := c.rec.MarshalBinary()
		if err != nil {
			return err
		}
		return tx.PutSession(c.key, blob, now)
	})
	if err != nil {
		// Nothing of the batch is stored: forget the sessions' progress
		// and let each op fail in a way its sender can retry.
		c.rec = nil
		c.sessions.Store(sessionsUnknown)
		c.n.log.Error("store a batch", "peer", c.key, "err", err)
		for _, o := range batch {
			o.fail(fmt.Errorf("node: store: %w", err))
		}
	} else if c.rec.current() != nil {
		c.sessions.Store(sessionsSome)
	} else {
		c.sessions.Store(sessionsNone)
	}
	c.stranger = err == nil && (st.contact == nil || st.contact.State != db.ContactAccepted)
	for _, o := range batch {
		o.finish()
	}
	if err != nil {
		return
	}
	if st.notify {
		c.n.notifyEvents()
	}
	for _, id := range st.received {
		c.n.log.Info("message received", "peer", c.key, "id", id)
	}
	if st.kick {
		c.n.kick(c.peer)
		c.n.retryScheduled()
		if c.n.notConnected(c.peer) {
			// Likely away: its mailboxes get it now, while the worker
			// tries to reach it (deposit.go).
			c.n.depositSoon(c.peer)
		}
	}
	if st.skewSeen && st.contact != nil && st.contact.State == db.ContactAccepted {
		c.n.observeClock(c.peer, st.skew, now)
	}
	if st.newRequest {
		c.n.trimRequests()
	}
	if st.expiry {
		c.n.kickExpiry()
	}
	if st.purge {
		c.n.purgeSoon()
	}
	if st.grant && st.contact != nil && st.contact.State == db.ContactAccepted && !st.contact.Blocked {
		c.n.spawnIf(true, func() { c.n.grant(c.peer) })
	}
	if st.newContact && st.contact != nil && st.contact.State == db.ContactAccepted {
		// Its connection may predate it: report its path from now on.
		// (Not a stranger's request: its paths would cost a map entry
		// and events per peer ID; accepting it reports them from its
		// next connection.)
		c.n.queueHostEvent(hostEvent{hostContact, c.peer})
	}
}
