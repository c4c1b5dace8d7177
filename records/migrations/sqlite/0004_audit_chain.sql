-- Each audit entry carries the hash of the one before it and its own hash
-- over both (records/src/audit.rs): an entry edited, removed or slipped in
-- by whoever holds the database breaks the chain from there on. Entries
-- written before this migration stay unchained (prev_hash NULL).
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

-- The chain's head: the newest entry's hash and how many chained entries
-- there are. Every audit write updates it, one at a time.
CREATE TABLE audit_chain (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    hash     TEXT NOT NULL,
    entries  BIGINT NOT NULL
);
INSERT INTO audit_chain (id, hash, entries)
VALUES (1, '0000000000000000000000000000000000000000000000000000000000000000', 0);
