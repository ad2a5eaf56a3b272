package dht

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	kb "github.com/libp2p/go-libp2p-kbucket"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"
)

// stubborn is a Sybil's validator: it takes anything, and always prefers
// what it already holds, so its garbage stays.
type stubborn struct{}

func (stubborn) Validate(string, []byte) error             { return nil }
func (stubborn) Select(_ string, vs [][]byte) (int, error) { return len(vs) - 1, nil }

// startSybil starts a kad-dht server under key that answers every lookup
// of target with garbage.
func startSybil(t *testing.T, key crypto.PrivKey, target string, garbage []byte) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	nsv := record.NamespacedValidator{Namespace: stubborn{}}
	store := dssync.MutexWrap(ds.NewMapDatastore())
	d, err := kaddht.New(h, kaddht.ProtocolPrefix(ProtocolPrefix), kaddht.Mode(kaddht.ModeServer),
		kaddht.Validator(nsv), kaddht.DisableProviders(), kaddht.ValueDatastore(store))
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); h.Close() })
	if err := records.NewValueStore(store, nsv, 0).Put(context.Background(), target, record.MakePutRecord(target, garbage)); err != nil {
		t.Fatal(err)
	}
	return h
}

// keysNear returns n libp2p keys whose peer IDs share at least cpl
// leading bits with target in the DHT's key space: closer to it than any
// peer that shares fewer. Grinding costs about 2^cpl keys each.
func keysNear(t *testing.T, target kb.ID, cpl, n int) []crypto.PrivKey {
	t.Helper()
	var out []crypto.PrivKey
	for tries := 0; len(out) < n; tries++ {
		if tries > n<<(cpl+4) {
			t.Fatalf("found %d of %d keys with %d common bits in %d tries", len(out), n, cpl, tries)
		}
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if kb.CommonPrefixLen(kb.ConvertPeerID(id), target) >= cpl {
			out = append(out, k)
		}
	}
	return out
}

