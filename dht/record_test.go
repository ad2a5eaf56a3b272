package dht

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/e2e"
)

var t0 = time.Now().Truncate(time.Second)

// user is an e2e identity with its libp2p peer ID.
type user struct {
	id   *e2e.Identity
	priv crypto.PrivKey
	peer peer.ID
	spk  *e2e.SignedPrekey
	pq   *e2e.PQPrekey
}

func newUser(t testing.TB) *user {
	t.Helper()
	id := e2e.NewIdentity()
	seed := id.Ed25519Seed()
	priv, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return &user{id: id, priv: priv, peer: pid, spk: e2e.NewSignedPrekey(1), pq: e2e.NewPQPrekey(2, false)}
}

func (u *user) bundle(t testing.TB, seq uint64, expires time.Time, oneTime bool) []byte {
	t.Helper()
	p := e2e.BundleParams{Seq: seq, Expires: expires, SignedPrekey: u.spk, PQPrekey: u.pq}
	if oneTime {
		p.OneTimePrekey = e2e.NewOneTimePrekey(9)
	}
	b, err := u.id.SignBundle(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidatorRejectsBadRecords(t *testing.T) {
	v := Validator{Now: func() time.Time { return t0 }}
	alice, mallory := newUser(t), newUser(t)
	week := t0.Add(7 * 24 * time.Hour)
	good := alice.bundle(t, 5, week, false)
	if err := v.Validate(Key(alice.peer), good); err != nil {
		t.Fatalf("good record: %v", err)
	}
	secpKey, _, _ := crypto.GenerateSecp256k1Key(nil)
	secpID, _ := peer.IDFromPrivateKey(secpKey)
	cases := []struct {
		name  string
		key   string
		value []byte
		want  error
	}{
		{"signed by another identity", Key(alice.peer), mallory.bundle(t, 9, week, false), ErrWrongIdentity},
		{"expired", Key(alice.peer), alice.bundle(t, 6, t0.Add(-time.Second), false), e2e.ErrBundleExpired},
		{"one-time prekeys", Key(alice.peer), alice.bundle(t, 7, week, true), ErrOneTimeInRecord},
		{"bad signature", Key(alice.peer), append(good[:len(good)-1:len(good)-1], good[len(good)-1]^1), e2e.ErrBundleSignature},
		{"too large", Key(alice.peer), make([]byte, e2e.MaxBundleSize+1), e2e.ErrBundleTooLarge},
		{"not an Ed25519 peer", Key(secpID), good, ErrNotEd25519},
		{"other namespace", "/pk/" + string(alice.peer), good, ErrBadKey},
		{"not a peer ID", "/" + Namespace + "/nonsense", good, ErrBadKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := v.Validate(c.key, c.value); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}

	older, newer := alice.bundle(t, 4, week, false), alice.bundle(t, 8, week, false)
	i, err := v.Select(Key(alice.peer), [][]byte{older, newer, good, mallory.bundle(t, 100, week, false)})
	if err != nil || i != 1 {
		t.Fatalf("select chose %d (%v), want the highest valid seq", i, err)
	}
}

// permissive is what a malicious node runs: it stores anything.
type permissive struct{}

func (permissive) Validate(string, []byte) error        { return nil }
func (permissive) Select(string, [][]byte) (int, error) { return 0, nil }

// rawNode is a kad-dht node without our wrapper, with a view of the
// records it stores itself.
type rawNode struct {
	*kaddht.IpfsDHT
	store *records.ValueStore
}

// stored returns what the node itself stores under key. (GetValue with
// routing.Offline would not do: kad-dht v0.42.2 ignores Offline and
// searches the network.)
func (n rawNode) stored(key string) []byte {
	rec, err := n.store.Get(context.Background(), key)
	if err != nil || rec == nil {
		return nil
	}
	return rec.GetValue()
}

func newNode(t *testing.T, u *user, v record.Validator) (host.Host, rawNode) {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(u.priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	nsv := record.NamespacedValidator{Namespace: v}
	store := dssync.MutexWrap(ds.NewMapDatastore())
	d, err := kaddht.New(h, kaddht.ProtocolPrefix(ProtocolPrefix), kaddht.Mode(kaddht.ModeServer),
		kaddht.Validator(nsv), kaddht.DisableProviders(), kaddht.ValueDatastore(store))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); h.Close() })
	return h, rawNode{d, records.NewValueStore(store, nsv, 0)}
}

// On real hosts on 127.0.0.1: a node that stores anything pushes a forged,
// an expired and an older record to every other node; each refuses them,
// and a lookup still finds the owner's newest bundle.
func TestNodesRefuseBadRecordsFromThePeers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := Validator{}
	const honest = 5
	var hosts []host.Host
	var dhts []rawNode
	alice := newUser(t)
	for i := range honest {
		u := newUser(t)
		if i == 0 {
			u = alice
		}
		h, d := newNode(t, u, v)
		hosts, dhts = append(hosts, h), append(dhts, d)
	}
	mh, md := newNode(t, newUser(t), permissive{})
	for _, h := range append(hosts[1:], mh) {
		if err := h.Connect(ctx, peer.AddrInfo{ID: hosts[0].ID(), Addrs: hosts[0].Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range append(dhts, md) {
		d.RefreshRoutingTable()
	}
	time.Sleep(500 * time.Millisecond) // let the routing tables fill

	week := time.Now().Add(7 * 24 * time.Hour)
	newest := alice.bundle(t, 10, week, false)
	if err := dhts[0].PutValue(ctx, Key(alice.peer), newest); err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, d := range dhts[1:] {
		if string(d.stored(Key(alice.peer))) == string(newest) {
			stored++
		}
	}
	if stored == 0 {
		t.Fatal("no honest node stored the genuine record")
	}

	bad := map[string][]byte{
		"forged":  newUser(t).bundle(t, 99, week, false),
		"expired": alice.bundle(t, 98, time.Now().Add(-time.Minute), false),
		"older":   alice.bundle(t, 3, week, false),
	}
	for name, value := range bad {
		if err := md.PutValue(ctx, Key(alice.peer), value); err != nil {
			t.Fatalf("%s: the permissive node could not even send: %v", name, err)
		}
		for i, d := range dhts {
			if string(d.stored(Key(alice.peer))) == string(value) {
				t.Fatalf("%s: node %d stored it", name, i)
			}
		}
	}
	got, err := dhts[honest-1].GetValue(ctx, Key(alice.peer))
	if err != nil || string(got) != string(newest) {
		t.Fatalf("lookup after the attack: %v", err)
	}
}

// The validator accepts a version 2 bundle (an extension block, of a
// type it does not know), so that a later version can publish one
// without this one refusing it.
func TestValidatorAcceptsBundleVersion2(t *testing.T) {
	v := Validator{Now: func() time.Time { return t0 }}
	alice := newUser(t)
	b, err := alice.id.SignBundle(e2e.BundleParams{Seq: 1, Expires: t0.Add(7 * 24 * time.Hour), SignedPrekey: alice.spk, PQPrekey: alice.pq,
		Extensions: []e2e.Extension{{Type: 0xbeef, Value: []byte("from a later version")}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(Key(alice.peer), b); err != nil {
		t.Fatalf("a version 2 bundle: %v", err)
	}
}
