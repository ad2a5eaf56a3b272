package node

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Prekey policy (DESIGN §3).
const (
	// oneTimeLow: below this many unissued one-time prekeys of a kind, a
	// node makes oneTimeBatch more.
	oneTimeLow   = 20
	oneTimeBatch = 100
	// graceRotations: a replaced signed prekey keeps its private half for
	// this many more rotations, for the prekey messages still under way.
	graceRotations = 2
)

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

// maintainPrekeys rotates the signed and PQ prekeys when the current ones
// are older than rotate, tops up one-time prekeys, and deletes private
// halves past their grace period. It reports whether the bundle changed.
func maintainPrekeys(tx *db.Tx, now time.Time, rotate time.Duration) (changed bool, err error) {
	r := tx.Read()
	for _, kind := range []db.PrekeyKind{db.SignedPrekey, db.PQPrekey} {
		cur, err := currentPrekey(r, kind)
		if err == nil && now.Sub(cur.Created) < rotate {
			continue
		}
		if err != nil && !errors.Is(err, db.ErrNotFound) {
			return false, err
		}
		if err := putNewPrekey(tx, kind, now, now.Add(rotate*(1+graceRotations))); err != nil {
			return false, err
		}
		changed = true
	}
	for _, kind := range []db.PrekeyKind{db.OneTimePrekey, db.PQOneTimePrekey} {
		n, err := r.UnissuedPrekeys(kind)
		if err != nil {
			return false, err
		}
		if n >= oneTimeLow {
			continue
		}
		for range oneTimeBatch {
			if err := putNewPrekey(tx, kind, now, time.Time{}); err != nil {
				return false, err
			}
		}
	}
	if _, err := tx.DeleteExpiredPrekeys(now); err != nil {
		return false, err
	}
	return changed, tx.PruneSeen(now)
}

// putNewPrekey makes and stores a prekey of a kind; expires is when a
// signed or PQ last-resort key's private half may go (zero: one-time).
func putNewPrekey(tx *db.Tx, kind db.PrekeyKind, now, expires time.Time) error {
	id, err := nextPrekeyID(tx, kind)
	if err != nil {
		return err
	}
	p := db.Prekey{Kind: kind, ID: id, Created: now, Expires: expires}
	var dh interface {
		Public() e2e.DHPublicKey
		MarshalBinary() ([]byte, error)
	}
	switch kind {
	case db.SignedPrekey:
		dh = e2e.NewSignedPrekey(id)
	case db.OneTimePrekey:
		dh = e2e.NewOneTimePrekey(id)
	default: // PQ, last-resort or one-time
		k := e2e.NewPQPrekey(id, kind == db.PQOneTimePrekey)
		p.Public = k.Public()
		p.Secret, _ = k.MarshalBinary()
	}
	if dh != nil {
		pub := dh.Public()
		p.Public = pub[:]
		p.Secret, _ = dh.MarshalBinary()
	}
	defer clear(p.Secret)
	return tx.PutPrekey(p)
}

// currentPrekey is the newest prekey of a kind, with its private half.
func currentPrekey(r *db.ReadTx, kind db.PrekeyKind) (db.Prekey, error) {
	all, err := r.Prekeys(kind)
	if err != nil {
		return db.Prekey{}, err
	}
	if len(all) == 0 {
		return db.Prekey{}, fmt.Errorf("no %s prekey: %w", kind, db.ErrNotFound)
	}
	return r.Prekey(kind, all[len(all)-1].ID)
}

// nextPrekeyID hands out prekey ids from a counter, so that an id is never
// reused after its key was deleted: a late prekey message naming it must
// fail, not meet another key.
func nextPrekeyID(tx *db.Tx, kind db.PrekeyKind) (uint32, error) {
	key := "prekey-id/" + string(kind)
	var next uint32 = 1
	if b, err := tx.Read().Setting(key); err == nil && len(b) == 4 {
		next = binary.BigEndian.Uint32(b) + 1
	} else if err != nil && !errors.Is(err, db.ErrNotFound) {
		return 0, err
	}
	if next == 0 {
		return 0, errors.New("node: prekey ids exhausted")
	}
	return next, tx.PutSetting(key, binary.BigEndian.AppendUint32(nil, next))
}

// loadSigned loads the private half of a signed or PQ last-resort
// prekey still within its grace period.
func loadSigned(r *db.ReadTx, id uint32, now time.Time) (*e2e.SignedPrekey, error) {
	p, err := r.Prekey(db.SignedPrekey, id)
	if err != nil || p.Secret == nil || !now.Before(p.Expires) {
		return nil, e2e.ErrUnknownPrekey
	}
	defer clear(p.Secret)
	k := new(e2e.SignedPrekey)
	return k, k.UnmarshalBinary(p.Secret)
}

func loadPQ(r *db.ReadTx, kind db.PrekeyKind, id uint32, now time.Time) (*e2e.PQPrekey, error) {
	p, err := r.Prekey(kind, id)
	if err != nil || p.Secret == nil || (kind == db.PQPrekey && !now.Before(p.Expires)) {
		return nil, e2e.ErrUnknownPrekey
	}
	defer clear(p.Secret)
	k := new(e2e.PQPrekey)
	return k, k.UnmarshalBinary(p.Secret)
}

func loadOneTime(r *db.ReadTx, id uint32) (*e2e.OneTimePrekey, error) {
	p, err := r.Prekey(db.OneTimePrekey, id)
	if err != nil || p.Secret == nil {
		return nil, e2e.ErrUnknownPrekey
	}
	defer clear(p.Secret)
	k := new(e2e.OneTimePrekey)
	return k, k.UnmarshalBinary(p.Secret)
}

// signBundle signs the node's current bundle with a new seq; with
// oneTime, it issues one fresh one-time prekey of each kind into it (for
// a direct fetch; never for the DHT).
func signBundle(tx *db.Tx, self *e2e.Identity, now time.Time, oneTime bool) ([]byte, error) {
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
	expires := now.Add(e2e.MaxBundleLifetime - time.Minute)
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
	if oneTime {
		if id, _, err := tx.IssueOneTimePrekey(db.OneTimePrekey, now); err == nil {
			if params.OneTimePrekey, err = loadOneTime(r, id); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, db.ErrNotFound) {
			return nil, err
		}
		if id, _, err := tx.IssueOneTimePrekey(db.PQOneTimePrekey, now); err == nil {
			if params.PQOneTimePrekey, err = loadPQ(r, db.PQOneTimePrekey, id, now); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, db.ErrNotFound) {
			return nil, err
		}
	}
	return self.SignBundle(params)
}
