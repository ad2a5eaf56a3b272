package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// Delivery (docs/design.md §7.3): one worker per peer sends the peer's
// outbox over one stream, oldest first, up to maxInflight envelopes
// unacknowledged, and records the acks in batches. What cannot be
// delivered waits with exponential backoff. Retransmissions resend the
// stored bytes, never a new encryption.

// worker delivers one peer's outbox over one stream; at most one per peer.
type worker struct {
	kick chan struct{}
	// inFlight: envelopes are on the wire, unacknowledged (the punch
	// loop does not cut their connection).
	inFlight atomic.Bool
}

// kick makes sure a worker delivers what waits for p. It never blocks:
// conversations call it after their commits, the retry loop and the
// host-event loop after theirs. It takes delivery's lock, then (through
// spawnIf) lifecycle's, which is a leaf.
func (n *Node) kick(p peer.ID) {
	n.delivery.Lock()
	defer n.delivery.Unlock()
	w, ok := n.delivery.workers[p]
	if !ok {
		w = &worker{kick: make(chan struct{}, 1)}
		// The worker cannot leave before it is in the map: it takes
		// delivery's lock to leave.
		if !n.spawnIf(true, func() { n.deliver(p, w) }) {
			return // closing, or not started
		}
		n.delivery.workers[p] = w
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// delivery is a worker's state.
type delivery struct {
	n    *Node
	peer peer.ID
	key  string

	s        network.Stream
	bw       *bufio.Writer
	acks     chan wire.Ack // from s's reader
	readErr  chan error    // from s's reader
	gone     chan struct{} // closed when s is dropped
	inflight map[e2e.MessageID]flight
	// inflightBytes: the envelopes' bytes in inflight.
	inflightBytes int
	// released: an ack released what was held for the peer; the outbox
	// is read again.
	released bool
	unsent   []written // not yet marked sent, in the order written
	afterRow int64     // the outbox row last written
	// stale: envelopes on the wire that commitAcks's transaction put
	// back to be encrypted again (rekeySession); marked in inflight once
	// it commits.
	stale []e2e.MessageID
}

// flight is what the worker remembers of an envelope on the wire.
type flight struct {
	// gen is the peer's release generation when it was written: a
	// refusal "not accepted" that crossed the peer's acceptance must not
	// hold it (requests.go, releaseGen).
	gen uint64
	// probe: it was held, and is offered again; if it is stored, the
	// peer accepted us, and what waits behind it goes.
	probe bool
	// stale: it was encrypted again (rekeySession) since it was
	// written; its answer is ignored.
	stale bool
	size  int // bytes on the wire
}

type written struct {
	id e2e.MessageID
	at time.Time
}

func (n *Node) deliver(p peer.ID, w *worker) {
	d := &delivery{n: n, peer: p, key: p.String(), inflight: map[e2e.MessageID]flight{}}
	defer d.closeStream()
	for {
		d.work(w)
		n.delivery.Lock()
		select {
		case <-w.kick:
			n.delivery.Unlock()
			continue
		default:
		}
		delete(n.delivery.workers, p)
		n.delivery.Unlock()
		// What it left in the outbox waits for its time.
		n.retryScheduled()
		return
	}
}

// work runs the worker until it has nothing left to do or must wait for
// a retry.
func (d *delivery) work(w *worker) {
	ctx := d.n.ctx
	// go-libp2p refuses to dial again, for 5 s and growing, an address
	// whose dial failed: a circuit through a relay where the peer had no
	// reservation yet, a direct address before the network changed. The
	// worker paces its attempts itself (Config.RetryMin to RetryMax, at
	// once when the network changes), so each run dials afresh, for a
	// bundle and for the stream alike.
	clearDialBackoff(d.n.host, d.peer)
	idle := time.NewTimer(idleStream)
	defer idle.Stop()
	markSent := time.NewTimer(time.Hour) // armed by the first write
	defer markSent.Stop()
	// ackWait runs while envelopes are on the wire; only an ack moves it.
	ackWait := time.NewTimer(time.Hour)
	ackWait.Stop()
	defer ackWait.Stop()
	waiting := false
	// The outbox is read again only when something new may wait in it:
	// at start, on a kick, and when the window was full.
	pending := true
	defer func() { w.inFlight.Store(len(d.inflight) > 0) }()
	for {
		if pending && len(d.inflight) < maxInflight {
			wrote, err := d.sendPending(ctx)
			if err != nil {
				if errors.As(err, new(unreachable)) {
					d.n.depositSoon(d.peer)
				}
				d.retryLater(err)
				return
			}
			pending = len(d.inflight) >= maxInflight
			if wrote {
				idle.Reset(idleStream)
				markSent.Reset(markSentAfter)
				if !waiting {
					ackWait.Reset(d.ackDeadline())
					waiting = true
				}
			}
		}
		w.inFlight.Store(len(d.inflight) > 0)
		select {
		case <-w.kick:
			pending = true
		case a := <-d.acks:
			full := len(d.inflight) >= maxInflight
			if err := d.handleAcks(a); err != nil {
				d.retryLater(err)
				return
			}
			pending = pending || full || d.released
			d.released = false
			idle.Reset(idleStream)
			ackWait.Stop()
			if waiting = len(d.inflight) > 0; waiting {
				ackWait.Reset(d.ackDeadline())
			}
		case <-ackWait.C:
			waiting = false
			if len(d.acks) > 0 {
				// Acks came while a write blocked (a slow link): the
				// connection lives; take them first.
				ackWait.Reset(d.ackDeadline())
				waiting = true
				continue
			}
			if len(d.inflight) > 0 {
				d.dropConn()
				d.retryLater(fmt.Errorf("no acknowledgement in %v: the connection is presumed dead", d.ackDeadline()))
				return
			}
		case err := <-d.readErr:
			d.retryLater(fmt.Errorf("stream closed: %w", err))
			return
		case <-markSent.C:
			if err := d.commitAcks(nil); err != nil {
				d.retryLater(err)
				return
			}
		case <-idle.C:
			if len(d.inflight) > 0 {
				d.retryLater(errors.New("no acknowledgement"))
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// sending reports whether envelopes to p are on the wire, unacknowledged.
func (n *Node) sending(p peer.ID) bool {
	n.delivery.Lock()
	defer n.delivery.Unlock()
	w := n.delivery.workers[p]
	return w != nil && w.inFlight.Load()
}

// sendPending writes the outbox entries not yet on the wire, oldest
// first, and reports whether it wrote any.
func (d *delivery) sendPending(ctx context.Context) (bool, error) {
	if len(d.inflight) == 0 {
		// Everything written was answered: start from the first entry.
		// (Rowids may be reused once the outbox has emptied.)
		d.afterRow = 0
	}
	var entries []db.OutboxEntry
	blocked := false
	err := d.n.store.View(func(r *db.ReadTx) (err error) {
		if c, err := r.Contact(d.key); err == nil && c.Blocked {
			blocked = true
			return nil
		}
		entries, err = r.OutboxAfter(d.key, d.afterRow, maxInflight-len(d.inflight), time.Now())
		return err
	})
	if blocked {
		return false, d.giveUpAll("the recipient is blocked")
	}
	if err != nil || len(entries) == 0 {
		return false, err
	}
	if slices.ContainsFunc(entries, awaitsSession) {
		// Queued before a bundle could be found: encrypt them first, in
		// order, then read again (once: a Send that queued behind them
		// meanwhile waits for the next round).
		if err := d.n.encryptWaiting(ctx, d.peer); err != nil {
			return false, err
		}
		err := d.n.store.View(func(r *db.ReadTx) (err error) {
			entries, err = r.OutboxAfter(d.key, d.afterRow, maxInflight-len(d.inflight), time.Now())
			return err
		})
		if err != nil || len(entries) == 0 {
			return false, err
		}
		if i := slices.IndexFunc(entries, awaitsSession); i >= 0 {
			entries = entries[:i]
		}
		if len(entries) == 0 {
			return false, nil
		}
	}
	if d.s == nil {
		if err := d.open(ctx); err != nil {
			return false, unreachable{err}
		}
	}
	now := time.Now()
	tap := d.n.cfg.tap
	for _, e := range entries {
		d.afterRow = e.Row
		if _, ok := d.inflight[e.MessageID]; ok {
			continue
		}
		if tap != nil {
			tap(e.MessageID, e.Envelope)
		}
		if _, err := d.bw.Write(wire.AppendFrame(nil, e.Envelope)); err != nil {
			return false, err
		}
		d.inflight[e.MessageID] = flight{gen: d.n.releaseGen(d.peer), probe: e.Held, size: len(e.Envelope)}
		d.inflightBytes += len(e.Envelope)
		d.unsent = append(d.unsent, written{e.MessageID, now})
	}
	return true, d.bw.Flush()
}

func awaitsSession(e db.OutboxEntry) bool { return len(e.Envelope) == 0 }

// unreachable: no stream to the peer could be opened.
type unreachable struct{ error }

func (u unreachable) Unwrap() error { return u.error }

// errNoSessionYet: no bundle of the peer could be found for what waits.
var errNoSessionYet = errors.New("no session yet")

// encryptWaiting encrypts p's messages that wait for a session: under the
// session the peer's conversation has (the peer may have written to us
// meanwhile), else one started from a bundle fetched now.
func (n *Node) encryptWaiting(ctx context.Context, p peer.ID) error {
	o := &encryptOp{done: newDone()}
	if err := n.runOp(p, o); err != nil {
		return err
	}
	if !errors.Is(o.err, errNeedBundle) {
		return o.err
	}
	b, err := n.fetchBundle(ctx, p)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoSessionYet, err)
	}
	o = &encryptOp{done: newDone(), bundle: b}
	if err := n.runOp(p, o); err != nil {
		return err
	}
	return o.err
}

// open opens the stream (dial.go) and starts its ack reader.
func (d *delivery) open(ctx context.Context) error {
	s, err := d.n.openStream(ctx, d.peer, MsgProtocol, "p2pmsg envelopes")
	if err != nil {
		return err
	}
	// Each stream has its own channels: what its reader reports after
	// the stream was dropped must not end the next one.
	acks, readErr, gone := make(chan wire.Ack, maxInflight), make(chan error, 1), make(chan struct{})
	if !d.n.spawn(func() { readAcks(s, acks, readErr, gone) }) {
		s.Reset()
		return ErrClosed
	}
	d.s, d.bw = s, bufio.NewWriterSize(s, sendBufSize)
	d.acks, d.readErr, d.gone = acks, readErr, gone
	return nil
}

func readAcks(s network.Stream, acks chan<- wire.Ack, readErr chan<- error, gone <-chan struct{}) {
	r := bufio.NewReader(s)
	for {
		a, err := wire.ReadAck(r)
		if err != nil {
			select {
			case readErr <- err:
			case <-gone:
			}
			return
		}
		select {
		case acks <- a:
		case <-gone:
			return
		}
	}
}

// ackDeadline is how long the envelopes on the wire may go without an
// ack: ackTimeout, plus their bytes at the slowest rate a receiver
// accepts a frame (minFrameRate), so that a slow but live link is not
// taken for dead while it carries a large message.
func (d *delivery) ackDeadline() time.Duration {
	return ackTimeout + time.Duration(d.inflightBytes)*time.Second/minFrameRate
}

// dropConn closes the connection the stream runs on: it carried no ack
// for ackTimeout, and would still count as live for a while.
func (d *delivery) dropConn() {
	if d.s != nil {
		d.n.log.Info("connection presumed dead: no acknowledgement", "peer", d.key, "after", d.ackDeadline())
		d.s.Conn().Close()
	}
}

// closeStream drops the stream; its channels go with it (nil channels
// block for ever in the worker's select).
func (d *delivery) closeStream() {
	if d.s != nil {
		d.s.Reset()
		close(d.gone)
		d.s, d.bw = nil, nil
		d.acks, d.readErr, d.gone = nil, nil, nil
	}
}

// handleAcks takes a and the acks behind it, and commits them at once.
func (d *delivery) handleAcks(a wire.Ack) error {
	batch := []wire.Ack{a}
	for more := true; more && len(batch) < maxInflight; {
		select {
		case a := <-d.acks:
			batch = append(batch, a)
		default:
			more = false
		}
	}
	for _, a := range batch {
		if _, ok := d.inflight[a.ID]; !ok {
			d.closeStream()
			return fmt.Errorf("node: %s acknowledged a message it was not sent", d.key)
		}
	}
	return d.commitAcks(batch)
}

// commitAcks records acknowledgements, and marks the envelopes written
// meanwhile as sent. After a refusal that calls for a new session it
// drops the peer's sessions, through the peer's conversation.
func (d *delivery) commitAcks(batch []wire.Ack) error {
	now := time.Now()
	acked := make(map[e2e.MessageID]bool, len(batch))
	for _, a := range batch {
		acked[a.ID] = true
	}
	// Mark sent what has waited for its ack a while; what is answered
	// at once goes straight to delivered, without the extra write.
	var stale []e2e.MessageID
	keep := d.unsent[:0]
	for _, w := range d.unsent {
		switch {
		case acked[w.id]:
		case now.Sub(w.at) >= markSentAfter || batch == nil:
			stale = append(stale, w.id)
		default:
			keep = append(keep, w)
		}
	}
	d.unsent = keep
	var retry []wire.Ack
	events, renew, release, hold, rekeyed := false, false, false, false, false
	type settledMsg struct {
		id            e2e.MessageID
		state, reason string
	}
	var settled []settledMsg // logged once committed
	err := d.n.store.Update(func(tx *db.Tx) error {
		events, renew, release, hold, rekeyed = false, false, false, false, false
		settled = settled[:0]
		d.stale = d.stale[:0]
		for _, id := range stale {
			ok, err := tx.SetMessageState(d.key, id, db.Sent, "")
			if errors.Is(err, db.ErrNotFound) {
				continue // deleted with its contact meanwhile
			}
			if err != nil {
				return err
			} else if ok {
				events = true
				if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(id), State: string(db.Sent)}, now); err != nil {
					return err
				}
			}
		}
		for _, a := range batch {
			if d.inflight[a.ID].stale || slices.Contains(d.stale, a.ID) {
				continue // encrypted again meanwhile: this answer is to the old envelope
			}
			var ok bool
			var err error
			var state db.MessageState
			var reason string
			switch a.Status {
			case wire.Stored:
				ok, err = tx.Delivered(d.key, a.ID)
				state = db.Delivered
				// A probe got through: the peer accepted us.
				release = release || d.inflight[a.ID].probe
			case wire.Rejected:
				reason = a.Reason.String()
				if a.Reason.Holds() {
					// Kept for when the peer accepts us (requests.go);
					// if it accepted us since we wrote this, at once.
					ok, err = tx.Hold(d.key, a.ID, reason, now.Add(d.n.cfg.holdRetry()))
					state = db.Queued
					release = release || d.inflight[a.ID].gen != d.n.releaseGen(d.peer)
					hold = true
					break
				}
				if a.Reason.RenewsSession() {
					// A session the recipient never had, started by a
					// message that went through a mailbox (rekeySession
					// says why): its messages are encrypted again, same
					// ids, under a new session, instead of failing.
					ids, err := d.rekeySession(tx, a.ID, reason, now)
					if err != nil {
						return err
					}
					if len(ids) > 0 {
						renew, rekeyed = true, true
						for _, id := range ids {
							events = true
							if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(id), State: string(db.Queued), Reason: reason}, now); err != nil {
								return err
							}
						}
						continue
					}
				}
				ok, err = tx.GiveUp(d.key, a.ID, reason)
				state = db.Failed
				// Only a rejection that failed a message still queued:
				// one for a message already settled (or deleted with
				// its contact) says nothing of the sessions made since.
				renew = renew || ok && a.Reason.RenewsSession()
			case wire.Retry:
				retry = append(retry, a)
				continue
			}
			if err != nil {
				return err
			}
			if ok {
				events = true
				settled = append(settled, settledMsg{a.ID, string(state), reason})
				if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(a.ID), State: string(state), Reason: reason}, now); err != nil {
					return err
				}
			}
		}
		if hold && !release {
			// What waits behind it would be refused too: it waits held,
			// with the reason, and the first held one is the probe.
			ids, err := tx.HoldAll(d.key, wire.ReasonNotAccepted.String(), now.Add(d.n.cfg.holdRetry()))
			for _, id := range ids {
				events = true
				if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(id), State: string(db.Queued),
					Reason: wire.ReasonNotAccepted.String()}, now); err != nil {
					return err
				}
			}
			return err
		}
		if !release {
			return nil
		}
		ids, err := tx.Release(d.key, now)
		for _, id := range ids {
			events = true
			if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(id), State: string(db.Queued)}, now); err != nil {
				return err
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, m := range settled {
		if m.reason == "" {
			d.n.log.Info("message "+m.state, "peer", d.key, "id", m.id)
		} else {
			d.n.log.Info("message "+m.state, "peer", d.key, "id", m.id, "reason", m.reason)
		}
	}
	for _, id := range d.stale {
		if f, ok := d.inflight[id]; ok {
			f.stale = true
			d.inflight[id] = f
		}
	}
	for _, a := range batch {
		d.inflightBytes -= d.inflight[a.ID].size
		delete(d.inflight, a.ID)
	}
	// Released or encrypted again: the outbox is read again from its
	// start.
	d.released = d.released || release || rekeyed
	if events {
		d.n.notifyEvents()
		d.n.kickExpiry() // a delivery starts a disappearing message's timer
	}
	if renew {
		// The peer cannot read our session any more: forget it, so that
		// the next message starts a new one from a fresh bundle. This
		// re-enters the peer's conversation and waits for its batch
		// (trust.go, dropSessions, says why that is safe).
		if err := d.n.dropSessions(d.peer); err == nil {
			d.n.log.Info("session with peer dropped: it could not decrypt", "peer", d.key)
		}
	}
	if len(retry) > 0 {
		return errors.New("node: the recipient asked to retry later")
	}
	return nil
}

