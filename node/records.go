package node

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pmsg/p2pmsg/db"
	"github.com/p2pmsg/p2pmsg/dht"
)

// The DHT's record store (docs/design.md §4, §11; docs/dht-decisions.md, 1):
// what this node holds as a DHT server, bounded per sending peer and in
// total by package dht, kept across restarts in db.RecordsFileName beside
// the store. A node that is a DHT client only holds its own bundle, in
// memory.

// recordStore is the DHT record store and what it is kept in.
type recordStore struct {
	store *dht.Store
	file  *db.Records // nil in memory
}

// openRecords opens the record store for the DHTs that buildHost makes.
// A file that cannot be opened (damaged, from a newer p2pmsg) costs the
// node its records, not its start: they come back as their owners
// republish, so the node logs why and keeps them in memory.
func (n *Node) openRecords() (*recordStore, error) {
	if n.cfg.DHTMode == DHTClient && !n.cfg.RelayService && !n.cfg.Mailbox {
		s, err := dht.NewStore(nil, dht.StoreConfig{})
		return &recordStore{store: s}, err
	}
	path := filepath.Join(n.cfg.DataDir, db.RecordsFileName)
	f, err := db.OpenRecords(path)
	if err != nil {
		n.log.Warn("DHT records kept in memory only", "err", err)
		s, err := dht.NewStore(nil, dht.StoreConfig{})
		return &recordStore{store: s}, err
	}
	s, err := dht.NewStore(recordsBackend{f}, dht.StoreConfig{})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("node: DHT record store %s: %w", path, err), f.Close())
	}
	return &recordStore{store: s, file: f}, nil
}

// Close closes the store, then its file: after the DHTs and the host,
// whose handlers may still be reading.
func (r *recordStore) Close() error {
	err := r.store.Close()
	if r.file != nil {
		err = errors.Join(err, r.file.Close())
	}
	return err
}

// recordsBackend is db.Records as the dht.Store's backend.
type recordsBackend struct{ f *db.Records }

func (b recordsBackend) Load(fn func(dht.StoredRecord) error) error {
	return b.f.Each(func(r db.Record) error {
		return fn(dht.StoredRecord{Key: r.Key, Sender: peer.ID(r.Sender), Expires: r.Expires, Size: r.Size})
	})
}

func (b recordsBackend) Get(key string) ([]byte, bool, error) { return b.f.Get(key) }

func (b recordsBackend) Write(del []string, put *dht.StoredRecord) error {
	if put == nil {
		return b.f.Write(del, nil)
	}
	return b.f.Write(del, &db.Record{Key: put.Key, Sender: []byte(put.Sender), Expires: put.Expires, Data: put.Data})
}
