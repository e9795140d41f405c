//! The kanban pages (`view_dashboard` reads, `edit` writes, as on the JSON routes):
//! the list of boards, a board with its columns and tickets, a page per column and per
//! ticket with their forms, and the board's live stream.
//!
//! Every change goes through `kanban::service`, the JSON routes' rules and activity log
//! entries. Every form works without JavaScript (POST → 303 → the board with a flash,
//! or a 4xx page for input the rules refuse); the arrow buttons on each card and column
//! are buttons of the board's one `moves` form (one CSRF field for all of them keeps a
//! big board's page small). With JavaScript, `static/ui.js` drags tickets and columns (or
//! moves them from the keyboard) and posts the same move forms with
//! `Accept: application/json`: those get 204 or a 4xx `{"message"}` to roll back with.
//!
//! Live boards: `/ui/boards/<id>/events` is a Server-Sent Events stream that first
//! sends the board's current version, then a new one whenever the board changes (on
//! any instance, see `kanban::events`); the script then fetches `/ui/boards/<id>/live`,
//! the board's HTML alone, and swaps it in.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::page::Shell;
use super::users::{caller, Confirmed};
use super::{Ctx, Form, PageError, PageResult};
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::session;
use crate::error::AppError;
use crate::kanban::service::{self, Actor, NewTicket, TicketChange};
use crate::kanban::validate::Int;
use crate::kanban::{store, Board, Column, ColumnWithTickets, FullBoard, Ticket};
use crate::rbac::Permission;

const READ: Policy = Needs(Permission::ViewDashboard);
const WRITE: Policy = Needs(Permission::Edit);
/// A comment this often keeps proxies from closing a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How soon a browser reconnects a stream that broke.
const RECONNECT: Duration = Duration::from_secs(1);

pub fn routes() -> Routes {
    Routes::pages()
        .get("/ui/boards", READ, list_page)
        .post("/ui/boards", WRITE, create_board)
        .get("/ui/boards/{board}", READ, board_page)
        .get("/ui/boards/{board}/live", READ, board_fragment)
        .get("/ui/boards/{board}/events", READ, board_events)
        .post("/ui/boards/{board}/rename", WRITE, rename_board)
        .post("/ui/boards/{board}/step", WRITE, step)
        .post("/ui/boards/{board}/describe", WRITE, describe_board)
        .get("/ui/boards/{board}/delete", WRITE, confirm_delete)
        .post("/ui/boards/{board}/delete", WRITE, delete_board)
        .post("/ui/boards/{board}/columns", WRITE, create_column)
        .get("/ui/boards/{board}/columns/{column}", WRITE, column_page)
        .post(
            "/ui/boards/{board}/columns/{column}/rename",
            WRITE,
            rename_column,
        )
        .post(
            "/ui/boards/{board}/columns/{column}/move",
            WRITE,
            move_column,
        )
        .post(
            "/ui/boards/{board}/columns/{column}/describe",
            WRITE,
            describe_column,
        )
        .post(
            "/ui/boards/{board}/columns/{column}/delete",
            WRITE,
            delete_column,
        )
        .post(
            "/ui/boards/{board}/columns/{column}/tickets",
            WRITE,
            create_ticket,
        )
        .get("/ui/boards/{board}/tickets/{ticket}", READ, ticket_page)
        .post(
            "/ui/boards/{board}/tickets/{ticket}/edit",
            WRITE,
            edit_ticket,
        )
        .post(
            "/ui/boards/{board}/tickets/{ticket}/move",
            WRITE,
            move_ticket,
        )
        .post(
            "/ui/boards/{board}/tickets/{ticket}/delete",
            WRITE,
            delete_ticket,
        )
}

// ----- shared -----

fn id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| AppError::not_found(format!("No such {what}")))
}

fn board_url(board: i64) -> String {
    format!("/ui/boards/{board}")
}

fn can_edit(ctx: &Ctx) -> bool {
    ctx.auth
        .as_ref()
        .is_some_and(|a| a.access.has(Permission::Edit))
}

fn actor(ctx: &Ctx) -> Result<Actor<'_>, AppError> {
    Ok(Actor {
        user: &caller(ctx)?.user,
        origin: &ctx.origin,
    })
}

