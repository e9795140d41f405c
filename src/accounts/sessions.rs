//! A user's view of their own sessions: list them, end one, end all but this one.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::service;
use crate::app::AppState;
use crate::auth::session;
use crate::auth::CurrentUser;
use crate::db;
use crate::error::AppError;
use crate::http::Origin;

pub(super) async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Response, AppError> {
    let sessions: Vec<_> = service::sessions(&state, &caller)
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
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::not_found("Session not found"))?;
    service::revoke_session(&state, &caller, &origin, id).await?;
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
    let revoked = service::revoke_other_sessions(&state, &caller, &origin).await?;
    Ok(axum::Json(json!({
        "success": true,
        "message": "Other sessions revoked",
        "revoked": revoked,
    }))
    .into_response())
}
