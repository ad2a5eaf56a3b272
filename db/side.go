package db

import (
	"database/sql"
	"errors"
	"fmt"
)

// sideFile describes a SQLite file of ours beside the store (the DHT's
// records, a mailbox's deposits): one writer connection, a few readers,
// WAL, and a schema created whole on a new file. Its Open identifies the
// file first (identifyAs), as Open does.
type sideFile struct {
	what     string // "DHT record store": for errors
	common   string // the parameters of every connection
	writer   string // the writer's own
	pragmas  string // run on the writer once opened
	schema   string // the tables of a new file
	app      int    // application_id
	version  int    // user_version of the schema
	nReaders int
}

// open opens the writer and the readers of the file at path, which
// identifyAs found at version (0: new, the schema is created).
func (f sideFile) open(p *Store, version int) (wdb, rdb *sql.DB, err error) {
	if wdb, err = sql.Open("sqlite3", sqliteURI(p.path)+f.common+f.writer); err != nil {
		return nil, nil, fmt.Errorf("db: open: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	fail := func(op string, err error) (*sql.DB, *sql.DB, error) {
		wdb.Close()
		return nil, nil, p.classify(op, err)
	}
	if _, err := wdb.Exec(f.pragmas); err != nil {
		return fail("enable WAL", err)
	}
	if version == 0 {
		tx, err := wdb.Begin()
		if err != nil {
			return fail("create the "+f.what, err)
		}
		_, err = tx.Exec(f.schema + fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d;", f.app, f.version))
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return fail("create the "+f.what, err)
		}
	}
	if rdb, err = sql.Open("sqlite3", sqliteURI(p.path)+f.common+"&_query_only=true"); err != nil {
		wdb.Close()
		return nil, nil, fmt.Errorf("db: open: %w", err)
	}
	rdb.SetMaxOpenConns(f.nReaders)
	return wdb, rdb, nil
}

// closeDBs closes the connections that were opened (nil ones were not).
func closeDBs(dbs ...*sql.DB) error {
	var errs []error
	for _, d := range dbs {
		if d != nil {
			errs = append(errs, d.Close())
		}
	}
	return errors.Join(errs...)
}
