// Package db is the SQLite store of a p2pmsg node: identity, prekeys,
// replay records, contacts, sessions, the outbox, message history and the
// event log, in one file (docs/design.md §7.4 has the tables). It stores
// rows and opaque blobs; it knows nothing of the cryptography that makes
// them.
//
// # Guarantees
//
//   - Durability: WAL with synchronous=FULL, so a transaction that Update
//     reported committed survives a crash or power cut, and one that did
//     not is wholly absent (checked by killing a writer with SIGKILL).
//   - One writer: the data directory is locked (flock) by the process that
//     opened it, and one goroutine writes, through one connection; reads
//     use their own connections and see consistent snapshots beside it.
//   - Group commit: concurrent Update calls share commits, up to MaxGroup
//     at a time, each in its own savepoint, so one failure (or panic)
//     undoes only its own call.
//   - Secrets at rest: with a passphrase, the identity's secret, the
//     prekeys' private halves and the session blobs are sealed with
//     XChaCha20-Poly1305 under an Argon2id key (parameters and salt kept in
//     the file). Without one the store works and SecretsSealed says so.
//   - Bad files: Open identifies the file through a read-only connection
//     and never writes to one it has not recognised as ours
//     (application_id); it refuses a newer schema, a damaged file
//     (quick_check), a sealed store without the right passphrase, and a
//     directory it cannot write, each with its own error.
//   - Message states only move forward (queued, sent, delivered or
//     failed; received, read), and only the peer a message went to can
//     acknowledge it.
//
// # Files
//
// The data directory (mode 0700; Open refuses one that other users can
// read or write, with ErrDirOpen) holds p2pmsg.db (0600) with its -wal and
// -shm files, and p2pmsg.lock. To back it up, stop the node and copy the
// directory, or use SQLite's online backup (sqlite3 p2pmsg.db ".backup
// copy.db") while it runs.
//
// The schema is in migrations/, applied in order and recorded in
// PRAGMA user_version.
package db
