package db

import (
	"database/sql"
	"fmt"
)

// MaxGroup is the most transactions Update folds into one commit.
const MaxGroup = 64

// Tx is a write transaction: one function given to Update. Its methods may
// be called only while that function runs.
type Tx struct {
	s     *Store
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

type request struct {
	fn   func(*Tx) error
	done chan result
}

type result struct {
	err      error
	panicked any
}

// Update runs fn in a write transaction and returns once its changes are
// durable (synchronous=FULL), or fn's error, in which case none of its
// changes are kept.
//
// Concurrent calls are committed together (group commit): while one commit
// waits for the disk, the calls that arrive queue up, and the next commit
// takes up to MaxGroup of them, each in a savepoint of its own, so that one
// failing function does not undo the others. A burst of receives therefore
// costs one fsync per group, not per message. fn must not call Update.
func (s *Store) Update(fn func(*Tx) error) error {
	req := &request{fn: fn, done: make(chan result, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.queue = append(s.queue, req)
	if !s.leading {
		// This caller commits for everyone until the queue is empty; no
		// goroutine of ours lives beyond the calls.
		s.leading = true
		s.drain()
	}
	s.mu.Unlock()
	r := <-req.done
	if r.panicked != nil {
		panic(r.panicked)
	}
	return r.err
}

// drain commits the queue in groups until it is empty, then gives up the
// lead. It is called with mu held and leading set, and returns with mu held.
func (s *Store) drain() {
	for len(s.queue) > 0 {
		n := min(len(s.queue), MaxGroup)
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.mu.Unlock()
		s.commit(batch)
		s.mu.Lock()
	}
	s.queue = nil
	s.leading = false
	s.idle.Broadcast()
}

// exclusive runs fn as the only user of the writer connection, between
// groups, then commits whatever queued meanwhile.
func (s *Store) exclusive(fn func() error) error {
	s.mu.Lock()
	for s.leading {
		s.idle.Wait()
	}
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.leading = true
	s.mu.Unlock()
	err := fn()
	s.mu.Lock()
	s.drain()
	s.mu.Unlock()
	return err
}

// commit runs a batch of requests in one transaction.
func (s *Store) commit(batch []*request) {
	errs := make([]error, len(batch))
	panics := make([]any, len(batch))
	finish := func(commitErr error) {
		for i, r := range batch {
			err := errs[i]
			if err == nil {
				err = commitErr
			}
			r.done <- result{err: err, panicked: panics[i]}
		}
	}
	tx, err := s.writer.Begin() // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		finish(s.classify("begin", err))
		return
	}
	t := &Tx{s: s, tx: tx, stmts: map[string]*sql.Stmt{}}
	for i, r := range batch {
		if _, err := tx.Exec("SAVEPOINT request"); err != nil {
			tx.Rollback()
			finish(s.classify("savepoint", err))
			return
		}
		errs[i], panics[i] = run(r.fn, t)
		if errs[i] == nil && panics[i] == nil {
			_, err = tx.Exec("RELEASE request")
		} else {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("db: transaction panicked: %v", panics[i])
			}
			_, err = tx.Exec("ROLLBACK TO request; RELEASE request")
		}
		if err != nil {
			tx.Rollback()
			finish(s.classify("savepoint", err))
			return
		}
	}
	finish(s.classify("commit", tx.Commit()))
}

func run(fn func(*Tx) error, t *Tx) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return fn(t), nil
}

// stmt returns a statement prepared in this transaction: once per group,
// not once per call (a prepare costs more than most of our statements).
// Statements bound to the transaction cannot outlive it or wait for the
// writer connection, which the transaction holds.
func (t *Tx) stmt(query string) *sql.Stmt {
	if st, ok := t.stmts[query]; ok {
		return st
	}
	st, err := t.tx.Prepare(query)
	if err != nil {
		// Our own SQL on a healthy connection: failing here is a bug.
		panic("db: prepare " + query + ": " + err.Error())
	}
	t.stmts[query] = st
	return st
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	return t.stmt(query).Exec(args...)
}

func (t *Tx) queryRow(query string, args ...any) *sql.Row {
	return t.stmt(query).QueryRow(args...)
}

// View runs fn with a read-only snapshot of the store, concurrently with
// writes.
func (s *Store) View(fn func(*ReadTx) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	tx, err := s.reader.Begin()
	if err != nil {
		return s.classify("begin read", err)
	}
	defer tx.Rollback()
	return fn(&ReadTx{s: s, q: tx})
}

// ReadTx is a read-only snapshot given to View.
type ReadTx struct {
	s *Store
	q querier
}

type querier interface {
	QueryRow(query string, args ...any) *sql.Row
	Query(query string, args ...any) (*sql.Rows, error)
}

// Read returns the reads of a write transaction, so that code written for
// a ReadTx serves both.
func (t *Tx) Read() *ReadTx { return &ReadTx{s: t.s, q: t.tx} }
