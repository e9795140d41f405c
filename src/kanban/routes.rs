//! The kanban routes of the contract: the old service's method-multiplexed collection
//! paths (the id of the row to change or delete travels in the body), and the whole
//! board. Each method has its own handler and its own policy in the table below:
//! reading needs `view_dashboard`, every change needs `edit`. The rules themselves
//! are [`super::service`]'s, which the web UI calls too.
//!
//! Ids and places in bodies are [`Int`]s: JSON integers or strings of digits, as the
//! old client's form fields send them; `/openapi.json` says so (`WholeNumber`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::service::{self, Actor, NewTicket as Creation, TicketChange as Change};
use super::store;
use super::validate::Int;
use super::{Board, Column, FullBoard, PlacedTicket, Ticket};
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::http::{Json, Origin};
use crate::rbac::Permission;

const READ: Policy = Needs(Permission::ViewDashboard);
const WRITE: Policy = Needs(Permission::Edit);

pub fn routes() -> Routes {
    Routes::new()
        .api(READ, routes!(list_boards))
        .api(WRITE, routes!(create_board))
        .api(WRITE, routes!(rename_board))
        .api(WRITE, routes!(delete_board))
        .api(READ, routes!(full_board))
        .api(READ, routes!(list_columns))
        .api(WRITE, routes!(create_column))
        .api(WRITE, routes!(update_column))
        .api(WRITE, routes!(delete_column))
        .api(READ, routes!(list_tickets))
        .api(WRITE, routes!(create_ticket))
        .api(WRITE, routes!(update_ticket))
        .api(WRITE, routes!(delete_ticket))
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

/// The answer to a creation: the new row's id.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "id": 42 }))]
struct RowCreated {
    id: i64,
}

fn created(id: i64) -> (StatusCode, axum::Json<RowCreated>) {
    (StatusCode::CREATED, axum::Json(RowCreated { id }))
}

fn actor<'a>(user: &'a CurrentUser, origin: &'a Origin) -> Actor<'a> {
    Actor {
        user: &user.user,
        origin,
    }
}

// ----- boards -----

/// The row a delete names.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "id": 42 }))]
struct RowToDelete {
    /// The id of the row to delete; a number or a string of digits.
    id: Int,
}

/// A new board.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "name": "Sprint 1" }))]
struct NewBoard {
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
}

/// A board's new name.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "id": "3", "name": "Sprint 2" }))]
struct BoardRename {
    /// The board's id; a number or a string of digits.
    id: Int,
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
}

/// Every board
#[utoipa::path(
    get,
    path = "/boards",
    tag = "kanban",
    responses(
        (status = 200, description = "Every board, by id", body = Vec<Board>,
            example = json!([{ "id": 3, "name": "Sprint 1" }, { "id": 4, "name": "Backlog" }])),
    )
)]
async fn list_boards(State(state): State<AppState>) -> Result<axum::Json<Vec<Board>>, AppError> {
    Ok(axum::Json(store::list_boards(&state.db).await?))
}

/// Create a board
#[utoipa::path(
    post,
    path = "/boards",
    tag = "kanban",
    request_body = NewBoard,
    responses(
        (status = 201, description = "Created, with no columns", body = RowCreated),
    )
)]
async fn create_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<NewBoard>,
) -> Result<(StatusCode, axum::Json<RowCreated>), AppError> {
    let board = service::create_board(&state, actor(&user, &origin), &body.name).await?;
    Ok(created(board.id))
}

/// Rename a board
#[utoipa::path(
    put,
    path = "/boards",
    tag = "kanban",
    request_body = BoardRename,
    responses(
        (status = 200, description = "Renamed", body = Board),
        (status = 404, description = "`Board not found`", body = ErrorBody),
    )
)]
async fn rename_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<BoardRename>,
) -> Result<axum::Json<Board>, AppError> {
    let board = service::rename_board(&state, actor(&user, &origin), body.id.0, &body.name).await?;
    Ok(axum::Json(board))
}

