package dht

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p-kad-dht/amino"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The record store of a DHT node (docs/design.md §4, §11;
// docs/dht-decisions.md, 1): what a server keeps for others, bounded per
// sending peer and in total, persistent through a Backend, pruned as the
// records expire.
//
// kad-dht's value store never learns who sent a PUT_VALUE: its handler
// calls records.ValueStore.Put, which validates, selects against the
// stored record, stamps the receive time and hands a marshalled clone to
// the datastore. kad-dht does give an OnRequestHook, which its stream loop
// (dht_net.go, handleNewMessage) calls with the decoded request before the
// handler, on the same goroutine, with the same *pb.Message that the
// handler then reads. onRequest uses that twice: it refuses a PUT at once
// (no signature checked, nothing queued) by taking the record out of the
// request, which makes the handler fail and kad-dht reset the stream; and
// it writes the sender into the record as a protobuf field that pb.Record
// does not know. proto.Clone and proto.Marshal keep unknown fields, so the
// tag reaches Store.put inside the bytes that the datastore is given,
// where it is taken out again before anything is stored. The attribution
// travels with the record itself: nothing is keyed by goroutine or by
// stream, and nothing is left behind when the value store refuses the
// record before it reaches the datastore.

// Defaults of Limits. A bundle is about 1.4 KB (an ML-KEM-768 key makes
// most of it) and at most e2e.MaxBundleSize (8 KiB).
const (
	// DefaultPerPeer: a node sends its own bundle (beyond the quota, see
	// Limits.PerPeer) and kad-dht's fix-ups, the best record found by a
	// lookup pushed to the closest peers that lacked it: one per lookup
	// at most, and only for the keys this server is close to. 32 leaves a
	// busy node room for those; each identity a stranger makes gets 32 ×
	// 8 KiB = 256 KiB here at most.
	DefaultPerPeer = 32
	// DefaultRecords: every bundle lives on the 20 servers closest to its
	// key, so a server holds about 20 × users / servers of them: 2,000
	// with one server per 100 users. 20,000 leaves ten times that for an
	// uneven spread of keys and for small networks, at about 28 MB of
	// typical bundles.
	DefaultRecords = 20000
	// DefaultBytes bounds the same records by size (key and stored record):
	// 32 MiB holds 20,000 typical bundles or 4,000 of the largest.
	DefaultBytes = 32 << 20
	// DefaultPruneInterval: how often expired records are deleted. Until
	// then an expired record is kept but never served.
	DefaultPruneInterval = 10 * time.Minute
)

// maxRecordAge is kad-dht's: a record not received again within it is
// dropped, whatever its bundle says.
const maxRecordAge = amino.DefaultMaxRecordAge

// pruneBatch bounds the records deleted in one backend transaction, so
// that pruning never holds the store for long.
const pruneBatch = 512

// refreshAfter: the same record received again within this time of the
// last is acknowledged without a write. Its only effect would be a newer
// receive time, which matters only near the end of the 48 hours, and
// without it any peer could make us write to disk as fast as it can send.
const refreshAfter = time.Hour

// senderField is the protobuf field number under which onRequest tags a
// record with its sender: one that pb.Record (fields 1, 2, 5) does not use.
const senderField = 0x7032

// Errors of the record store. A remote peer sees only a reset stream; a
// local caller gets these, wrapped.
var (
	// ErrRecordQuota: the sending peer already holds Limits.PerPeer
	// records on this node.
	ErrRecordQuota = errors.New("dht: the sending peer holds its quota of records here")
	// ErrStoreFull: the store holds Limits.Records records or
	// Limits.Bytes bytes, and no peer holds more of them than the sender.
	ErrStoreFull = errors.New("dht: the record store is full")
	// ErrStoreClosed: the store was closed.
	ErrStoreClosed = errors.New("dht: the record store is closed")
)

// Limits bound what a DHT node stores for other peers. Zero fields mean
// the defaults. The node's own bundle is never refused.
type Limits struct {
	// PerPeer is how many records one sending peer may have stored here.
	// A peer's own bundle, sent by the peer itself, does not count
	// against it, so that a node that used its quota for fix-ups can
	// still publish.
	PerPeer int
	// Records and Bytes bound the whole store. When a record would pass
	// either, a record of the peer that holds the most is evicted if that
	// peer holds more than the sender would; else the record is refused.
	Records int
	Bytes   int64
}

