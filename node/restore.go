package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/e2e"
	"github.com/p2pmsg/p2pmsg/node/wire"
)

// Backups, restores and the passphrase.
//
// A restored store's ratchets are behind its peers': every message
// either side sent since the backup moved them on. Restore therefore
// forgets the sessions (and the one-time prekeys, which may have been
// used since), puts what was queued back to wait for a new session, and
// leaves a list of the contacts to greet: the restored node starts a new
// session with each (a handshake carrying "accepted", which changes
// nothing at the peer but the session it uses), so that their next
// messages are readable. Messages exchanged between the backup and the
// restore are not in the restored history.

// rehandshakeSetting lists the contacts a restored node still greets
// with a new session (JSON, peer IDs).
const rehandshakeSetting = "rehandshake"

// rehandshakeRetry: how long a greeting that failed (the peer away)
// waits before the next try.
const rehandshakeRetry = time.Minute

var errEmptyBackupPassphrase = fmt.Errorf("%w: a backup is encrypted under a passphrase: give one", ErrInvalid)

// Backup writes an encrypted copy of the store to path while the node
// runs: under the store's passphrase (checked: ErrWrongPassphrase) when
// it is sealed, else under pass, chosen for the backup.
func (n *Node) Backup(path string, pass []byte) error {
	if len(pass) == 0 {
		return errEmptyBackupPassphrase
	}
	return n.store.Backup(path, pass, db.KDFParams{})
}

// ChangePassphrase sets, changes or (next empty) removes the passphrase
// that seals the store; current must be the present one (empty when the
// store is not sealed).
func (n *Node) ChangePassphrase(current, next []byte) error {
	if err := n.store.CheckPassphrase(current); err != nil {
		return err
	}
	return n.store.ChangePassphrase(next, db.KDFParams{})
}

// RestoreSummary says what a restore brought back.
type RestoreSummary struct {
	Contacts int // accepted contacts, each to be greeted with a new session
	Messages int
}

// Restore writes the store in a backup into dir, which must hold none
// (no identity: ErrExists), and prepares it to start: see the package
// comment above. pass opens the backup (and the store, when it is
// sealed: its passphrase is the backup's).
func Restore(backup, dir string, pass []byte) (RestoreSummary, error) {
	if Exists(dir) {
		return RestoreSummary{}, fmt.Errorf("%w: %s holds an identity already; restore into a new directory", ErrExists, dir)
	}
	if err := db.Restore(backup, dir, pass); err != nil {
		return RestoreSummary{}, err
	}
	s, err := db.Open(dir, db.Options{})
	if errors.Is(err, db.ErrPassphraseRequired) {
		s, err = db.Open(dir, db.Options{Passphrase: pass})
	}
	if err != nil {
		// Not left half restored: a store whose sessions are stale would
		// be refused as an identity by the next try. (Locked: another
		// process opened it meanwhile, and it is its.)
		if !errors.Is(err, db.ErrLocked) {
			removeStore(dir)
		}
		return RestoreSummary{}, err
	}
	var sum RestoreSummary
	err = s.Update(func(tx *db.Tx) error {
		if err := tx.ForgetSessions(time.Now()); err != nil {
			return err
		}
		r := tx.Read()
		cs, err := r.Contacts()
		if err != nil {
			return err
		}
		var greet []string
		for _, c := range cs {
			if c.State == db.ContactAccepted && !c.Blocked && c.IdentityKey != nil {
				greet = append(greet, c.PeerID)
			}
		}
		sum.Contacts = len(greet)
		if sum.Messages, err = r.MessageCount(); err != nil {
			return err
		}
		b, err := json.Marshal(greet)
		if err != nil {
			return err
		}
		return tx.PutSetting(rehandshakeSetting, b)
	})
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		removeStore(dir)
	}
	return sum, err
}

// removeStore deletes a store that a restore could not prepare.
func removeStore(dir string) {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(dir, db.FileName+suffix))
	}
}

// handshakeOp starts a new session with the peer and sends "accepted"
// under it.
type handshakeOp struct {
	done
	bundle *e2e.Bundle
	err    error
}

func (o *handshakeOp) fail(err error) { o.err = err }

func (o *handshakeOp) apply(c *conv, tx *db.Tx, st *batchState, now time.Time) error {
	if st.contact == nil || st.contact.Blocked || st.contact.State != db.ContactAccepted {
		return nil // nothing to greet
	}
	s := c.rec.current()
	if s == nil {
		var err error
		if s, o.err, err = c.startSession(tx, st, o.bundle, now); s == nil {
			return err
		}
	}
	encErr, err := c.enqueueControl(tx, st, s, wire.EncodeControl(now.UnixMilli(), wire.ControlAccepted), now)
	o.err = errors.Join(o.err, encErr)
	return err
}

// pendingRehandshakes counts the contacts still to greet.
func pendingRehandshakes(r *db.ReadTx) (int, error) {
	var left []string
	b, err := r.Setting(rehandshakeSetting)
	if errors.Is(err, db.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	err = json.Unmarshal(b, &left)
	return len(left), err
}

// rehandshakeLoop greets, with a new session, each contact that a
// restore left listed, until none is left.
func (n *Node) rehandshakeLoop() {
	for {
		var left []string
		err := n.store.View(func(r *db.ReadTx) error {
			b, err := r.Setting(rehandshakeSetting)
			if errors.Is(err, db.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &left)
		})
		if err != nil {
			n.log.Warn("read the contacts to greet after a restore", "err", err)
			return
		}
		if len(left) == 0 {
			return
		}
		var done []string
		for _, key := range left {
			p, err := peer.Decode(key)
			if err == nil {
				err = n.rehandshake(p)
			}
			if err == nil {
				done = append(done, key)
				n.log.Info("new session after a restore", "peer", key)
			} else if n.ctx.Err() == nil {
				n.log.Info("cannot start a new session after a restore yet", "peer", key, "err", err)
			}
		}
		err = n.store.Update(func(tx *db.Tx) error {
			var now []string
			if b, err := tx.Read().Setting(rehandshakeSetting); err == nil {
				json.Unmarshal(b, &now)
			}
			now = slices.DeleteFunc(now, func(k string) bool { return slices.Contains(done, k) })
			b, _ := json.Marshal(now)
			return tx.PutSetting(rehandshakeSetting, b)
		})
		if err != nil || !sleepCtx(n.ctx, rehandshakeRetry) {
			return
		}
	}
}

// rehandshake starts a new session with p, unless a message started one
// since the restore.
func (n *Node) rehandshake(p peer.ID) error {
	c, err := n.conv(p)
	if err != nil {
		return err
	}
	need, _, err := c.needsBundle()
	if err != nil {
		return err
	}
	o := &handshakeOp{done: newDone()}
	if need {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.lookup()+10*time.Second)
		defer cancel()
		if o.bundle, err = n.fetchBundle(ctx, p); err != nil {
			return err
		}
	}
	c.submit(o)
	o.wait()
	return o.err
}
