package db

import (
	"bytes"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
)

// FileName is the database file inside the data directory.
const FileName = "p2pmsg.db"

const (
	lockName      = "p2pmsg.lock"
	applicationID = 0x7032706d // "p2pm", in the SQLite header at offset 68
	sqliteMagic   = "SQLite format 3\x00"
	busyTimeoutMS = 5000
	readers       = 4
)

// Errors that callers and users branch on. Each is wrapped with the path or
// the detail that says what to do.
var (
	ErrNotFound           = errors.New("db: not found")
	ErrNotP2PMsg          = errors.New("db: not a p2pmsg database")
	ErrTooNew             = errors.New("db: database is newer than this p2pmsg")
	ErrCorrupt            = errors.New("db: database file is damaged")
	ErrReadOnly           = errors.New("db: data directory is not writable")
	ErrDirOpen            = errors.New("db: data directory is open to other users")
	ErrLocked             = errors.New("db: database is in use by another process")
	ErrPassphraseRequired = errors.New("db: database is sealed with a passphrase")
	ErrWrongPassphrase    = errors.New("db: wrong passphrase")
	ErrNotSealed          = errors.New("db: database is not sealed")
	ErrClosed             = errors.New("db: store is closed")
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Options configure Open. The zero value opens an unsealed store.
type Options struct {
	// Passphrase seals the secrets and the message text at rest. It is
	// required for a sealed store, and seals a store that Open creates.
	// A store sealed by an earlier version (its secrets only) is
	// upgraded when it opens: its bodies are sealed, in one transaction.
	Passphrase []byte
	// KDF is the Argon2id cost used when a passphrase is set; zero means
	// DefaultKDF. The parameters are stored, so a store opens with its own.
	KDF KDFParams
}

// Store is a node's SQLite database: one file, one writer goroutine on one
// connection, a few reader connections. It is safe for concurrent use.
type Store struct {
	path   string
	lock   *os.File
	wdb    *sql.DB                // one connection: SQLite has one writer anyway
	reader *sql.DB                // query-only connections, concurrent with the writer (WAL)
	sealer atomic.Pointer[sealer] // nil when the secrets are not sealed
	// sealMu is held shared by every View and exclusively while a re-seal
	// commits and swaps the key, and while Close tears down.
	sealMu sync.RWMutex

	// contactsGen changes whenever a write touches the contacts (twice:
	// at the write and after its commit); accepted caches their accepted
	// peer IDs while it does not (AcceptedContacts).
	contactsGen atomic.Uint64
	accepted    atomic.Pointer[acceptedSet]

	requests chan *request // to the writer goroutine
	stopping chan struct{} // closed by Close
	stopped  chan struct{} // closed by the writer when it has stopped
	closed   atomic.Bool
}

// Open opens, or creates, the store in dir. It never writes to a file that
// it has not recognised as a p2pmsg database, and it refuses a database
// from a newer p2pmsg, a damaged one, and a sealed one without the right
// passphrase, each with its own error.
func Open(dir string, opts Options) (*Store, error) {
	if err := prepareDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{path: filepath.Join(dir, FileName), lock: lock,
		requests: make(chan *request), stopping: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.open(opts); err != nil {
		s.closeAll()
		return nil, err
	}
	go s.writer()
	return s, nil
}

// prepareDir creates the data directory, private, and refuses an
// existing one that other users may read or write (see ErrDirOpen).
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("%w: %s: %v", ErrReadOnly, dir, err)
		}
		return fmt.Errorf("db: data directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("db: data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("db: data directory %s is not a directory", dir)
	}
	// Like OpenSSH with ~/.ssh: a directory that others may read or write
	// is refused, not fixed behind the user's back (they made it so).
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; make it yours alone with: chmod 700 %s", ErrDirOpen, dir, perm, dir)
	}
	return nil
}

// lockDir takes an exclusive lock on the data directory, so that two
// processes never write one database (the kernel drops it if we die).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, fmt.Errorf("%w: %s: %v", ErrReadOnly, dir, err)
		}
		return nil, fmt.Errorf("db: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (is a p2pmsg daemon running on it?)", ErrLocked, dir)
		}
		return nil, fmt.Errorf("db: lock: %w", err)
	}
	return f, nil
}