// 30 DHT servers closer to a record's key than every honest node answer
// lookups with garbage (a bundle signed by another identity). kad-dht's
// own search then ends on them and finds nothing; Lookup walks on past
// them and returns the genuine bundle, which the honest nodes hold. Once
// no honest node holds it, Lookup says that every record found was
// invalid, not that the peer never published.
func TestLookupSurvivesGarbageNearTheKey(t *testing.T) {
	const honest, sybils = 10, 30
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes := startNetwork(t, honest)
	owner := nodes[1]
	key := Key(owner.u.peer)
	bundle := owner.u.bundle(t, 1, week(), false)
	if r, err := owner.d.Publish(ctx, owner.u.peer, bundle); err != nil || r != honest-1 {
		t.Fatalf("publish: %d replicas, %v", r, err)
	}
	asker := startNode(t, Config{Mode: ModeClient, BootstrapPeers: []peer.AddrInfo{nodes[0].info()}})
	join(t, asker)

	target := kb.ConvertKey(key)
	cpl := 0
	for _, n := range append(nodes, asker) {
		cpl = max(cpl, kb.CommonPrefixLen(kb.ConvertPeerID(n.h.ID()), target)+1)
	}
	garbage := newUser(t).bundle(t, 99, week(), false)
	var sybilIDs []peer.ID
	var wg sync.WaitGroup
	errs := make(chan error, 2*sybils)
	// Few handshakes at once, each tried up to three times: on a loaded
	// machine (or under -race) a burst of them times out.
	slots := make(chan struct{}, 4)
	for _, k := range keysNear(t, target, cpl, sybils) {
		h := startSybil(t, k, key, garbage)
		sybilIDs = append(sybilIDs, h.ID())
		// The asker, whose routing table must hold them (a node that has
		// talked to them), and the bootstrap node, to be in the network.
		for _, n := range []*testNode{asker, nodes[0]} {
			wg.Go(func() {
				slots <- struct{}{}
				defer func() { <-slots }()
				var err error
				for range 3 {
					if err = h.Connect(ctx, n.info()); err == nil {
						break
					}
					// A failed dial puts the peer in go-libp2p's dial
					// backoff: the next try would fail at once.
					h.Network().(*swarm.Swarm).Backoff().Clear(n.h.ID())
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rt := asker.d.Inner().RoutingTable()
	waitUntil(t, 30*time.Second, "the asker knows 20 of the Sybils", func() bool {
		known := 0
		for _, id := range sybilIDs {
			if rt.Find(id) != "" {
				known++
			}
		}
		return known >= searchK
	})
	t.Logf("%d Sybils sharing %d bits with the key; the asker's routing table holds %d peers", sybils, cpl, rt.Size())

	// The attack is in place: the 20 peers that the asker knows closest
	// to the key, where kad-dht's search starts and ends, are Sybils.
	isSybil := map[peer.ID]bool{}
	for _, id := range sybilIDs {
		isSybil[id] = true
	}
	for _, p := range rt.NearestPeers(target, searchK) {
		if !isSybil[p] {
			t.Fatalf("an honest peer is among the %d closest to the key", searchK)
		}
	}
	// On an idle machine kad-dht alone finds nothing; on a loaded one a
	// Sybil that answers too late lets it reach an honest node, so this
	// is only reported.
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	val, err := asker.d.Inner().GetValue(sctx, key)
	scancel()
	t.Logf("kad-dht alone: found %v (%v)", val != nil, err)

	// searchPast itself, as Lookup runs it after kad-dht found nothing.
	walkStart := time.Now()
	res := asker.d.searchPast(ctx, key, lookupQuorum)
	if len(res.values) == 0 || !bytes.Equal(res.values[0], bundle) || res.invalid == 0 {
		t.Fatalf("the walk past the Sybils: %d values, %d invalid answers, %d peers asked", len(res.values), res.invalid, res.asked)
	}
	t.Logf("the walk: %d valid, %d invalid answers, %d peers asked, in %v", len(res.values), res.invalid, res.asked, time.Since(walkStart))

	lctx, lcancel := context.WithTimeout(ctx, 20*time.Second)
	start := time.Now()
	b, raw, err := asker.d.Lookup(lctx, owner.u.peer, 0)
	lcancel()
	if err != nil || !bytes.Equal(raw, bundle) || b.Seq != 1 {
		t.Fatalf("lookup past the Sybils: %v", err)
	}
	t.Logf("found past the Sybils in %v", time.Since(start))

	// No honest node holds it any more: the Sybils' garbage is all there is.
	for _, n := range nodes {
		if err := n.d.store.delete(dsKey(key)); err != nil {
			t.Fatal(err)
		}
	}
	lctx, lcancel = context.WithTimeout(ctx, 20*time.Second)
	_, _, err = asker.d.Lookup(lctx, owner.u.peer, 0)
	lcancel()
	if !errors.Is(err, ErrAllAnswersInvalid) || errors.Is(err, ErrNotFound) {
		t.Fatalf("with only garbage left: %v", err)
	}
	t.Logf("only garbage: %v", err)

	// A peer that never published, with no Sybil near its key: not found.
	lctx, lcancel = context.WithTimeout(ctx, 20*time.Second)
	_, _, err = asker.d.Lookup(lctx, newUser(t).peer, 0)
	lcancel()
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrAllAnswersInvalid) {
		t.Fatalf("never published: %v", err)
	}
}

// The walk is bounded: a peer that answers "no record" and names 300
// made-up closer peers (each refusing connections) makes a lookup ask
// searchMaxPeers peers, no more. A peer that answers garbage is not
// followed at all.
func TestSearchPastIsBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	asker := startNode(t, Config{Mode: ModeClient})
	victim := newUser(t)
	key := Key(victim.peer)
	garbage := newUser(t).bundle(t, 1, week(), false)

	nowhere, err := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/1")
	if err != nil {
		t.Fatal(err)
	}
	var made []*pb.Message_Peer
	for range 300 {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPrivateKey(k)
		made = append(made, &pb.Message_Peer{Id: []byte(id), Addrs: [][]byte{nowhere.Bytes()}})
	}
	liar, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { liar.Close() })
	var asked atomic.Int64
	var lying atomic.Bool
	liar.SetStreamHandler(kadProtocol, func(s network.Stream) {
		defer s.Close()
		r := bufio.NewReader(s)
		for {
			l, err := binary.ReadUvarint(r)
			if err != nil || l > 1<<20 {
				return
			}
			buf := make([]byte, l)
			if _, err := io.ReadFull(r, buf); err != nil {
				return
			}
			var req pb.Message
			if proto.Unmarshal(buf, &req) != nil {
				return
			}
			resp := pb.NewMessage(req.GetType(), req.GetKey(), 0)
			resp.CloserPeers = made
			if req.GetType() == pb.Message_GET_VALUE {
				asked.Add(1)
				if lying.Load() {
					resp.Record = record.MakePutRecord(string(req.GetKey()), garbage)
				}
			}
			out, _ := proto.Marshal(resp)
			if _, err := s.Write(append(binary.AppendUvarint(nil, uint64(len(out))), out...)); err != nil {
				return
			}
		}
	})
	if err := asker.h.Connect(ctx, peer.AddrInfo{ID: liar.ID(), Addrs: liar.Addrs()}); err != nil {
		t.Fatal(err)
	}
	rt := asker.d.Inner().RoutingTable()
	if ok, err := rt.TryAddPeer(liar.ID(), true, false); !ok || err != nil {
		t.Fatalf("routing table: %v %v", ok, err)
	}

	start := time.Now()
	res := asker.d.searchPast(ctx, key, 0)
	if res.asked != searchMaxPeers || res.invalid != 0 || len(res.values) != 0 || asked.Load() != 1 {
		t.Fatalf("%+v, the liar asked %d times", res, asked.Load())
	}
	t.Logf("%+v in %v", res, time.Since(start))
	if _, _, err := asker.d.Lookup(ctx, victim.peer, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup: %v", err)
	}

	lying.Store(true)
	asked.Store(0)
	res = asker.d.searchPast(ctx, key, 0)
	if res.asked != 1 || res.invalid != 1 || asked.Load() != 1 {
		t.Fatalf("with garbage: %+v", res)
	}
	if _, _, err := asker.d.Lookup(ctx, victim.peer, 0); !errors.Is(err, ErrAllAnswersInvalid) {
		t.Fatalf("lookup: %v", err)
	}
}
