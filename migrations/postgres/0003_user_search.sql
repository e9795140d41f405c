-- Prefix search of the user list as range scans: byte order ("C") makes the range
-- [q, q || U+10FFFF) hold exactly the strings starting with q, whatever the
-- database's default collation.
CREATE INDEX users_username_search ON users ((lower(username) COLLATE "C"));
CREATE INDEX users_email_search ON users ((lower(email) COLLATE "C"));
CREATE INDEX users_first_name_search ON users ((lower(first_name) COLLATE "C"));
CREATE INDEX users_last_name_search ON users ((lower(last_name) COLLATE "C"));