func (s *Store) open(opts Options) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	// A backup's snapshot that a crash left is a whole copy of the
	// history, disappeared messages included: it goes.
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(s.path), backupPrefix+"*")); len(left) > 0 {
		for _, f := range left {
			os.Remove(f)
		}
	}
	version, err := s.identify()
	if err != nil {
		return err
	}
	// From here on the file is ours (or new): writing is safe.
	if err := os.Chmod(s.path, 0o600); err != nil {
		return fmt.Errorf("db: make %s private: %w", s.path, err)
	}
	// _auto_vacuum takes effect on a new file only (before its first
	// table); an existing one gets it from incrementalVacuum.
	dsn := sqliteURI(s.path) + "?_busy_timeout=" + strconv.Itoa(busyTimeoutMS) +
		"&_foreign_keys=on&_synchronous=FULL&_txlock=immediate&_secure_delete=on&_auto_vacuum=incremental"
	if s.wdb, err = sql.Open("sqlite3", dsn); err != nil {
		return fmt.Errorf("db: open: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	if _, err := s.wdb.Exec("PRAGMA journal_mode = WAL"); err != nil {
		return s.classify("enable WAL", err)
	}
	// Statement journals and savepoint journals (group commit) in
	// memory: they are small, written for nothing to a file, and a file
	// would hold old pages outside the data directory.
	if _, err := s.wdb.Exec("PRAGMA temp_store = MEMORY"); err != nil {
		return s.classify("temp_store", err)
	}
	if err := s.migrate(version); err != nil {
		return err
	}
	if err := s.openSealing(opts); err != nil {
		return err
	}
	// After the sealing, so that VACUUM's temporary copy of the file
	// holds no body that the sealing upgrade was about to seal.
	if err := s.incrementalVacuum(); err != nil {
		return err
	}
	// A crash between a change of sealing and its scrub left the old
	// values in the WAL; the last writer's WAL may hold anything: empty
	// it before the first read.
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.reader, err = sql.Open("sqlite3", sqliteURI(s.path)+"?_busy_timeout="+strconv.Itoa(busyTimeoutMS)+"&_query_only=true&_foreign_keys=on")
	if err != nil {
		return fmt.Errorf("db: open: %w", err)
	}
	s.reader.SetMaxOpenConns(readers)
	return nil
}

// sqliteURI makes a SQLite URI of a path: SQLite decodes %XX in it and
// stops at ? and #, so those are escaped.
func sqliteURI(path string) string {
	return "file:" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

// checkFile creates the file with mode 0600 if it is missing, and otherwise
// checks that it is a SQLite file before SQLite may touch it.
func (s *Store) checkFile() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("%w: %s: %v", ErrReadOnly, s.path, err)
		}
		return fmt.Errorf("db: open %s: %w", s.path, err)
	}
	f, err = os.Open(s.path)
	if err != nil {
		return fmt.Errorf("db: open %s: %w", s.path, err)
	}
	defer f.Close()
	head := make([]byte, 100)
	n, err := io.ReadFull(f, head)
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return nil // empty: SQLite treats it as a new database
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("db: read %s: %w", s.path, err)
	case n < len(head) || !bytes.Equal(head[:16], []byte(sqliteMagic)):
		return fmt.Errorf("%w: %s is not a SQLite file; move it away or choose another data directory", ErrNotP2PMsg, s.path)
	}
	return nil
}

// identify returns the schema version after checking, through a read-only
// connection, that the database is ours (our application id, or a new
// empty file), not newer than this binary, and undamaged. Nothing is
// written: a read-write connection could replay another program's WAL or
// hot journal into its file.
func (s *Store) identify() (int, error) {
	return s.identifyAs(applicationID, len(migrations()), func() error {
		return fmt.Errorf("%w: %s is another program's SQLite database; move it away or choose another data directory", ErrNotP2PMsg, s.path)
	}, func(version int) error {
		return fmt.Errorf("%w: it has schema version %d, this p2pmsg knows up to %d: upgrade p2pmsg", ErrTooNew, version, len(migrations()))
	})
}

// identifyAs is identify for a file of application id app whose versions
// go up to maxVersion (the DHT's record file has its own); foreign and
// tooNew say what is wrong in that file's words.
func (s *Store) identifyAs(app, maxVersion int, foreign func() error, tooNew func(version int) error) (int, error) {
	ro, err := sql.Open("sqlite3", sqliteURI(s.path)+"?mode=ro&_busy_timeout="+strconv.Itoa(busyTimeoutMS))
	if err != nil {
		return 0, fmt.Errorf("db: open: %w", err)
	}
	defer ro.Close()
	ro.SetMaxOpenConns(1)
	var appID, version, objects int
	if err := ro.QueryRow("PRAGMA application_id").Scan(&appID); err != nil {
		return 0, s.classify("read header", err)
	}
	if err := ro.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return 0, s.classify("read header", err)
	}
	if err := ro.QueryRow("SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return 0, s.classify("read schema", err)
	}
	if appID != app && (appID != 0 || version != 0 || objects != 0) {
		return 0, foreign()
	}
	if version > maxVersion {
		return 0, tooNew(version)
	}
	if version > 0 {
		if err := s.quickCheck(ro); err != nil {
			return 0, err
		}
	}
	return version, nil
}

