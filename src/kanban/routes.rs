//! The kanban routes of the contract: the old service's method-multiplexed collection
//! paths (the id of the row to change or delete travels in the body), and the whole
//! board. Each method has its own handler and its own policy in the table below:
//! reading needs `view_dashboard`, every change needs `edit`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{self, TicketEdit};
use super::validate::{self, Int, NAME_MAX, TITLE_MAX};
use super::{Column, PlacedTicket, Ticket};
use crate::accounts::User;
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::{Json, Origin};
use crate::logs::{record_change, Kind};
use crate::rbac::Permission;
use crate::text::label;

const READ: Policy = Needs(Permission::ViewDashboard);
const WRITE: Policy = Needs(Permission::Edit);

pub fn routes() -> Routes {
    Routes::new()
        .get("/boards", READ, list_boards)
        .post("/boards", WRITE, create_board)
        .put("/boards", WRITE, rename_board)
        .delete("/boards", WRITE, delete_board)
        .get("/boards/{board_id}", READ, full_board)
        .get("/boards/{board_id}/columns", READ, list_columns)
        .post("/boards/{board_id}/columns", WRITE, create_column)
        .put("/boards/{board_id}/columns", WRITE, update_column)
        .delete("/boards/{board_id}/columns", WRITE, delete_column)
        .get("/columns/{column_id}/tickets", READ, list_tickets)
        .post("/columns/{column_id}/tickets", WRITE, create_ticket)
        .put("/columns/{column_id}/tickets", WRITE, update_ticket)
        .delete("/columns/{column_id}/tickets", WRITE, delete_ticket)
}

/// An id in the path. The old service's routes only matched integers, so anything else
/// names nothing: 404.
fn path_id(raw: &str, not_found: &'static str) -> Result<i64, AppError> {
    raw.parse().map_err(|_| AppError::not_found(not_found))
}

fn board_id(raw: &str) -> Result<i64, AppError> {
    path_id(raw, "Board not found")
}

fn column_id(raw: &str) -> Result<i64, AppError> {
    path_id(raw, "Column not found")
}

fn created(id: i64) -> Response {
    (StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response()
}

/// Writes a change to the activity log: who (`user`), from where, what.
fn record(state: &AppState, user: &User, origin: &Origin, message: String, details: Value) {
    record_change(
        &state.activity,
        Kind::Change,
        user,
        origin,
        message,
        details,
    );
}

// ----- boards -----

#[derive(Deserialize)]
struct ById {
    id: Int,
}

#[derive(Deserialize)]
struct NewBoard {
    name: String,
}

#[derive(Deserialize)]
struct BoardRename {
    id: Int,
    name: String,
}

async fn list_boards(State(state): State<AppState>) -> Result<Response, AppError> {
    let boards = store::list_boards(&state.db).await?;
    Ok(axum::Json(boards).into_response())
}

async fn create_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<NewBoard>,
) -> Result<Response, AppError> {
    let name = label("name", &body.name, NAME_MAX)?;
    let board = store::create_board(&state.db, &name).await?;
    record(
        &state,
        &user.user,
        &origin,
        format!("board {} created", board.id),
        json!({
            "action": "create_board",
            "board_id": board.id,
            "before": null,
            "after": { "name": board.name },
        }),
    );
    Ok(created(board.id))
}

