package db

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// The DHT record store: the records a DHT server keeps for other peers
// (docs/design.md §4, §11), in a SQLite file of its own beside the
// store. They are public and every owner republishes its own, so the
// file is unsealed and written with synchronous=NORMAL: a power cut may
// lose the last records received, never the file. Apart from the main
// store because its contents come from strangers, churn at their rate,
// and are bounded by the DHT's quotas rather than by the user: a separate
// file keeps that churn out of the history's WAL and checkpoints, and can
// be deleted at any time.

// RecordsFileName is the DHT record store's file in the data directory.
const RecordsFileName = "dht-records.sqlite"

const (
	recordsAppID = 0x70326472 // "p2dr"
	// recordsVersion is the schema version this binary writes.
	recordsVersion = 1
	// recordsWALLimit: the WAL is truncated to this after a checkpoint,
	// so that a burst of writes does not leave a large file behind.
	recordsWALLimit = 4 << 20
	// recordsCacheKiB is each connection's page cache. Reads are point
	// lookups by key that the OS page cache serves as well; SQLite's
	// default (2 MiB per connection) would count in the node's memory.
	recordsCacheKiB = 512
	recordsReaders  = 2
)

const recordsSchema = `
CREATE TABLE records (
	key     TEXT PRIMARY KEY,      -- the DHT's datastore key
	sender  BLOB NOT NULL,         -- the peer it is charged to; empty for the node's own
	expires INTEGER NOT NULL,      -- unix ms
	size    INTEGER NOT NULL,      -- length(data), read without the data
	data    BLOB NOT NULL          -- the record as the DHT stores it
);
`

// Record is a DHT record as Records keeps it.
type Record struct {
	Key     string
	Sender  []byte
	Expires time.Time
	Size    int    // len(Data); Each sets it and leaves Data nil
	Data    []byte // nil from Each
}

// Records is the DHT record store: one writer connection, a few readers
// (WAL). It is safe for concurrent use. The caller holds the data
// directory (Open's lock): Records takes no lock of its own.
type Records struct {
	path   string
	wdb    *sql.DB
	rdb    *sql.DB
	closed sync.Once
	err    error
}

// OpenRecords opens, or creates, the DHT record store at path. Like Open
// it never writes to a file it has not recognised as one (its own
// application id), and refuses a newer schema (ErrTooNew), another
// program's file (ErrNotP2PMsg) and a damaged one (ErrCorrupt); the
// errors say that the file may be deleted.
func OpenRecords(path string) (*Records, error) {
	r := &Records{path: path}
	if err := r.open(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// probe gives the path-only helpers of Store (checkFile, quickCheck,
// classify) to Records.
func (r *Records) probe() *Store { return &Store{path: r.path} }

func (r *Records) open() error {
	p := r.probe()
	if err := p.checkFile(); err != nil {
		return r.deletable(err)
	}
	version, err := r.identify()
	if err != nil {
		return r.deletable(err)
	}
	if err := os.Chmod(r.path, 0o600); err != nil {
		return fmt.Errorf("db: make %s private: %w", r.path, err)
	}
	r.wdb, r.rdb, err = sideFile{what: "record store",
		common:  "?_busy_timeout=" + strconv.Itoa(busyTimeoutMS) + "&_cache_size=-" + strconv.Itoa(recordsCacheKiB),
		writer:  "&_synchronous=NORMAL&_txlock=immediate",
		pragmas: "PRAGMA journal_mode = WAL; PRAGMA journal_size_limit = " + strconv.Itoa(recordsWALLimit),
		schema:  recordsSchema, app: recordsAppID, version: recordsVersion, nReaders: recordsReaders,
	}.open(p, version)
	return err
}

// deletable adds to a refusal that the file holds nothing of the user's.
func (r *Records) deletable(err error) error {
	if errors.Is(err, ErrNotP2PMsg) || errors.Is(err, ErrTooNew) || errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w (the DHT record store holds only other peers' public records, which they republish: %s may be deleted)", err, r.path)
	}
	return err
}

// identify is Store.identify for this file's own id and version.
func (r *Records) identify() (int, error) {
	return r.probe().identifyAs(recordsAppID, recordsVersion, func() error {
		return fmt.Errorf("%w: %s is not a p2pmsg DHT record store", ErrNotP2PMsg, r.path)
	}, func(version int) error {
		return fmt.Errorf("%w: %s has record store version %d, this p2pmsg knows up to %d", ErrTooNew, r.path, version, recordsVersion)
	})
}

// Path returns the file's path.
func (r *Records) Path() string { return r.path }

// Close closes the file. It is idempotent.
func (r *Records) Close() error {
	r.closed.Do(func() {
		r.err = closeDBs(r.rdb, r.wdb)
	})
	return r.err
}

// Each calls f with every record, without its data, until f fails.
func (r *Records) Each(f func(Record) error) error {
	rows, err := r.rdb.Query("SELECT key, sender, expires, size FROM records")
	if err != nil {
		return r.probe().classify("read records", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rec Record
		var expires int64
		if err := rows.Scan(&rec.Key, &rec.Sender, &expires, &rec.Size); err != nil {
			return r.probe().classify("read records", err)
		}
		rec.Expires = fromMillis(expires)
		if err := f(rec); err != nil {
			return err
		}
	}
	return r.probe().classify("read records", rows.Err())
}

// Get returns the data stored under key, and false if there is none.
func (r *Records) Get(key string) ([]byte, bool, error) {
	var data []byte
	err := r.rdb.QueryRow("SELECT data FROM records WHERE key = ?", key).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, r.probe().classify("read a record", err)
	}
	return data, true, nil
}

// Write deletes the records under del, then stores put unless it is nil
// (replacing the record under its key), in one transaction.
func (r *Records) Write(del []string, put *Record) (err error) {
	tx, err := r.wdb.Begin()
	if err != nil {
		return r.probe().classify("write records", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
			err = r.probe().classify("write records", err)
		}
	}()
	if len(del) > 0 {
		st, err := tx.Prepare("DELETE FROM records WHERE key = ?")
		if err != nil {
			return err
		}
		defer st.Close()
		for _, k := range del {
			if _, err := st.Exec(k); err != nil {
				return err
			}
		}
	}
	if put != nil {
		sender := put.Sender
		if sender == nil {
			sender = []byte{} // NOT NULL: the node's own records have no sender
		}
		_, err := tx.Exec(`INSERT INTO records (key, sender, expires, size, data) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET sender = excluded.sender, expires = excluded.expires,
				size = excluded.size, data = excluded.data`,
			put.Key, sender, millis(put.Expires), len(put.Data), put.Data)
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}
