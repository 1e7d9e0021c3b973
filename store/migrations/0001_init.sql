-- 0001: the initial schema. Times are INTEGER unix milliseconds, UTC.

-- meta holds single values of the data directory, such as the owner's ids.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE orgs (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL
);

CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL
);

CREATE TABLE org_members (
	org_id  TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	PRIMARY KEY (org_id, user_id)
) WITHOUT ROWID;
CREATE INDEX org_members_user ON org_members(user_id, org_id);

CREATE TABLE code_agents (
	id                     TEXT PRIMARY KEY,
	org_id                 TEXT NOT NULL REFERENCES orgs(id),
	name                   TEXT NOT NULL,
	description            TEXT NOT NULL,
	model_id               TEXT NOT NULL,
	model_params           TEXT, -- JSON object, NULL when unset
	default_repo_url       TEXT,
	default_starting_ref   TEXT NOT NULL,
	auto_create_pr         INTEGER NOT NULL,
	work_on_current_branch INTEGER NOT NULL,
	skip_reviewer_request  INTEGER NOT NULL,
	preamble               TEXT NOT NULL,
	runtime                TEXT NOT NULL,
	created_by             TEXT NOT NULL,
	created_at             INTEGER NOT NULL,
	updated_at             INTEGER NOT NULL
);
CREATE INDEX code_agents_created ON code_agents(created_at, id);
CREATE INDEX code_agents_org_created ON code_agents(org_id, created_at, id);

-- code_agent_id is deliberately not a foreign key: a session snapshots its
-- template's settings and outlives the template's edits and deletion.
CREATE TABLE sessions (
	id                     TEXT PRIMARY KEY,
	org_id                 TEXT NOT NULL REFERENCES orgs(id),
	code_agent_id          TEXT NOT NULL,
	cursor_agent_id        TEXT,
	repo_url               TEXT NOT NULL,
	starting_ref           TEXT NOT NULL,
	status                 TEXT NOT NULL,
	latest_run_id          TEXT,
	pr_url                 TEXT,
	pr_branch              TEXT,
	error                  TEXT,
	archived               INTEGER NOT NULL DEFAULT 0,
	webhook_url            TEXT,
	model_id               TEXT NOT NULL,
	model_params           TEXT, -- JSON object, NULL when unset
	auto_create_pr         INTEGER NOT NULL,
	work_on_current_branch INTEGER NOT NULL,
	skip_reviewer_request  INTEGER NOT NULL,
	runtime                TEXT NOT NULL,
	preamble               TEXT NOT NULL,
	cursor_key_ciphertext  BLOB,
	run_handle             TEXT NOT NULL DEFAULT '',
	version                INTEGER NOT NULL DEFAULT 0,
	last_event_seq         INTEGER NOT NULL DEFAULT 0,
	last_event_at          INTEGER,
	created_by             TEXT NOT NULL,
	created_at             INTEGER NOT NULL,
	started_at             INTEGER,
	completed_at           INTEGER
);
CREATE INDEX sessions_created ON sessions(created_at, id);
CREATE INDEX sessions_org_created ON sessions(org_id, created_at, id);
CREATE INDEX sessions_agent ON sessions(code_agent_id, created_at, id);
CREATE INDEX sessions_status ON sessions(status);
-- Lets HasCiphertext answer without a table scan; holds ids only, never the secret.
CREATE INDEX sessions_sealed ON sessions(id) WHERE cursor_key_ciphertext IS NOT NULL;

-- ordinal is the send order within the session, starting at 1.
CREATE TABLE messages (
	id            TEXT PRIMARY KEY,
	session_id    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	ordinal       INTEGER NOT NULL,
	cursor_run_id TEXT,
	role          TEXT NOT NULL,
	prompt        TEXT NOT NULL,
	status        TEXT NOT NULL,
	result_text   TEXT,
	duration_ms   INTEGER,
	pr_url        TEXT,
	error         TEXT,
	started_at    INTEGER,
	completed_at  INTEGER,
	created_at    INTEGER NOT NULL,
	UNIQUE (session_id, ordinal)
);

-- The event log: clustered by (session_id, seq) so a keyset read is one range scan.
CREATE TABLE events (
	session_id    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	seq           INTEGER NOT NULL,
	id            TEXT NOT NULL UNIQUE,
	message_id    TEXT, -- no foreign key: a constraint check per append, and a scan per message delete
	cursor_run_id TEXT,
	event_type    TEXT NOT NULL,
	payload       TEXT NOT NULL, -- JSON
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_message ON events(session_id, message_id, seq);
