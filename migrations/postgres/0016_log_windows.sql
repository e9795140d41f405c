-- A time window of the activity log (`since`, `until`) is counted exactly for its deep
-- pages (see docs/performance.md, "The activity log's pages by number"), and that count
-- first reads the lowest and highest id the window holds. With `created_at` alone in
-- the index each of the window's entries costs a visit to the table for its id (or
-- PostgreSQL walks the primary key from either end until it meets the window); with
-- the id in the index it is an index-only scan of the window's range. The new index
-- serves everything the old one did (retention's `created_at < cutoff`, the earliest
-- time, the capped count of a window), so the old one goes and the log's writes keep
-- the same number of indexes. SQLite needs no counterpart: every SQLite index already
-- ends in the rowid, which is the id.
CREATE INDEX activity_logs_created_id ON activity_logs (created_at, id);
DROP INDEX activity_logs_created;
