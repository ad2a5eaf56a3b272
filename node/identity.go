package node

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// The node's identity and its peers' (docs/design.md §3): the Ed25519
// identity key is the libp2p host key, so a peer ID names its user's key.

// ID is the node's peer ID: its user's address.
func (n *Node) ID() peer.ID { return n.id }

// Identity is the node's public identity.
func (n *Node) Identity() e2e.PublicIdentity { return n.self.Public() }

// loadIdentity reads the node's identity, creating it (and its first
// prekeys) in a fresh store.
func loadIdentity(s *db.Store, now time.Time) (*e2e.Identity, error) {
	var secret []byte
	err := s.View(func(r *db.ReadTx) (err error) {
		_, secret, err = r.Identity()
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		id := e2e.NewIdentity()
		secret, err := id.MarshalBinary()
		if err != nil {
			return nil, err
		}
		defer clear(secret)
		pub := id.Public()
		err = s.Update(func(tx *db.Tx) error {
			// Another process cannot race us (the store is locked), but a
			// second New on one Store could: keep the first identity.
			if _, _, err := tx.Read().Identity(); err == nil {
				return errIdentityExists
			}
			return tx.PutIdentity(identityKey(pub.Key, pub.DH), secret, now)
		})
		if errors.Is(err, errIdentityExists) {
			return loadIdentity(s, now)
		}
		if err != nil {
			return nil, fmt.Errorf("node: create identity: %w", err)
		}
		return id, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: load identity: %w", err)
	}
	defer clear(secret)
	id := new(e2e.Identity)
	if err := id.UnmarshalBinary(secret); err != nil {
		return nil, fmt.Errorf("node: load identity: %w", err)
	}
	return id, nil
}

var errIdentityExists = errors.New("node: identity exists")

// identityKey is how contacts store a peer's identity: the Ed25519 key
// (which the peer ID names) and the certified X25519 identity key. The
// second can change under the same peer ID only if the peer lost its keys
// or someone holds its Ed25519 key: that is the "key change" users see.
func identityKey(k e2e.IdentityKey, dh e2e.DHPublicKey) []byte {
	return append(append(make([]byte, 0, 64), k[:]...), dh[:]...)
}

// libp2pKey turns the identity into the host's key: the peer ID is the
// Ed25519 identity key.
func libp2pKey(id *e2e.Identity) (crypto.PrivKey, peer.ID, error) {
	seed := id.Ed25519Seed()
	defer clear(seed[:])
	priv, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		return nil, "", err
	}
	pid, err := peer.IDFromPrivateKey(priv)
	return priv, pid, err
}

// peerIdentity returns the Ed25519 identity key that a peer ID names.
func peerIdentity(p peer.ID) (e2e.IdentityKey, error) {
	var k e2e.IdentityKey
	pub, err := p.ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return k, fmt.Errorf("%w: %s is not a p2pmsg peer ID (no Ed25519 key)", ErrBadPeer, p)
	}
	raw, err := pub.Raw()
	if err != nil || len(raw) != len(k) {
		return k, fmt.Errorf("%w: %s", ErrBadPeer, p)
	}
	copy(k[:], raw)
	return k, nil
}

// SafetyNumber is the number that two users compare to verify each
// other: identical on both sides when no one sits in between. The peer's
// identity key is the one its peer ID names.
func (n *Node) SafetyNumber(p peer.ID) (string, error) {
	k, err := peerIdentity(p)
	if err != nil {
		return "", err
	}
	return e2e.FormatSafetyNumber(e2e.SafetyNumber(n.self.Public().Key, k)), nil
}