/// Delete a board
///
/// Its columns and their tickets go with it.
#[utoipa::path(
    delete,
    path = "/boards",
    tag = "kanban",
    request_body = RowToDelete,
    responses(
        (status = 204, description = "Deleted; no body"),
        (status = 404, description = "`Board not found`", body = ErrorBody),
    )
)]
async fn delete_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<RowToDelete>,
) -> Result<StatusCode, AppError> {
    service::delete_board(&state, actor(&user, &origin), body.id.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A whole board
///
/// Its columns in order, each with its tickets in order; one consistent read.
#[utoipa::path(
    get,
    path = "/boards/{board_id}",
    tag = "kanban",
    params(("board_id" = i64, Path, minimum = 0,
        description = "The board's id; anything but an integer names no board (404)")),
    responses(
        (status = 200, description = "The board", body = FullBoard),
        (status = 404, description = "`Board not found`", body = ErrorBody),
    )
)]
async fn full_board(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<FullBoard>, AppError> {
    Ok(axum::Json(
        store::full_board(&state.db, board_id(&raw)?).await?,
    ))
}

// ----- columns -----

/// A new column.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "name": "Doing", "position": "1" }))]
struct NewColumn {
    /// 1 to 100 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: String,
    /// Its place on the board, from 0; at or past the end (or omitted, or null) it goes
    /// last. The columns from there on move one place down.
    #[serde(default)]
    position: Option<Int>,
}

/// A column's new name and/or place; an omitted (or null) field keeps its value.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "id": 9, "name": "Shipped", "position": "0" }))]
struct ColumnChange {
    /// The column's id; it must be on the path's board.
    id: Int,
    /// 1 to 100 characters once trimmed, no control characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
    /// Its new place on the board, from 0; past the end it goes last.
    #[serde(default)]
    position: Option<Int>,
}

/// A board's columns
#[utoipa::path(
    get,
    path = "/boards/{board_id}/columns",
    tag = "kanban",
    params(("board_id" = i64, Path, minimum = 0,
        description = "The board's id; anything but an integer names no board (404)")),
    responses(
        (status = 200, description = "Its columns in order of `position`", body = Vec<Column>,
            example = json!([{ "id": 8, "name": "To do", "position": 0 }, { "id": 9, "name": "Done", "position": 1 }])),
        (status = 404, description = "`Board not found`", body = ErrorBody),
    )
)]
async fn list_columns(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<Vec<Column>>, AppError> {
    Ok(axum::Json(
        store::list_columns(&state.db, board_id(&raw)?).await?,
    ))
}

/// Add a column to a board
#[utoipa::path(
    post,
    path = "/boards/{board_id}/columns",
    tag = "kanban",
    params(("board_id" = i64, Path, minimum = 0,
        description = "The board's id; anything but an integer names no board (404)")),
    request_body = NewColumn,
    responses(
        (status = 201, description = "Created", body = RowCreated),
        (status = 404, description = "`Board not found`", body = ErrorBody),
    )
)]
async fn create_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<NewColumn>,
) -> Result<(StatusCode, axum::Json<RowCreated>), AppError> {
    let board = board_id(&raw)?;
    let column = service::create_column(
        &state,
        actor(&user, &origin),
        board,
        &body.name,
        body.position,
    )
    .await?;
    Ok(created(column.id))
}

/// Rename and/or move a column
#[utoipa::path(
    put,
    path = "/boards/{board_id}/columns",
    tag = "kanban",
    params(("board_id" = i64, Path, minimum = 0,
        description = "The board's id; anything but an integer names no board (404)")),
    request_body = ColumnChange,
    responses(
        (status = 200, description = "The column as it is now", body = Column),
        (status = 404, description = "`Board not found`, or `Column not found` (none with that id on this board)", body = ErrorBody),
    )
)]
async fn update_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ColumnChange>,
) -> Result<axum::Json<Column>, AppError> {
    let board = board_id(&raw)?;
    let column = service::update_column(
        &state,
        actor(&user, &origin),
        board,
        body.id.0,
        body.name.as_deref(),
        body.position,
    )
    .await?;
    Ok(axum::Json(column))
}

