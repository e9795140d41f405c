//! A user's view of their own sessions: list them, end one, end all but this one.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::store;
use crate::app::AppState;
use crate::auth::session;
use crate::auth::CurrentUser;
use crate::db;
use crate::error::AppError;
use crate::http::Origin;
use crate::logs::{Level, LogEntry};

pub(super) async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Response, AppError> {
    let idle = session::secs(state.config.session_idle_timeout);
    let sessions: Vec<_> = store::live_sessions(&state.db, caller.user.id, idle)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": db::iso8601(s.created_at),
                "last_seen_at": db::iso8601(s.last_seen_at),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": s.id == caller.session.id,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "success": true, "sessions": sessions })).into_response())
}

/// Ends one of the caller's sessions; ending the current one is logging out.
pub(super) async fn revoke(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let not_found = || AppError::not_found("Session not found");
    let id: i64 = id.parse().map_err(|_| not_found())?;
    if !store::revoke_own_session(&state.db, caller.user.id, id).await? {
        return Err(not_found());
    }
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(caller.user.id));
    state.activity.record(
        LogEntry::auth(Level::Info, "session revoked")
            .user(&caller.user)
            .origin(&origin)
            .details(json!({ "session_id": id, "current": id == caller.session.id })),
    );
    let mut response =
        axum::Json(json!({ "success": true, "message": "Session revoked" })).into_response();
    if id == caller.session.id {
        for cookie in session::clear_cookies(&state.config) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
    }
    Ok(response)
}

pub(super) async fn revoke_others(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
) -> Result<Response, AppError> {
    let revoked =
        store::revoke_other_sessions(&state.db, caller.user.id, caller.session.id).await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(caller.user.id));
    state.activity.record(
        LogEntry::auth(Level::Info, "other sessions revoked")
            .user(&caller.user)
            .origin(&origin)
            .details(json!({ "revoked": revoked })),
    );
    Ok(axum::Json(json!({
        "success": true,
        "message": "Other sessions revoked",
        "revoked": revoked,
    }))
    .into_response())
}
