-- Offline delivery through mailboxes (docs/mailbox.md).

-- The outbox carries control messages too (receipts, mailbox grants):
-- they have no row in messages, so the foreign key goes, and a trigger
-- does what its cascade did. The rows keep their rowids: rowid is the
-- order of queueing (OutboxAfter). mailboxed: when a mailbox stored the
-- envelope (it stays queued here until the recipient's receipt, or a
-- direct ack, ends it); a control row ends at that store.
CREATE TABLE outbox_v7 (
	message_id   BLOB    PRIMARY KEY,
	peer_id      TEXT    NOT NULL,
	envelope     BLOB    NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL,
	last_error   TEXT    NOT NULL DEFAULT '',
	created      INTEGER NOT NULL,
	held         INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),
	control      INTEGER NOT NULL DEFAULT 0 CHECK (control IN (0, 1)),
	mailboxed    INTEGER,
	rekeyed      INTEGER NOT NULL DEFAULT 0 -- times encrypted again under a new session (Tx.Rekey)
) STRICT;
INSERT INTO outbox_v7 (rowid, message_id, peer_id, envelope, attempts, next_attempt, last_error, created, held)
	SELECT rowid, message_id, peer_id, envelope, attempts, next_attempt, last_error, created, held FROM outbox ORDER BY rowid;
DROP TABLE outbox;
ALTER TABLE outbox_v7 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (next_attempt);
CREATE INDEX outbox_peer ON outbox (peer_id, created);
CREATE INDEX outbox_held ON outbox (peer_id) WHERE held = 1;
CREATE TRIGGER outbox_message_delete AFTER DELETE ON messages BEGIN
	DELETE FROM outbox WHERE message_id = old.id;
END;

-- A message a mailbox stored shows as "mailboxed" until it is delivered
-- (a column, not a state: the state's CHECK could change only by
-- rebuilding messages, which the search index and every history read
-- depend on).
ALTER TABLE messages ADD COLUMN mailboxed INTEGER;

-- The mailboxes this node is an owner at (at most 3, each a slot of the
-- bundle's extension). token_key (sealed when a passphrase is set) makes
-- the tokens granted to contacts; contacts' token indexes are their
-- rowids in contacts.
CREATE TABLE mailboxes (
	peer_id   TEXT    PRIMARY KEY,
	addrs     BLOB    NOT NULL, -- multiaddrs, each a uvarint length and its bytes
	inbox     BLOB    NOT NULL CHECK (length(inbox) = 16),
	token_key BLOB    NOT NULL,
	added     INTEGER NOT NULL,
	updated   INTEGER NOT NULL
) STRICT;

-- Tokens our contacts granted us for their mailboxes (token sealed when a
-- passphrase is set).
CREATE TABLE mailbox_grants (
	peer_id  TEXT    NOT NULL REFERENCES contacts (peer_id) ON DELETE CASCADE,
	mailbox  TEXT    NOT NULL,
	inbox    BLOB    NOT NULL CHECK (length(inbox) = 16),
	idx      INTEGER NOT NULL,
	token    BLOB    NOT NULL,
	received INTEGER NOT NULL,
	PRIMARY KEY (peer_id, mailbox)
) STRICT;

-- Incoming messages deleted with their contact (a request cleared, a
-- contact removed): a copy that comes again, from a sender that never
-- heard our receipt, is acknowledged and not stored a second time. Only
-- the random ids, kept 30 days.
CREATE TABLE gone_messages (
	id      BLOB    PRIMARY KEY CHECK (length(id) = 16),
	deleted INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
