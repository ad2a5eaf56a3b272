-- A pending key change is part of the contact, not only an event: the
-- user's "trust" must know whether there is anything to trust, and a
-- client must be able to show it without replaying the event log.
ALTER TABLE contacts ADD COLUMN key_changed INTEGER NOT NULL DEFAULT 0 CHECK (key_changed IN (0, 1));

-- Names are unique (a name must resolve to one peer). Earlier versions
-- allowed duplicates: the later ones get the end of their peer ID added.
UPDATE contacts SET name = name || ' ' || substr(peer_id, -6)
WHERE name != '' AND rowid NOT IN (SELECT min(rowid) FROM contacts WHERE name != '' GROUP BY name);
CREATE UNIQUE INDEX contacts_name ON contacts (name) WHERE name != '';