func (l Limits) perPeer() int { return or(l.PerPeer, DefaultPerPeer) }
func (l Limits) records() int { return or(l.Records, DefaultRecords) }
func (l Limits) bytes() int64 { return or(l.Bytes, DefaultBytes) }
func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// StoredRecord is a record as a Backend keeps it.
type StoredRecord struct {
	// Key is the datastore key that kad-dht files the record under.
	Key string
	// Sender is the peer whose PUT it is charged to; empty for this
	// node's own records, which are charged to nobody.
	Sender peer.ID
	// Expires is when the record stops being served and may be deleted:
	// its bundle's expiry or 48 hours after it was received, the earlier.
	Expires time.Time
	// Size is len(Data); Load sets it and leaves Data nil.
	Size int
	// Data is the record as kad-dht stores it (a marshalled pb.Record).
	Data []byte
}

// Backend persists a Store's records. Store serialises its writes; reads
// may come concurrently with them and with each other.
type Backend interface {
	// Load calls f with every stored record, without its Data.
	Load(f func(StoredRecord) error) error
	// Get returns the Data stored under key, and false when there is none.
	Get(key string) ([]byte, bool, error)
	// Write deletes the records under del, then stores put unless it is
	// nil (replacing any record under its key), all in one transaction.
	Write(del []string, put *StoredRecord) error
}

// StoreConfig configures NewStore.
type StoreConfig struct {
	Limits Limits
	// Now is the clock of expiry; nil means time.Now.
	Now func() time.Time
	// PruneInterval is how often expired records are deleted; zero means
	// DefaultPruneInterval.
	PruneInterval time.Duration
}

// StoreStats describe a Store's contents.
type StoreStats struct {
	Records int   // records held, expired ones not yet pruned included
	Bytes   int64 // their keys and data
	Senders int   // peers that records are charged to
	// Refused counts the PUTs refused for the quota or a full store since
	// the store was opened; Evicted the records evicted to make room.
	Refused, Evicted int64
	// PruneErr is the last periodic prune's error, nil once one succeeds.
	PruneErr error
}

// Store keeps the records of one or more DHT nodes: give the same Store to
// several (a LAN and a WAN DHT) and a peer's quota counts across them all.
// They share one key space, so a record stored through either is served
// by both. It is safe for concurrent use.
type Store struct {
	backend   Backend
	limits    Limits
	now       func() time.Time
	validator Validator

	// mu guards the index below and is held through each backend write,
	// so that the index and the backend change together. Reads of record
	// data happen outside it.
	mu       sync.Mutex
	closed   bool
	entries  map[string]entry                // by datastore key
	senders  map[peer.ID]map[string]struct{} // each sender's keys
	tiers    map[int]map[peer.ID]struct{}    // senders by how many keys they hold
	top      int                             // no tier above holds a sender
	bytes    int64
	pruneErr error

	refused, evicted atomic.Int64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type entry struct {
	sender  peer.ID
	size    int64
	expires int64 // unix nanoseconds
}

// NewStore opens a store over b, or over memory when b is nil. It loads
// the index of what b holds, deletes what has expired, and prunes every
// cfg.PruneInterval until Close.
func NewStore(b Backend, cfg StoreConfig) (*Store, error) {
	l := cfg.Limits
	if l.PerPeer < 0 || l.Records < 0 || l.Bytes < 0 || cfg.PruneInterval < 0 {
		return nil, fmt.Errorf("dht: negative record store limits: %+v, prune interval %v", l, cfg.PruneInterval)
	}
	if b == nil {
		b = newMemBackend()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	s := &Store{backend: b, limits: l, now: now, validator: Validator{Now: cfg.Now},
		entries: map[string]entry{}, senders: map[peer.ID]map[string]struct{}{}, tiers: map[int]map[peer.ID]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{})}
	err := b.Load(func(r StoredRecord) error {
		s.add(r.Key, entry{sender: r.Sender, size: int64(len(r.Key) + r.Size), expires: r.Expires.UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dht: loading the record store: %w", err)
	}
	if _, err := s.prune(); err != nil {
		return nil, fmt.Errorf("dht: pruning the record store: %w", err)
	}
	go s.pruneLoop(or(cfg.PruneInterval, DefaultPruneInterval))
	return s, nil
}

// Close stops pruning; the store refuses writes from then on. It does not
// close the backend, which belongs to whoever opened it. Close the DHTs
// and their host first.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
	})
	return nil
}

// Stats returns the store's figures.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StoreStats{Records: len(s.entries), Bytes: s.bytes, Senders: len(s.senders),
		Refused: s.refused.Load(), Evicted: s.evicted.Load(), PruneErr: s.pruneErr}
}

