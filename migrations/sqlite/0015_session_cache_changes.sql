-- Every instance keeps resolved sessions in memory (src/auth/cache.rs). On SQLite,
-- where there is no LISTEN/NOTIFY, these triggers append to `cache_changes` the user
-- whose sessions a change may concern (NULL: a role or permission changed, which may
-- concern anyone). A trigger's row belongs to the changing transaction, so it is there
-- exactly when the change commits, whatever connection or process (the service, the
-- command line, an operator's SQL) made it. Each instance reads the rows after the
-- last it read whenever SQLite's WAL index says something was committed (src/db/changes.rs).
--
-- A change to a user without any session concerns no cached entry, so it is not
-- recorded: accounts made in bulk (an import, `generate-data`) add no rows.

CREATE TABLE cache_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER
);

CREATE TRIGGER users_cache_update AFTER UPDATE ON users
    WHEN EXISTS (SELECT 1 FROM sessions WHERE user_id = NEW.id)
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NEW.id);
END;
CREATE TRIGGER users_cache_delete AFTER DELETE ON users
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (OLD.id);
END;

-- The once-a-minute idle bookkeeping (last_seen_at moving forward) changes nothing a
-- cached session relies on beyond what the instance that wrote it already knows.
CREATE TRIGGER sessions_cache_update AFTER UPDATE ON sessions
    WHEN OLD.user_id IS NOT NEW.user_id OR OLD.csrf_token IS NOT NEW.csrf_token
        OR OLD.created_at IS NOT NEW.created_at OR OLD.expires_at IS NOT NEW.expires_at
        OR OLD.revoked_at IS NOT NEW.revoked_at OR NEW.last_seen_at < OLD.last_seen_at
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NEW.user_id);
END;
CREATE TRIGGER sessions_cache_delete AFTER DELETE ON sessions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (OLD.user_id);
END;

CREATE TRIGGER user_roles_cache_insert AFTER INSERT ON user_roles
    WHEN EXISTS (SELECT 1 FROM sessions WHERE user_id = NEW.user_id)
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NEW.user_id);
END;
CREATE TRIGGER user_roles_cache_update AFTER UPDATE ON user_roles
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (OLD.user_id);
    INSERT INTO cache_changes (user_id) VALUES (NEW.user_id);
END;
CREATE TRIGGER user_roles_cache_delete AFTER DELETE ON user_roles
    WHEN EXISTS (SELECT 1 FROM sessions WHERE user_id = OLD.user_id)
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (OLD.user_id);
END;

CREATE TRIGGER roles_cache_insert AFTER INSERT ON roles
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER roles_cache_update AFTER UPDATE ON roles
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER roles_cache_delete AFTER DELETE ON roles
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER permissions_cache_insert AFTER INSERT ON permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER permissions_cache_update AFTER UPDATE ON permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER permissions_cache_delete AFTER DELETE ON permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER role_permissions_cache_insert AFTER INSERT ON role_permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER role_permissions_cache_update AFTER UPDATE ON role_permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
CREATE TRIGGER role_permissions_cache_delete AFTER DELETE ON role_permissions
BEGIN
    INSERT INTO cache_changes (user_id) VALUES (NULL);
END;