// rekeySession handles the refusal of message id for want of a session
// or of the prekeys it names. When id started a session (a prekey
// message) and that session's messages went through a mailbox, the
// mailbox may be at fault (it handed the one-time prekey they name to
// another sender too): the recipient never had the session, so nothing
// under it was read, and every message of it waiting here is encrypted
// again, same id, under a new session from the recipient's own bundle
// (at most maxRekeys times in a message's life; its control messages are
// dropped). It returns the ids of the messages put back to wait, none
// when the refusal stands (on the direct path only, it means the
// recipient forgot or removed us, and our user decides).
func (d *delivery) rekeySession(tx *db.Tx, id e2e.MessageID, reason string, now time.Time) ([]e2e.MessageID, error) {
	entries, err := tx.Read().OutboxFor(d.key)
	if err != nil {
		return nil, err
	}
	var base *e2e.DHPublicKey
	for _, e := range entries {
		if e.MessageID == id && len(e.Envelope) > 0 && e2e.IsPrekeyMessage(e.Envelope) {
			if pm, err := e2e.ParsePrekeyMessage(e.Envelope); err == nil {
				base = &pm.BaseKey
			}
		}
	}
	if base == nil {
		return nil, nil
	}
	var session []db.OutboxEntry
	viaMailbox := false
	for _, e := range entries {
		if len(e.Envelope) == 0 || !e2e.IsPrekeyMessage(e.Envelope) {
			continue
		}
		if pm, err := e2e.ParsePrekeyMessage(e.Envelope); err == nil && pm.BaseKey == *base {
			session = append(session, e)
			viaMailbox = viaMailbox || !e.Mailboxed.IsZero()
		}
	}
	if !viaMailbox {
		return nil, nil
	}
	// The refused one first: encrypted again too often, it fails.
	if ok, err := tx.Rekey(d.key, id, reason, maxRekeys, now); err != nil || !ok {
		return nil, err
	}
	ids := []e2e.MessageID{id}
	for _, e := range session {
		switch {
		case e.MessageID == id:
			continue
		case e.Control:
			if _, err := tx.GiveUp(d.key, e.MessageID, reason); err != nil {
				return nil, err
			}
			if e.Lasting {
				// An edit, a deletion, a reaction...: its content is not
				// kept to encrypt again (docs/content.md, "Known gap").
				d.n.log.Warn("a change to the peer was dropped with its session", "peer", d.key, "reason", reason)
			}
		default:
			ok, err := tx.Rekey(d.key, e.MessageID, reason, maxRekeys, now)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // encrypted again too often: its own refusal fails it
			}
			ids = append(ids, e.MessageID)
		}
		d.stale = append(d.stale, e.MessageID)
	}
	return ids, nil
}

