package node

import (
	"errors"
	"testing"
	"time"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
	"github.com/p2pmsg/p2pmsg/e2e"
)

// Signed prekeys rotate weekly; a replaced one keeps its private half for
// two more rotations (prekey messages under way still open), then goes.
// One-time prekeys are topped up when they run low.
func TestPrekeyRotation(t *testing.T) {
	s, err := db.Open(t.TempDir(), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	week := 7 * 24 * time.Hour
	t0 := time.Now()
	self, err := loadIdentity(s, t0)
	if err != nil {
		t.Fatal(err)
	}
	maintain := func(now time.Time) bool {
		t.Helper()
		var changed bool
		if err := s.Update(func(tx *db.Tx) (err error) {
			changed, err = maintainPrekeys(tx, now, week)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return changed
	}
	current := func(now time.Time) *e2e.Bundle {
		t.Helper()
		var raw []byte
		if err := s.Update(func(tx *db.Tx) (err error) {
			raw, err = signBundle(tx, self, now, false, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		b, err := e2e.VerifyBundle(raw, now)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	opens := func(id uint32, now time.Time) bool {
		t.Helper()
		var err error
		s.View(func(r *db.ReadTx) error {
			_, err = loadSigned(r, id, now)
			return nil
		})
		if err != nil && !errors.Is(err, e2e.ErrUnknownPrekey) {
			t.Fatal(err)
		}
		return err == nil
	}

	if !maintain(t0) {
		t.Fatal("a fresh store made no prekeys")
	}
	first := current(t0).SignedPrekeyID
	if maintain(t0.Add(week - time.Hour)) {
		t.Fatal("rotated before a week")
	}
	t1 := t0.Add(week + time.Hour)
	if !maintain(t1) {
		t.Fatal("no rotation after a week")
	}
	b1 := current(t1)
	if b1.SignedPrekeyID == first {
		t.Fatal("the bundle still names the old signed prekey")
	}
	if b1.Expires.After(t1.Add(e2e.MaxBundleLifetime)) {
		t.Fatal("bundle expires too late")
	}
	if !opens(first, t1) {
		t.Fatal("the replaced signed prekey is gone at once; messages under way would fail")
	}
	t3 := t0.Add(3*week + time.Hour)
	maintain(t3)
	if opens(first, t3) {
		t.Fatal("the private half outlived its two rotations of grace")
	}

	// One-time prekeys: issue until few are left, and they are topped up.
	var left int
	s.Update(func(tx *db.Tx) error {
		for {
			n, _ := tx.Read().UnissuedPrekeys(db.OneTimePrekey)
			if n < oneTimeLow {
				left = n
				return nil
			}
			if _, _, err := tx.IssueOneTimePrekey(db.OneTimePrekey, t3, t3.Add(oneTimeUnusedLife)); err != nil {
				return err
			}
		}
	})
	maintain(t3)
	s.View(func(r *db.ReadTx) error {
		n, _ := r.UnissuedPrekeys(db.OneTimePrekey)
		if n != left+oneTimeBatch {
			t.Errorf("after top-up %d unissued one-time prekeys, want %d", n, left+oneTimeBatch)
		}
		return nil
	})
}

// A bundle the node signs is accepted by a DHT validator whose clock is
// 10 minutes (or days) behind ours, and refused by one 15 days behind
// (it would then expire more than the verifiers' limit ahead).
func TestBundlesToleratePeersClocks(t *testing.T) {
	n, err := New(testConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	now := time.Now()
	var b []byte
	if err := n.store.Update(func(tx *db.Tx) (err error) {
		b, err = signBundle(tx, n.self, now, false, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	key := dht.Key(n.ID())
	for _, behind := range []time.Duration{10 * time.Minute, 6 * 24 * time.Hour} {
		v := dht.Validator{Now: func() time.Time { return now.Add(-behind) }}
		if err := v.Validate(key, b); err != nil {
			t.Errorf("a validator %v behind refused a fresh bundle: %v", behind, err)
		}
	}
	v := dht.Validator{Now: func() time.Time { return now.Add(-15 * 24 * time.Hour) }}
	if err := v.Validate(key, b); err == nil {
		t.Error("a validator 15 days behind accepted a fresh bundle")
	}
}
