-- The check value of the master key the database was first used with, so a
-- process started with another key refuses to start instead of failing
-- every sealed secret later.
CREATE TABLE master_key_check (
  id    INTEGER PRIMARY KEY CHECK (id = 1),
  value BLOB NOT NULL
);
