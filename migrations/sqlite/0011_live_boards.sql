-- A board's version: bumped by every change to the board, its columns or its tickets
-- (in the same statement that takes the board's lock, see src/kanban/store.rs), so the
-- web UI's live boards can tell a client whether what it shows is current.
--
-- Boards and columns get a description, as tickets have one (the web UI shows and edits
-- it; the JSON routes keep the old client's shapes).
ALTER TABLE boards ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE boards ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE board_columns ADD COLUMN description TEXT NOT NULL DEFAULT '';
