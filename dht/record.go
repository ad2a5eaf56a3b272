// Package dht keeps p2pmsg's prekey bundles in a private Kademlia DHT
// (/p2pmsg/kad/1.0.0, docs/design.md §4): the record key scheme and the
// validator that every node runs on the records it is asked to store or
// returns.
//
// A record lives under /p2pmsg-bundle/<binary peer ID>. Its value is an
// e2e bundle. A node accepts it only if the peer ID names an Ed25519 key,
// that key signed the bundle (e2e.VerifyBundle: signature, expiry, size at
// most 8 KiB), the bundle carries no one-time prekeys (they are handed out
// by their owner only), and, among records for one key, it keeps the one
// with the highest seq, so that nobody can roll a peer back to an old
// bundle.
//
// dht.go runs the DHT itself (DHT: New, Bootstrap, Publish, Lookup,
// FindPeer); lookup.go is the walk that takes a lookup past peers that
// answer with invalid records. store.go is what a node keeps (Store):
// bounded per sending peer and in total, pruned as records expire, over
// a Backend that the caller supplies (node keeps it in SQLite) or memory.
// Republishing on a timer is the caller's (node's) job: it owns the
// bundle and its seq.
package dht

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/e2e"
)

const (
	// Namespace is the record namespace of bundles.
	Namespace = "p2pmsg-bundle"
	// ProtocolPrefix gives our DHT its own protocol, /p2pmsg/kad/1.0.0,
	// apart from the public IPFS DHT (which refuses custom namespaces).
	ProtocolPrefix = "/p2pmsg"
)

// Errors of the validator, beside e2e's bundle errors.
var (
	ErrBadKey          = errors.New("dht: not a bundle record key")
	ErrNotEd25519      = errors.New("dht: peer ID does not name an Ed25519 key")
	ErrWrongIdentity   = errors.New("dht: bundle signed by another identity than the key names")
	ErrOneTimeInRecord = errors.New("dht: bundle record carries one-time prekeys")
)

// Key returns the record key of a peer's bundle.
func Key(id peer.ID) string { return "/" + Namespace + "/" + string(id) }

// Validator checks bundle records. Its zero value reads the system clock.
type Validator struct {
	// Now returns the time to check expiry against; nil means time.Now.
	Now func() time.Time
}

var _ record.Validator = Validator{}

// Validate checks a record: key, signature, expiry, size, no one-time
// prekeys.
func (v Validator) Validate(key string, value []byte) error {
	_, err := v.bundle(key, value)
	return err
}

// Select returns the index of the valid record with the highest seq; on a
// tie, the first. Invalid records are never selected.
func (v Validator) Select(key string, values [][]byte) (int, error) {
	best, bestSeq := -1, uint64(0)
	for i, val := range values {
		b, err := v.bundle(key, val)
		if err != nil {
			continue
		}
		if best < 0 || b.Seq > bestSeq {
			best, bestSeq = i, b.Seq
		}
	}
	if best < 0 {
		return 0, errors.New("dht: no valid bundle among the records")
	}
	return best, nil
}

// keyIdentity returns the peer ID that a record key names and the raw
// Ed25519 public key inside it.
func keyIdentity(key string) (peer.ID, []byte, error) {
	ns, rest, err := record.SplitKey(key)
	if err != nil || ns != Namespace {
		return "", nil, fmt.Errorf("%w: %q", ErrBadKey, key)
	}
	id, err := peer.IDFromBytes([]byte(rest))
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil || pub.Type() != crypto.Ed25519 {
		return "", nil, fmt.Errorf("%w: %s", ErrNotEd25519, id)
	}
	raw, err := pub.Raw()
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNotEd25519, err)
	}
	return id, raw, nil
}

func (v Validator) bundle(key string, value []byte) (*e2e.Bundle, error) {
	id, raw, err := keyIdentity(key)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	b, err := e2e.VerifyBundle(value, now())
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(b.Identity[:], raw) {
		return nil, fmt.Errorf("%w: %s", ErrWrongIdentity, id)
	}
	if b.HasOneTimePrekey || b.HasPQOneTime {
		return nil, ErrOneTimeInRecord
	}
	return b, nil
}
