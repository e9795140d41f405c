//! A user's view of their own sessions: list them, end one, end all but this one.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::service;
use crate::app::AppState;
use crate::auth::session;
use crate::auth::CurrentUser;
use crate::db;
use crate::error::{AppError, ErrorBody};
use crate::http::{Done, Origin};

/// One of the caller's live sessions.
#[derive(Serialize, ToSchema)]
pub(super) struct SessionView {
    id: i64,
    /// ISO 8601, UTC.
    created_at: String,
    last_seen_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// Whether this is the session the request came with.
    current: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": true,
    "sessions": [{
        "id": 12, "created_at": "2026-11-30T09:12:44Z", "last_seen_at": "2026-11-30T10:02:10Z",
        "ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "current": true
    }]
}))]
pub(super) struct SessionList {
    success: bool,
    sessions: Vec<SessionView>,
}

/// The caller's sessions
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "accounts",
    responses((status = 200, description = "Every live session of the caller's account, newest first", body = SessionList))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<axum::Json<SessionList>, AppError> {
    let sessions = service::sessions(&state, &caller)
        .await?
        .into_iter()
        .map(|s| SessionView {
            id: s.id,
            created_at: db::iso8601(s.created_at),
            last_seen_at: db::iso8601(s.last_seen_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.id == caller.session.id,
        })
        .collect();
    Ok(axum::Json(SessionList {
        success: true,
        sessions,
    }))
}

/// End one of the caller's sessions
///
/// Ending the current one is signing out: its cookies are cleared.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The session's id, from `GET /sessions`")),
    responses(
        (status = 200, description = "Ended", body = Done,
            example = json!({ "success": true, "message": "Session revoked" })),
        (status = 404, description = "No live session of the caller's has that id", body = ErrorBody),
    )
)]
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::not_found("Session not found"))?;
    service::revoke_session(&state, &caller, &origin, id).await?;
    let mut response = Done::new("Session revoked").into_response();
    if id == caller.session.id {
        for cookie in session::clear_cookies(&state.config) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "message": "Other sessions revoked", "revoked": 2 }))]
pub(super) struct Revoked {
    success: bool,
    message: &'static str,
    /// How many sessions were ended.
    revoked: u64,
}

/// End every other session of the caller's
#[utoipa::path(
    post,
    path = "/sessions/revoke_others",
    tag = "accounts",
    responses((status = 200, description = "Every session but this one ended", body = Revoked))
)]
pub(super) async fn revoke_others(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
) -> Result<axum::Json<Revoked>, AppError> {
    let revoked = service::revoke_other_sessions(&state, &caller, &origin).await?;
    Ok(axum::Json(Revoked {
        success: true,
        message: "Other sessions revoked",
        revoked,
    }))
}
