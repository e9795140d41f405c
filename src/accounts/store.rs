//! The SQL behind accounts: users and their one-time email tokens.

use std::sync::LazyLock;

use sqlx::Row;

use crate::auth::session::{self, random_token, token_hash, USER_COLUMNS};
use crate::db::{self, Db};
use crate::rbac::{self, Access};

use super::User;

/// What the account store can fail with; `accounts` maps it to the contract once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A unique username or email is taken; the message says which, in the contract's
    /// words.
    #[error("{0}")]
    Taken(&'static str),
}

/// A write's failure, with a taken username or email told apart.
fn taken(e: sqlx::Error, conflicts: &[(&str, &'static str)]) -> StoreError {
    match db::unique_conflict(&e, conflicts) {
        Some(message) => StoreError::Taken(message),
        None => StoreError::Db(e),
    }
}

/// What a one-time email token proves.
#[derive(Debug, Clone, Copy)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: &'a str,
    pub email_verified: bool,
}

/// Inserts the user; a taken username or email (compared case-insensitively by the
/// database's unique indexes) is the contract's 409.
pub async fn insert_user(
    conn: &mut sqlx::AnyConnection,
    user: &NewUser<'_>,
) -> Result<i64, StoreError> {
    let now = db::now();
    sqlx::query_scalar(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, \
         email_verified, created_at, updated_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING id",
    )
    .bind(user.username)
    .bind(user.email)
    .bind(user.first_name)
    .bind(user.last_name)
    .bind(user.password_hash)
    .bind(i64::from(user.email_verified))
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(|e| {
        taken(
            e,
            &[
                ("users_username_key", "Username already exists"),
                ("users_email_key", "Email already exists"),
            ],
        )
    })
}

/// The account a login names, with what the login needs of it.
pub struct LoginAccount {
    pub user: User,
    pub password_hash: String,
    pub access: Access,
}

/// The account with the username or email, its password hash and its roles and
/// permissions, in one statement (a row per role and permission): a login that
/// succeeds answers with its roles without asking again. Should an imported username
/// equal another account's email, the older account is the one named.
pub async fn find_for_login(
    db: &Db,
    username_or_email: &str,
) -> Result<Option<LoginAccount>, sqlx::Error> {
    static FIND: LazyLock<String> = LazyLock::new(|| {
        rbac::with_access(
            "u.id AS user_id, u.username, u.email, u.first_name, u.last_name, u.email_verified, \
             u.disabled, u.twofa_enabled, u.created_at, u.password_changed_at, u.password_hash",
            "users u",
            "lower(u.username) = lower($1) OR lower(u.email) = lower($1)",
            "user_id, role_name",
        )
    });
    let rows = sqlx::query(&FIND)
        .bind(username_or_email)
        .fetch_all(db.pool())
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let user = session::user_from_row(first, 0)?;
    let mut access = Access::default();
    for row in &rows {
        if row.try_get::<i64, _>(0)? == user.id {
            access.add(row.try_get(11)?, row.try_get(12)?);
        }
    }
    Ok(Some(LoginAccount {
        user,
        password_hash: first.try_get(10)?,
        access,
    }))
}

pub async fn find_by_id<'e, E>(executor: E, id: i64) -> Result<Option<User>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.map(|r| session::user_from_row(&r, 0)).transpose()
}

pub async fn password_hash(db: &Db, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub struct ProfileChange<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: Option<&'a str>,
}

pub async fn update_profile(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    change: &ProfileChange<'_>,
) -> Result<(), StoreError> {
    let now = db::now();
    sqlx::query(
        "UPDATE users SET first_name = $1, last_name = $2, username = $3, email = $4, \
         password_hash = COALESCE($5, password_hash), \
         password_changed_at = CASE WHEN $5 IS NULL THEN password_changed_at ELSE $6 END, \
         updated_at = $6 WHERE id = $7",
    )
    .bind(change.first_name)
    .bind(change.last_name)
    .bind(change.username)
    .bind(change.email)
    .bind(change.password_hash)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await
    .map_err(|e| {
        taken(
            e,
            &[
                ("users_username_key", "Username already exists."),
                ("users_email_key", "Email already in use."),
            ],
        )
    })?;
    Ok(())
}

/// Issues a one-time token for the user and returns its clear value; only its hash is
/// stored.
pub async fn issue_token(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    purpose: TokenPurpose,
    ttl_secs: i64,
) -> Result<String, sqlx::Error> {
    let token = random_token();
    let now = db::now();
    sqlx::query(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(token_hash(&token))
    .bind(now)
    .bind(now + ttl_secs)
    .execute(conn)
    .await?;
    Ok(token)
}

/// The user of a live (unused, unexpired) token, without using it up.
pub async fn peek_token(
    db: &Db,
    purpose: TokenPurpose,
    token: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM email_tokens WHERE token_hash = $1 AND purpose = $2 \
         AND used_at IS NULL AND expires_at > $3",
    )
    .bind(token_hash(token))
    .bind(purpose.as_str())
    .bind(db::now())
    .fetch_optional(db.pool())
    .await
}

/// Retires every outstanding token of the user for `purpose`: a password change
/// makes earlier reset links worthless.
pub async fn invalidate_tokens(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    purpose: TokenPurpose,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 AND purpose = $3 \
         AND used_at IS NULL",
    )
    .bind(db::now())
    .bind(user_id)
    .bind(purpose.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_by_email(db: &Db, email: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)"
    ))
    .bind(email)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| session::user_from_row(&r, 0)).transpose()
}

