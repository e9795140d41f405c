//! The SQL behind kanban boards.
//!
//! # Keeping places dense under concurrent edits
//!
//! A column's place on its board is `board_columns.position`; a ticket's place in its
//! column is `tickets.sort_order` (`order` on the wire, where a ticket's `position` is
//! its column's id). Below, "place" means either.
//!
//! Every change to a board's columns or tickets runs in one transaction whose first
//! statement is `UPDATE boards SET updated_at = …, version = version + 1 WHERE id = …`
//! on the board it touches. That one statement is the lock (and the bump of the version
//! that live boards follow), and it works on both backends:
//!
//! - PostgreSQL takes the board row's lock and keeps it until commit, so writers of the
//!   same board queue behind each other while other boards go on in parallel. At READ
//!   COMMITTED each later statement of the transaction sees what the previous holder
//!   committed, so the counts and shifts below are computed on the latest order.
//! - SQLite allows one writer at a time. Because the transaction's first statement is a
//!   write, it asks for the write lock before reading anything and waits for it
//!   (`busy_timeout`); it can never hold a stale read snapshot that it would then fail
//!   to upgrade.
//!
//! Inside the lock a change opens or closes a gap with one `place ± 1` statement and
//! then places the row, so places stay `0..n-1` after every insert, move and delete.
//! There is no UNIQUE (parent, place) index because that shift would collide with it
//! row by row (see the migration); the lock is what keeps places unique, and the
//! concurrency tests check it on both databases. Reads are single statements, each one
//! consistent snapshot, so they never see half a renumbering.
//!
//! Requested places are clamped: an insert at or past the end goes to the end, a move
//! past the last place goes to the last place.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Board, Column, ColumnWithTickets, FullBoard, Ticket};
use crate::db::{self, Backend, Db, JsonCol};

type Tx = Transaction<'static, Any>;

/// What the kanban store can fail with; [`super`] maps it to the contract's answer
/// once, at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The board, column or ticket named does not exist (or not where it was named).
    #[error("{0} not found")]
    NotFound(Missing),
    /// A ticket sent to another board's column **(fixed: the old service wrote the
    /// position into the column id)**.
    #[error("A ticket can only move to a column of the same board")]
    OtherBoard,
}

/// What was not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Board,
    Column,
    Ticket,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Board => "Board",
            Self::Column => "Column",
            Self::Ticket => "Ticket",
        })
    }
}

const NO_BOARD: StoreError = StoreError::NotFound(Missing::Board);
const NO_COLUMN: StoreError = StoreError::NotFound(Missing::Column);
const NO_TICKET: StoreError = StoreError::NotFound(Missing::Ticket);

/// The ordered children of a parent: a board's columns or a column's tickets. The
/// table and column names are constants, never caller input.
#[derive(Debug, Clone, Copy)]
enum Siblings {
    Columns,
    Tickets,
}

