-- Refresh tokens already rotated away, kept while their session can live:
-- one presented again means two holders of one session (one of them a thief),
-- and the whole session is revoked.
CREATE TABLE used_refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES auth_sessions(id),
    expires_at  TEXT NOT NULL
);
CREATE INDEX used_refresh_tokens_expiry ON used_refresh_tokens(expires_at);
