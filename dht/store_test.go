package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	recpb "github.com/libp2p/go-libp2p-record/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/p2pmsg/p2pmsg/e2e"
)

// testRecord is a valid bundle record of a throwaway identity.
type testRecord struct {
	key   string
	value []byte
	u     *user
}

// makeRecords makes n valid records, each of its own identity. The
// identities share their prekeys: ML-KEM key generation would cost more
// than the rest together, and the validator does not care.
func makeRecords(t testing.TB, n int, expires time.Time) []testRecord {
	t.Helper()
	spk, pq := e2e.NewSignedPrekey(1), e2e.NewPQPrekey(2, false)
	out := make([]testRecord, n)
	for i := range out {
		u := newUserWith(t, spk, pq)
		out[i] = testRecord{key: Key(u.peer), value: u.bundle(t, 1, expires, false), u: u}
	}
	return out
}

func newUserWith(t testing.TB, spk *e2e.SignedPrekey, pq *e2e.PQPrekey) *user {
	u := newUser(t)
	u.spk, u.pq = spk, pq
	return u
}

// newTestStore opens a store, closed when the test ends (after the nodes
// started later, since cleanups run last in, first out).
func newTestStore(t testing.TB, b Backend, cfg StoreConfig) *Store {
	t.Helper()
	s, err := NewStore(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putAs stores a record through kad-dht's value store as its PUT_VALUE
// handler does, after onRequest tagged it with sender (empty: untagged,
// as this node's own puts are).
func putAs(vs *records.ValueStore, sender peer.ID, r testRecord) error {
	rec := record.MakePutRecord(r.key, r.value)
	if sender != "" {
		rec.ProtoReflect().SetUnknown(senderTag(sender))
	}
	return vs.Put(context.Background(), r.key, rec)
}

func valueStore(s *Store) *records.ValueStore {
	return records.NewValueStore(datastore{s}, record.NamespacedValidator{Namespace: Validator{}}, maxRecordAge)
}

func peerID(i int) peer.ID { return peer.ID(fmt.Sprintf("sender-%03d", i)) }

// The sender tag survives what kad-dht does between the hook and the
// datastore (validate, clone, stamp, marshal), is taken out before the
// record is stored, and replaces whatever unknown fields a peer sent.
func TestSenderTagReachesTheDatastore(t *testing.T) {
	mem := newMemBackend()
	s := newTestStore(t, mem, StoreConfig{})
	vs := valueStore(s)
	r := makeRecords(t, 1, week())[0]
	rec := record.MakePutRecord(r.key, r.value)
	forged := senderTag(peerID(9)) // what a peer could send to be charged to another
	rec.ProtoReflect().SetUnknown(append(forged, 0x08, 0x01))
	rec.ProtoReflect().SetUnknown(senderTag(peerID(1)))
	if err := vs.Put(context.Background(), r.key, rec); err != nil {
		t.Fatal(err)
	}
	if got := s.StoredBy(peerID(1)); got != 1 {
		t.Fatalf("charged %d records to the sender, want 1", got)
	}
	if s.StoredBy(peerID(9)) != 0 {
		t.Fatal("the forged tag was charged")
	}
	data, ok, _ := mem.Get(dsKey(r.key))
	if !ok {
		t.Fatalf("nothing stored under %q: dsKey disagrees with kad-dht", dsKey(r.key))
	}
	var stored recpb.Record
	if err := proto.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.ProtoReflect().GetUnknown()) != 0 || !bytes.Equal(stored.GetValue(), r.value) || string(stored.GetKey()) != r.key {
		t.Fatalf("stored record: unknown fields %x, value equal %v", stored.ProtoReflect().GetUnknown(), bytes.Equal(stored.GetValue(), r.value))
	}
	got, err := vs.Get(context.Background(), r.key)
	if err != nil || got == nil || !bytes.Equal(got.GetValue(), r.value) {
		t.Fatalf("reading back: %v", err)
	}
}

func TestParseRecordRefusesBadWire(t *testing.T) {
	good, _ := proto.Marshal(&recpb.Record{Key: []byte("k"), Value: []byte("v"), TimeReceived: "2026-01-02T03:04:05Z"})
	r, err := parseRecord(good)
	if err != nil || string(r.key) != "k" || string(r.value) != "v" || r.received.IsZero() || !bytes.Equal(r.clean, good) {
		t.Fatalf("%+v %v", r, err)
	}
	for name, b := range map[string][]byte{
		"truncated length": {0x0a, 0x05, 'k'},
		"bad varint":       {0x08, 0x80},
		"group":            {0x0b},
		"two tags":         append(senderTag("a"), senderTag("b")...),
		"truncated fixed":  {0x09, 1, 2},
	} {
		if _, err := parseRecord(b); !errors.Is(err, errRecordWire) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The index's rules, without a network: the quota, updates that do not
// count twice, the owner's own record, the caps with fair eviction, and
// this node's own records, which nothing refuses.
func TestStoreLimits(t *testing.T) {
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: 4, Records: 10}})
	vs := valueStore(s)
	recs := makeRecords(t, 40, week())
	next := 0
	take := func() testRecord { next++; return recs[next-1] }

	a, b, c := peerID(1), peerID(2), peerID(3)
	var aRecs []testRecord
	for range 4 {
		r := take()
		aRecs = append(aRecs, r)
		if err := putAs(vs, a, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := putAs(vs, a, take()); !errors.Is(err, ErrRecordQuota) {
		t.Fatalf("fifth record: %v", err)
	}
	// An update (newer seq) of a record a holds is not a new one.
	newer := aRecs[0]
	newer.value = newer.u.bundle(t, 2, week(), false)
	if err := putAs(vs, a, newer); err != nil {
		t.Fatalf("update at quota: %v", err)
	}
	// Nor is the same update from another peer charged to that peer.
	if err := putAs(vs, b, newer); err != nil || s.StoredBy(b) != 0 || s.StoredBy(a) != 4 {
		t.Fatalf("re-put by b: %v; a holds %d, b %d", err, s.StoredBy(a), s.StoredBy(b))
	}
	// An older one is refused here too.
	if err := putAs(vs, b, aRecs[0]); !errors.Is(err, records.ErrOldRecord) {
		t.Fatalf("rollback: %v", err)
	}
	// The owner's own bundle is beyond the quota, and moves the charge.
	own := aRecs[1]
	own.value = own.u.bundle(t, 5, week(), false)
	if err := putAs(vs, own.u.peer, own); err != nil || s.StoredBy(own.u.peer) != 1 || s.StoredBy(a) != 3 {
		t.Fatalf("owner's update: %v", err)
	}
	for range 4 {
		if err := putAs(vs, b, take()); err != nil {
			t.Fatal(err)
		}
	}
	// a 3, owner 1, b 4: 8 records. c's first two fit; its third evicts
	// one of b's (the most), its fourth would leave c with 4 and needs a
	// peer with 5: refused.
	for i := range 4 {
		err := putAs(vs, c, take())
		if i < 3 && err != nil || i == 3 && !errors.Is(err, ErrStoreFull) {
			t.Fatalf("c's record %d: %v", i, err)
		}
	}
	st := s.Stats()
	if st.Records != 10 || st.Evicted != 1 || s.StoredBy(b) != 3 || s.StoredBy(c) != 3 {
		t.Fatalf("%+v; b %d, c %d", st, s.StoredBy(b), s.StoredBy(c))
	}
	// A newcomer always finds room while someone holds more than one.
	d := take()
	if err := putAs(vs, d.u.peer, d); err != nil || s.Stats().Records != 10 {
		t.Fatalf("newcomer: %v, %+v", err, s.Stats())
	}
	// This node's own record is never refused, even beyond the caps.
	self := take()
	if err := putAs(vs, "", self); err != nil || s.Stats().Records != 11 {
		t.Fatalf("own record: %v, %+v", err, s.Stats())
	}
}

func TestStoreByteCap(t *testing.T) {
	recs := makeRecords(t, 30, week())
	scratch := newTestStore(t, nil, StoreConfig{})
	if err := putAs(valueStore(scratch), peerID(0), recs[0]); err != nil {
		t.Fatal(err)
	}
	// One record's key and data, as counted; the receive time's length
	// varies by a few bytes, hence the slack.
	size := scratch.Stats().Bytes
	limit := 5*size + 64
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: 100, Bytes: limit}})
	vs := valueStore(s)
	stored := 0
	for i, r := range recs {
		if err := putAs(vs, peerID(i%3), r); err == nil {
			stored++
		} else if !errors.Is(err, ErrStoreFull) {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Bytes > limit {
			t.Fatalf("after %d puts: %d bytes, cap %d", i+1, st.Bytes, limit)
		}
	}
	if st := s.Stats(); stored < 5 || st.Records != 5 {
		t.Fatalf("stored %d, %+v", stored, st)
	}
}

