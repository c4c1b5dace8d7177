-- Several nodes on one database: each node's registration and heartbeat,
-- and which node hosts each consultation's call. Times are the database's
-- clock, in milliseconds since 1970, so that nodes whose clocks differ
-- still agree on who is alive.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    -- A random token per process: a second process started with the same
    -- node id while the first is alive is refused.
    instance      TEXT NOT NULL,
    -- Where other nodes reach this one's HTTP (signaling), and the media
    -- address(es) it announces, for admins.
    url           TEXT NOT NULL,
    media         TEXT NOT NULL,
    draining      INTEGER NOT NULL DEFAULT 0,
    rooms         INTEGER NOT NULL DEFAULT 0,
    participants  INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);
-- One owner per call. `epoch` grows by one each time the call is placed
-- again (its node died or gave it up): a node serves a call only while the
-- row names it with the epoch it was given.
CREATE TABLE room_placements (
    consultation_id  TEXT PRIMARY KEY REFERENCES consultations(id),
    node_id          TEXT NOT NULL,
    epoch            INTEGER NOT NULL,
    placed_at        INTEGER NOT NULL,
    -- 1 once its node gave it up (drained, or stopped cleanly): the next
    -- join places it again at once.
    released         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX room_placements_node ON room_placements (node_id);
-- Login failures, shared by every node so that the lockout holds whichever
-- node the attempts hit (PostgreSQL; one SQLite node counts in memory).
-- `key` is a SHA-256 of "u:<username>" or "a:<client address>".
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    count         INTEGER NOT NULL,
    first_at      INTEGER NOT NULL,
    locked_until  INTEGER
);
CREATE INDEX login_failures_first_at ON login_failures (first_at);
-- Jobs that must run on one node at a time (the no-show check): the node
-- named holds the job until `until` (database clock, ms), renewing it
-- each time it runs; another node takes it over once it lapses.
CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    node   TEXT NOT NULL,
    until  INTEGER NOT NULL
);
