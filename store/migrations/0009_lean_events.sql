-- 0009: events without their two secondary indexes, which held 39 % of the
-- file (the UNIQUE(id) autoindex; nothing looks an event up by id) and cost
-- two more B-tree writes per event. A message's events are now found by the
-- seq range its first and last event bound, on the primary key. Event ids
-- are copied unchanged; new events store none (NULL): theirs is derived
-- from the session and seq (core.EventID).
ALTER TABLE messages ADD COLUMN first_event_seq INTEGER;
ALTER TABLE messages ADD COLUMN last_event_seq INTEGER;
UPDATE messages SET
	first_event_seq = (SELECT MIN(seq) FROM events WHERE events.session_id = messages.session_id AND events.message_id = messages.id),
	last_event_seq  = (SELECT MAX(seq) FROM events WHERE events.session_id = messages.session_id AND events.message_id = messages.id);

CREATE TABLE events_lean (
	session_id    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
	seq           INTEGER NOT NULL,
	id            TEXT, -- NULL: derived (core.EventID)
	message_id    TEXT,
	cursor_run_id TEXT,
	event_type    TEXT NOT NULL,
	payload       TEXT NOT NULL, -- JSON
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
INSERT INTO events_lean (session_id, seq, id, message_id, cursor_run_id, event_type, payload, created_at)
	SELECT session_id, seq, id, message_id, cursor_run_id, event_type, payload, created_at FROM events ORDER BY session_id, seq;
DROP TABLE events;
ALTER TABLE events_lean RENAME TO events;