// StoredBy returns how many records are charged to p.
func (s *Store) StoredBy(p peer.ID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.senders[p])
}

func (s *Store) pruneLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_, err := s.prune()
			s.mu.Lock()
			s.pruneErr = err
			s.mu.Unlock()
		case <-s.stop:
			return
		}
	}
}

// prune deletes the expired records, pruneBatch per transaction, letting
// puts and gets through between batches.
func (s *Store) prune() (int, error) {
	total := 0
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return total, ErrStoreClosed
		}
		now := s.now().UnixNano()
		var keys []string
		var gone []entry
		for k, e := range s.entries {
			if e.expires <= now {
				keys, gone = append(keys, k), append(gone, e)
				if len(keys) == pruneBatch {
					break
				}
			}
		}
		if len(keys) == 0 {
			s.mu.Unlock()
			return total, nil
		}
		for _, k := range keys {
			s.remove(k)
		}
		if err := s.backend.Write(keys, nil); err != nil {
			for i, k := range keys {
				s.add(k, gone[i])
			}
			s.mu.Unlock()
			return total, err
		}
		s.mu.Unlock()
		total += len(keys)
		if len(keys) < pruneBatch {
			return total, nil
		}
	}
}

// add and remove keep the index; the caller holds mu.
func (s *Store) add(key string, e entry) {
	s.entries[key] = e
	s.bytes += e.size
	if e.sender == "" {
		return
	}
	keys := s.senders[e.sender]
	if keys == nil {
		keys = map[string]struct{}{}
		s.senders[e.sender] = keys
	}
	s.moveTier(e.sender, len(keys), len(keys)+1)
	keys[key] = struct{}{}
}

func (s *Store) remove(key string) (entry, bool) {
	e, ok := s.entries[key]
	if !ok {
		return e, false
	}
	delete(s.entries, key)
	s.bytes -= e.size
	if e.sender == "" {
		return e, true
	}
	keys := s.senders[e.sender]
	s.moveTier(e.sender, len(keys), len(keys)-1)
	delete(keys, key)
	if len(keys) == 0 {
		delete(s.senders, e.sender)
	}
	return e, true
}

func (s *Store) moveTier(p peer.ID, from, to int) {
	if t := s.tiers[from]; t != nil {
		delete(t, p)
		if len(t) == 0 {
			delete(s.tiers, from)
		}
	}
	if to > 0 {
		t := s.tiers[to]
		if t == nil {
			t = map[peer.ID]struct{}{}
			s.tiers[to] = t
		}
		t[p] = struct{}{}
		s.top = max(s.top, to)
	}
}

// victim returns a record to evict so that a record charged to p fits:
// one of the peer that holds the most records, if it holds more than p.
// The caller holds mu.
func (s *Store) victim(p peer.ID) (string, bool) {
	if s.fixTop() <= len(s.senders[p]) {
		return "", false
	}
	for q := range s.tiers[s.top] {
		for k := range s.senders[q] {
			return k, true
		}
	}
	return "", false
}

// fixTop lowers top to the highest tier that holds a sender, and
// returns it. The caller holds mu.
func (s *Store) fixTop() int {
	for s.top > 0 && len(s.tiers[s.top]) == 0 {
		s.top--
	}
	return s.top
}

func (s *Store) over() bool {
	return len(s.entries) > s.limits.records() || s.bytes > s.limits.bytes()
}

