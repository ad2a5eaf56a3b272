-- Content kinds beyond text (docs/content.md): edits, deletions for
-- everyone, replies, reactions, disappearing messages, read receipts
-- and display names.

-- edited: the sender's clock at its latest edit (an older edit that
-- arrives late loses); deleted: when it was deleted for everyone (the
-- row stays as a tombstone with no text); reply_to: the message it
-- quotes; timer: its disappearing timer in seconds, which starts at
-- expires (the sender's from delivery, the reader's from reading). An
-- outgoing message the peer read has state 'read'.
ALTER TABLE messages ADD COLUMN edited INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER;
ALTER TABLE messages ADD COLUMN reply_to BLOB CHECK (reply_to IS NULL OR length(reply_to) = 16);
ALTER TABLE messages ADD COLUMN timer INTEGER NOT NULL DEFAULT 0 CHECK (timer >= 0);
ALTER TABLE messages ADD COLUMN expires INTEGER;
CREATE INDEX messages_expires ON messages (expires) WHERE expires IS NOT NULL;

-- One reaction per person per message; reactor '' is this node's user.
-- The emoji is kept in clear even in a sealed store, like contacts'
-- names (docs/content.md says why).
CREATE TABLE reactions (
	message_id BLOB    NOT NULL,
	reactor    TEXT    NOT NULL,
	emoji      TEXT    NOT NULL,
	time       INTEGER NOT NULL,
	PRIMARY KEY (message_id, reactor)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER reactions_message_delete AFTER DELETE ON messages BEGIN
	DELETE FROM reactions WHERE message_id = old.id;
END;

-- profile_name: the name the peer gave itself (a local name, in name,
-- wins over it); profile_sent: the name of ours it was last sent (a
-- message carries ours while they differ); timer: the conversation's
-- disappearing timer in seconds, 0 for none.
ALTER TABLE contacts ADD COLUMN profile_name TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN profile_sent TEXT NOT NULL DEFAULT '';
ALTER TABLE contacts ADD COLUMN timer INTEGER NOT NULL DEFAULT 0 CHECK (timer >= 0);

-- lasting: a control message that, like a message, stays queued until
-- the recipient's receipt when a mailbox stored it (edits, deletions,
-- reactions, profiles, timers), where a receipt or a grant ends at the
-- mailbox's store.
ALTER TABLE outbox ADD COLUMN lasting INTEGER NOT NULL DEFAULT 0 CHECK (lasting IN (0, 1));
