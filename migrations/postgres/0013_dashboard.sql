-- What the dashboard's figures read, each a range or a count of a small index.
--
-- Authentication events are a small share of the activity log (every request writes
-- an access entry). This partial index holds only them, ordered by message and time,
-- with the address: sign-ins and failed sign-ins per day over 30 days are one range
-- scan per message, and the top failing addresses are read from the index alone. The
-- kind is a column too, though always 'auth': without it SQLite reads every row to
-- check it instead of answering from the index.
-- Queries that want it name `kind = 'auth'` as a literal, which both SQLite and
-- PostgreSQL need to choose a partial index.
CREATE INDEX activity_logs_auth ON activity_logs (message, created_at, client_ip, kind)
    WHERE kind = 'auth';
-- New accounts per day: a range of this index.
CREATE INDEX users_created ON users (created_at);
-- Accounts with two-factor on: a count of this index's entries only.
CREATE INDEX users_twofa ON users (id) WHERE twofa_enabled = 1;
-- Live sessions: those not revoked and used recently, a range of this index.
CREATE INDEX sessions_live ON sessions (last_seen_at) WHERE revoked_at IS NULL;