// giveUpAll fails everything queued for the peer.
func (d *delivery) giveUpAll(reason string) error {
	now := time.Now()
	err := d.n.store.Update(func(tx *db.Tx) error {
		entries, err := tx.Read().OutboxFor(d.key)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if ok, err := tx.GiveUp(d.key, e.MessageID, reason); err != nil {
				return err
			} else if ok {
				if err := appendEvent(tx, EventState, payload{Peer: d.key, MessageID: msgIDString(e.MessageID), State: string(db.Failed), Reason: reason}, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		d.n.notifyEvents()
	}
	return err
}

// retryLater puts everything not acknowledged back for a later attempt,
// with exponential backoff, and drops the stream.
func (d *delivery) retryLater(cause error) {
	d.closeStream()
	if d.n.ctx.Err() != nil {
		return // closing: the entries stay due, and start-up sends them
	}
	now := time.Now()
	err := d.n.store.Update(func(tx *db.Tx) error {
		entries, err := tx.Read().OutboxFor(d.key)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Held {
				// Offered again at its own time; a probe that got no
				// answer waits for the next, not for the backoff.
				if !e.NextAttempt.After(now) {
					if _, err := tx.Hold(d.key, e.MessageID, e.LastError, now.Add(d.n.cfg.holdRetry())); err != nil {
						return err
					}
				}
				continue
			}
			wait := d.n.cfg.retryMin() << min(e.Attempts, maxBackoffShift)
			if wait > d.n.cfg.retryMax() || wait <= 0 {
				wait = d.n.cfg.retryMax()
			}
			if err := tx.RetryLater(e.MessageID, now.Add(wait), cause.Error()); err != nil {
				return err
			}
			if awaitsSession(e) && errors.Is(cause, errNoSessionYet) {
				// Its message says why it waits.
				if err := tx.NoteQueued(e.MessageID, waitingReason(cause)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		d.n.log.Warn("record a failed delivery", "peer", d.key, "err", err)
	}
	d.n.log.Debug("delivery postponed", "peer", d.key, "cause", cause)
	clear(d.inflight)
	d.inflightBytes = 0
	d.unsent = d.unsent[:0]
}

// retryLoop delivers due outbox entries: at start, then whenever the
// earliest entry falls due (every retryEvery at most while entries are
// due), and when an entry may have been scheduled (retryScheduled). An
// idle node does not read its store each second: a thousand of them on
// one machine spent 5 % of their CPU on it.
func (n *Node) retryLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-n.retryWake:
		case <-n.ctx.Done():
			return
		}
		now := time.Now()
		var due []string
		var next time.Time
		var some bool
		err := n.store.View(func(r *db.ReadTx) (err error) {
			if due, err = r.DuePeers(now, maxDuePeers); err != nil {
				return err
			}
			next, some, err = r.NextAttempt()
			return err
		})
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn("read the outbox", "err", err)
		}
		for _, key := range due {
			if p, err := peer.Decode(key); err == nil {
				n.kick(p)
			}
		}
		wait := retryIdle // a store that failed, or a wake missed
		if some && err == nil {
			wait = min(max(next.Sub(now), retryEvery), retryIdle)
		}
		t.Reset(wait)
	}
}

// retryScheduled tells the retry loop that an outbox entry may have been
// queued or given a new time. It never blocks.
func (n *Node) retryScheduled() {
	select {
	case n.retryWake <- struct{}{}:
	default:
	}
}