// A store over a backend that already holds records: loaded, expired ones
// deleted at once, the rest charged as before.
func TestStoreReopens(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	mem := newMemBackend()
	s, err := NewStore(mem, StoreConfig{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	vs := valueStore(s)
	short := makeRecords(t, 3, now.Add(time.Hour))
	long := makeRecords(t, 2, week())
	for _, r := range append(short, long...) {
		if err := putAs(vs, peerID(1), r); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := putAs(vs, peerID(1), makeRecords(t, 1, week())[0]); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("put after Close: %v", err)
	}
	now = now.Add(2 * time.Hour)
	s2 := newTestStore(t, mem, StoreConfig{Now: clock})
	if st := s2.Stats(); st.Records != 2 || s2.StoredBy(peerID(1)) != 2 || len(mem.m) != 2 {
		t.Fatalf("reopened: %+v, backend %d", st, len(mem.m))
	}
}

// A record that expired but is not pruned yet is replaced like a missing
// one: the new copy is charged to its sender, within its quota.
func TestExpiredRecordIsReplacedAsNew(t *testing.T) {
	now := time.Now()
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: 1}, Now: func() time.Time { return now }, PruneInterval: time.Hour})
	vs := valueStore(s)
	r := makeRecords(t, 2, week())
	if err := putAs(vs, peerID(1), r[0]); err != nil {
		t.Fatal(err)
	}
	if err := putAs(vs, peerID(2), r[1]); err != nil {
		t.Fatal(err)
	}
	now = now.Add(49 * time.Hour) // past the 48 hours since receipt
	if err := putAs(vs, peerID(2), r[0]); !errors.Is(err, ErrRecordQuota) {
		t.Fatalf("peer 2 at its quota: %v", err)
	}
	if err := putAs(vs, peerID(3), r[0]); err != nil || s.StoredBy(peerID(3)) != 1 || s.StoredBy(peerID(1)) != 0 {
		t.Fatalf("%v; peer 1 holds %d, peer 3 %d", err, s.StoredBy(peerID(1)), s.StoredBy(peerID(3)))
	}
}

