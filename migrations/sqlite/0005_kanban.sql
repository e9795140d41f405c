-- Kanban boards: boards, their ordered columns and the ordered tickets of each column.
-- Timestamps are Unix seconds (UTC).
--
-- Positions are dense (0..n-1) within their parent. There is deliberately no
-- UNIQUE (parent, position) index: SQLite checks unique indexes row by row and cannot
-- defer them, so the one-statement shift that opens or closes a gap
-- (`SET position = position + 1 WHERE position >= k`) would collide with itself.
-- Instead every change takes the board's row lock first (see src/kanban/store.rs),
-- which serialises all writers of one board, and renumbers inside that transaction.

CREATE TABLE boards (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE board_columns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    board_id INTEGER NOT NULL REFERENCES boards (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX board_columns_board ON board_columns (board_id, position);

CREATE TABLE tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    column_id INTEGER NOT NULL REFERENCES board_columns (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position INTEGER NOT NULL CHECK (position >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tickets_column ON tickets (column_id, position);
