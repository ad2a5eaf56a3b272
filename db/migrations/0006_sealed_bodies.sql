-- Message bodies and the search index sealed with the passphrase
-- (docs/db-decisions.md 12 to 16). A store sealed before this version
-- (sealing version 1: secrets under the passphrase key, bodies in clear)
-- is upgraded by Open, in Go, once it has the passphrase.

-- Version 2: a random store key, sealed under the passphrase key in
-- store_key, seals secrets and bodies; changing the passphrase rewrites
-- this row only.
ALTER TABLE sealing ADD COLUMN version INTEGER NOT NULL DEFAULT 1 CHECK (version IN (1, 2));
ALTER TABLE sealing ADD COLUMN store_key BLOB CHECK ((store_key IS NULL) = (version = 1));

-- In a sealed store body is '' and body_sealed holds the body sealed
-- under the store key, with the message id as AD; in an unsealed store
-- body_sealed is NULL. A column of its own rather than a rebuilt table:
-- adding one is instant on any size of history, and reads that need no
-- body (states, unread counts) never load it, as it comes last.
-- (No trigger refuses a clear body in a sealed store: a trigger on
-- INSERT makes SQLite keep a statement journal for every insert, seven
-- times the bytes written. Tx.InsertMessage is the one writer of bodies.)
ALTER TABLE messages ADD COLUMN body_sealed BLOB CHECK (body_sealed IS NULL OR body = '');

-- The word index of a sealed store, in place of FTS4: one row per
-- distinct word of a message (the first 256), the word as the first 47
-- bits of HMAC-SHA256 under a key derived from the store key. Written at
-- the end of each transaction that inserts messages, like the FTS4 index
-- (fts_state.indexed is the highest seq in whichever index the store
-- uses); deleted with its message by the trigger. The seq index serves
-- that trigger.
CREATE TABLE message_words (
	word INTEGER NOT NULL,
	seq  INTEGER NOT NULL,
	PRIMARY KEY (word, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_words_seq ON message_words (seq);
CREATE TRIGGER message_words_delete AFTER DELETE ON messages
WHEN old.body_sealed IS NOT NULL BEGIN
	DELETE FROM message_words WHERE seq = old.seq;
END;

-- FTS4 indexes clear bodies only: a sealed row has none, and FTS4 would
-- count a deletion it never indexed.
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update_before;
DROP TRIGGER messages_fts_update_after;
CREATE TRIGGER messages_fts_delete BEFORE DELETE ON messages
WHEN old.body_sealed IS NULL AND old.seq <= (SELECT indexed FROM fts_state) BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_before BEFORE UPDATE OF body ON messages
WHEN old.body_sealed IS NULL AND old.seq <= (SELECT indexed FROM fts_state) BEGIN
	DELETE FROM messages_fts WHERE docid = old.seq;
END;
CREATE TRIGGER messages_fts_update_after AFTER UPDATE OF body ON messages
WHEN new.body_sealed IS NULL AND new.seq <= (SELECT indexed FROM fts_state) BEGIN
	INSERT INTO messages_fts (docid, body) VALUES (new.seq, new.body);
END;
