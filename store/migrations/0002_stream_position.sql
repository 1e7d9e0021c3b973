-- Where the active run's upstream event stream was read up to (Cursor's last
-- SSE event id), written with the events it covers so a resume is exact.
ALTER TABLE sessions ADD COLUMN stream_position TEXT NOT NULL DEFAULT '';