/// Whether the script sent this form and wants a short answer instead of a page.
fn from_script(ctx: &Ctx) -> bool {
    ctx.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// How a change ends: back to the board (at the row it changed) with a flash, or for
/// the script 204. Input the rules refuse is a 4xx page (for the script, the status
/// with `{"message"}`), so a browser without JavaScript learns what to fix.
fn outcome<T>(ctx: &Ctx, result: Result<T, AppError>, to: &str, done: &str) -> PageResult {
    match result {
        Ok(_) if from_script(ctx) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(_) => Ok(ctx.redirect(to, Some((true, done)))),
        Err(e @ (AppError::Internal(_) | AppError::Unavailable(_))) => Err(e.into()),
        Err(e) if from_script(ctx) => Ok((
            e.status(),
            axum::Json(serde_json::json!({ "message": e.to_string() })),
        )
            .into_response()),
        Err(e) => Err(e.into()),
    }
}

/// The kanban store's failures, as the JSON routes map them.
impl From<store::StoreError> for PageError {
    fn from(e: store::StoreError) -> Self {
        PageError::App(e.into())
    }
}

async fn load_board(ctx: &Ctx, raw: &str) -> Result<(i64, FullBoard), AppError> {
    let board = id(raw, "board")?;
    // The version first: a change between the two reads then shows as a newer
    // version, and the browser fetches the board again.
    let version = store::board_version(&ctx.state.db, board)
        .await?
        .ok_or_else(|| AppError::not_found("No such board"))?;
    let full = store::full_board(&ctx.state.db, board)
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound(_) => AppError::not_found("No such board"),
            e => e.into(),
        })?;
    Ok((version, full))
}

// ----- the list -----

#[derive(Template)]
#[template(path = "ui/boards.html")]
struct ListPage {
    shell: Shell,
    boards: Vec<Board>,
    editable: bool,
}

