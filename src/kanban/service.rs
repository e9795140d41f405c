//! The kanban rules every caller follows, the JSON routes and the web UI alike: field
//! validation, the store's ordered changes, the activity log entry with its before and
//! after, and the announcement that the board changed (see [`super::events`]).
//!
//! Inputs arrive as the caller read them (names untrimmed, places as [`Int`]) and are
//! validated here, so both callers refuse the same things with the same messages.

use serde_json::{json, Value};

use super::events::Change;
use super::store::{self, TicketEdit};
use super::validate::{self, Int, NAME_MAX, TITLE_MAX};
use super::{Board, Column, Ticket};
use crate::accounts::User;
use crate::app::AppState;
use crate::error::AppError;
use crate::http::Origin;
use crate::logs::{record_change, Kind};
use crate::text::label;

/// Who makes a change and from where, for the activity log.
#[derive(Clone, Copy)]
pub struct Actor<'a> {
    pub user: &'a User,
    pub origin: &'a Origin,
}

impl Actor<'_> {
    fn record(&self, state: &AppState, message: String, details: Value) {
        record_change(
            &state.activity,
            Kind::Change,
            self.user,
            self.origin,
            message,
            details,
        );
    }
}

fn announce(state: &AppState, board_id: i64) {
    state.boards.announce(Change::Board(board_id));
}

// ----- boards -----

pub async fn create_board(state: &AppState, by: Actor<'_>, name: &str) -> Result<Board, AppError> {
    let name = label("name", name, NAME_MAX)?;
    let board = store::create_board(&state.db, &name).await?;
    by.record(
        state,
        format!("board {} created", board.id),
        json!({
            "action": "create_board",
            "board_id": board.id,
            "before": null,
            "after": { "name": board.name },
        }),
    );
    Ok(board)
}

pub async fn rename_board(
    state: &AppState,
    by: Actor<'_>,
    id: i64,
    name: &str,
) -> Result<Board, AppError> {
    let name = label("name", name, NAME_MAX)?;
    let (before, after) = store::rename_board(&state.db, id, &name).await?;
    announce(state, id);
    by.record(
        state,
        format!("board {} renamed", after.id),
        json!({
            "action": "rename_board",
            "board_id": after.id,
            "before": { "name": before.name },
            "after": { "name": after.name },
        }),
    );
    Ok(after)
}

pub async fn delete_board(state: &AppState, by: Actor<'_>, id: i64) -> Result<Board, AppError> {
    let deleted = store::delete_board(&state.db, id).await?;
    announce(state, id);
    by.record(
        state,
        format!(
            "board {} deleted with {} columns and {} tickets",
            deleted.board.id, deleted.columns, deleted.tickets
        ),
        json!({
            "action": "delete_board",
            "board_id": deleted.board.id,
            "before": {
                "name": deleted.board.name,
                "columns": deleted.columns,
                "tickets": deleted.tickets,
            },
            "after": null,
        }),
    );
    Ok(deleted.board)
}

/// Sets the description of a board, or of its column `column`: up to 10 000
/// characters, the rules of a ticket's description.
pub async fn describe(
    state: &AppState,
    by: Actor<'_>,
    board: i64,
    column: Option<i64>,
    description: &str,
) -> Result<(), AppError> {
    let description = validate::description(description)?;
    let before = store::describe(&state.db, board, column, &description).await?;
    announce(state, board);
    let (message, action) = match column {
        None => (format!("board {board} described"), "describe_board"),
        Some(id) => (
            format!("column {id} of board {board} described"),
            "describe_column",
        ),
    };
    by.record(
        state,
        message,
        json!({
            "action": action,
            "board_id": board,
            "column_id": column,
            "description_changed": before != description,
        }),
    );
    Ok(())
}

// ----- columns -----

fn column_json(column: &Column) -> Value {
    json!({ "name": column.name, "position": column.position })
}

pub async fn create_column(
    state: &AppState,
    by: Actor<'_>,
    board: i64,
    name: &str,
    position: Option<Int>,
) -> Result<Column, AppError> {
    let name = label("name", name, NAME_MAX)?;
    let position = validate::rank("position", position)?;
    let column = store::create_column(&state.db, board, &name, position).await?;
    announce(state, board);
    by.record(
        state,
        format!(
            "column {} created on board {board} at position {}",
            column.id, column.position
        ),
        json!({
            "action": "create_column",
            "board_id": board,
            "column_id": column.id,
            "before": null,
            "after": column_json(&column),
        }),
    );
    Ok(column)
}