impl Siblings {
    fn table(self) -> &'static str {
        match self {
            Self::Columns => "board_columns",
            Self::Tickets => "tickets",
        }
    }

    fn parent(self) -> &'static str {
        match self {
            Self::Columns => "board_id",
            Self::Tickets => "column_id",
        }
    }

    /// The column holding the place among siblings. A ticket's is `sort_order`
    /// (`order` on the wire; the word is reserved in SQL), because its `position` on
    /// the wire is its column.
    fn rank(self) -> &'static str {
        match self {
            Self::Columns => "position",
            Self::Tickets => "sort_order",
        }
    }

    async fn count(self, tx: &mut Tx, parent: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {} WHERE {} = $1",
            self.table(),
            self.parent()
        ))
        .bind(parent)
        .fetch_one(&mut **tx)
        .await
    }

    /// Moves every sibling at `at` or after one place down, freeing `at`.
    async fn open_gap(self, tx: &mut Tx, parent: i64, at: i64) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {t} SET {r} = {r} + 1 WHERE {p} = $1 AND {r} >= $2",
            t = self.table(),
            p = self.parent(),
            r = self.rank(),
        ))
        .bind(parent)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Moves every sibling after `at` one place up, filling the hole left at `at`.
    async fn close_gap(self, tx: &mut Tx, parent: i64, at: i64) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "UPDATE {t} SET {r} = {r} - 1 WHERE {p} = $1 AND {r} > $2",
            t = self.table(),
            p = self.parent(),
            r = self.rank(),
        ))
        .bind(parent)
        .bind(at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Makes room at `to` for the row now at `from` by shifting the siblings between
    /// them one place; the caller then puts the row at `to`.
    async fn shift_for_move(
        self,
        tx: &mut Tx,
        parent: i64,
        from: i64,
        to: i64,
    ) -> Result<(), sqlx::Error> {
        let (delta, low, high) = match to.cmp(&from) {
            std::cmp::Ordering::Equal => return Ok(()),
            // Moving up: the rows in [to, from) go down one place.
            std::cmp::Ordering::Less => ("+ 1", to, from - 1),
            // Moving down: the rows in (from, to] go up one place.
            std::cmp::Ordering::Greater => ("- 1", from + 1, to),
        };
        sqlx::query(&format!(
            "UPDATE {t} SET {r} = {r} {delta} WHERE {p} = $1 AND {r} >= $2 AND {r} <= $3",
            t = self.table(),
            p = self.parent(),
            r = self.rank(),
        ))
        .bind(parent)
        .bind(low)
        .bind(high)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Locks the board (see the module documentation) and returns its name, or `None` when
/// there is no such board.
async fn lock_board(tx: &mut Tx, board_id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE boards SET updated_at = $1, version = version + 1 WHERE id = $2 RETURNING name",
    )
    .bind(db::now())
    .bind(board_id)
    .fetch_optional(&mut **tx)
    .await
}

/// Locks the board of a column and returns the board's id. A column never changes
/// board, but it may have been deleted by the writer this one waited for, so callers
/// look the column (or their row in it) up again after this.
async fn lock_board_of_column(tx: &mut Tx, column_id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE boards SET updated_at = $1, version = version + 1 \
         WHERE id = (SELECT board_id FROM board_columns WHERE id = $2) RETURNING id",
    )
    .bind(db::now())
    .bind(column_id)
    .fetch_optional(&mut **tx)
    .await
}

async fn board_of_column(tx: &mut Tx, column_id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT board_id FROM board_columns WHERE id = $1")
        .bind(column_id)
        .fetch_optional(&mut **tx)
        .await
}

// ----- boards -----

pub async fn list_boards(db: &Db) -> Result<Vec<Board>, StoreError> {
    let rows = sqlx::query("SELECT id, name FROM boards ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Board {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

pub async fn create_board(db: &Db, name: &str) -> Result<Board, StoreError> {
    let now = db::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO boards (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id",
    )
    .bind(name)
    .bind(now)
    .fetch_one(db.writer())
    .await?;
    Ok(Board {
        id,
        name: name.to_owned(),
    })
}

/// Renames a board; returns it before and after.
pub async fn rename_board(db: &Db, id: i64, name: &str) -> Result<(Board, Board), StoreError> {
    let mut tx = db.begin().await?;
    let old = lock_board(&mut tx, id).await?.ok_or(NO_BOARD)?;
    sqlx::query("UPDATE boards SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((
        Board { id, name: old },
        Board {
            id,
            name: name.to_owned(),
        },
    ))
}

/// What a board deletion took with it.
#[derive(Debug, Clone)]
pub struct DeletedBoard {
    pub board: Board,
    pub columns: i64,
    pub tickets: i64,
}

/// Deletes a board; its columns and their tickets go with it (ON DELETE CASCADE).
pub async fn delete_board(db: &Db, id: i64) -> Result<DeletedBoard, StoreError> {
    let mut tx = db.begin().await?;
    let name = lock_board(&mut tx, id).await?.ok_or(NO_BOARD)?;
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM board_columns WHERE board_id = $1), \
         (SELECT COUNT(*) FROM tickets t JOIN board_columns c ON c.id = t.column_id \
          WHERE c.board_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let (columns, tickets) = (row.try_get(0)?, row.try_get(1)?);
    sqlx::query("DELETE FROM boards WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(DeletedBoard {
        board: Board { id, name },
        columns,
        tickets,
    })
}

