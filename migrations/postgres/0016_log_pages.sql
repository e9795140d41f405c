-- Deep pages of the activity log are placed by an exact count that keeps the id of
-- every 1,000th match (see docs/performance.md, "The activity log's pages by number,
-- at any depth"). That count walks a view's matches in id order, as does every page.
--
-- A time window (`since`, `until`) is first narrowed to the lowest and highest id it
-- holds. With `created_at` alone in the index each of the window's entries costs a
-- visit to the table for its id (or PostgreSQL walks the primary key from either end
-- until it meets the window); with the id in the index it is an index-only scan of the
-- window's range. The new index serves everything the old one did (retention's
-- `created_at < cutoff`, the earliest time, the capped count of a window), so the old
-- one goes.
CREATE INDEX activity_logs_created_id ON activity_logs (created_at, id);
DROP INDEX activity_logs_created;

-- `kind = 'auth'` had only the dashboard's partial index, in the order of its columns
-- (message, time, address): walking the authentication events in id order meant
-- reading the whole table through the primary key (1.9 s for the count at ten million
-- entries). This one holds their ids, in order: one entry in twenty of the log.
CREATE INDEX activity_logs_auth_id ON activity_logs (id) WHERE kind = 'auth';
