package db

import (
	"database/sql"
	"errors"
	"fmt"
)

// MaxGroup is the most transactions the writer folds into one commit.
const MaxGroup = 64

// Tx is a write transaction: one function given to Update. Its methods may
// be called only while that function runs.
type Tx struct {
	s     *Store
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	// newMessages: a message was inserted, so the search index must
	// catch up before the commit.
	newMessages bool
	// contacts: a contact was written, so AcceptedContacts' copy is stale
	// once this commits.
	contacts bool
}

// touchContacts is called by every write to the contacts table, before
// it: a View that began before the commit cannot then cache its old
// snapshot as current (AcceptedContacts), and commit moves the
// generation on once more after it.
func (t *Tx) touchContacts() {
	t.contacts = true
	t.s.contactsGen.Add(1)
}

// request is a write for the writer goroutine: a transaction function, or
// an exclusive job that runs alone between groups (a re-seal).
type request struct {
	fn        func(*Tx) error
	exclusive func() error
	done      chan result
}

type result struct {
	err      error
	panicked any
}

// Update runs fn in a write transaction and returns once its changes are
// durable (synchronous=FULL), or with fn's error, in which case none of its
// changes are kept.
//
// The store's writer goroutine runs every transaction function. While one
// commit waits for the disk, the calls that arrive queue up, and the next
// commit takes up to MaxGroup of them (group commit), each in a savepoint
// of its own, so that one failing function does not undo the others. A
// burst of receives therefore costs one fsync per group, not per message.
// A panic in fn is raised again in the caller.
//
// fn must not call Update, View, ChangePassphrase or Close (they would
// wait for the writer that runs fn), and must return the errors of the
// statements it runs: after SQLite aborts a whole transaction (a full disk,
// an I/O error), the following statements would run outside it.
//
// A commit that fails in its fsync may still have reached the WAL: after
// such an error the outcome is unknown until the store is reopened, so a
// caller should close the store rather than retry blindly.
func (s *Store) Update(fn func(*Tx) error) error {
	return s.submit(&request{fn: fn, done: make(chan result, 1)})
}

// exclusiveJob runs job on the writer goroutine with no transaction
// around it, between groups.
func (s *Store) exclusiveJob(job func() error) error {
	return s.submit(&request{exclusive: job, done: make(chan result, 1)})
}

func (s *Store) submit(req *request) error {
	select {
	case s.requests <- req:
	case <-s.stopping:
		return ErrClosed
	}
	r := <-req.done
	if r.panicked != nil {
		panic(r.panicked)
	}
	return r.err
}

// writer is the one goroutine that writes. A transaction function that
// ends its goroutine (runtime.Goexit, as t.Fatal does) takes this one with
// it; the deferred handler answers the batch and starts a new writer.
func (s *Store) writer() {
	for {
		var first *request
		select {
		case first = <-s.requests:
		case <-s.stopping:
			close(s.stopped)
			return
		}
		batch := []*request{first}
		var next *request
		for len(batch) < MaxGroup && first.exclusive == nil {
			select {
			case r := <-s.requests:
				if r.exclusive != nil {
					next = r // after this group
				} else {
					batch = append(batch, r)
					continue
				}
			default:
			}
			break
		}
		s.runGuarded(batch)
		if next != nil {
			s.runGuarded([]*request{next})
		}
	}
}

// runGuarded runs a batch, and if a function in it exits the goroutine,
// fails the unanswered requests and hands the writing on to a new
// goroutine.
func (s *Store) runGuarded(batch []*request) {
	answered := make([]bool, len(batch))
	normal := false
	defer func() {
		if normal {
			return
		}
		for i, r := range batch {
			if !answered[i] {
				r.done <- result{err: errors.New("db: a transaction function ended its goroutine (runtime.Goexit); nothing of its group was kept")}
			}
		}
		go s.writer()
	}()
	if batch[0].exclusive != nil {
		err, p := recovering(batch[0].exclusive)
		answered[0] = true
		batch[0].done <- result{err: err, panicked: p}
	} else {
		s.commit(batch, answered)
	}
	normal = true
}

// commit runs a group of transaction functions in one transaction.
func (s *Store) commit(batch []*request, answered []bool) {
	errs := make([]error, len(batch))
	panics := make([]any, len(batch))
	finish := func(commitErr error) {
		for i, r := range batch {
			err := errs[i]
			if err == nil {
				err = commitErr
			}
			answered[i] = true
			r.done <- result{err: err, panicked: panics[i]}
		}
	}
	tx, err := s.wdb.Begin() // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		finish(s.classify("begin", err))
		return
	}
	committed := false
	defer func() {
		if !committed {
			tx.Rollback() // also when a function ends the goroutine
		}
	}()
	t := &Tx{s: s, tx: tx, stmts: map[string]*sql.Stmt{}}
	for i, r := range batch {
		if _, err := tx.Exec("SAVEPOINT request"); err != nil {
			finish(s.classify("savepoint", err))
			return
		}
		errs[i], panics[i] = recovering(func() error { return r.fn(t) })
		if errs[i] == nil && panics[i] == nil {
			_, err = tx.Exec("RELEASE request")
		} else {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("db: transaction panicked: %v", panics[i])
			}
			_, err = tx.Exec("ROLLBACK TO request; RELEASE request")
		}
		if err != nil {
			finish(s.classify("savepoint", err))
			return
		}
	}
	if t.newMessages {
		if err := t.indexMessages(); err != nil {
			finish(s.classify("index messages", err))
			return
		}
	}
	committed = true
	err = tx.Commit()
	if t.contacts {
		s.contactsGen.Add(1) // before Update returns: its caller reads the new set
	}
	finish(s.classify("commit", err))
}

// indexMessages adds the messages inserted in this transaction to the
// search index: FTS4's in one statement (migration 0002 says why), or a
// sealed store's word index.
func (t *Tx) indexMessages() error {
	if sl := t.s.sealer.Load(); sl != nil {
		return t.indexWords(sl)
	}
	if _, err := t.exec(`INSERT INTO messages_fts (docid, body)
		SELECT seq, body FROM messages WHERE seq > (SELECT indexed FROM fts_state)`); err != nil {
		return err
	}
	_, err := t.exec(`UPDATE fts_state SET indexed = (SELECT coalesce(max(seq), 0) FROM messages)`)
	return err
}

// recovering runs f and returns its panic, if any, instead of raising it.
func recovering(f func() error) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return f(), nil
}

// stmt returns a statement prepared in this transaction: once per group,
// not once per call (a prepare costs more than most of our statements).
// Statements bound to the transaction cannot outlive it or wait for the
// writer connection, which the transaction holds.
func (t *Tx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	st, err := t.tx.Prepare(query)
	if err != nil {
		return nil, err
	}
	t.stmts[query] = st
	return st, nil
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// scanner is a *sql.Row, or a prepare error in its place.
type scanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

func (t *Tx) queryRow(query string, args ...any) scanner {
	st, err := t.stmt(query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRow(args...)
}

// View runs fn with a read-only snapshot of the store, beside the writer.
// fn must not call Update or ChangePassphrase.
func (s *Store) View(fn func(*ReadTx) error) error {
	// Held for the whole read, so that a re-seal (which takes it
	// exclusively) never swaps the key under a snapshot sealed with the
	// other one, and Close waits for reads to end.
	s.sealMu.RLock()
	defer s.sealMu.RUnlock()
	if s.closed.Load() {
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