/// The whole board in one statement, whatever its size: one row per ticket (or per
/// empty column, or one for an empty board), folded here into columns. One statement
/// is also one snapshot, so a concurrent move never shows a ticket twice.
pub async fn full_board(db: &Db, id: i64) -> Result<FullBoard, StoreError> {
    let rows = sqlx::query(
        "SELECT b.id, b.name, c.id, c.name, c.position, \
         t.id, t.title, t.description, t.column_id, t.sort_order \
         FROM boards b \
         LEFT JOIN board_columns c ON c.board_id = b.id \
         LEFT JOIN tickets t ON t.column_id = c.id \
         WHERE b.id = $1 \
         ORDER BY c.position, c.id, t.sort_order, t.id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    let first = rows.first().ok_or(NO_BOARD)?;
    let mut board = FullBoard {
        id: first.try_get(0)?,
        name: first.try_get(1)?,
        columns: Vec::new(),
    };
    for row in &rows {
        let Some(column_id) = row.try_get::<Option<i64>, _>(2)? else {
            continue;
        };
        if board.columns.last().map(|c| c.id) != Some(column_id) {
            board.columns.push(ColumnWithTickets {
                id: column_id,
                name: row.try_get(3)?,
                position: row.try_get(4)?,
                tickets: Vec::new(),
            });
        }
        if let (Some(ticket), Some(column)) = (ticket_at(row, 5)?, board.columns.last_mut()) {
            column.tickets.push(ticket);
        }
    }
    Ok(board)
}

/// The ticket in columns `at..at+5` (id, title, description, column_id, sort_order) of
/// a row, if the row has one (a LEFT JOIN gives NULLs for an empty column).
fn ticket_at(row: &AnyRow, at: usize) -> Result<Option<Ticket>, sqlx::Error> {
    let Some(id) = row.try_get::<Option<i64>, _>(at)? else {
        return Ok(None);
    };
    Ok(Some(Ticket {
        id,
        title: row.try_get(at + 1)?,
        description: row.try_get(at + 2)?,
        column_id: row.try_get(at + 3)?,
        order: row.try_get(at + 4)?,
    }))
}

/// A board's version, which every change to it bumps; `None` when there is no such
/// board (any more).
pub async fn board_version(db: &Db, id: i64) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM boards WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// The descriptions of a board and of its columns (by column id), which only the web
/// UI shows; `None` when there is no such board.
pub async fn descriptions(
    db: &Db,
    board_id: i64,
) -> Result<Option<(String, Vec<(i64, String)>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT b.description, c.id, c.description FROM boards b \
         LEFT JOIN board_columns c ON c.board_id = b.id WHERE b.id = $1",
    )
    .bind(board_id)
    .fetch_all(db.pool())
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let board: String = first.try_get(0)?;
    let mut columns = Vec::new();
    for row in &rows {
        if let Some(id) = row.try_get::<Option<i64>, _>(1)? {
            columns.push((id, row.try_get::<Option<String>, _>(2)?.unwrap_or_default()));
        }
    }
    Ok(Some((board, columns)))
}

/// Sets the description of a board, or of one of its columns when `column` is given;
/// returns the description before.
pub async fn describe(
    db: &Db,
    board_id: i64,
    column: Option<i64>,
    description: &str,
) -> Result<String, StoreError> {
    let mut tx = db.begin().await?;
    lock_board(&mut tx, board_id).await?.ok_or(NO_BOARD)?;
    let before: Option<String> = match column {
        None => {
            sqlx::query_scalar("SELECT description FROM boards WHERE id = $1")
                .bind(board_id)
                .fetch_optional(&mut *tx)
                .await?
        }
        Some(id) => {
            sqlx::query_scalar(
                "SELECT description FROM board_columns WHERE id = $1 AND board_id = $2",
            )
            .bind(id)
            .bind(board_id)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let before = before.ok_or(NO_COLUMN)?;
    match column {
        None => sqlx::query("UPDATE boards SET description = $1 WHERE id = $2")
            .bind(description)
            .bind(board_id),
        Some(id) => {
            sqlx::query("UPDATE board_columns SET description = $1, updated_at = $2 WHERE id = $3")
                .bind(description)
                .bind(db::now())
                .bind(id)
        }
    }
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(before)
}

/// The column a ticket of board `board_id` is in now; `None` when the ticket is not on
/// that board.
pub async fn ticket_column(
    db: &Db,
    board_id: i64,
    ticket_id: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT t.column_id FROM tickets t JOIN board_columns c ON c.id = t.column_id \
         WHERE t.id = $1 AND c.board_id = $2",
    )
    .bind(ticket_id)
    .bind(board_id)
    .fetch_optional(db.pool())
    .await?)
}

// ----- columns -----

