-- 0004: the status webhook outbox, the receivers that said 410 Gone, and
-- the installation's webhook signing secrets.

-- One row per status event of a session that had a webhook URL, inserted in
-- the transaction of that event, so no status change is ever without its
-- delivery. id is the webhook-id, the same on every attempt; payload is the
-- exact body that is signed and sent.
CREATE TABLE webhook_deliveries (
	id              TEXT PRIMARY KEY,
	session_id      TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	seq             INTEGER NOT NULL, -- the status event's seq
	url             TEXT NOT NULL,
	payload         TEXT NOT NULL,
	state           TEXT NOT NULL, -- pending, delivered, failed, cancelled, stopped
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	last_attempt_at INTEGER,
	last_status     INTEGER, -- HTTP status of the last attempt, NULL when none came
	last_error      TEXT,
	created_at      INTEGER NOT NULL,
	UNIQUE (session_id, seq)
);
-- Partial indexes: only pending rows are ever looked for, and delivered
-- ones (nearly all of them) cost these indexes nothing.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(session_id, url) WHERE state = 'pending';

-- A session's webhook URL whose receiver answered 410 Gone: nothing more is
-- queued to it. Changing or clearing the URL removes the row.
CREATE TABLE webhook_stops (
	session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	url        TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (session_id, url)
) WITHOUT ROWID;

-- Signing secrets, sealed by the master key. The current one has no
-- retired_at; a rotated-out one still signs for 24 hours after it.
CREATE TABLE webhook_secrets (
	id         TEXT PRIMARY KEY,
	ciphertext BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	retired_at INTEGER
);
