//! The two-factor routes of the contract; both need a session.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::Update;
use crate::app::AppState;
use crate::auth::policy::Policy::LoggedIn;
use crate::auth::policy::Routes;
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::http::{Json, Origin};

/// Both routes act on the caller's own account: a session is all they need.
pub fn routes() -> Routes {
    Routes::new()
        .api(LoggedIn, routes!(twofa_uri))
        .api(LoggedIn, routes!(update_twofa))
}

/// A pending secret, to load into an authenticator app.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": true,
    "message": "2FA confirmation",
    "uri": "otpauth://totp/Gatehouse:ada%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=Gatehouse",
    "qr_svg": "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 33 33\">…</svg>"
}))]
struct TwofaUri {
    success: bool,
    message: &'static str,
    /// `otpauth://totp/<issuer>:<email>?secret=<base32>&issuer=<issuer>`.
    uri: String,
    /// The same URI as a QR code, an SVG document.
    qr_svg: String,
}

/// A new pending 2FA secret
///
/// The secret is pending: it does not replace an active one until `POST /update_twofa`
/// confirms it with a code. Each call makes a new one.
#[utoipa::path(
    get,
    path = "/twofa_uri",
    tag = "twofa",
    responses((status = 200, description = "The pending secret as a URI and a QR code", body = TwofaUri))
)]
async fn twofa_uri(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<axum::Json<TwofaUri>, AppError> {
    let enrollment = super::begin_enrollment(&state, &user.user).await?;
    Ok(axum::Json(TwofaUri {
        success: true,
        message: "2FA confirmation",
        uri: enrollment.uri,
        qr_svg: enrollment.qr_svg,
    }))
}

/// Turn 2FA on (confirming the pending secret) or off.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "enabled": true, "token": "492039" }))]
struct UpdateTwofaBody {
    /// `true` to confirm the pending secret and turn 2FA on, `false` to turn it off.
    enabled: bool,
    /// A code of the authenticator app (or, to turn 2FA off, a recovery code): text of 1
    /// to 64 characters, or the 6-digit code as a number (0 to 999999, leading zeros
    /// restored). Missing or anything else: 400.
    #[serde(default)]
    #[schema(schema_with = token_schema)]
    token: Option<Value>,
}

/// `token`: text, or the code as a number, as old clients send it.
fn token_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some(r"\S")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(999_999)),
        )
        .description(Some("A code as text, or a 6-digit code as a number"))
        .examples([Value::from("492039")])
}

/// Turns 2FA on or off; on turning it on, the recovery codes, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": true,
    "message": "2FA updated successfully",
    "recovery_codes": ["k3m7q2xw9a", "p4n8r5tz2b", "c6d2f7gh3j", "w9x4y2za5k", "m3n7p2qr8s",
        "t5u9v3wx7y", "a2b6c4de8f", "g3h7j2kl5m", "q8r3s6tu2v", "x4y8z2ab6c"]
}))]
struct TwofaUpdated {
    success: bool,
    message: &'static str,
    /// Only when 2FA was turned on: ten single-use codes that stand in for the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    recovery_codes: Option<Vec<String>>,
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

/// Turn 2FA on or off
///
/// On: `token` is a code of the pending secret from `GET /twofa_uri`, which becomes the
/// active one; the answer carries ten recovery codes, shown this once. Off: `token` is
/// a code of the active secret or a recovery code. Wrong codes are throttled as at
/// login.
#[utoipa::path(
    post,
    path = "/update_twofa",
    tag = "twofa",
    request_body = UpdateTwofaBody,
    responses(
        (status = 200, description = "Updated; `recovery_codes` when turned on", body = TwofaUpdated),
        (status = 400, description = "`Failed to update 2FA. Invalid token or not provided.`, or a missing or non-boolean `enabled`", body = ErrorBody),
        (status = 429, description = "Too many wrong codes from this address or for this account; see `Retry-After`", body = ErrorBody),
    )
)]
async fn update_twofa(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    Json(body): Json<UpdateTwofaBody>,
) -> Result<axum::Json<TwofaUpdated>, AppError> {
    let Some(token) = token_text(body.token.as_ref()) else {
        return Err(AppError::invalid(UPDATE_FAILED));
    };
    let recovery_codes =
        match super::update(&state, &user.user, &origin, body.enabled, &token).await? {
            Update::Refused => return Err(AppError::invalid(UPDATE_FAILED)),
            Update::Enabled(codes) => Some(codes),
            Update::Disabled => None,
        };
    Ok(axum::Json(TwofaUpdated {
        success: true,
        message: "2FA updated successfully",
        recovery_codes,
    }))
}
