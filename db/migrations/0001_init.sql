-- p2pmsg store, schema 1. Times are unix milliseconds.

-- Sealing of secrets at rest: present only when a passphrase is set. The
-- key is Argon2id(passphrase, salt, time, memory, threads); check is a known
-- value sealed with it, so that a wrong passphrase is detected.
CREATE TABLE sealing (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	salt    BLOB    NOT NULL,
	time    INTEGER NOT NULL,
	memory  INTEGER NOT NULL,
	threads INTEGER NOT NULL,
	check_value BLOB NOT NULL
) STRICT;

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;

CREATE TABLE identity (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	public_key BLOB    NOT NULL,
	secret     BLOB    NOT NULL, -- sealed when a passphrase is set
	created    INTEGER NOT NULL
) STRICT;

CREATE TABLE prekeys (
	kind    TEXT    NOT NULL CHECK (kind IN ('signed', 'pq', 'one-time', 'pq-one-time')),
	id      INTEGER NOT NULL,
	public  BLOB    NOT NULL,
	secret  BLOB,             -- sealed when a passphrase is set; NULL once used
	created INTEGER NOT NULL,
	expires INTEGER,          -- signed and pq: when the private half may be deleted
	issued  INTEGER,          -- one-time: when it was handed out
	used    INTEGER,          -- one-time: when a handshake consumed it
	PRIMARY KEY (kind, id)
) STRICT;
CREATE INDEX prekeys_unissued ON prekeys (kind, id) WHERE issued IS NULL;

-- Initial messages already accepted: replay protection (e2e.ReplayKey).
CREATE TABLE seen_prekey_messages (
	replay_key BLOB    PRIMARY KEY,
	expires    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE contacts (
	peer_id      TEXT    PRIMARY KEY,
	name         TEXT    NOT NULL DEFAULT '',
	identity_key BLOB,
	state        TEXT    NOT NULL DEFAULT 'request' CHECK (state IN ('request', 'accepted')),
	verified     INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
	blocked      INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
	created      INTEGER NOT NULL,
	updated      INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
	peer_id TEXT    PRIMARY KEY REFERENCES contacts (peer_id) ON DELETE CASCADE,
	blob    BLOB    NOT NULL, -- opaque, versioned by its writer; sealed when a passphrase is set
	updated INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
	seq       INTEGER PRIMARY KEY, -- insertion order; the rowid
	id        BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
	peer_id   TEXT    NOT NULL REFERENCES contacts (peer_id), -- no cascade: history outlives a careless delete
	direction TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
	body      TEXT    NOT NULL,
	state     TEXT    NOT NULL CHECK (state IN ('queued', 'sent', 'delivered', 'failed', 'received', 'read')),
	error     TEXT    NOT NULL DEFAULT '',
	sent      INTEGER NOT NULL,     -- as the sender's clock said
	received  INTEGER,              -- incoming: when it was stored
	time      INTEGER NOT NULL      -- the conversation's order: sent (out) or received (in)
) STRICT;
CREATE INDEX messages_conversation ON messages (peer_id, time, seq);
CREATE INDEX messages_unread ON messages (peer_id) WHERE state = 'received';

-- Full-text search (FTS4: the default build of mattn/go-sqlite3 has it,
-- FTS5 would need a build tag), kept in step by triggers. unicode61 folds
-- case beyond ASCII and drops diacritics.
CREATE VIRTUAL TABLE messages_fts USING fts4 (body, content="messages", tokenize=unicode61);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
	INSERT INTO messages_fts (docid, body) VALUES (new.seq, new.body);
END;
CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_before BEFORE UPDATE OF body ON messages BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_after AFTER UPDATE OF body ON messages BEGIN
	INSERT INTO messages_fts (docid, body) VALUES (new.seq, new.body);
END;

-- Envelopes waiting for an acknowledgement. The exact bytes are resent;
-- the message's state (queued, sent) is on its row in messages.
CREATE TABLE outbox (
	message_id   BLOB    PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
	peer_id      TEXT    NOT NULL,
	envelope     BLOB    NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT    NOT NULL DEFAULT '',
	created      INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt);
CREATE INDEX outbox_peer ON outbox (peer_id, created);

-- The event log that API clients resume from: ids are never reused.
CREATE TABLE events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	kind    TEXT    NOT NULL,
	payload BLOB    NOT NULL,
	time    INTEGER NOT NULL
) STRICT;
