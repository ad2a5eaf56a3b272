package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Send encrypts text for peer `to` and returns the message's id once the
// message, the new session state and the envelope are durably stored
// (state queued). Delivery goes on in the background, retried until the
// peer acknowledges it; follow it with Watch or History.
//
// A first message to a peer needs its bundle: fetched from the peer when
// it is reachable (with one-time prekeys), else from the DHT. When neither
// works the message is queued all the same, unencrypted (its text is
// stored as every message's is), with the reason as its error; the
// delivery worker looks for the bundle again with the delivery backoff,
// and encrypts what waits, in order, once it has one.
func (n *Node) Send(ctx context.Context, to peer.ID, text string) (MessageID, error) {
	return n.SendDraft(ctx, to, Draft{Text: text})
}

// SendDraft is Send of a message that may quote another (a reply). The
// disappearing timer is the conversation's as the message is stored.
func (n *Node) SendDraft(ctx context.Context, to peer.ID, d Draft) (MessageID, error) {
	if err := n.running(); err != nil {
		return MessageID{}, err
	}
	if to == n.id {
		return MessageID{}, fmt.Errorf("%w: you cannot send to yourself", ErrInvalid)
	}
	if err := checkText(d.Text); err != nil {
		return MessageID{}, err
	}
	text := d.Text
	c, err := n.conv(to)
	if err != nil {
		return MessageID{}, err
	}
	// The bundle is fetched before the op is submitted, so that the
	// conversation never waits for the network and a first message is
	// submitted once.
	o := newSendOp(text, nil)
	o.replyTo = e2e.MessageID(d.ReplyTo)
	need, waiting, err := c.needsBundle()
	if err != nil {
		return MessageID{}, err
	}
	switch {
	case waiting:
		// Behind messages that wait for a bundle: their worker looks.
		o.waiting = "waiting for a session, behind earlier messages to this peer"
	case need:
		n.fetchOrWait(ctx, to, o)
	}
	c.submit(o)
	o.wait()
	if errors.Is(o.err, errNeedBundle) {
		// The rare path, and why it exists: the peer had a session when
		// we looked, and it was gone when the op ran. Only the
		// conversation drops sessions: after a "no session" or "unknown
		// prekey" ack (outbox.go's commitAcks resets them), TrustIdentity
		// or RemoveContact, any of which may run between the look and the
		// op. One more round, with a bundle (or waiting for one) this
		// time, so that it cannot end here again.
		o = newSendOp(text, nil)
		o.replyTo = e2e.MessageID(d.ReplyTo)
		n.fetchOrWait(ctx, to, o)
		c.submit(o)
		o.wait()
	}
	return MessageID(o.id), o.err
}

// fetchOrWait gives the op the peer's bundle, or, when none can be found,
// the reason for queueing it unencrypted.
func (n *Node) fetchOrWait(ctx context.Context, p peer.ID, o *sendOp) {
	b, err := n.fetchBundle(ctx, p)
	if err != nil {
		n.log.Debug("no bundle yet", "peer", p.String(), "err", err)
		o.waiting = waitingReason(err)
		return
	}
	o.bundle = b
}

// waitingReason says in one line why a message waits for its recipient's
// bundle, from the error of the last search.
func waitingReason(err error) string {
	const retried = "it stays queued and will be retried"
	switch {
	case errors.Is(err, dht.ErrNoPeers):
		return "not found: this node knows no DHT peer yet to ask (see p2pmsg status); " + retried
	case errors.Is(err, dht.ErrAllAnswersInvalid):
		return "only invalid bundles of this peer found in the DHT (forged or expired); " + retried
	case errors.Is(err, dht.ErrNotFound), errors.Is(err, context.DeadlineExceeded):
		return "not found in the DHT yet; " + retried
	}
	return fmt.Sprintf("no session yet (%v); %s", err, retried)
}

// WaitsForPeer reports whether messages to p wait for its bundle, that
// is for p to be found.
func (n *Node) WaitsForPeer(p peer.ID) (bool, error) {
	var waits bool
	err := n.store.View(func(r *db.ReadTx) (err error) {
		waits, err = r.AwaitsSession(p.String())
		return err
	})
	return waits, err
}

// needsBundle reports whether a message to the peer must start a session
// (no session with it is stored), so that Send fetches the bundle first,
// and whether messages already wait for one (then it queues behind them
// without a fetch). The common case, a session known from the last
// batch, reads nothing. A blocked peer needs none: the op fails with
// ErrBlocked, as it must, without a fetch.
func (c *conv) needsBundle() (need, waiting bool, err error) {
	known := c.sessions.Load()
	if known == sessionsSome {
		return false, false, nil
	}
	need = known == sessionsNone
	err = c.n.store.View(func(r *db.ReadTx) error {
		ct, err := r.Contact(c.key)
		if err == nil && ct.Blocked {
			need = false
			return nil
		}
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return err
		}
		if known == sessionsUnknown {
			_, err = r.Session(c.key)
			need = errors.Is(err, db.ErrNotFound)
			if !need && err != nil {
				return err
			}
		}
		if need {
			waiting, err = r.AwaitsSession(c.key)
		}
		return err
	})
	if err != nil {
		return false, false, fmt.Errorf("node: store: %w", err)
	}
	return need, waiting, nil
}

// Resend sends the text of a failed outgoing message again, as a new
// message (a new id, a new encryption, under a new session when the
// failure called for one), and returns the new id. The failed one stays
// in the history as failed.
func (n *Node) Resend(ctx context.Context, id MessageID) (MessageID, error) {
	m, err := n.Message(id)
	if err != nil {
		return MessageID{}, err
	}
	if m.Direction != Outgoing || m.State != Failed {
		return MessageID{}, fmt.Errorf("%w: message %s is not a failed message of yours (it is %s)", ErrInvalid, id, m.State)
	}
	return n.Send(ctx, m.Peer, m.Text)
}