/// Delete a column
///
/// Its tickets go with it; the columns after it move up one place.
#[utoipa::path(
    delete,
    path = "/boards/{board_id}/columns",
    tag = "kanban",
    params(("board_id" = i64, Path, minimum = 0,
        description = "The board's id; anything but an integer names no board (404)")),
    request_body = RowToDelete,
    responses(
        (status = 204, description = "Deleted; no body"),
        (status = 404, description = "`Board not found`, or `Column not found` (none with that id on this board)", body = ErrorBody),
    )
)]
async fn delete_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<RowToDelete>,
) -> Result<StatusCode, AppError> {
    let board = board_id(&raw)?;
    service::delete_column(&state, actor(&user, &origin), board, body.id.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- tickets -----

/// A new ticket. `position` is the column to put it in (the old client sends the id
/// of the column it posts to); `order` its place there.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "title": "Write the spec", "description": "Both backends", "position": "8" }))]
struct NewTicket {
    /// 1 to 200 characters once trimmed, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    title: String,
    /// Up to 10 000 characters; line breaks and tabs are kept, other control characters
    /// refused. Omitted or null: empty.
    #[serde(default)]
    #[schema(
        max_length = 10000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: Option<String>,
    /// The id of the column to put it in: the path's column (the default) or another
    /// column of the same board.
    #[serde(default)]
    position: Option<Int>,
    /// Its place in the column, from 0; at or past the end (or omitted) it goes last.
    #[serde(default)]
    order: Option<Int>,
}

/// A ticket change; an omitted (or null) field keeps its value. `position` and
/// `column_id` both name the column the ticket should be in (`column_id` wins when
/// both are sent); `order` its place there.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "id": "21", "title": "Write the spec", "description": "Both backends", "position": "9" }))]
struct TicketChange {
    /// The ticket's id; it must be in the path's column.
    id: Int,
    /// 1 to 200 characters once trimmed, no control characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    title: Option<String>,
    /// Up to 10 000 characters; line breaks and tabs are kept, other control characters
    /// refused.
    #[serde(default)]
    #[schema(
        max_length = 10000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    description: Option<String>,
    /// The id of the column to move it to (the old client's field), on the same board.
    #[serde(default)]
    position: Option<Int>,
    /// The same as `position`, which it overrides.
    #[serde(default)]
    column_id: Option<Int>,
    /// Its place in its (new) column, from 0; past the end it goes last. A move to
    /// another column without it goes last there.
    #[serde(default)]
    order: Option<Int>,
}

/// A column's tickets
#[utoipa::path(
    get,
    path = "/columns/{column_id}/tickets",
    tag = "kanban",
    params(("column_id" = i64, Path, minimum = 0,
        description = "The column's id; anything but an integer names no column (404)")),
    responses(
        (status = 200, description = "Its tickets in order", body = Vec<Ticket>,
            example = json!([{ "id": 21, "title": "Write the spec", "description": "", "position": 8, "order": 0 }])),
        (status = 404, description = "`Column not found`", body = ErrorBody),
    )
)]
async fn list_tickets(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<axum::Json<Vec<Ticket>>, AppError> {
    Ok(axum::Json(
        store::list_tickets(&state.db, column_id(&raw)?).await?,
    ))
}

/// Add a ticket
///
/// Through the path's column, into it or (with `position`) another column of the same
/// board.
#[utoipa::path(
    post,
    path = "/columns/{column_id}/tickets",
    tag = "kanban",
    params(("column_id" = i64, Path, minimum = 0,
        description = "The column's id; anything but an integer names no column (404)")),
    request_body = NewTicket,
    responses(
        (status = 201, description = "Created", body = RowCreated),
        (status = 400, description = "Invalid input (the message names the field), or `position` is a column of another board", body = ErrorBody),
        (status = 404, description = "`Column not found`: the path's column or the one `position` names", body = ErrorBody),
    )
)]
async fn create_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<NewTicket>,
) -> Result<(StatusCode, axum::Json<RowCreated>), AppError> {
    let column = column_id(&raw)?;
    let new = Creation {
        title: &body.title,
        description: body.description.as_deref(),
        target: body.position.map(|p| ("position", p)),
        order: body.order,
    };
    let (_, ticket) = service::create_ticket(&state, actor(&user, &origin), column, new).await?;
    Ok(created(ticket.id))
}

/// Change and/or move a ticket
///
/// The ticket is named by the column it is in (the path) and its `id`; it can move to
/// any column of the same board.
#[utoipa::path(
    put,
    path = "/columns/{column_id}/tickets",
    tag = "kanban",
    params(("column_id" = i64, Path, minimum = 0,
        description = "The column the ticket is in now; anything but an integer names no column (404)")),
    request_body = TicketChange,
    responses(
        (status = 200, description = "The ticket as it is now", body = PlacedTicket),
        (status = 400, description = "Invalid input (the message names the field), or the target column is on another board", body = ErrorBody),
        (status = 404, description = "`Column not found` (the path's, or the target), or `Ticket not found` (none with that id in the path's column)", body = ErrorBody),
    )
)]
async fn update_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<TicketChange>,
) -> Result<axum::Json<PlacedTicket>, AppError> {
    let column = column_id(&raw)?;
    let change = Change {
        title: body.title.as_deref(),
        description: body.description.as_deref(),
        target: match body.column_id {
            Some(id) => Some(("column_id", id)),
            None => body.position.map(|p| ("position", p)),
        },
        order: body.order,
    };
    let ticket =
        service::update_ticket(&state, actor(&user, &origin), column, body.id.0, change).await?;
    Ok(axum::Json(ticket.into()))
}

/// Delete a ticket
///
/// The tickets after it in its column move up one place.
#[utoipa::path(
    delete,
    path = "/columns/{column_id}/tickets",
    tag = "kanban",
    params(("column_id" = i64, Path, minimum = 0,
        description = "The column the ticket is in; anything but an integer names no column (404)")),
    request_body = RowToDelete,
    responses(
        (status = 204, description = "Deleted; no body"),
        (status = 404, description = "`Column not found`, or `Ticket not found` (none with that id in the path's column)", body = ErrorBody),
    )
)]
async fn delete_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<RowToDelete>,
) -> Result<StatusCode, AppError> {
    let column = column_id(&raw)?;
    service::delete_ticket(&state, actor(&user, &origin), column, body.id.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
