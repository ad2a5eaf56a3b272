-- A message the recipient refused until its user accepts us (it keeps
-- one message of a stranger) is held at the sender: not sent again
-- while held, except as a probe once next_attempt passes, and released
-- (held = 0, due at once) when the recipient shows it accepted.
ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));
-- The first held row of a peer, which nothing passes, read at every
-- send: held rows are few, and most peers have none.
CREATE INDEX outbox_held ON outbox (peer_id) WHERE held = 1; -- rowid is its last key
