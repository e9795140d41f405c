-- Prefix search of the user list: lower(username) and lower(email) are indexed by
-- their unique indexes already.
CREATE INDEX users_first_name_search ON users (lower(first_name));
CREATE INDEX users_last_name_search ON users (lower(last_name));