/// A board's columns in order, in one statement that also tells an unknown board
/// (no row at all) from an empty one (one row of NULLs).
pub async fn list_columns(db: &Db, board_id: i64) -> Result<Vec<Column>, StoreError> {
    let rows = sqlx::query(
        "SELECT b.id, c.id, c.name, c.position FROM boards b \
         LEFT JOIN board_columns c ON c.board_id = b.id \
         WHERE b.id = $1 ORDER BY c.position, c.id",
    )
    .bind(board_id)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Err(NO_BOARD);
    }
    let mut columns = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(id) = row.try_get::<Option<i64>, _>(1)? {
            columns.push(Column {
                id,
                name: row.try_get(2)?,
                position: row.try_get(3)?,
            });
        }
    }
    Ok(columns)
}

/// Adds a column at `position` (the end when `None`, clamped to the end when past it).
pub async fn create_column(
    db: &Db,
    board_id: i64,
    name: &str,
    position: Option<i64>,
) -> Result<Column, StoreError> {
    let mut tx = db.begin().await?;
    lock_board(&mut tx, board_id).await?.ok_or(NO_BOARD)?;
    let count = Siblings::Columns.count(&mut tx, board_id).await?;
    let position = position.map_or(count, |p| p.min(count));
    Siblings::Columns
        .open_gap(&mut tx, board_id, position)
        .await?;
    let now = db::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO board_columns (board_id, name, position, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(board_id)
    .bind(name)
    .bind(position)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Column {
        id,
        name: name.to_owned(),
        position,
    })
}

async fn column_in_board(
    tx: &mut Tx,
    board_id: i64,
    id: i64,
) -> Result<Option<Column>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, name, position FROM board_columns WHERE id = $1 AND board_id = $2")
            .bind(id)
            .bind(board_id)
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|r| {
        Ok(Column {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            position: r.try_get(2)?,
        })
    })
    .transpose()
}

/// Renames and/or moves a column of the board; returns it before and after. The
/// column must belong to `board_id`, as in the old service.
pub async fn update_column(
    db: &Db,
    board_id: i64,
    id: i64,
    name: Option<&str>,
    position: Option<i64>,
) -> Result<(Column, Column), StoreError> {
    let mut tx = db.begin().await?;
    lock_board(&mut tx, board_id).await?.ok_or(NO_BOARD)?;
    let before = column_in_board(&mut tx, board_id, id)
        .await?
        .ok_or(NO_COLUMN)?;
    let position = match position {
        Some(wanted) => {
            let last = Siblings::Columns.count(&mut tx, board_id).await? - 1;
            let to = wanted.min(last);
            Siblings::Columns
                .shift_for_move(&mut tx, board_id, before.position, to)
                .await?;
            to
        }
        None => before.position,
    };
    let name = name.unwrap_or(&before.name).to_owned();
    sqlx::query("UPDATE board_columns SET name = $1, position = $2, updated_at = $3 WHERE id = $4")
        .bind(&name)
        .bind(position)
        .bind(db::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((before, Column { id, name, position }))
}

/// Deletes a column of the board with its tickets and closes the gap; returns the
/// column and how many tickets went with it.
pub async fn delete_column(db: &Db, board_id: i64, id: i64) -> Result<(Column, i64), StoreError> {
    let mut tx = db.begin().await?;
    lock_board(&mut tx, board_id).await?.ok_or(NO_BOARD)?;
    let column = column_in_board(&mut tx, board_id, id)
        .await?
        .ok_or(NO_COLUMN)?;
    let tickets = Siblings::Tickets.count(&mut tx, id).await?;
    sqlx::query("DELETE FROM board_columns WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Siblings::Columns
        .close_gap(&mut tx, board_id, column.position)
        .await?;
    tx.commit().await?;
    Ok((column, tickets))
}

// ----- tickets -----

/// A column's tickets in order; one statement, as for [`list_columns`].
pub async fn list_tickets(db: &Db, column_id: i64) -> Result<Vec<Ticket>, StoreError> {
    let rows = sqlx::query(
        "SELECT c.id, t.id, t.title, t.description, t.column_id, t.sort_order \
         FROM board_columns c LEFT JOIN tickets t ON t.column_id = c.id \
         WHERE c.id = $1 ORDER BY t.sort_order, t.id",
    )
    .bind(column_id)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() {
        return Err(NO_COLUMN);
    }
    let mut tickets = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(ticket) = ticket_at(row, 1)? {
            tickets.push(ticket);
        }
    }
    Ok(tickets)
}

/// Checks that `target` is a column of `board_id`, the board the caller has locked.
async fn same_board(tx: &mut Tx, board_id: i64, target: i64) -> Result<(), StoreError> {
    match board_of_column(tx, target).await? {
        None => Err(NO_COLUMN),
        Some(other) if other != board_id => Err(StoreError::OtherBoard),
        Some(_) => Ok(()),
    }
}

/// Adds a ticket through the column of the path, `column_id`: into `target` (that
/// column when `None`; another column of the same board otherwise) at `order` (the end
/// when `None`, clamped to the end when past it). Returns the board's id and the
/// ticket.
pub async fn create_ticket(
    db: &Db,
    column_id: i64,
    target: Option<i64>,
    title: &str,
    description: &str,
    order: Option<i64>,
) -> Result<(i64, Ticket), StoreError> {
    let mut tx = db.begin().await?;
    let board_id = lock_board_of_column(&mut tx, column_id)
        .await?
        .ok_or(NO_COLUMN)?;
    board_of_column(&mut tx, column_id)
        .await?
        .ok_or(NO_COLUMN)?;
    let target = target.unwrap_or(column_id);
    if target != column_id {
        same_board(&mut tx, board_id, target).await?;
    }
    let count = Siblings::Tickets.count(&mut tx, target).await?;
    let order = order.map_or(count, |p| p.min(count));
    Siblings::Tickets.open_gap(&mut tx, target, order).await?;
    let now = db::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tickets (column_id, title, description, sort_order, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(target)
    .bind(title)
    .bind(description)
    .bind(order)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        board_id,
        Ticket {
            id,
            title: title.to_owned(),
            description: description.to_owned(),
            column_id: target,
            order,
        },
    ))
}

