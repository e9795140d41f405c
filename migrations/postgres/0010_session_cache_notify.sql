-- Every instance keeps resolved sessions in memory (src/auth/cache.rs). These triggers
-- tell every instance, through LISTEN/NOTIFY, what a committed change made stale. A
-- trigger's NOTIFY belongs to the changing transaction, so it is delivered exactly
-- when the change commits and never for a change that rolls back, whatever code (the
-- service, the command line, an operator's SQL) made the change.
--
-- Payload: 'u:<user id>' drops that user's sessions; '*' (a role or permission
-- changed, which may concern any number of users) drops everything.

CREATE FUNCTION gatehouse_cache_user_changed() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('gatehouse_cache', 'u:' || COALESCE(NEW.id, OLD.id));
    ELSE
        PERFORM pg_notify('gatehouse_cache', 'u:' || COALESCE(NEW.user_id, OLD.user_id));
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION gatehouse_cache_access_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('gatehouse_cache', '*');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_cache AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION gatehouse_cache_user_changed();

-- The once-a-minute idle bookkeeping (last_seen_at moving forward) changes nothing a
-- cached session relies on beyond what the instance that wrote it already knows.
CREATE TRIGGER sessions_cache_update AFTER UPDATE ON sessions
    FOR EACH ROW WHEN (
        ROW(OLD.user_id, OLD.csrf_token, OLD.created_at, OLD.expires_at, OLD.revoked_at)
            IS DISTINCT FROM
        ROW(NEW.user_id, NEW.csrf_token, NEW.created_at, NEW.expires_at, NEW.revoked_at)
        OR NEW.last_seen_at < OLD.last_seen_at
    )
    EXECUTE FUNCTION gatehouse_cache_user_changed();
CREATE TRIGGER sessions_cache_delete AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION gatehouse_cache_user_changed();

CREATE TRIGGER user_roles_cache AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION gatehouse_cache_user_changed();

CREATE TRIGGER roles_cache AFTER INSERT OR UPDATE OR DELETE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_cache_access_changed();
CREATE TRIGGER permissions_cache AFTER INSERT OR UPDATE OR DELETE ON permissions
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_cache_access_changed();
CREATE TRIGGER role_permissions_cache AFTER INSERT OR UPDATE OR DELETE ON role_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_cache_access_changed();
