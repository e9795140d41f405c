//! The kanban routes of the contract: the old service's method-multiplexed collection
//! paths (the id of the row to change or delete travels in the body), and the whole
//! board. Each method has its own handler and its own policy in the table below:
//! reading needs `view_dashboard`, every change needs `edit`. The rules themselves
//! are [`super::service`]'s, which the web UI calls too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::service::{self, Actor, NewTicket as Creation, TicketChange as Change};
use super::store;
use super::validate::Int;
use super::PlacedTicket;
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::{Json, Origin};
use crate::rbac::Permission;

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

fn actor<'a>(user: &'a CurrentUser, origin: &'a Origin) -> Actor<'a> {
    Actor {
        user: &user.user,
        origin,
    }
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
    let board = service::create_board(&state, actor(&user, &origin), &body.name).await?;
    Ok(created(board.id))
}

async fn rename_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<BoardRename>,
) -> Result<Response, AppError> {
    let board = service::rename_board(&state, actor(&user, &origin), body.id.0, &body.name).await?;
    Ok(axum::Json(board).into_response())
}

async fn delete_board(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    service::delete_board(&state, actor(&user, &origin), body.id.0).await?;
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

async fn update_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ColumnChange>,
) -> Result<Response, AppError> {
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
    Ok(axum::Json(column).into_response())
}

async fn delete_column(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    let board = board_id(&raw)?;
    service::delete_column(&state, actor(&user, &origin), board, body.id.0).await?;
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
    let new = Creation {
        title: &body.title,
        description: body.description.as_deref(),
        target: body.position.map(|p| ("position", p)),
        order: body.order,
    };
    let (_, ticket) = service::create_ticket(&state, actor(&user, &origin), column, new).await?;
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
    Ok(axum::Json(PlacedTicket(ticket)).into_response())
}

async fn delete_ticket(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Path(raw): Path<String>,
    Json(body): Json<ById>,
) -> Result<Response, AppError> {
    let column = column_id(&raw)?;
    service::delete_ticket(&state, actor(&user, &origin), column, body.id.0).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