pub async fn set_password(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    sqlx::query(
        "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(password_hash)
    .bind(now)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the account's second factor on or off; the 2FA store calls it in the
/// transaction that stores or removes the secret.
pub async fn set_twofa_enabled(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    enabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET twofa_enabled = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(enabled))
        .bind(db::now())
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A session as its owner sees it in the list of their sessions.
pub struct SessionInfo {
    pub id: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The user's sessions that still work: not revoked, not expired, not idle past
/// `idle_secs`; newest first.
pub async fn live_sessions(
    db: &Db,
    user_id: i64,
    idle_secs: i64,
) -> Result<Vec<SessionInfo>, sqlx::Error> {
    let now = db::now();
    let rows = sqlx::query(
        "SELECT id, created_at, last_seen_at, ip, user_agent FROM sessions \
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3 \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(user_id)
    .bind(now)
    .bind(now - idle_secs)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionInfo {
                id: r.try_get(0)?,
                created_at: r.try_get(1)?,
                last_seen_at: r.try_get(2)?,
                ip: r.try_get(3)?,
                user_agent: r.try_get(4)?,
            })
        })
        .collect()
}

/// Revokes one session of the user; `false` when the user has no such live session.
pub async fn revoke_own_session(
    db: &Db,
    user_id: i64,
    session_id: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
         AND revoked_at IS NULL AND expires_at > $1",
    )
    .bind(db::now())
    .bind(session_id)
    .bind(user_id)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every session of the user but `keep`; returns how many.
pub async fn revoke_other_sessions(db: &Db, user_id: i64, keep: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND id <> $3 \
         AND revoked_at IS NULL AND expires_at > $1",
    )
    .bind(db::now())
    .bind(user_id)
    .bind(keep)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected())
}

/// Uses up a token: succeeds once, within its lifetime, and returns its user. One
/// statement marks and reads it, so two concurrent uses cannot both succeed.
pub async fn consume_token<'e, E>(
    executor: E,
    purpose: TokenPurpose,
    token: &str,
) -> Result<Option<i64>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_scalar(
        "UPDATE email_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 \
         AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
    )
    .bind(db::now())
    .bind(token_hash(token))
    .bind(purpose.as_str())
    .fetch_optional(executor)
    .await
}

pub async fn mark_verified(db: &Db, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
        .bind(db::now())
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Stores the Argon2id successor of an imported hash, unless the password was
/// changed in between (the stored hash is then Argon2id already). Not a password
/// change: sessions and device cookies stay valid.
pub async fn replace_legacy_hash(db: &Db, user_id: i64, new_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash NOT LIKE '$argon2%'",
    )
    .bind(new_hash)
    .bind(user_id)
    .execute(db.writer())
    .await?;
    Ok(())
}

/// Rewrites the user's row unchanged: it takes the row's lock for the transaction.
pub async fn touch(conn: &mut sqlx::AnyConnection, user_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// When the user was last issued a token for `purpose`.
pub async fn last_token_at(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    purpose: TokenPurpose,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(created_at) FROM email_tokens WHERE user_id = $1 AND purpose = $2",
    )
    .bind(user_id)
    .bind(purpose.as_str())
    .fetch_one(conn)
    .await
}

/// An account carried over from the old Flask service, with the id chosen for it.
#[derive(Clone)]
pub struct ImportedUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
    pub email_verified: bool,
    pub twofa_enabled: bool,
    pub created_at: i64,
}

/// Inserts imported accounts in one statement, with their ids as given.
pub async fn insert_imported(
    conn: &mut sqlx::AnyConnection,
    backend: db::Backend,
    users: &[ImportedUser],
) -> Result<(), sqlx::Error> {
    use db::JsonCol::{Int, Text};
    let now = db::now();
    let rows: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            serde_json::json!([
                u.id,
                u.username,
                u.email,
                u.first_name,
                u.last_name,
                u.password_hash,
                i64::from(u.email_verified),
                i64::from(u.twofa_enabled),
                u.created_at,
                now,
                u.created_at
            ])
        })
        .collect();
    let select = db::json_rows(
        backend,
        &[Int, Text, Text, Text, Text, Text, Int, Int, Int, Int, Int],
    );
    sqlx::query(&format!(
        "INSERT INTO users (id, username, email, first_name, last_name, password_hash, \
         email_verified, twofa_enabled, created_at, updated_at, password_changed_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Every account's id with its username and email in lower case: what an import
/// must not collide with.
pub async fn taken_names(db: &Db) -> Result<Vec<(i64, String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, lower(username), lower(email) FROM users")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Accounts created each UTC day since `since`, as (day number since the epoch,
/// count), oldest first; days without any are left out. A range of `users_created`.
pub async fn created_per_day(db: &Db, since: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT created_at / 86400 AS day, COUNT(*) FROM users WHERE created_at >= $1 \
         GROUP BY created_at / 86400 ORDER BY day",
    )
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Service-wide account figures for the dashboard.
pub struct AccountFigures {
    pub accounts: i64,
    pub twofa_on: i64,
    pub live_sessions: i64,
}

/// How many accounts there are, how many have two-factor on (the partial index
/// `users_twofa`), and how many sessions still work (a range of `sessions_live`).
pub async fn figures(db: &Db, idle_secs: i64) -> Result<AccountFigures, sqlx::Error> {
    let now = db::now();
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await?;
    let twofa_on: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE twofa_enabled = 1")
        .fetch_one(db.pool())
        .await?;
    let live_sessions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND last_seen_at > $1 \
         AND expires_at > $2",
    )
    .bind(now - idle_secs)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    Ok(AccountFigures {
        accounts,
        twofa_on,
        live_sessions,
    })
}
