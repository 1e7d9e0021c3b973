-- 0003: API tokens for the REST server (flapjack serve), and unique org and
-- user names so the command line can take a name wherever it takes an id.

CREATE UNIQUE INDEX orgs_name ON orgs(name);
CREATE UNIQUE INDEX users_name ON users(name);

-- A token is never stored: only its SHA-256 (hash) and the first characters
-- of it (prefix), which are shown in lists and are far too few to use.
-- Revoked tokens stay, so lists can show them; lookups skip them.
CREATE TABLE tokens (
	id           TEXT PRIMARY KEY,
	user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	prefix       TEXT NOT NULL,
	hash         BLOB NOT NULL UNIQUE,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	revoked_at   INTEGER
);
CREATE INDEX tokens_user ON tokens(user_id);
