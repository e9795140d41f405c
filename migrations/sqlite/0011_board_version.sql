-- A board's version: bumped by every change to the board, its columns or its tickets
-- (in the same statement that takes the board's lock, see src/kanban/store.rs), so the
-- web UI's live boards can tell a client whether what it shows is current.
ALTER TABLE boards ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
