//! The SQL behind two-factor authentication: secrets, the replay guard, recovery
//! codes and emailed login codes. Every "use once" is a single conditional UPDATE
//! whose affected-row count decides, so two concurrent uses cannot both win.

use sqlx::Row;

use crate::accounts;
use crate::db::{self, Db};

/// Seconds between two emailed login codes for one user.
pub const EMAIL_CODE_INTERVAL_SECS: i64 = 60;
/// Lifetime of an emailed login code.
pub const EMAIL_CODE_TTL_SECS: i64 = 600;

/// A user's stored TOTP state.
pub struct TwofaRow {
    pub secret_enc: Option<String>,
    pub pending_enc: Option<String>,
    pub last_step: i64,
}

pub async fn load(db: &Db, user_id: i64) -> Result<Option<TwofaRow>, sqlx::Error> {
    let row =
        sqlx::query("SELECT secret_enc, pending_enc, last_step FROM twofa WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    row.map(|r| {
        Ok(TwofaRow {
            secret_enc: r.try_get(0)?,
            pending_enc: r.try_get(1)?,
            last_step: r.try_get(2)?,
        })
    })
    .transpose()
}

/// Keeps a new pending secret, replacing any earlier pending one; an active secret is
/// left alone until the pending one is confirmed.
pub async fn set_pending(db: &Db, user_id: i64, pending_enc: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO twofa (user_id, pending_enc, pending_created_at, updated_at) \
         VALUES ($1, $2, $3, $3) ON CONFLICT (user_id) DO UPDATE \
         SET pending_enc = $2, pending_created_at = $3, updated_at = $3",
    )
    .bind(user_id)
    .bind(pending_enc)
    .bind(db::now())
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Records `step` as the last accepted one, if it is later than the last; `false`
/// means the code was used already (or a later one was).
pub async fn claim_step<'e, E>(executor: E, user_id: i64, step: i64) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "UPDATE twofa SET last_step = $1, updated_at = $2 WHERE user_id = $3 AND last_step < $1",
    )
    .bind(step)
    .bind(db::now())
    .bind(user_id)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes the pending secret the active one, if it is still `pending_enc` (a newer
/// `GET /twofa_uri` in between wins, and of two confirmations one wins), turns 2FA on
/// and replaces the recovery codes. `step`, the step of the confirming code, becomes
/// the last accepted one: steps accepted for an earlier secret say nothing about this.
pub async fn activate(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    pending_enc: &str,
    step: i64,
    recovery_hashes: &[String],
) -> Result<bool, sqlx::Error> {
    let now = db::now();
    let done = sqlx::query(
        "UPDATE twofa SET secret_enc = pending_enc, pending_enc = NULL, \
         pending_created_at = NULL, last_step = $4, updated_at = $1 \
         WHERE user_id = $2 AND pending_enc = $3",
    )
    .bind(now)
    .bind(user_id)
    .bind(pending_enc)
    .bind(step)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    accounts::store::set_twofa_enabled(&mut *conn, user_id, true).await?;
    sqlx::query("DELETE FROM twofa_recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    for hash in recovery_hashes {
        sqlx::query(
            "INSERT INTO twofa_recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Turns 2FA off: forgets the secrets, the recovery codes and any emailed code.
pub async fn deactivate(conn: &mut sqlx::AnyConnection, user_id: i64) -> Result<(), sqlx::Error> {
    let now = db::now();
    sqlx::query(
        "UPDATE twofa SET secret_enc = NULL, pending_enc = NULL, pending_created_at = NULL, \
         updated_at = $1 WHERE user_id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    accounts::store::set_twofa_enabled(&mut *conn, user_id, false).await?;
    sqlx::query("DELETE FROM twofa_recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE twofa_email_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Uses up one recovery code; `false` when it is unknown or used already.
pub async fn consume_recovery_code<'e, E>(
    executor: E,
    user_id: i64,
    code_hash: &str,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "UPDATE twofa_recovery_codes SET used_at = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(db::now())
    .bind(user_id)
    .bind(code_hash)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn unused_recovery_codes(db: &Db, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM twofa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(db.pool())
    .await
}

/// Takes the right to email a login code now: at most one per
/// [`EMAIL_CODE_INTERVAL_SECS`] per user, decided by one conditional UPDATE so that
/// concurrent logins send one email between them.
pub async fn claim_email_slot(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
) -> Result<bool, sqlx::Error> {
    let now = db::now();
    let done = sqlx::query(
        "UPDATE twofa SET email_code_sent_at = $1 WHERE user_id = $2 \
         AND (email_code_sent_at IS NULL OR email_code_sent_at <= $3)",
    )
    .bind(now)
    .bind(user_id)
    .bind(now - EMAIL_CODE_INTERVAL_SECS)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a new emailed code, retiring the earlier ones: only the latest works.
pub async fn insert_email_code(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    code_hash: &str,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    sqlx::query("UPDATE twofa_email_codes SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO twofa_email_codes (user_id, code_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(code_hash)
    .bind(now)
    .bind(now + EMAIL_CODE_TTL_SECS)
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses up an emailed code within its lifetime; `false` otherwise.
pub async fn consume_email_code(
    db: &Db,
    user_id: i64,
    code_hash: &str,
) -> Result<bool, sqlx::Error> {
    let now = db::now();
    let done = sqlx::query(
        "UPDATE twofa_email_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 \
         AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(user_id)
    .bind(code_hash)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the confirmed secrets (sealed for their users) of accounts imported with
/// two-factor authentication on.
pub async fn insert_imported(
    conn: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
    secrets: &[(i64, String)],
) -> Result<(), sqlx::Error> {
    use crate::db::JsonCol::{Int, Text};
    let now = crate::db::now();
    let rows: Vec<serde_json::Value> = secrets
        .iter()
        .map(|(user_id, sealed)| serde_json::json!([user_id, sealed, now]))
        .collect();
    let select = crate::db::json_rows(backend, &[Int, Text, Int]);
    sqlx::query(&format!(
        "INSERT INTO twofa (user_id, secret_enc, updated_at) {select} ON CONFLICT DO NOTHING"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}