/// Renames a column and/or moves it to `position` on its board.
pub async fn update_column(
    state: &AppState,
    by: Actor<'_>,
    board: i64,
    id: i64,
    name: Option<&str>,
    position: Option<Int>,
) -> Result<Column, AppError> {
    let name = name.map(|n| label("name", n, NAME_MAX)).transpose()?;
    let position = validate::rank("position", position)?;
    let (before, after) =
        store::update_column(&state.db, board, id, name.as_deref(), position).await?;
    announce(state, board);
    let message = if before.position == after.position {
        format!("column {} of board {board} updated", after.id)
    } else {
        format!(
            "column {} of board {board} moved from position {} to {}",
            after.id, before.position, after.position
        )
    };
    by.record(
        state,
        message,
        json!({
            "action": "update_column",
            "board_id": board,
            "column_id": after.id,
            "before": column_json(&before),
            "after": column_json(&after),
        }),
    );
    Ok(after)
}

pub async fn delete_column(
    state: &AppState,
    by: Actor<'_>,
    board: i64,
    id: i64,
) -> Result<Column, AppError> {
    let (column, tickets) = store::delete_column(&state.db, board, id).await?;
    announce(state, board);
    by.record(
        state,
        format!(
            "column {} deleted from board {board} with {tickets} tickets",
            column.id
        ),
        json!({
            "action": "delete_column",
            "board_id": board,
            "column_id": column.id,
            "before": { "name": column.name, "position": column.position, "tickets": tickets },
            "after": null,
        }),
    );
    Ok(column)
}

// ----- tickets -----

/// A new ticket as sent: `target` names the column to put it in (the path's column when
/// `None`), with the name of the field that carried it; `order` its place there.
pub struct NewTicket<'a> {
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub target: Option<(&'static str, Int)>,
    pub order: Option<Int>,
}

/// A ticket change as sent; an omitted field keeps its value. `target` names the column
/// the ticket should be in, with the name of the field that carried it.
pub struct TicketChange<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub target: Option<(&'static str, Int)>,
    pub order: Option<Int>,
}

fn target(value: Option<(&'static str, Int)>) -> Result<Option<i64>, AppError> {
    match value {
        Some((field, id)) => validate::column(field, Some(id)),
        None => Ok(None),
    }
}

/// Where a ticket is and what it is called; descriptions can be long, so the log
/// only says whether one changed.
fn ticket_json(ticket: &Ticket) -> Value {
    json!({
        "title": ticket.title,
        "column_id": ticket.column_id,
        "order": ticket.order,
    })
}

/// Creates a ticket through column `column`; returns the board's id and the ticket.
pub async fn create_ticket(
    state: &AppState,
    by: Actor<'_>,
    column: i64,
    new: NewTicket<'_>,
) -> Result<(i64, Ticket), AppError> {
    let title = label("title", new.title, TITLE_MAX)?;
    let description = validate::description(new.description.unwrap_or(""))?;
    let order = validate::rank("order", new.order)?;
    let target = target(new.target)?;
    let (board, ticket) =
        store::create_ticket(&state.db, column, target, &title, &description, order).await?;
    announce(state, board);
    by.record(
        state,
        format!(
            "ticket {} created in column {} at order {}",
            ticket.id, ticket.column_id, ticket.order
        ),
        json!({
            "action": "create_ticket",
            "board_id": board,
            "ticket_id": ticket.id,
            "before": null,
            "after": ticket_json(&ticket),
        }),
    );
    Ok((board, ticket))
}

/// Changes or moves ticket `id`, which must be in column `column`.
pub async fn update_ticket(
    state: &AppState,
    by: Actor<'_>,
    column: i64,
    id: i64,
    change: TicketChange<'_>,
) -> Result<Ticket, AppError> {
    let edit = TicketEdit {
        title: change
            .title
            .map(|t| label("title", t, TITLE_MAX))
            .transpose()?,
        description: change.description.map(validate::description).transpose()?,
        order: validate::rank("order", change.order)?,
        column_id: target(change.target)?,
    };
    let (board, before, after) = store::update_ticket(&state.db, column, id, &edit).await?;
    announce(state, board);
    let moved = (before.column_id, before.order) != (after.column_id, after.order);
    let message = if moved {
        format!(
            "ticket {} moved from column {} order {} to column {} order {}",
            after.id, before.column_id, before.order, after.column_id, after.order
        )
    } else {
        format!("ticket {} updated", after.id)
    };
    by.record(
        state,
        message,
        json!({
            "action": if moved { "move_ticket" } else { "update_ticket" },
            "board_id": board,
            "ticket_id": after.id,
            "before": ticket_json(&before),
            "after": ticket_json(&after),
            "description_changed": before.description != after.description,
        }),
    );
    Ok(after)
}

/// Deletes ticket `id`, which must be in column `column`.
pub async fn delete_ticket(
    state: &AppState,
    by: Actor<'_>,
    column: i64,
    id: i64,
) -> Result<Ticket, AppError> {
    let (board, ticket) = store::delete_ticket(&state.db, column, id).await?;
    announce(state, board);
    by.record(
        state,
        format!("ticket {} deleted from column {column}", ticket.id),
        json!({
            "action": "delete_ticket",
            "board_id": board,
            "ticket_id": ticket.id,
            "before": ticket_json(&ticket),
            "after": null,
        }),
    );
    Ok(ticket)
}