async fn ticket_in_column(
    tx: &mut Tx,
    column_id: i64,
    id: i64,
) -> Result<Option<Ticket>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, title, description, column_id, sort_order FROM tickets \
         WHERE id = $1 AND column_id = $2",
    )
    .bind(id)
    .bind(column_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| ticket_at(r, 0))
        .transpose()
        .map(Option::flatten)
}

/// What a ticket update asks for; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct TicketEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    /// The place within its (new) column.
    pub order: Option<i64>,
    /// The column to move the ticket to, which must be on the same board.
    pub column_id: Option<i64>,
}

/// Edits and/or moves a ticket that is in `column_id`; returns the board's id and the
/// ticket before and after. A move to another column goes to `order` there (the end
/// when `None`); a move to another board's column is refused.
pub async fn update_ticket(
    db: &Db,
    column_id: i64,
    id: i64,
    edit: &TicketEdit,
) -> Result<(i64, Ticket, Ticket), StoreError> {
    let mut tx = db.begin().await?;
    let board_id = lock_board_of_column(&mut tx, column_id)
        .await?
        .ok_or(NO_COLUMN)?;
    // Also answers for the column: had it been deleted meanwhile, its tickets went too.
    let before = ticket_in_column(&mut tx, column_id, id)
        .await?
        .ok_or(NO_TICKET)?;
    let target = edit.column_id.unwrap_or(column_id);
    if target != column_id {
        same_board(&mut tx, board_id, target).await?;
    }
    let order = if target == column_id {
        match edit.order {
            Some(wanted) => {
                let last = Siblings::Tickets.count(&mut tx, column_id).await? - 1;
                let to = wanted.min(last);
                Siblings::Tickets
                    .shift_for_move(&mut tx, column_id, before.order, to)
                    .await?;
                to
            }
            None => before.order,
        }
    } else {
        Siblings::Tickets
            .close_gap(&mut tx, column_id, before.order)
            .await?;
        let count = Siblings::Tickets.count(&mut tx, target).await?;
        let to = edit.order.map_or(count, |p| p.min(count));
        Siblings::Tickets.open_gap(&mut tx, target, to).await?;
        to
    };
    let after = Ticket {
        id,
        title: edit.title.clone().unwrap_or_else(|| before.title.clone()),
        description: edit
            .description
            .clone()
            .unwrap_or_else(|| before.description.clone()),
        column_id: target,
        order,
    };
    sqlx::query(
        "UPDATE tickets SET title = $1, description = $2, sort_order = $3, column_id = $4, \
         updated_at = $5 WHERE id = $6",
    )
    .bind(&after.title)
    .bind(&after.description)
    .bind(after.order)
    .bind(after.column_id)
    .bind(db::now())
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((board_id, before, after))
}

