-- Deep pages of the activity log are placed by an exact count that keeps the id of
-- every 1,000th match (see docs/performance.md, "The activity log's pages by number,
-- at any depth"). That count walks a view's matches in id order, as does every page.
-- `kind = 'auth'` had only the dashboard's partial index, in the order of its columns
-- (message, time, address): SQLite sorted every authentication event for each page,
-- or walked the whole table for the count (1.5 s at ten million entries). This one
-- holds their ids, in order: one entry in twenty of the log. (The window's index needs
-- no counterpart of PostgreSQL's `activity_logs_created_id`: every SQLite index
-- already ends in the rowid, which is the id.)
CREATE INDEX activity_logs_auth_id ON activity_logs (id) WHERE kind = 'auth';
