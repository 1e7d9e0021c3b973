-- 0008: when an archive of the session began upstream (Cursor's agent is
-- archived before the session is), NULL otherwise. While it is recent a
-- follow-up is refused, so none can land between the upstream archive and
-- the session's; a crashed archiver's mark lapses (core.ArchiveLease).
ALTER TABLE sessions ADD COLUMN archiving_at INTEGER;
