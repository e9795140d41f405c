-- What the old Next.js client needs, kept without losing data.
--
-- Kanban: on the old paths a ticket's `position` is its column's id, so its place
-- within the column gets its own name. The column is renamed, not copied, so every
-- existing ticket keeps its column and its order; the (column_id, place) index follows
-- the rename. `order` is reserved in SQL, hence `sort_order`.
ALTER TABLE tickets RENAME COLUMN position TO sort_order;
