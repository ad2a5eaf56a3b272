package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// rawHost is an attacker: a bare libp2p host that only dials. TCP only,
// no listener, no relay and no resource manager, so that making
// thousands of them costs this process (which shares the cores with the
// victim) as little as a host can.
func rawHost(key crypto.PrivKey) (host.Host, error) {
	opts := []libp2p.Option{
		libp2p.NoTransports, libp2p.Transport(tcp.NewTCPTransport),
		libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	}
	if key != nil {
		opts = append(opts, libp2p.Identity(key))
	}
	return libp2p.New(opts...)
}

// hostKey is the libp2p key of an e2e identity, as node derives it
// (node/identity.go, libp2pKey): the peer ID must name the identity key,
// or the victim refuses the prekey message as another identity's.
func hostKey(id *e2e.Identity) (crypto.PrivKey, error) {
	seed := id.Ed25519Seed()
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
}

// speaker is an identity with a session to the victim: a stranger, or
// the probe contact of this process.
type speaker struct {
	id   *e2e.Identity
	h    host.Host
	sess *e2e.Session
}

// newSpeaker makes a fresh identity on a host of its own, connects to
// the victim and starts a session from the bundle the victim serves
// (PQXDH as initiator; no envelope is sent yet).
func newSpeaker(ctx context.Context, victim peer.AddrInfo) (*speaker, string, error) {
	id := e2e.NewIdentity()
	key, err := hostKey(id)
	if err != nil {
		return nil, "key", err
	}
	h, err := rawHost(key)
	if err != nil {
		return nil, "host", err
	}
	s := &speaker{id: id, h: h}
	if err := h.Connect(ctx, victim); err != nil {
		h.Close()
		return nil, "connect", err
	}
	b, err := fetchBundle(ctx, h, victim.ID)
	if err != nil {
		h.Close()
		return nil, "bundle", err
	}
	if s.sess, err = e2e.Initiate(id, b); err != nil {
		h.Close()
		return nil, "initiate", err
	}
	return s, "", nil
}

func fetchBundle(ctx context.Context, h host.Host, to peer.ID) (*e2e.Bundle, error) {
	s, err := h.NewStream(ctx, to, node.BundleProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		s.SetDeadline(d)
	}
	raw, err := wire.ReadFrame(bufio.NewReader(s), e2e.MaxBundleSize)
	if err != nil {
		return nil, err
	}
	return e2e.VerifyBundle(raw, time.Now())
}

func (s *speaker) envelope(text string) ([]byte, error) {
	_, env, err := s.sess.Encrypt(wire.EncodeContent(time.Now().UnixMilli(), text))
	return env, err
}

// deliver sends one envelope on a new stream, as a node's writeOne does,
// and returns the victim's ack.
func (s *speaker) deliver(ctx context.Context, to peer.ID, env []byte) (wire.Ack, error) {
	st, err := s.h.NewStream(ctx, to, node.MsgProtocol)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("open: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		st.SetDeadline(d)
	}
	if _, err := st.Write(wire.AppendFrame(nil, env)); err != nil {
		st.Reset()
		return wire.Ack{}, fmt.Errorf("write: %w", err)
	}
	a, err := wire.ReadAck(bufio.NewReader(st))
	if err != nil {
		st.Reset()
		return wire.Ack{}, fmt.Errorf("ack: %w", err)
	}
	st.Close()
	return a, nil
}

// ackName is an ack as the summary counts it.
func ackName(a wire.Ack) string {
	switch a.Status {
	case wire.Stored:
		return "stored"
	case wire.Retry:
		return "retry later"
	case wire.Rejected:
		switch a.Reason {
		case wire.ReasonTooLarge:
			return "rejected: too large for a stranger"
		case wire.ReasonNotAccepted:
			return "rejected: not accepted"
		case wire.ReasonMalformed:
			return "rejected: malformed"
		case wire.ReasonNoSession:
			return "rejected: no session"
		case wire.ReasonUnknownPrekey:
			return "rejected: unknown prekey"
		case wire.ReasonIdentity:
			return "rejected: identity changed"
		case wire.ReasonForeign:
			return "rejected: foreign"
		}
		return fmt.Sprintf("rejected: reason %d", a.Reason)
	}
	return fmt.Sprintf("status %d", a.Status)
}
