//! `gatehouse generate-data`: fills the configured database with generated accounts,
//! their roles and activity log entries, for benchmarks at scale.
//!
//! The rows are made by the database itself, from a recursive counter in one
//! `INSERT … SELECT` per batch, in one SQL text for SQLite and PostgreSQL: nothing
//! travels per row, which is what makes a million accounts and ten million log
//! entries a matter of minutes on either. Every generated account has the same
//! password, [`PASSWORD`], stored as one Argon2id hash computed once: hashing a million
//! passwords would take hours and measure nothing the benchmarks need.

use std::io::Write as _;
use std::time::Instant;

use crate::auth::password::PasswordHasher;
use crate::db::{self, Db};

/// The password of every generated account.
pub const PASSWORD: &str = "Generated-Account-42-Password";
/// Rows per `INSERT`, each batch in a transaction of its own.
const BATCH: i64 = 50_000;
/// One account in this many is an Admin; the others hold the User role.
const ADMIN_EVERY: i64 = 100;
/// Log entries are spread evenly over this many seconds before now: inside the default
/// 90-day retention, so that a server started on the generated data keeps them.
const LOG_SPAN: i64 = 60 * 86_400;

/// Counts `$1..=$2` as `g(n)`; SQLite's default recursion limit does not apply to a
/// recursive CTE.
const COUNTER: &str = "WITH RECURSIVE g(n) AS (SELECT CAST($1 AS BIGINT) UNION ALL \
     SELECT n + 1 FROM g WHERE n < $2) ";

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("hashing the shared password: {0}")]
    Hash(String),
}

/// Adds `users` accounts (usernames `gen-<run>-<n>`) with roles, then `logs` activity
/// log entries naming them, showing progress on stderr.
pub async fn generate(db: &Db, users: i64, logs: i64) -> Result<(), SeedError> {
    let hasher = PasswordHasher::new(1).map_err(|e| SeedError::Hash(e.to_string()))?;
    let hash = hasher
        .hash(PASSWORD)
        .await
        .map_err(|e| SeedError::Hash(e.to_string()))?;
    // A run tag keeps usernames unique when the generator runs again on the same data.
    let run = format!("{:012x}", rand::random::<u64>() >> 16);
    let first_user = next_user_id(db.pool()).await?;

    let progress = Progress::new("accounts", users);
    let mut done = 0;
    while done < users {
        let count = BATCH.min(users - done);
        insert_users(db, &run, &hash, done + 1, done + count).await?;
        done += count;
        progress.show(done);
    }
    progress.finish();

    let user_ids = sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM users WHERE id >= $1")
        .bind(first_user)
        .fetch_one(db.pool())
        .await?
        .map(|last| (first_user, last));

    let progress = Progress::new("log entries", logs);
    let mut done = 0;
    while done < logs {
        let count = BATCH.min(logs - done);
        insert_logs(db, user_ids, done + 1, done + count, logs).await?;
        done += count;
        progress.show(done);
    }
    progress.finish();

    // PostgreSQL plans from statistics and answers index-only scans from the
    // visibility map; until autovacuum gets to millions of new rows, neither knows
    // them (the first log page took 0.6 s, the last by offset 7 s). SQLite plans
    // without statistics, and has no such map.
    if db.backend() == db::Backend::Postgres {
        sqlx::query("VACUUM (ANALYZE) users, user_roles, activity_logs")
            .execute(db.pool())
            .await?;
    }
    Ok(())
}

/// The id the next account will get: ids only grow.
async fn next_user_id<'e, E>(executor: E) -> Result<i64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM users")
        .fetch_one(executor)
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

async fn insert_users(
    db: &Db,
    run: &str,
    hash: &str,
    from: i64,
    to: i64,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    let mut tx = db.begin().await?;
    let before = next_user_id(&mut *tx).await?;
    sqlx::query(&format!(
        "{COUNTER}INSERT INTO users (username, email, first_name, last_name, password_hash, \
         email_verified, disabled, twofa_enabled, created_at, updated_at, password_changed_at) \
         SELECT 'gen-' || $3 || '-' || n, 'gen-' || $3 || '-' || n || '@example.invalid', \
         'First' || (n % 977), 'Last' || (n % 1009), $4, 1, 0, 0, $5 - n, $5 - n, $5 - n FROM g"
    ))
    .bind(from)
    .bind(to)
    .bind(run)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) SELECT u.id, r.id FROM users u \
         JOIN roles r ON r.name = CASE WHEN u.id % $2 = 0 THEN 'Admin' ELSE 'User' END \
         WHERE u.id >= $1",
    )
    .bind(before)
    .bind(ADMIN_EVERY)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Entries `from..=to` of `total`, oldest first, each naming a generated account (or no one when
/// there is none) with a path, status and level that vary as in real traffic.
async fn insert_logs(
    db: &Db,
    user_ids: Option<(i64, i64)>,
    from: i64,
    to: i64,
    total: i64,
) -> Result<(), sqlx::Error> {
    let (first, last) = user_ids.unwrap_or((0, -1));
    let now = db::now();
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        "{COUNTER}INSERT INTO activity_logs (created_at, level, kind, message, user_id, \
         user_email, client_ip, user_agent, method, path, status, duration_ms, details) \
         SELECT $3 - $4 + n * $4 / $7, \
         CASE WHEN n % 50 = 0 THEN 'ERROR' WHEN n % 10 = 0 THEN 'WARNING' ELSE 'INFO' END, \
         CASE WHEN n % 20 = 0 THEN 'auth' WHEN n % 97 = 0 THEN 'admin' ELSE 'access' END, \
         CASE WHEN n % 20 = 0 THEN 'login ok' ELSE 'GET /current_user_details' END, \
         CASE WHEN $6 < $5 THEN NULL ELSE $5 + (n * 7919) % ($6 - $5 + 1) END, \
         NULL, '10.0.' || (n % 250) || '.' || (n % 199), 'generated', 'GET', \
         CASE WHEN n % 3 = 0 THEN '/boards' ELSE '/current_user_details' END, \
         CASE WHEN n % 50 = 0 THEN 500 WHEN n % 10 = 0 THEN 403 ELSE 200 END, n % 40, NULL \
         FROM g"
    ))
    .bind(from)
    .bind(to)
    .bind(now)
    .bind(LOG_SPAN)
    .bind(first)
    .bind(last)
    .bind(total.max(1))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A progress bar with the rate, redrawn in place on stderr.
struct Progress {
    what: &'static str,
    total: i64,
    started: Instant,
}

impl Progress {
    fn new(what: &'static str, total: i64) -> Self {
        let progress = Self {
            what,
            total,
            started: Instant::now(),
        };
        progress.show(0);
        progress
    }

    fn show(&self, done: i64) {
        const WIDTH: i64 = 30;
        let filled = if self.total > 0 {
            done * WIDTH / self.total
        } else {
            WIDTH
        };
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a closed stderr must not stop the generator.
        let _ = write!(
            err,
            "\r{:<12} [{bar}] {done}/{} ({rate:.0}/s, {secs:.1} s)",
            self.what, self.total
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        let _ = writeln!(std::io::stderr());
    }
}
