package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// The node's prekeys (docs/design.md §3, §5): signed and PQ last-resort
// prekeys rotated every Config.RotateInterval and kept graceRotations more
// for messages under way, one-time prekeys topped up oneTimeBatch at a
// time below oneTimeLow (limits.go).

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

// rotationDue reports whether the signed prekeys are older than the
// rotation interval.
func (n *Node) rotationDue() (bool, error) {
	var due bool
	err := n.store.View(func(r *db.ReadTx) error {
		p, err := currentPrekey(r, db.SignedPrekey)
		if err != nil {
			return err
		}
		due = time.Since(p.Created) >= n.cfg.rotate()
		return nil
	})
	return due, err
}
