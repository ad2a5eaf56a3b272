-- A pending key change is part of the contact, not only an event: the
-- user's "trust" must know whether there is anything to trust, and a
-- client must be able to show it without replaying the event log.
ALTER TABLE contacts ADD COLUMN key_changed INTEGER NOT NULL DEFAULT 0 CHECK (key_changed IN (0, 1));

-- Names are unique (a name must resolve to one peer). Earlier versions
-- allowed duplicates: the later ones get their peer ID added, and a name
-- that still collides with another (only a name chosen to look like
-- that) is cleared, so that the index below can always be made: a
-- migration that fails would keep the store from opening at all.
UPDATE contacts SET name = name || ' ' || peer_id
WHERE name != '' AND rowid NOT IN (SELECT min(rowid) FROM contacts WHERE name != '' GROUP BY name);
UPDATE contacts SET name = ''
WHERE name != '' AND rowid NOT IN (SELECT min(rowid) FROM contacts WHERE name != '' GROUP BY name);
CREATE UNIQUE INDEX contacts_name ON contacts (name) WHERE name != '';