async fn rename_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<BoardRename>,
) -> Result<Response, AppError> {
    let name = label("name", &body.name, NAME_MAX)?;
    let (before, after) = store::rename_board(&state.db, body.id.0, &name).await?;
    record(
        &state,
        &user.user,
        &origin,
        format!("board {} renamed", after.id),
        json!({
            "action": "rename_board",
            "board_id": after.id,
            "before": { "name": before.name },
            "after": { "name": after.name },
        }),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    let deleted = store::delete_board(&state.db, body.id.0).await?;
    record(
        &state,
        &user.user,
        &origin,
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
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn full_board(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, AppError> {
    let board = store::full_board(&state.db, board_id(&raw)?).await?;
    Ok(axum::Json(board).into_response())
}

// ----- columns -----

#[derive(Deserialize)]
struct NewColumn {
    name: String,
    #[serde(default)]
    position: Option<Int>,
}

#[derive(Deserialize)]
struct ColumnChange {
    id: Int,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    position: Option<Int>,
}

fn column_json(column: &Column) -> Value {
    json!({ "name": column.name, "position": column.position })
}

async fn list_columns(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, AppError> {
    let columns = store::list_columns(&state.db, board_id(&raw)?).await?;
    Ok(axum::Json(columns).into_response())
}

async fn create_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<NewColumn>,
) -> Result<Response, AppError> {
    let board = board_id(&raw)?;
    let name = label("name", &body.name, NAME_MAX)?;
    let position = validate::rank("position", body.position)?;
    let column = store::create_column(&state.db, board, &name, position).await?;
    record(
        &state,
        &user.user,
        &origin,
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
    Ok(created(column.id))
}

async fn update_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ColumnChange>,
) -> Result<Response, AppError> {
    let board = board_id(&raw)?;
    let name = body
        .name
        .as_deref()
        .map(|n| label("name", n, NAME_MAX))
        .transpose()?;
    let position = validate::rank("position", body.position)?;
    let (before, after) =
        store::update_column(&state.db, board, body.id.0, name.as_deref(), position).await?;
    let message = if before.position == after.position {
        format!("column {} of board {board} updated", after.id)
    } else {
        format!(
            "column {} of board {board} moved from position {} to {}",
            after.id, before.position, after.position
        )
    };
    record(
        &state,
        &user.user,
        &origin,
        message,
        json!({
            "action": "update_column",
            "board_id": board,
            "column_id": after.id,
            "before": column_json(&before),
            "after": column_json(&after),
        }),
    );
    Ok(axum::Json(after).into_response())
}

async fn delete_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    let board = board_id(&raw)?;
    let (column, tickets) = store::delete_column(&state.db, board, body.id.0).await?;
    record(
        &state,
        &user.user,
        &origin,
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
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- tickets -----

/// A new ticket. `position` is the column to put it in (the old client sends the id
/// of the column it posts to); `order` its place there.
#[derive(Deserialize)]
struct NewTicket {
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    position: Option<Int>,
    #[serde(default)]
    order: Option<Int>,
}

/// A ticket change. `position` and `column_id` both name the column the ticket should
/// be in (`column_id` wins when both are sent); `order` its place there.
#[derive(Deserialize)]
struct TicketChange {
    id: Int,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    position: Option<Int>,
    #[serde(default)]
    column_id: Option<Int>,
    #[serde(default)]
    order: Option<Int>,
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

async fn list_tickets(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, AppError> {
    let tickets = store::list_tickets(&state.db, column_id(&raw)?).await?;
    Ok(axum::Json(tickets).into_response())
}

async fn create_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<NewTicket>,
) -> Result<Response, AppError> {
    let column = column_id(&raw)?;
    let title = label("title", &body.title, TITLE_MAX)?;
    let description = validate::description(body.description.as_deref().unwrap_or(""))?;
    let order = validate::rank("order", body.order)?;
    let target = validate::column("position", body.position)?;
    let (board, ticket) =
        store::create_ticket(&state.db, column, target, &title, &description, order).await?;
    record(
        &state,
        &user.user,
        &origin,
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
    Ok(created(ticket.id))
}

async fn update_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<TicketChange>,
) -> Result<Response, AppError> {
    let column = column_id(&raw)?;
    let edit = TicketEdit {
        title: body
            .title
            .as_deref()
            .map(|t| label("title", t, TITLE_MAX))
            .transpose()?,
        description: body
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?,
        order: validate::rank("order", body.order)?,
        column_id: match body.column_id {
            Some(_) => validate::column("column_id", body.column_id)?,
            None => validate::column("position", body.position)?,
        },
    };
    let (board, before, after) = store::update_ticket(&state.db, column, body.id.0, &edit).await?;
    let moved = (before.column_id, before.order) != (after.column_id, after.order);
    let message = if moved {
        format!(
            "ticket {} moved from column {} order {} to column {} order {}",
            after.id, before.column_id, before.order, after.column_id, after.order
        )
    } else {
        format!("ticket {} updated", after.id)
    };
    record(
        &state,
        &user.user,
        &origin,
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
    Ok(axum::Json(PlacedTicket(after)).into_response())
}

async fn delete_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    let column = column_id(&raw)?;
    let (board, ticket) = store::delete_ticket(&state.db, column, body.id.0).await?;
    record(
        &state,
        &user.user,
        &origin,
        format!("ticket {} deleted from column {column}", ticket.id),
        json!({
            "action": "delete_ticket",
            "board_id": board,
            "ticket_id": ticket.id,
            "before": ticket_json(&ticket),
            "after": null,
        }),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