func (s *Store) quickCheck(ro *sql.DB) error {
	rows, err := ro.Query("PRAGMA quick_check")
	if err != nil {
		return s.classify("check", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return s.classify("check", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return s.classify("check", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s: %s; restore it from a backup", ErrCorrupt, s.path, strings.Join(problems[:min(3, len(problems))], "; "))
	}
	return nil
}

// classify turns SQLite's errors about the file into ours.
func (s *Store) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrCorrupt:
			return fmt.Errorf("%w: %s: %s: %v; restore it from a backup", ErrCorrupt, s.path, op, err)
		case sqlite3.ErrNotADB:
			return fmt.Errorf("%w: %s: %v", ErrNotP2PMsg, s.path, err)
		case sqlite3.ErrReadonly, sqlite3.ErrPerm:
			return fmt.Errorf("%w: %s: %s: %v", ErrReadOnly, s.path, op, err)
		}
	}
	return fmt.Errorf("db: %s: %w", op, err)
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations, numbered from 1 by the
// prefix of their file names, with no gaps; read once.
var migrations = sync.OnceValue(loadMigrations)

func loadMigrations() []migration {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		panic("db: embedded migrations: " + err.Error())
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("db: migration without a number: " + e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic("db: embedded migration: " + err.Error())
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			panic("db: migrations are not numbered 1, 2, ...: " + m.name)
		}
	}
	return ms
}

// migrate applies the migrations after version, each in its own
// transaction with the version it reaches.
func (s *Store) migrate(version int) error {
	for _, m := range migrations()[version:] {
		tx, err := s.wdb.Begin()
		if err != nil {
			return s.classify("migrate", err)
		}
		_, err = tx.Exec(m.sql)
		if err == nil {
			_, err = tx.Exec(fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", applicationID, m.version))
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			return s.classify("migrate to "+m.name, err)
		}
	}
	return nil
}

// incrementalVacuum turns incremental auto-vacuum on for a store made
// before it was (a new file has it from its DSN). The mode takes effect
// only through a VACUUM, which cannot run in a transaction: so it is not
// a migration, and the mode itself says whether it is done. VACUUM is
// atomic: a crash in it leaves the file as it was, and the next Open
// runs it again. On a full disk (VACUUM needs room for a copy) the store
// opens without it and the next Open tries again.
func (s *Store) incrementalVacuum() error {
	var mode int
	if err := s.wdb.QueryRow("PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return s.classify("read auto_vacuum", err)
	}
	if mode == autoVacuumIncremental {
		return nil
	}
	// VACUUM's copy of the whole file goes to a temporary file, not to
	// memory (the size of the history).
	_, err := s.wdb.Exec("PRAGMA temp_store = DEFAULT; PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
	if _, err := s.wdb.Exec("PRAGMA temp_store = MEMORY"); err != nil {
		return s.classify("temp_store", err)
	}
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrFull {
		return nil
	}
	return s.classify("vacuum", err)
}

const autoVacuumIncremental = 2

// Reclaim returns the free pages of the database to the file system
// (PRAGMA incremental_vacuum, on the writer) and checkpoints, so that
// the file shrinks at once; it reports by how many bytes. Deleting rows
// frees pages inside the file (secure_delete zeroes them) without
// shrinking it: call Reclaim after deleting much, as clearing contact
// requests does. On an unsealed store it first merges the full-text
// index: FTS4 deletes a message by adding a tombstone, and its words
// stay in the older segments until a merge.
func (s *Store) Reclaim() (freedBytes int64, err error) {
	err = s.exclusiveJob(func() error {
		if s.sealer.Load() == nil {
			if _, err := s.wdb.Exec("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')"); err != nil {
				return s.classify("reclaim: merge the full-text index", err)
			}
		}
		var pageSize, before, after int64
		if err := s.wdb.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
			return s.classify("reclaim", err)
		}
		if err := s.wdb.QueryRow("PRAGMA freelist_count").Scan(&before); err != nil {
			return s.classify("reclaim", err)
		}
		// One row per page freed: a statement stepped once (Exec) frees
		// one page.
		rows, err := s.wdb.Query("PRAGMA incremental_vacuum")
		if err != nil {
			return s.classify("reclaim", err)
		}
		for rows.Next() {
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.classify("reclaim", err)
		}
		if err := s.wdb.QueryRow("PRAGMA freelist_count").Scan(&after); err != nil {
			return s.classify("reclaim", err)
		}
		freedBytes = (before - after) * pageSize
		// The file shrinks when the checkpoint reaches it; a running
		// read would hold the checkpoint back.
		s.sealMu.Lock()
		defer s.sealMu.Unlock()
		return s.checkpoint()
	})
	return freedBytes, err
}

// Close closes the store and releases the data directory, once the
// running transactions and reads have ended. It is idempotent.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stopping)
	<-s.stopped
	s.sealMu.Lock() // waits for running Views
	defer s.sealMu.Unlock()
	return s.closeAll()
}

func (s *Store) closeAll() error {
	var errs []error
	for _, d := range []*sql.DB{s.reader, s.wdb} {
		if d != nil {
			errs = append(errs, d.Close())
		}
	}
	if sl := s.sealer.Swap(nil); sl != nil {
		sl.wipe()
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// SecretsSealed reports whether secrets and message text are sealed with
// a passphrase; when not, anyone who can read the file can read the keys
// and the history.
func (s *Store) SecretsSealed() bool { return s.sealer.Load() != nil }

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