// admits is onRequest's check, before anything is verified: would a PUT
// of key from p, of about size bytes, be stored? put decides for good.
func (s *Store) admits(p peer.ID, key string, size int) bool {
	dk := dsKey(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[dk]; ok && e.expires > s.now().UnixNano() {
		return true // an update: charged already
	}
	held := len(s.senders[p])
	if key != Key(p) && held >= s.limits.perPeer() {
		return false
	}
	if len(s.entries)+1 <= s.limits.records() && s.bytes+int64(len(dk)+size) <= s.limits.bytes() {
		return true
	}
	// put evicts only for a peer that would still hold more than p.
	return s.fixTop() > held+1
}

// onRequest is kad-dht's OnRequestHook: see the comment at the top of
// this file. It must stay cheap: it runs on the stream's goroutine before
// every request is handled.
func (s *Store) onRequest(_ context.Context, st network.Stream, req *pb.Message) {
	if req.GetType() != pb.Message_PUT_VALUE || req.GetRecord() == nil {
		return
	}
	rec := req.GetRecord()
	sender := st.Conn().RemotePeer()
	if !s.admits(sender, string(rec.GetKey()), len(rec.GetKey())+len(rec.GetValue())) {
		s.refused.Add(1)
		req.Record = nil // handlePutValue fails on "nil record", and kad-dht resets the stream
		return
	}
	// SetUnknown replaces whatever unknown fields the peer sent, so no
	// one can pass a record off as another's.
	rec.ProtoReflect().SetUnknown(senderTag(sender))
}

func senderTag(p peer.ID) []byte {
	b := appendUvarint(nil, senderField<<3|2)
	b = appendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// put stores data, a marshalled record that kad-dht's value store
// validated and selected, under the datastore key dk, charging it to the
// sender tagged in it, or to nobody when it came from this node.
func (s *Store) put(dk string, data []byte) error {
	rec, err := parseRecord(data)
	if err != nil {
		return fmt.Errorf("dht: storing a record: %w", err)
	}
	key := string(rec.key)
	if dsKey(key) != dk {
		return fmt.Errorf("dht: record for %q filed under %q", key, dk)
	}
	b, err := s.validator.bundle(key, rec.value)
	if err != nil {
		return err
	}
	now := s.now()
	expires := min(b.Expires.UnixNano(), now.Add(maxRecordAge).UnixNano())
	size := int64(len(dk) + len(rec.clean))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	old, exists := s.entries[dk]
	// An expired record not yet pruned is replaced like a missing one.
	update := exists && old.expires > now.UnixNano()
	charge := rec.sender
	if update && rec.sender != "" && key != Key(rec.sender) {
		charge = old.sender // an update does not move the charge, unless the owner sends it
	}
	if update {
		// Two DHTs that share the store have two value stores, each with
		// its own put locks: select again here, under the one lock.
		prev, ok, err := s.backend.Get(dk)
		if err != nil {
			return fmt.Errorf("dht: reading the stored record: %w", err)
		}
		if p, perr := parseRecord(prev); ok && perr == nil {
			if pbundle, verr := s.validator.bundle(key, p.value); verr == nil {
				if pbundle.Seq > b.Seq {
					return records.ErrOldRecord
				}
				if charge == old.sender && bytes.Equal(p.value, rec.value) && now.Sub(p.received) < refreshAfter {
					return nil
				}
			}
		}
	}
	if !update && charge != "" && key != Key(charge) && len(s.senders[charge]) >= s.limits.perPeer() {
		s.refused.Add(1)
		return fmt.Errorf("%w (%d records from %s)", ErrRecordQuota, len(s.senders[charge]), charge)
	}

	type undo struct {
		key string
		e   entry
	}
	var removed []undo
	if exists {
		s.remove(dk)
		removed = append(removed, undo{dk, old})
	}
	s.add(dk, entry{sender: charge, size: size, expires: expires})
	rollback := func() {
		s.remove(dk)
		for i := len(removed) - 1; i >= 0; i-- {
			s.add(removed[i].key, removed[i].e)
		}
	}
	var evict []string
	if charge != "" && (!update || size > old.size) {
		for s.over() {
			v, ok := s.victim(charge)
			if !ok {
				rollback()
				s.refused.Add(1)
				return fmt.Errorf("%w (%d records, %d bytes; no peer holds more than %s would)", ErrStoreFull, len(s.entries), s.bytes, charge)
			}
			e, _ := s.remove(v)
			removed = append(removed, undo{v, e})
			evict = append(evict, v)
		}
	}
	err = s.backend.Write(evict, &StoredRecord{Key: dk, Sender: charge, Expires: time.Unix(0, expires), Size: len(rec.clean), Data: rec.clean})
	if err != nil {
		rollback()
		return fmt.Errorf("dht: storing a record: %w", err)
	}
	s.evicted.Add(int64(len(evict)))
	return nil
}

func (s *Store) get(dk string) ([]byte, error) {
	if !s.live(dk) {
		return nil, ds.ErrNotFound
	}
	data, ok, err := s.backend.Get(dk)
	if err != nil {
		return nil, fmt.Errorf("dht: reading a record: %w", err)
	}
	if !ok {
		return nil, ds.ErrNotFound
	}
	return data, nil
}

// live reports whether a record is held under dk and has not expired:
// expired records are not served, even before they are pruned.
func (s *Store) live(dk string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[dk]
	return ok && !s.closed && e.expires > s.now().UnixNano()
}

func (s *Store) delete(dk string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	e, ok := s.remove(dk)
	if !ok {
		return nil
	}
	if err := s.backend.Write([]string{dk}, nil); err != nil {
		s.add(dk, e)
		return fmt.Errorf("dht: deleting a record: %w", err)
	}
	return nil
}

// dsKey is the datastore key under which kad-dht's value store files a
// record key (records.valueDsKey, unexported):
// "/" + namespace + "/" + unpadded standard base32 of the whole key.
func dsKey(key string) string {
	ns, _, _ := record.SplitKey(key)
	return ds.NewKey("/" + ns + "/" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte(key))).String()
}

// datastore is the Store as kad-dht's value datastore.
type datastore struct{ s *Store }

var _ ds.Batching = datastore{}

func (d datastore) Put(_ context.Context, k ds.Key, v []byte) error { return d.s.put(k.String(), v) }
func (d datastore) Get(_ context.Context, k ds.Key) ([]byte, error) { return d.s.get(k.String()) }
func (d datastore) Delete(_ context.Context, k ds.Key) error        { return d.s.delete(k.String()) }
func (d datastore) Sync(context.Context, ds.Key) error              { return nil }
func (d datastore) Close() error                                    { return nil }

func (d datastore) Has(_ context.Context, k ds.Key) (bool, error) { return d.s.live(k.String()), nil }

func (d datastore) GetSize(_ context.Context, k ds.Key) (int, error) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	e, ok := d.s.entries[k.String()]
	if !ok || e.expires <= d.s.now().UnixNano() {
		return -1, ds.ErrNotFound
	}
	return int(e.size) - len(k.String()), nil
}