/// Deletes a ticket that is in `column_id` and closes the gap; returns the board's id
/// and the ticket.
pub async fn delete_ticket(db: &Db, column_id: i64, id: i64) -> Result<(i64, Ticket), StoreError> {
    let mut tx = db.begin().await?;
    let board_id = lock_board_of_column(&mut tx, column_id)
        .await?
        .ok_or(NO_COLUMN)?;
    let ticket = ticket_in_column(&mut tx, column_id, id)
        .await?
        .ok_or(NO_TICKET)?;
    sqlx::query("DELETE FROM tickets WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Siblings::Tickets
        .close_gap(&mut tx, column_id, ticket.order)
        .await?;
    tx.commit().await?;
    Ok((board_id, ticket))
}

// ----- the import of the old service's boards -----

/// The first free id of each kanban table, for an import that gives its rows explicit
/// ids (see `crate::import`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeIds {
    pub board: i64,
    pub column: i64,
    pub ticket: i64,
}

pub async fn free_ids(db: &Db) -> Result<FreeIds, StoreError> {
    let row = sqlx::query(
        "SELECT (SELECT MAX(id) FROM boards), (SELECT MAX(id) FROM board_columns), \
         (SELECT MAX(id) FROM tickets)",
    )
    .fetch_one(db.pool())
    .await?;
    let next = |i: usize| -> Result<i64, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(i)?.unwrap_or(0) + 1)
    };
    Ok(FreeIds {
        board: next(0)?,
        column: next(1)?,
        ticket: next(2)?,
    })
}

/// An imported board, with its id as given.
#[derive(Debug, Clone)]
pub struct ImportedBoard {
    pub id: i64,
    pub name: String,
}

/// An imported column, with its id and its (dense) place on its board as given.
#[derive(Debug, Clone)]
pub struct ImportedColumn {
    pub id: i64,
    pub board_id: i64,
    pub name: String,
    pub position: i64,
}

/// An imported ticket, with its id, its column and its (dense) place there as given.
#[derive(Debug, Clone)]
pub struct ImportedTicket {
    pub id: i64,
    pub column_id: i64,
    /// `order` on the wire.
    pub order: i64,
    pub title: String,
    pub description: String,
    pub created_at: i64,
}

/// Inserts a batch of imported boards in one statement, in the caller's transaction,
/// and moves PostgreSQL's id sequence past them.
pub async fn insert_imported_boards<'a>(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    boards: impl IntoIterator<Item = &'a ImportedBoard>,
    now: i64,
) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = boards
        .into_iter()
        .map(|b| serde_json::json!([b.id, b.name, now, now]))
        .collect();
    let select = db::json_rows(
        backend,
        &[JsonCol::Int, JsonCol::Text, JsonCol::Int, JsonCol::Int],
    );
    sqlx::query(&format!(
        "INSERT INTO boards (id, name, created_at, updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    db::sync_id_sequence(conn, backend, "boards").await?;
    Ok(())
}

/// Inserts a batch of imported columns in one statement, in the caller's transaction,
/// and moves PostgreSQL's id sequence past them.
pub async fn insert_imported_columns<'a>(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    columns: impl IntoIterator<Item = &'a ImportedColumn>,
    now: i64,
) -> Result<(), StoreError> {
    use JsonCol::{Int, Text};
    let rows: Vec<serde_json::Value> = columns
        .into_iter()
        .map(|c| serde_json::json!([c.id, c.board_id, c.name, c.position, now, now]))
        .collect();
    let select = db::json_rows(backend, &[Int, Int, Text, Int, Int, Int]);
    sqlx::query(&format!(
        "INSERT INTO board_columns (id, board_id, name, position, created_at, updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    db::sync_id_sequence(conn, backend, "board_columns").await?;
    Ok(())
}

/// Inserts a batch of imported tickets in one statement, in the caller's transaction,
/// and moves PostgreSQL's id sequence past them.
pub async fn insert_imported_tickets<'a>(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    tickets: impl IntoIterator<Item = &'a ImportedTicket>,
    now: i64,
) -> Result<(), StoreError> {
    use JsonCol::{Int, Text};
    let rows: Vec<serde_json::Value> = tickets
        .into_iter()
        .map(|t| {
            serde_json::json!([
                t.id,
                t.column_id,
                t.title,
                t.description,
                t.order,
                t.created_at,
                now
            ])
        })
        .collect();
    let select = db::json_rows(backend, &[Int, Int, Text, Text, Int, Int, Int]);
    sqlx::query(&format!(
        "INSERT INTO tickets (id, column_id, title, description, sort_order, created_at, \
         updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    db::sync_id_sequence(conn, backend, "tickets").await?;
    Ok(())
}