// startServer starts a DHT server over s: the victim of the attack tests.
func startServer(t *testing.T, s *Store, now func() time.Time) *testNode {
	t.Helper()
	return startNode(t, Config{Mode: ModeServer, Store: s, Now: now})
}

// connect connects from to to and returns a function that PUTs a record
// on to, through from's kad-dht messenger, as a DHT peer does.
func connect(t testing.TB, from, to *testNode) func(testRecord) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := from.h.Connect(ctx, to.info()); err != nil {
		t.Fatal(err)
	}
	return func(r testRecord) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return from.d.messenger.PutValue(ctx, to.h.ID(), record.MakePutRecord(r.key, r.value))
	}
}

// served asks server for key, as a lookup does.
func served(t testing.TB, from, server *testNode, key string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, _, err := from.d.messenger.GetValue(ctx, server.h.ID(), key)
	if err != nil {
		t.Fatal(err)
	}
	return rec.GetValue()
}

// One peer PUTs three times its quota of valid records over the real
// protocol: the server stores the quota and refuses the rest, mostly in
// the hook (before any signature is checked); updates of what it holds
// still pass, and an honest peer's records are stored afterwards.
func TestOnePeerCannotFillTheStore(t *testing.T) {
	const quota = 16
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: quota}})
	victim := startServer(t, s, nil)
	attacker := startNode(t, Config{Mode: ModeClient})
	put := connect(t, attacker, victim)
	recs := makeRecords(t, 3*quota, week())
	accepted := 0
	for _, r := range recs {
		if err := put(r); err == nil {
			accepted++
		}
	}
	st := s.Stats()
	if accepted != quota || st.Records != quota || s.StoredBy(attacker.h.ID()) != quota {
		t.Fatalf("%d of %d accepted; %+v", accepted, len(recs), st)
	}
	if st.Refused < 2*quota {
		t.Fatalf("%d refusals counted for %d refused PUTs", st.Refused, 2*quota)
	}
	for _, r := range recs[quota:] {
		if victim.holdsAny(r.key) {
			t.Fatal("a refused record is stored")
		}
	}
	// Updates of held records are not new records.
	upd := recs[0]
	upd.value = upd.u.bundle(t, 2, week(), false)
	if err := put(upd); err != nil || !victim.holds(upd.key, upd.value) || s.StoredBy(attacker.h.ID()) != quota {
		t.Fatalf("update at quota: %v", err)
	}

	honest := startNode(t, Config{Mode: ModeClient})
	hput := connect(t, honest, victim)
	own := testRecord{key: Key(honest.u.peer), value: honest.u.bundle(t, 1, week(), false)}
	if err := hput(own); err != nil || !bytes.Equal(served(t, honest, victim, own.key), own.value) {
		t.Fatalf("honest peer's own bundle: %v", err)
	}
	if err := hput(recs[quota+1]); err != nil {
		t.Fatalf("honest peer's fix-up of another record: %v", err)
	}
	t.Logf("%+v", s.Stats())
}

