-- Full-text indexing per transaction instead of per row: indexing a
-- group's new messages with one INSERT ... SELECT costs a fifth of what
-- the per-row trigger did (measured: 5.6 µs against 25 µs per message),
-- and it was half of a grouped receive. The writer runs it at the end of
-- every transaction that inserted messages, before COMMIT, so a committed
-- message is always indexed. fts_state.indexed is the highest seq indexed.
DROP TRIGGER messages_fts_insert;
CREATE TABLE fts_state (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	indexed INTEGER NOT NULL
) STRICT;
INSERT INTO fts_state (id, indexed) VALUES (1, (SELECT coalesce(max(seq), 0) FROM messages));

-- Changes to a row not yet indexed (possible only inside the transaction
-- that inserted it) must not touch the index.
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update_before;
DROP TRIGGER messages_fts_update_after;
CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages
WHEN old.seq <= (SELECT indexed FROM fts_state) BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_before BEFORE UPDATE OF body ON messages
WHEN old.seq <= (SELECT indexed FROM fts_state) BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_after AFTER UPDATE OF body ON messages
WHEN new.seq <= (SELECT indexed FROM fts_state) BEGIN
	INSERT INTO messages_fts (docid, body) VALUES (new.seq, new.body);
END;