func (d datastore) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(d), nil }

// Query reads every live record (values too, unless KeysOnly). kad-dht
// queries its value datastore only for its own expiry sweep, which New
// turns off since the Store prunes.
func (d datastore) Query(_ context.Context, q dsq.Query) (dsq.Results, error) {
	d.s.mu.Lock()
	now := d.s.now().UnixNano()
	var keys []string
	for k, e := range d.s.entries {
		if e.expires > now {
			keys = append(keys, k)
		}
	}
	d.s.mu.Unlock()
	var es []dsq.Entry
	for _, k := range keys {
		e := dsq.Entry{Key: k}
		if !q.KeysOnly {
			v, err := d.s.get(k)
			if errors.Is(err, ds.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			e.Value, e.Size = v, len(v)
		}
		es = append(es, e)
	}
	return dsq.NaiveQueryApply(q, dsq.ResultsWithEntries(q, es)), nil
}

// memBackend keeps records in memory: the store of a DHT given none.
type memBackend struct {
	mu sync.RWMutex
	m  map[string]StoredRecord
}

func newMemBackend() *memBackend { return &memBackend{m: map[string]StoredRecord{}} }

func (b *memBackend) Load(f func(StoredRecord) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, r := range b.m {
		r.Data = nil
		if err := f(r); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBackend) Get(key string) ([]byte, bool, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.m[key]
	return r.Data, ok, nil
}

func (b *memBackend) Write(del []string, put *StoredRecord) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range del {
		delete(b.m, k)
	}
	if put != nil {
		r := *put
		r.Data = bytes.Clone(put.Data)
		b.m[r.Key] = r
	}
	return nil
}