// Many peers, each at its quota: the total cap holds, and a newcomer's
// own bundle still gets in (evicting from a peer that holds the most).
func TestManyPeersHitTheTotalCap(t *testing.T) {
	const quota, total, peers = 4, 10, 4
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: quota, Records: total}})
	victim := startServer(t, s, nil)
	recs := makeRecords(t, peers*quota*2, week())
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for i := range peers {
		a := startNode(t, Config{Mode: ModeClient})
		put := connect(t, a, victim)
		wg.Go(func() {
			for _, r := range recs[i*quota*2 : (i+1)*quota*2] {
				if put(r) == nil {
					accepted.Add(1)
				}
				if n := s.Stats().Records; n > total {
					t.Errorf("%d records held, cap %d", n, total)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Records != total || st.Senders != peers {
		t.Fatalf("%+v", st)
	}
	for p := range s.senders {
		if n := s.StoredBy(p); n > quota || n < total/peers {
			t.Fatalf("peer %s holds %d", p, n)
		}
	}
	t.Logf("%d accepted, %+v", accepted.Load(), st)

	newcomer := startNode(t, Config{Mode: ModeClient})
	own := testRecord{key: Key(newcomer.u.peer), value: newcomer.u.bundle(t, 1, week(), false)}
	if err := connect(t, newcomer, victim)(own); err != nil {
		t.Fatalf("newcomer: %v", err)
	}
	if n := s.Stats().Records; n != total || !victim.holds(own.key, own.value) {
		t.Fatalf("%d records after the newcomer", n)
	}
}

// Expired records are not served (the bundle's expiry, and kad-dht's 48
// hours since receipt), and the periodic prune deletes them.
func TestExpiredRecordsArePrunedAndNotServed(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	mem := newMemBackend()
	s := newTestStore(t, mem, StoreConfig{Now: clock, PruneInterval: 20 * time.Millisecond})
	victim := startServer(t, s, clock)
	peerNode := startNode(t, Config{Mode: ModeClient})
	put := connect(t, peerNode, victim)
	hour := makeRecords(t, 1, time.Now().Add(time.Hour))[0]
	days := makeRecords(t, 1, time.Now().Add(10*24*time.Hour))[0]
	for _, r := range []testRecord{hour, days} {
		if err := put(r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(served(t, peerNode, victim, r.key), r.value) {
			t.Fatal("not served while fresh")
		}
	}
	offset.Store(int64(2 * time.Hour))
	if served(t, peerNode, victim, hour.key) != nil {
		t.Fatal("served after its bundle expired")
	}
	if !bytes.Equal(served(t, peerNode, victim, days.key), days.value) {
		t.Fatal("the other record is gone too")
	}
	waitUntil(t, 5*time.Second, "the expired record pruned", func() bool { return s.Stats().Records == 1 })
	offset.Store(int64(49 * time.Hour))
	if served(t, peerNode, victim, days.key) != nil {
		t.Fatal("served 49 hours after receipt")
	}
	waitUntil(t, 5*time.Second, "every record pruned", func() bool { return s.Stats().Records == 0 })
	mem.mu.RLock()
	left := len(mem.m)
	mem.mu.RUnlock()
	if left != 0 || s.Stats().Bytes != 0 || s.Stats().Senders != 0 {
		t.Fatalf("backend holds %d, %+v", left, s.Stats())
	}
}

// Two DHTs (a LAN and a WAN one, say) share a store: a peer's quota
// counts across both, and either serves what was put through the other.
func TestStoreSharedByTwoDHTs(t *testing.T) {
	const quota = 6
	s := newTestStore(t, nil, StoreConfig{Limits: Limits{PerPeer: quota}})
	lan, wan := startServer(t, s, nil), startServer(t, s, nil)
	attacker := startNode(t, Config{Mode: ModeClient})
	putLAN, putWAN := connect(t, attacker, lan), connect(t, attacker, wan)
	accepted := 0
	for i, r := range makeRecords(t, 2*quota, week()) {
		put := putLAN
		if i%2 == 1 {
			put = putWAN
		}
		if put(r) == nil {
			accepted++
		}
	}
	if accepted != quota || s.StoredBy(attacker.h.ID()) != quota {
		t.Fatalf("%d accepted across both DHTs, quota %d", accepted, quota)
	}
	r := makeRecords(t, 1, week())[0]
	honest := startNode(t, Config{Mode: ModeClient})
	if err := connect(t, honest, lan)(r); err != nil {
		t.Fatal(err)
	}
	connect(t, honest, wan)
	if !bytes.Equal(served(t, honest, wan, r.key), r.value) {
		t.Fatal("the WAN DHT does not serve a record put through the LAN one")
	}
}

// A DHT given no store keeps records in memory, as before, and closes
// that store with itself.
func TestDHTWithoutStore(t *testing.T) {
	n := startNode(t, Config{Mode: ModeServer})
	if n.d.RecordStore() == nil || !n.d.ownStore {
		t.Fatal("no store of its own")
	}
	n.close()
	if err := putAs(valueStore(n.d.RecordStore()), peerID(1), makeRecords(t, 1, week())[0]); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("its store after Close: %v", err)
	}
}

func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: not %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
