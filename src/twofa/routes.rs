//! The two-factor routes of the contract; both need a session.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Update;
use crate::app::AppState;
use crate::auth::policy::Policy::LoggedIn;
use crate::auth::policy::Routes;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::{Json, Origin};

/// Both routes act on the caller's own account: a session is all they need.
pub fn routes() -> Routes {
    Routes::new().get("/twofa_uri", LoggedIn, twofa_uri).post(
        "/update_twofa",
        LoggedIn,
        update_twofa,
    )
}

async fn twofa_uri(State(state): State<AppState>, user: CurrentUser) -> Result<Response, AppError> {
    let enrollment = super::begin_enrollment(&state, &user.user).await?;
    Ok(axum::Json(json!({
        "success": true,
        "message": "2FA confirmation",
        "uri": enrollment.uri,
        "qr_svg": enrollment.qr_svg,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct UpdateTwofaBody {
    enabled: bool,
    /// A string, or a number from clients that send the code as one.
    #[serde(default)]
    token: Option<Value>,
}

const UPDATE_FAILED: &str = "Failed to update 2FA. Invalid token or not provided.";

fn token_text(token: Option<&Value>) -> Option<String> {
    match token? {
        Value::String(s) if !s.trim().is_empty() && s.len() <= 64 => Some(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .filter(|n| *n < 1_000_000)
            .map(|n| format!("{n:06}")),
        _ => None,
    }
}

async fn update_twofa(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<UpdateTwofaBody>,
) -> Result<Response, AppError> {
    let Some(token) = token_text(body.token.as_ref()) else {
        return Err(AppError::invalid(UPDATE_FAILED));
    };
    let recovery_codes =
        match super::update(&state, &user.user, &origin, body.enabled, &token).await? {
            Update::Refused => return Err(AppError::invalid(UPDATE_FAILED)),
            Update::Enabled(codes) => Some(codes),
            Update::Disabled => None,
        };
    let mut answer = json!({ "success": true, "message": "2FA updated successfully" });
    if let Some(codes) = recovery_codes {
        answer["recovery_codes"] = json!(codes);
    }
    Ok(axum::Json(answer).into_response())
}
