//! What a sign-in does besides deciding: carrying an imported Werkzeug hash over to
//! Argon2id, and sending a fresh verification link to an unverified account that gave
//! the right password. Neither changes the answer, so a failure is logged, not returned.

use super::store::{self, TokenPurpose};
use super::User;
use crate::app::AppState;
use crate::auth::password::Verdict;
use crate::error::AppError;

/// At most one fresh verification link per account in this many seconds, however
/// often its owner tries to sign in.
pub const REVERIFY_INTERVAL_SECS: i64 = 600;

/// Replaces a matching Werkzeug hash by an Argon2id one of the same password.
pub async fn upgrade_legacy_hash(state: &AppState, user_id: i64, password: &str, verdict: Verdict) {
    if !verdict.needs_rehash() {
        return;
    }
    let upgraded = async {
        let hash = state.hasher.hash(password).await?;
        store::replace_legacy_hash(&state.db, user_id, &hash).await?;
        Ok::<_, AppError>(())
    };
    match upgraded.await {
        Ok(()) => tracing::info!(user_id, "imported password hash replaced by Argon2id"),
        Err(e) => tracing::warn!(user_id, error = %e, "imported password hash not replaced"),
    }
}

/// Emails the account a new verification link unless one went out in the last
/// [`REVERIFY_INTERVAL_SECS`].
pub async fn resend_verification(state: &AppState, user: &User) {
    match send_if_due(state, user).await {
        Ok(true) => tracing::info!(user_id = user.id, "verification link sent again"),
        Ok(false) => {}
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "verification link not sent"),
    }
}

async fn send_if_due(state: &AppState, user: &User) -> Result<bool, AppError> {
    let mut tx = state.db.begin().await?;
    // Locks the account's row, so two sign-ins at once cannot both find the slot free.
    store::touch(&mut tx, user.id).await?;
    let last = store::last_token_at(&mut tx, user.id, TokenPurpose::VerifyEmail).await?;
    if last.is_some_and(|at| crate::db::now() - at < REVERIFY_INTERVAL_SECS) {
        return Ok(false);
    }
    super::service::queue_verification(state, &mut tx, user.id, &user.email, &user.first_name)
        .await?;
    tx.commit().await?;
    state.mailer.wake();
    Ok(true)
}
