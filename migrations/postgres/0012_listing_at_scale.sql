-- The activity log filtered by a user's email (`GET /logs?user=<email>`, the log page's
-- user field) matched lower(user_email) against every entry: a scan of the whole log,
-- seconds at ten million entries. This index makes it a range scan in id order, so a
-- page of one user's entries, newest first, reads that page and stops. The other
-- listing paths already had theirs: the primary key (pages, keyset, totals), (user_id,
-- id) and (level, id) for those filters, created_at for time windows, and the users'
-- lower(username), lower(email) and name indexes for the user list's keyset pages and
-- prefix search. See docs/performance.md for the query plans.
CREATE INDEX activity_logs_email ON activity_logs (lower(user_email), id);
