package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Send encrypts text for peer `to` and returns the message's id once the
// message, the new session state and the envelope are durably stored
// (state queued). Delivery goes on in the background, retried until the
// peer acknowledges it; follow it with Watch or History.
//
// A first message to a peer needs its bundle: fetched from the peer when
// it is reachable (with one-time prekeys), else from the DHT. When neither
// works Send fails with ErrPeerNotFound and stores nothing.
func (n *Node) Send(ctx context.Context, to peer.ID, text string) (MessageID, error) {
	if err := n.running(); err != nil {
		return MessageID{}, err
	}
	switch {
	case to == n.id:
		return MessageID{}, fmt.Errorf("%w: you cannot send to yourself", ErrInvalid)
	case strings.TrimSpace(text) == "":
		return MessageID{}, fmt.Errorf("%w: the message is empty", ErrInvalid)
	case len(text) > MaxTextSize:
		return MessageID{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(text), MaxTextSize)
	case !utf8.ValidString(text):
		return MessageID{}, fmt.Errorf("%w: the message text is not valid UTF-8", ErrInvalid)
	}
	c, err := n.conv(to)
	if err != nil {
		return MessageID{}, err
	}
	// The bundle is fetched before the op is submitted, so that the
	// conversation never waits for the network and a first message is
	// submitted once.
	var b *e2e.Bundle
	need, err := c.needsBundle()
	if err != nil {
		return MessageID{}, err
	}
	if need {
		if b, err = n.fetchBundle(ctx, to); err != nil {
			return MessageID{}, err
		}
	}
	o := newSendOp(text, b)
	c.submit(o)
	o.wait()
	if errors.Is(o.err, errNeedBundle) {
		// The rare path, and why it exists: the peer had a session when
		// we looked, and it was gone when the op ran. Only the
		// conversation drops sessions: after a "no session" or "unknown
		// prekey" ack (outbox.go's commitAcks resets them), TrustIdentity
		// or RemoveContact, any of which may run between the look and the
		// op. One more round, with a bundle this time, so that it cannot
		// end here again.
		if b, err = n.fetchBundle(ctx, to); err != nil {
			return MessageID{}, err
		}
		o = newSendOp(text, b)
		c.submit(o)
		o.wait()
	}
	return MessageID(o.id), o.err
}

// needsBundle reports whether a message to the peer must start a session
// (no session with it is stored), so that Send fetches the bundle first.
// The common case, a session known from the last batch, reads nothing.
// A blocked peer needs none: the op fails with ErrBlocked, as it must,
// without a fetch.
func (c *conv) needsBundle() (bool, error) {
	known := c.sessions.Load()
	if known == sessionsSome {
		return false, nil
	}
	need := known == sessionsNone
	err := c.n.store.View(func(r *db.ReadTx) error {
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
			if need {
				err = nil
			}
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("node: store: %w", err)
	}
	return need, nil
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
