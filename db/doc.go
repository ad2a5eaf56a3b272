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
//   - At rest: with a passphrase, secrets and message text are sealed
//     and never reach the files in clear (see Sealing). Without one the
//     store works and SecretsSealed says so.
//   - Bad files: Open identifies the file through a read-only connection
//     and never writes to one it has not recognised as ours
//     (application_id); it refuses a newer schema, a damaged file
//     (quick_check), a sealed store without the right passphrase, and a
//     directory it cannot write, each with its own error.
//   - Message states only move forward (queued, sent, delivered or
//     failed; received, read), and only the peer a message went to can
//     acknowledge it.
//
// # Sealing
//
// With a passphrase, a random 32-byte store key seals values with
// XChaCha20-Poly1305 (through a key derived from it with HKDF-SHA256),
// each with an AD that names its row, so that no sealed value opens in
// another row. The store key itself is sealed in the sealing row under a
// key that Argon2id derives from the passphrase (salt and costs in the
// row). Sealed:
//
//   - the identity's secret, the prekeys' private halves, the session
//     blobs;
//   - the text of every message (messages.body is empty, body_sealed
//     holds it sealed, bound to the message id);
//   - the search index: instead of SQLite's FTS4, whose index holds the
//     words in clear, a table of (the first 47 bits of HMAC-SHA256 of
//     each word under a key derived from the store key, message seq),
//     for the first 256 distinct words of each message.
//
// Not sealed, readable by anyone with the file and not the passphrase:
// the contacts (peer IDs, names, identity keys, states, verified,
// blocked, pending key changes); of each message its id, peer,
// direction, state, failure reason, times and size (a sealed text is 41
// bytes longer than the text); the event log (kinds, peer IDs, message
// ids, states, reasons, paths, times: no text); the outbox (end-to-end
// encrypted envelopes, attempts, errors); the public keys and prekey
// metadata; the settings (counters); and in the word index, how many
// distinct words each message has (up to 256) and which messages share a
// word, and how often each (unknown) word occurs. Without a passphrase
// nothing is sealed.
//
// Search on a sealed store finds what FTS4 finds (the same tokenizer,
// unicode61, case and diacritics folded; whole words; phrases; prefixes)
// except words beyond a message's first 256 distinct ones; a query of
// prefixes alone reads every message, newest first, until it has enough.
//
// ChangePassphrase between two passphrases rewrites the sealing row
// only. Setting a passphrase on an unsealed store, removing it, and
// RotateStoreKey rewrite every secret, body and index row in one
// transaction; Open upgrades a store sealed before bodies were (sealing
// version 1) the same way. After each, the WAL is checkpointed and
// truncated and secure_delete has zeroed the old rows, so the old values
// leave the files; a crash before that checkpoint leaves them until the
// next Open, which checkpoints first. Blocks that the file system or the
// flash controller keeps are beyond reach.
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
