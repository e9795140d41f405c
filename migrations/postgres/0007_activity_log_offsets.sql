-- Nothing to add on PostgreSQL: the primary key's index is already separate from the
-- table and serves the offset step of `GET /logs?page=N` as an index-only scan. The
-- file keeps the two migration sequences numbered alike.
SELECT 1;