async fn list_page(ctx: Ctx) -> PageResult {
    let boards = store::list_boards(&ctx.state.db).await?;
    let page = ListPage {
        shell: Shell::new(&ctx, "Boards"),
        boards,
        editable: can_edit(&ctx),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn create_board(ctx: Ctx, Form(form): Form<NameForm>) -> PageResult {
    let board = service::create_board(&ctx.state, actor(&ctx)?, &form.name).await?;
    Ok(ctx.redirect(
        &board_url(board.id),
        Some((true, "The board is created. Add its first column.")),
    ))
}

// ----- a board -----

/// A column as the board shows it, with what its arrow buttons may do.
struct ColumnView {
    column: ColumnWithTickets,
    description: String,
    first: bool,
    last: bool,
}

/// The board itself: what the page shows below its header, and what the live
/// fragment sends.
struct BoardView {
    id: i64,
    name: String,
    description: String,
    version: i64,
    columns: Vec<ColumnView>,
    editable: bool,
    csrf: String,
}

impl BoardView {
    /// The board `raw` as its page shows it.
    async fn load(ctx: &Ctx, raw: &str) -> Result<Self, AppError> {
        let (version, full) = load_board(ctx, raw).await?;
        let (description, mut described) = store::descriptions(&ctx.state.db, full.id)
            .await?
            .unwrap_or_default();
        let count = full.columns.len();
        Ok(BoardView {
            id: full.id,
            name: full.name,
            description,
            version,
            columns: full
                .columns
                .into_iter()
                .enumerate()
                .map(|(i, column)| ColumnView {
                    description: described
                        .iter_mut()
                        .find(|(id, _)| *id == column.id)
                        .map(|(_, d)| std::mem::take(d))
                        .unwrap_or_default(),
                    column,
                    first: i == 0,
                    last: i + 1 == count,
                })
                .collect(),
            editable: can_edit(ctx),
            csrf: ctx.csrf_token(),
        })
    }
}

#[derive(Template)]
#[template(path = "ui/board.html")]
struct BoardPage {
    shell: Shell,
    view: BoardView,
}

#[derive(Template)]
#[template(path = "ui/board_columns.html")]
struct BoardFragment {
    view: BoardView,
}

async fn board_page(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    let view = BoardView::load(&ctx, &raw).await?;
    let page = BoardPage {
        shell: Shell::new(&ctx, view.name.clone()),
        view,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn board_fragment(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    let fragment = BoardFragment {
        view: BoardView::load(&ctx, &raw).await?,
    };
    Ok(ctx.render(StatusCode::OK, fragment.render()?))
}

async fn rename_board(ctx: Ctx, Path(raw): Path<String>, Form(form): Form<NameForm>) -> PageResult {
    let board = id(&raw, "board")?;
    let result = service::rename_board(&ctx.state, actor(&ctx)?, board, &form.name).await;
    outcome(&ctx, result, &board_url(board), "The board is renamed.")
}

#[derive(Deserialize)]
struct DescriptionForm {
    description: String,
}

async fn describe_board(
    ctx: Ctx,
    Path(raw): Path<String>,
    Form(form): Form<DescriptionForm>,
) -> PageResult {
    let board = id(&raw, "board")?;
    let result = service::describe(&ctx.state, actor(&ctx)?, board, None, &form.description).await;
    outcome(
        &ctx,
        result,
        &board_url(board),
        "The board's description is saved.",
    )
}

async fn describe_column(
    ctx: Ctx,
    Path((board, column)): Path<(String, String)>,
    Form(form): Form<DescriptionForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let column = id(&column, "column")?;
    let result = service::describe(
        &ctx.state,
        actor(&ctx)?,
        board,
        Some(column),
        &form.description,
    )
    .await;
    let to = format!("{}#column-{column}", board_url(board));
    outcome(&ctx, result, &to, "The column's description is saved.")
}

#[derive(Template)]
#[template(path = "ui/board_delete.html")]
struct ConfirmPage {
    shell: Shell,
    board: FullBoard,
    tickets: usize,
}

async fn confirm_delete(ctx: Ctx, Path(raw): Path<String>) -> PageResult {
    let (_, board) = load_board(&ctx, &raw).await?;
    let page = ConfirmPage {
        shell: Shell::new(&ctx, "Delete this board?"),
        tickets: board.columns.iter().map(|c| c.tickets.len()).sum(),
        board,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn delete_board(ctx: Ctx, Path(raw): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let board = id(&raw, "board")?;
    let result = service::delete_board(&ctx.state, actor(&ctx)?, board).await;
    outcome(&ctx, result, "/ui/boards", "The board is deleted.")
}

// ----- columns -----

#[derive(Deserialize)]
struct PlaceForm {
    /// A place counted from 1, as people count; absent with `step`.
    #[serde(default)]
    position: Option<String>,
    /// One of the arrow buttons: `left`, `right`, `up` or `down`.
    #[serde(default)]
    step: Option<String>,
}

/// A place typed into a form, counted from 1, as the 0-based place the rules use.
fn place(field: &str, raw: &str) -> Result<Int, AppError> {
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= 1 => Ok(Int(n - 1)),
        _ => Err(AppError::invalid(format!(
            "{field} must be a whole number of at least 1"
        ))),
    }
}

async fn create_column(
    ctx: Ctx,
    Path(raw): Path<String>,
    Form(form): Form<NameForm>,
) -> PageResult {
    let board = id(&raw, "board")?;
    let result = service::create_column(&ctx.state, actor(&ctx)?, board, &form.name, None).await;
    let to = match &result {
        Ok(column) => format!("{}#column-{}", board_url(board), column.id),
        Err(_) => board_url(board),
    };
    outcome(&ctx, result, &to, "The column is added.")
}

/// The column `raw` of the board, with its place and how many columns there are.
async fn find_column(
    ctx: &Ctx,
    board: i64,
    raw: &str,
) -> Result<(ColumnWithTickets, usize), AppError> {
    let column = id(raw, "column")?;
    let (_, full) = load_board(ctx, &board.to_string()).await?;
    let count = full.columns.len();
    full.columns
        .into_iter()
        .find(|c| c.id == column)
        .map(|c| (c, count))
        .ok_or_else(|| AppError::not_found("No such column"))
}

#[derive(Template)]
#[template(path = "ui/board_column.html")]
struct ColumnPage {
    shell: Shell,
    board: i64,
    board_name: String,
    column: ColumnWithTickets,
    description: String,
    count: usize,
}

async fn column_page(ctx: Ctx, Path((board, column)): Path<(String, String)>) -> PageResult {
    let column = id(&column, "column")?;
    let view = BoardView::load(&ctx, &board).await?;
    let count = view.columns.len();
    let shown = view
        .columns
        .into_iter()
        .find(|c| c.column.id == column)
        .ok_or_else(|| AppError::not_found("No such column"))?;
    let page = ColumnPage {
        shell: Shell::new(&ctx, format!("Column {}", shown.column.name)),
        board: view.id,
        board_name: view.name,
        column: shown.column,
        description: shown.description,
        count,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn rename_column(
    ctx: Ctx,
    Path((board, column)): Path<(String, String)>,
    Form(form): Form<NameForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let column = id(&column, "column")?;
    let result = service::update_column(
        &ctx.state,
        actor(&ctx)?,
        board,
        column,
        Some(&form.name),
        None,
    )
    .await;
    let to = format!("{}#column-{column}", board_url(board));
    outcome(&ctx, result, &to, "The column is renamed.")
}

/// Moves column `column` to the place `position` (counted from 1) or one `step`.
async fn column_moved(
    ctx: &Ctx,
    board: i64,
    column: i64,
    position: Option<&str>,
    step: Option<&str>,
) -> Result<Column, AppError> {
    let (current, _) = find_column(ctx, board, &column.to_string()).await?;
    let to = match (step, position) {
        (Some("left"), _) => Int((current.position - 1).max(0)),
        (Some("right"), _) => Int(current.position + 1),
        (Some(_), _) => return Err(AppError::invalid("step must be left or right")),
        (None, Some(raw)) => place("position", raw)?,
        (None, None) => return Err(AppError::invalid("position is required")),
    };
    service::update_column(&ctx.state, actor(ctx)?, board, column, None, Some(to)).await
}

async fn move_column(
    ctx: Ctx,
    Path((board, column)): Path<(String, String)>,
    Form(form): Form<PlaceForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let column = id(&column, "column")?;
    let result = column_moved(
        &ctx,
        board,
        column,
        form.position.as_deref(),
        form.step.as_deref(),
    )
    .await;
    let back = format!("{}#column-{column}", board_url(board));
    outcome(&ctx, result, &back, "The column is moved.")
}

async fn delete_column(
    ctx: Ctx,
    Path((board, column)): Path<(String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let board = id(&board, "board")?;
    let column = id(&column, "column")?;
    let result = service::delete_column(&ctx.state, actor(&ctx)?, board, column).await;
    outcome(&ctx, result, &board_url(board), "The column is deleted.")
}

// ----- tickets -----

#[derive(Deserialize)]
struct TicketForm {
    title: String,
    #[serde(default)]
    description: String,
}

async fn create_ticket(
    ctx: Ctx,
    Path((board, column)): Path<(String, String)>,
    Form(form): Form<TicketForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let (column, _) = find_column(&ctx, board, &column).await?;
    let new = NewTicket {
        title: &form.title,
        description: Some(&form.description),
        target: None,
        order: None,
    };
    let result = service::create_ticket(&ctx.state, actor(&ctx)?, column.id, new).await;
    let to = match &result {
        Ok((_, ticket)) => format!("{}#ticket-{}", board_url(board), ticket.id),
        Err(_) => board_url(board),
    };
    outcome(&ctx, result, &to, "The ticket is added.")
}

/// The ticket `raw` of the board, with the board.
async fn find_ticket(ctx: &Ctx, board: i64, raw: &str) -> Result<(Ticket, FullBoard), AppError> {
    let ticket = id(raw, "ticket")?;
    let (_, full) = load_board(ctx, &board.to_string()).await?;
    full.columns
        .iter()
        .flat_map(|c| c.tickets.iter())
        .find(|t| t.id == ticket)
        .cloned()
        .map(|t| (t, full))
        .ok_or_else(|| AppError::not_found("No such ticket"))
}

#[derive(Template)]
#[template(path = "ui/board_ticket.html")]
struct TicketPage {
    shell: Shell,
    board: FullBoard,
    ticket: Ticket,
    column_name: String,
    editable: bool,
}

async fn ticket_page(ctx: Ctx, Path((board, ticket)): Path<(String, String)>) -> PageResult {
    let board = id(&board, "board")?;
    let (ticket, board) = find_ticket(&ctx, board, &ticket).await?;
    let column_name = board
        .columns
        .iter()
        .find(|c| c.id == ticket.column_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let page = TicketPage {
        shell: Shell::new(&ctx, ticket.title.clone()),
        editable: can_edit(&ctx),
        board,
        ticket,
        column_name,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn edit_ticket(
    ctx: Ctx,
    Path((board, ticket)): Path<(String, String)>,
    Form(form): Form<TicketForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let ticket = id(&ticket, "ticket")?;
    let column = store::ticket_column(&ctx.state.db, board, ticket)
        .await?
        .ok_or_else(|| AppError::not_found("No such ticket"))?;
    let change = TicketChange {
        title: Some(&form.title),
        description: Some(&form.description),
        target: None,
        order: None,
    };
    let result = service::update_ticket(&ctx.state, actor(&ctx)?, column, ticket, change).await;
    let to = format!("{}#ticket-{ticket}", board_url(board));
    outcome(&ctx, result, &to, "The ticket is saved.")
}

#[derive(Deserialize)]
struct TicketMoveForm {
    /// The column to move to; the ticket's own when absent.
    #[serde(default)]
    column: Option<String>,
    /// The place there, counted from 1; the end of another column when absent.
    #[serde(default)]
    position: Option<String>,
    /// One of the arrow buttons: `up`, `down`, `left` or `right`.
    #[serde(default)]
    step: Option<String>,
}

/// Where the arrow buttons take a ticket: a place up or down in its column, or the
/// same place (or the end) in the column to the left or right.
fn stepped(
    full: &FullBoard,
    ticket: &Ticket,
    step: &str,
) -> Result<(Option<i64>, Option<Int>), AppError> {
    let at = full
        .columns
        .iter()
        .position(|c| c.id == ticket.column_id)
        .ok_or_else(|| AppError::not_found("No such ticket"))?;
    let beside = |offset: isize| {
        at.checked_add_signed(offset)
            .and_then(|i| full.columns.get(i))
            .map(|c| c.id)
            .ok_or_else(|| AppError::invalid("There is no column on that side"))
    };
    Ok(match step {
        "up" => (None, Some(Int((ticket.order - 1).max(0)))),
        "down" => (None, Some(Int(ticket.order + 1))),
        "left" => (Some(beside(-1)?), Some(Int(ticket.order))),
        "right" => (Some(beside(1)?), Some(Int(ticket.order))),
        _ => return Err(AppError::invalid("step must be up, down, left or right")),
    })
}

/// Moves ticket `ticket` by its move form or one `step`.
async fn ticket_moved(
    ctx: &Ctx,
    board: i64,
    ticket: i64,
    form: &TicketMoveForm,
) -> Result<Ticket, AppError> {
    let (ticket, full) = find_ticket(ctx, board, &ticket.to_string()).await?;
    let (target, order) = match form.step.as_deref() {
        Some(step) => stepped(&full, &ticket, step)?,
        None => {
            let target = form
                .column
                .as_deref()
                .map(|raw| id(raw, "column"))
                .transpose()?;
            let order = form
                .position
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .map(|p| place("position", p))
                .transpose()?;
            (target, order)
        }
    };
    if target.is_some_and(|t| !full.columns.iter().any(|c| c.id == t)) {
        return Err(AppError::not_found("No such column"));
    }
    let change = TicketChange {
        title: None,
        description: None,
        target: target.map(|t| ("column", Int(t))),
        // Without a place the ticket stays put in its own column.
        order: order.or(Some(Int(ticket.order)).filter(|_| target.is_none())),
    };
    service::update_ticket(&ctx.state, actor(ctx)?, ticket.column_id, ticket.id, change).await
}

async fn move_ticket(
    ctx: Ctx,
    Path((board, ticket)): Path<(String, String)>,
    Form(form): Form<TicketMoveForm>,
) -> PageResult {
    let board = id(&board, "board")?;
    let ticket = id(&ticket, "ticket")?;
    let result = ticket_moved(&ctx, board, ticket, &form).await;
    let to = format!("{}#ticket-{ticket}", board_url(board));
    outcome(&ctx, result, &to, "The ticket is moved.")
}

#[derive(Deserialize)]
struct StepForm {
    /// `ticket <id> up|down|left|right` or `column <id> left|right`: the arrow button
    /// pressed, all of them buttons of the board's one `moves` form.
    step: String,
}

async fn step(ctx: Ctx, Path(board): Path<String>, Form(form): Form<StepForm>) -> PageResult {
    let board = id(&board, "board")?;
    let mut parts = form.step.split(' ');
    let (kind, raw, direction) = (parts.next(), parts.next(), parts.next());
    let (Some(kind), Some(raw), Some(direction), None) = (kind, raw, direction, parts.next())
    else {
        return Err(AppError::invalid("The arrow button sent something else").into());
    };
    match kind {
        "ticket" => {
            let ticket = id(raw, "ticket")?;
            let form = TicketMoveForm {
                column: None,
                position: None,
                step: Some(direction.to_owned()),
            };
            let result = ticket_moved(&ctx, board, ticket, &form).await;
            let to = format!("{}#ticket-{ticket}", board_url(board));
            outcome(&ctx, result, &to, "The ticket is moved.")
        }
        "column" => {
            let column = id(raw, "column")?;
            let result = column_moved(&ctx, board, column, None, Some(direction)).await;
            let to = format!("{}#column-{column}", board_url(board));
            outcome(&ctx, result, &to, "The column is moved.")
        }
        _ => Err(AppError::invalid("The arrow button sent something else").into()),
    }
}

async fn delete_ticket(
    ctx: Ctx,
    Path((board, ticket)): Path<(String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let board = id(&board, "board")?;
    let ticket = id(&ticket, "ticket")?;
    let column = store::ticket_column(&ctx.state.db, board, ticket)
        .await?
        .ok_or_else(|| AppError::not_found("No such ticket"))?;
    let result = service::delete_ticket(&ctx.state, actor(&ctx)?, column, ticket).await;
    outcome(&ctx, result, &board_url(board), "The ticket is deleted.")
}

// ----- the live stream -----

/// One open stream: the board it follows, the session that opened it, and the version
/// it last sent.
struct Live {
    state: AppState,
    board: i64,
    session_token: String,
    changes: tokio::sync::broadcast::Receiver<crate::kanban::events::Change>,
    sent: Option<i64>,
    /// Whether to read the version without waiting for an announcement (at first, and
    /// after falling behind).
    read_now: bool,
    done: bool,
}

impl Live {
    /// The next event: the version whenever it differs from the one last sent, or
    /// `deleted` once the board is gone (which ends the stream). A stream ends too when
    /// the server shuts down or the database cannot be read; the browser reconnects and
    /// is sent the current version first.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if self.done {
                return None;
            }
            if !self.read_now {
                tokio::select! {
                    () = self.state.boards.closed() => return None,
                    received = self.changes.recv() => match received {
                        Ok(change) if change.concerns(self.board) => {}
                        Ok(_) => continue,
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return None,
                    },
                }
            }
            self.read_now = false;
            if !self.still_allowed().await {
                return None;
            }
            match store::board_version(&self.state.db, self.board).await {
                Ok(Some(version)) if Some(version) == self.sent => {}
                Ok(Some(version)) => {
                    let first = self.sent.is_none();
                    self.sent = Some(version);
                    let mut event = Event::default().event("version").data(version.to_string());
                    if first {
                        event = event.retry(RECONNECT);
                    }
                    return Some((Ok(event), self));
                }
                Ok(None) => {
                    self.done = true;
                    // Browsers drop events without data: this one carries the id.
                    let event = Event::default()
                        .event("deleted")
                        .data(self.board.to_string());
                    return Some((Ok(event), self));
                }
                Err(e) => {
                    tracing::warn!(error = %e, board = self.board, "live board stream ends");
                    return None;
                }
            }
        }
    }
}

impl Live {
    /// Whether the session that opened the stream may still read boards. Checked
    /// before every event, so a sign-out, a revoked session or a withdrawn permission
    /// ends the stream instead of telling it of the next change; the browser's
    /// reconnection is then refused.
    async fn still_allowed(&self) -> bool {
        let state = &self.state;
        let resolved = session::resolve(
            &state.db,
            &state.config,
            &state.sessions,
            &self.session_token,
        )
        .await;
        matches!(resolved, Ok(Some(auth)) if READ.check(Some(&auth)).is_ok())
    }
}

async fn board_events(
    ctx: Ctx,
    Path(raw): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let board = id(&raw, "board")?;
    // The route's policy has resolved this cookie already.
    let session_token = session::cookie(&ctx.headers, session::SESSION_COOKIE)
        .ok_or_else(AppError::login_required)?
        .to_owned();
    // Subscribed before the first read, so no change can fall between the two.
    let changes = ctx.state.boards.subscribe();
    store::board_version(&ctx.state.db, board)
        .await?
        .ok_or_else(|| AppError::not_found("No such board"))?;
    let live = Live {
        state: ctx.state.clone(),
        board,
        session_token,
        changes,
        sent: None,
        read_now: true,
        done: false,
    };
    let stream = stream::unfold(live, Live::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}
