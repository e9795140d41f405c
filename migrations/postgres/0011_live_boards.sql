-- A board's version: bumped by every change to the board, its columns or its tickets
-- (in the same statement that takes the board's lock, see src/kanban/store.rs), so the
-- web UI's live boards can tell a client whether what it shows is current.
--
-- Boards and columns get a description, as tickets have one (the web UI shows and edits
-- it; the JSON routes keep the old client's shapes).
ALTER TABLE boards ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE boards ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE board_columns ADD COLUMN description TEXT NOT NULL DEFAULT '';

-- Every instance streams board changes to the browsers that show the board
-- (src/kanban/events.rs). A trigger's NOTIFY belongs to the changing transaction, so it
-- reaches every instance's listener exactly when the change commits, and never for a
-- change that rolls back. Payload: the board's id.
CREATE FUNCTION gatehouse_board_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('gatehouse_board', COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER boards_notify_version AFTER UPDATE OF version ON boards
    FOR EACH ROW EXECUTE FUNCTION gatehouse_board_changed();
CREATE TRIGGER boards_notify_delete AFTER DELETE ON boards
    FOR EACH ROW EXECUTE FUNCTION gatehouse_board_changed();
