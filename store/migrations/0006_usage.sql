-- What agents report about tokens, cost and duration: per message, and
-- summed per session (JSON objects of core.Usage; NULL when unknown).
ALTER TABLE messages ADD COLUMN usage TEXT;
ALTER TABLE sessions ADD COLUMN usage TEXT;
