//! Forgotten passwords: the reset request and the reset itself.
//!
//! The request answers the same sentence, at about the same time, whether or not the
//! email has an account: the lookup and the mail happen after the answer is sent.
//! Reset tokens are 256-bit random values stored hashed, used once, valid for an hour,
//! and retired by any password change. A reset ends every session of the account and
//! tells its owner by email.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use super::store::{self, TokenPurpose};
use super::{emails, validate, User};
use crate::app::AppState;
use crate::auth::cache::Scope;
use crate::auth::session;
use crate::db;
use crate::error::AppError;
use crate::error::ErrorBody;
use crate::http::{Done, Json, Origin};
use crate::logs::{ActivityLog, Level, LogEntry};
use crate::throttle::{self, Attempt};

pub const RESET_TOKEN_TTL_SECS: i64 = 3600;
pub const RESET_SENT: &str =
    "If an account exists for that email, a password reset link has been sent";
pub const RESET_INVALID: &str = "The password reset link is invalid, has expired or has been used";

/// Whose password to reset.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "email": "ada@example.com" }))]
pub(super) struct ForgotBody {
    #[schema(format = "email", max_length = 254)]
    email: String,
}

/// Ask for a password reset link
///
/// The same answer whether or not the address has an account; the link, valid for an
/// hour, is emailed when it has.
#[utoipa::path(
    post,
    path = "/forgot_password",
    tag = "accounts",
    request_body = ForgotBody,
    responses(
        (status = 200, description = "Taken", body = Done,
            example = json!({ "success": true, "message": RESET_SENT })),
        (status = 429, description = "Too many requests from this address or for this email; see `Retry-After`", body = ErrorBody),
    )
)]
pub(super) async fn forgot_password(
    State(state): State<AppState>,
    origin: Origin,
    Json(body): Json<ForgotBody>,
) -> Result<Done, AppError> {
    request_reset(&state, &origin, &body.email).await?;
    Ok(Done::new(RESET_SENT))
}

/// Queues a reset link for the address if it has an account; the caller learns only
/// that the request was taken (see the module documentation).
pub async fn request_reset(state: &AppState, origin: &Origin, email: &str) -> Result<(), AppError> {
    let email = validate::email(email)?;
    let attempt = Attempt::new(state, origin)
        .by_ip(&throttle::RESET_IP)
        .by(&throttle::RESET_EMAIL, email.to_lowercase());
    attempt.check().await?;
    // Every request counts, found or not: this bounds the mail one address receives.
    attempt.failed().await?;

    let task_state = state.clone();
    let task_origin = origin.clone();
    tokio::spawn(async move {
        if let Err(e) = send_reset_link(&task_state, &email, &task_origin).await {
            tracing::error!(error = %e, "sending a password reset link failed");
        }
    });
    Ok(())
}

async fn send_reset_link(state: &AppState, email: &str, origin: &Origin) -> Result<(), AppError> {
    let user = store::find_by_email(&state.db, email).await?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        state.activity.record(
            LogEntry::auth(Level::Info, "password reset requested for an unknown email")
                .origin(origin),
        );
        return Ok(());
    };
    let mut tx = state.db.begin().await?;
    let token = store::issue_token(
        &mut tx,
        user.id,
        TokenPurpose::ResetPassword,
        RESET_TOKEN_TTL_SECS,
    )
    .await?;
    let link = state.config.reset_url_template.replace("{token}", &token);
    let message = emails::reset_password(&user.email, &user.first_name, &link)?;
    state
        .mailer
        .enqueue(&mut tx, &message)
        .await
        .map_err(AppError::internal)?;
    tx.commit().await?;
    state.mailer.wake();
    state.activity.record(
        LogEntry::auth(Level::Info, "password reset requested")
            .user(&user)
            .origin(origin),
    );
    Ok(())
}

/// The new password (an `email` key is accepted and ignored).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "password": "Difference-Engine-1822" }))]
pub(super) struct ResetBody {
    password: String,
}

/// Set a new password with a reset link
///
/// Ends every session of the account and tells its owner by email.
#[utoipa::path(
    post,
    path = "/reset_password/{token}",
    tag = "accounts",
    params(("token" = String, Path, description = "The emailed reset token")),
    request_body = ResetBody,
    responses(
        (status = 200, description = "Reset", body = Done,
            example = json!({ "success": true, "message": "Password has been reset" })),
        (status = 400, description = "The link is invalid, expired or used, or the password breaks the policy", body = ErrorBody),
        (status = 429, description = "Too many tries from this address; see `Retry-After`", body = ErrorBody),
    )
)]
pub(super) async fn reset_password(
    State(state): State<AppState>,
    origin: Origin,
    Path(token): Path<String>,
    Json(body): Json<ResetBody>,
) -> Result<Done, AppError> {
    reset(&state, &origin, &token, &body.password).await?;
    Ok(Done::new("Password has been reset"))
}

/// Sets a new password with a reset link's token and uses the token up.
pub async fn reset(
    state: &AppState,
    origin: &Origin,
    token: &str,
    password: &str,
) -> Result<(), AppError> {
    let attempt = Attempt::new(state, origin).by_ip(&throttle::RESET_TOKEN_IP);
    attempt.check().await?;
    let user_id = if token.len() > 128 {
        None
    } else {
        store::peek_token(&state.db, TokenPurpose::ResetPassword, token).await?
    };
    let user = match user_id {
        Some(id) => store::find_by_id(state.db.pool(), id).await?,
        None => None,
    };
    let Some(user) = user else {
        attempt.failed().await?;
        state.activity.record(
            LogEntry::auth(Level::Warning, "password reset with an invalid token").origin(origin),
        );
        return Err(AppError::invalid(RESET_INVALID));
    };
    // The policy is checked before the token is used, so a refused password can be
    // replaced by a better one with the same link.
    validate::password(
        &state.config.password_policy,
        password,
        &user.username,
        &user.email,
    )
    .await?;
    let hash = state.hasher.hash(password).await?;

    let mut tx = state.db.begin().await?;
    // Used up in the same transaction as the change: of two concurrent resets with
    // one link, one wins and the other changes nothing.
    if store::consume_token(&mut *tx, TokenPurpose::ResetPassword, token).await? != Some(user.id) {
        return Err(AppError::invalid(RESET_INVALID));
    }
    store::set_password(&mut tx, user.id, &hash).await?;
    after_password_change(state, &mut tx, &user, None, origin).await?;
    ActivityLog::record_in(
        &mut tx,
        LogEntry::auth(Level::Info, "password reset completed")
            .user(&user)
            .origin(origin),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(user.id)).await;
    state.mailer.wake();
    Ok(())
}

/// What every password change does besides storing the new hash, inside the change's
/// transaction: ends the user's sessions except `keep` (whoever knew the old password
/// is out), retires outstanding reset links (so an old link cannot undo the change),
/// and queues a notice to the account's address, where its owner will see it. Wake
/// the mailer after committing.
pub(super) async fn after_password_change(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    keep: Option<i64>,
    origin: &Origin,
) -> Result<(), AppError> {
    session::revoke_all_for_user(&mut *conn, user.id, keep).await?;
    store::invalidate_tokens(&mut *conn, user.id, TokenPurpose::ResetPassword).await?;
    let notice = emails::password_changed(
        &user.email,
        &user.first_name,
        &db::iso8601(db::now()),
        origin.ip.as_deref(),
    )?;
    state
        .mailer
        .enqueue(conn, &notice)
        .await
        .map_err(AppError::internal)
}
