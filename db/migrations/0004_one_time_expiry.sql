-- One-time prekeys issued and never used now expire 30 days after their
-- issue (the node sets expires when it issues one). Those issued before
-- this version have none: give them the same.
UPDATE prekeys SET expires = issued + 30 * 24 * 3600 * 1000
WHERE kind IN ('one-time', 'pq-one-time') AND issued IS NOT NULL AND used IS NULL AND expires IS NULL;
