-- 0007: the journal of calls to Cursor that create an agent or a run, moved
-- here from files under <data-dir>/cloud so it shares the database's
-- transactions, durability and backups. A row is written before the call is
-- made and completed with its result; a runner that died in between lets the
-- next find what the call created (by the session's branch name) instead of
-- creating it twice. The row goes once the run is recorded on its message.
CREATE TABLE upstream_calls (
	session_id TEXT NOT NULL,
	message_id TEXT NOT NULL,
	started_at INTEGER NOT NULL,
	agent_id   TEXT, -- NULL until the call's result is known
	run_id     TEXT,
	PRIMARY KEY (session_id, message_id)
);
