-- 0010: a session's events stored as blocks of consecutive events, a row
-- each (store/eventblocks.go), instead of a row per event: reading a page
-- of 200 cost 200 rows of seven columns, and SQLite's per-column calls
-- were most of a page's time. A block's body is written and read only by
-- flapjack; the events of the old table are packed into blocks by the Go
-- step of this migration (packEvents), which then drops it. Event ids and
-- seqs are kept as they were.
CREATE TABLE event_blocks (
	session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	first_seq  INTEGER NOT NULL,
	last_seq   INTEGER NOT NULL,
	body       BLOB NOT NULL
);
-- A rowid table: the bodies stay out of the index's interior pages.
CREATE UNIQUE INDEX event_blocks_seq ON event_blocks(session_id, last_seq);
