//! The database: its pools over SQLite or PostgreSQL (see [`Db::writer`]), migrations and
//! built-in data.
//!
//! Gatehouse writes one dialect of SQL for both backends and runs it through sqlx's
//! `Any` driver: `$N` placeholders (SQLite accepts them too), `RETURNING`, integers
//! for flags and for timestamps (Unix seconds, UTC), `lower()` for case-insensitive
//! comparison. Only the DDL differs, so each backend has its own migrations folder.
//! Compile-time checked queries would bind the code to one backend, which is why
//! queries here are checked by the test suite running on both databases instead.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};

pub mod batch;
pub mod changes;
pub mod count;
pub mod listen;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The application's handle on its database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    /// See [`Db::pool`]; on SQLite its connections cannot write.
    pool: AnyPool,
    /// See [`Db::writer`]; the same pool as `pool` on PostgreSQL.
    writer: AnyPool,
    /// See [`Db::relaxed_pool`]; the same pool as `writer` on SQLite.
    relaxed: AnyPool,
    backend: Backend,
    /// PostgreSQL: the database and schema the tables live in (`test.gh_test_…`), which
    /// tells this deployment's instances from others sharing the server.
    namespace: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot read SQLite's WAL index: {0}")]
    Changes(std::io::Error),
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
}

/// The message paired with the unique index a failed write violated, when it is one of
/// `conflicts` (index name, message). PostgreSQL reports the index name as the
/// constraint; SQLite names an expression index in its message instead.
pub fn unique_conflict(
    e: &sqlx::Error,
    conflicts: &[(&str, &'static str)],
) -> Option<&'static str> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    conflicts
        .iter()
        .find(|(index, _)| db.constraint() == Some(*index) || db.message().contains(index))
        .map(|(_, message)| *message)
}

/// The current time as the database stores it: Unix seconds, UTC.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A stored timestamp as the contract shows it: ISO 8601 UTC.
pub fn iso8601(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Db {
    /// Connects, creating the SQLite file and its folder on first use, applies the
    /// migrations and makes sure the built-in roles and permissions exist.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let (pool, writer, relaxed, namespace) = match backend {
            Backend::Sqlite => {
                let options = sqlite_options(url)?;
                create_parent_folder(&options)?;
                // Migrations run on a native connection: it creates the file, and
                // sqlx's migrator speaks each backend natively.
                let mut conn = options.connect().await?;
                SQLITE_MIGRATIONS.run(&mut conn).await?;
                conn.close().await?;
                // A SQLite connection is a file handle in this process and cannot go
                // stale in the pool, so it is not checked before it is handed out: a
                // statement makes two trips to the connection's thread, not three.
                // Reads have eight connections that cannot write; every write goes
                // through the one writer connection (see `Db::writer`).
                let url = sqlite_url(url);
                let pool = pool_options(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(sqlite_pragmas(conn, "PRAGMA query_only = ON;"))
                    })
                    .connect(&url)
                    .await?;
                let writer = pool_options(1)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn, "")))
                    .connect(&url)
                    .await?;
                (pool, writer.clone(), writer, String::new())
            }
            Backend::Postgres => {
                // sqlx's migrator creates its table with `IF NOT EXISTS`, which
                // PostgreSQL answers with a notice at every start; warnings still show.
                let options =
                    PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
                let mut conn = options.connect().await?;
                POSTGRES_MIGRATIONS.run(&mut conn).await?;
                let namespace: String = sqlx::query_scalar(
                    "SELECT current_database() || '.' || COALESCE(current_schema(), '')",
                )
                .fetch_one(&mut conn)
                .await?;
                conn.close().await?;
                let pool = pg_pool_options(16).connect(url).await?;
                let relaxed = pg_pool_options(8)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("SET synchronous_commit = off").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                (pool.clone(), pool, relaxed, namespace)
            }
        };
        let db = Self {
            pool,
            writer,
            relaxed,
            backend,
            namespace,
        };
        crate::rbac::seed_builtin(&db).await?;
        Ok(db)
    }

    /// Begins a transaction that is going to write. SQLite gets `BEGIN IMMEDIATE`: a
    /// deferred transaction that reads first and writes later fails with
    /// `SQLITE_BUSY` (no waiting) when another connection wrote in between, whereas an
    /// immediate one waits its turn under the busy timeout.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// The pool for reads. On SQLite its connections are opened read-only
    /// (`PRAGMA query_only`), so a write sent here fails at once instead of queueing
    /// beside the writer; on PostgreSQL it is also the pool of [`Db::writer`].
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes that must survive a crash of the database server, and for
    /// transactions ([`Db::begin`]).
    ///
    /// On SQLite it is one connection. SQLite lets one connection write at a time, and
    /// a connection that finds the file locked sleeps in SQLite's busy handler for
    /// growing pauses (1, 2, 5, 10, … 100 ms) before it tries again, whoever let go of
    /// the lock meanwhile: with eight connections writing, a write waited up to 50 ms
    /// at p99 behind writes of a fraction of a millisecond. Writers of this process
    /// now wait their turn in the pool's queue, first come first served, and the busy
    /// handler is left for other processes (a command run beside the server). A
    /// transaction holding the writer must not ask for it again, through this pool or
    /// [`Db::relaxed_pool`]: it would wait for itself until the acquire timeout.
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// The pool for writes that a crash of the database server may lose without harm:
    /// a throttle's counts, the idle clock's touch, a batch of access lines. On
    /// PostgreSQL its connections commit without waiting for the write-ahead log to
    /// reach the disk (`synchronous_commit = off`), so a login waits for one flush (its
    /// session and its authentication event), not several; a crash loses at most the last few
    /// hundred milliseconds of them, and never leaves one half done. What they write is
    /// visible to every other connection at commit, as with any other. SQLite commits a
    /// WAL transaction without a sync already (`synchronous = NORMAL`), so there it is
    /// [`Db::writer`].
    pub fn relaxed_pool(&self) -> &AnyPool {
        &self.relaxed
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, `database.schema` of the tables; empty on SQLite.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the database answers a trivial query within two seconds.
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query("SELECT 1").execute(&self.pool)
            )
            .await,
            Ok(Ok(_))
        )
    }

    pub async fn close(&self) {
        self.relaxed.close().await;
        self.writer.close().await;
        self.pool.close().await;
    }
}

fn pool_options(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
}

/// A PostgreSQL pool that checks a connection with a round trip before handing it out
/// only when it may have broken unseen: when it has been idle for [`CHECK_IDLE_AFTER`],
/// or when a statement failed on a broken connection in the last [`CHECK_IDLE_AFTER`]
/// ([`note_failure`]). One broken by a restart of the server or a dropped link is
/// replaced then, instead of failing its request.
///
/// Any other connection was in use a moment ago, and sqlx checked it with a round trip
/// when it came back to the pool, so it is handed out as it is: checking it again
/// before each statement made three trips to the server of every statement, and board
/// creations on PostgreSQL ran 12–30 % faster without (docs/performance.md). What is
/// left: a connection that broke less than a second after its last use, before any
/// statement failed on a broken one, fails the request that gets it, as the server's
/// restart fails the requests in flight; the first such failure turns the checks back on
/// for every connection.
fn pg_pool_options(max_connections: u32) -> AnyPoolOptions {
    pool_options(max_connections)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER || failed_lately() {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// See [`pg_pool_options`].
pub const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// When a statement of this process last failed on a broken connection, in milliseconds
/// since [`clock`] started, plus one (0: never).
static BROKEN_AT: AtomicU64 = AtomicU64::new(0);

fn clock() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Takes note of a failed statement. One whose connection broke ([`is_broken`]) means
/// the other connections may be broken as well, although used a moment ago: for the next
/// [`CHECK_IDLE_AFTER`] every PostgreSQL connection is checked before it is handed out.
/// The mark is this process's, shared by its pools: a check too many costs a round trip.
pub fn note_failure(e: &sqlx::Error) {
    if is_broken(e) {
        BROKEN_AT.store(millis(clock()) + 1, Ordering::Relaxed);
    }
}

/// Whether the statement failed because its connection broke or the server ended it:
/// an I/O, TLS or protocol error, or PostgreSQL's class 08 (connection exception) or
/// 57P0x (operator intervention such as a terminated backend or a shutdown).
pub fn is_broken(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

fn failed_lately() -> bool {
    match BROKEN_AT.load(Ordering::Relaxed) {
        0 => false,
        at => millis(clock()) < at - 1 + millis(CHECK_IDLE_AFTER),
    }
}

/// The settings of every pooled SQLite connection, then `extra`: the `Any` driver does
/// not carry SQLite's connect options, so each connection sets them itself.
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection, extra: &str) -> Result<(), sqlx::Error> {
    conn.execute(
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; {extra}"
        )
        .as_str(),
    )
    .await?;
    Ok(())
}

fn sqlite_options(url: &str) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true))
}

/// The pool's URL: the same file, created by the migration step already.
fn sqlite_url(url: &str) -> String {
    if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    }
}

fn create_parent_folder(options: &SqliteConnectOptions) -> Result<(), DbError> {
    let file = options.get_filename();
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|source| DbError::Folder {
                path: dir.display().to_string(),
                source,
            }),
        _ => Ok(()),
    }
}

/// The type a column of [`json_rows`] is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonCol {
    Int,
    Text,
}

/// `SELECT <column 0>, <column 1>, … FROM <the rows>` over a JSON array of arrays bound
/// to `$1`, for bulk inserts: one bound value per batch, because thousands of bound
/// values through the `Any` driver cost more than the inserts themselves. It ends in
/// `WHERE true` so that SQLite can parse an `ON CONFLICT` clause after it.
pub fn json_rows(backend: Backend, columns: &[JsonCol]) -> String {
    let exprs: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, col)| match (backend, col) {
            (Backend::Sqlite, _) => format!("value ->> {i}"),
            (Backend::Postgres, JsonCol::Int) => format!("(r ->> {i})::bigint"),
            (Backend::Postgres, JsonCol::Text) => format!("r ->> {i}"),
        })
        .collect();
    let source = match backend {
        Backend::Sqlite => "json_each($1)",
        Backend::Postgres => "jsonb_array_elements($1::jsonb) AS r",
    };
    format!("SELECT {} FROM {source} WHERE true", exprs.join(", "))
}

/// After rows were inserted with explicit ids, moves PostgreSQL's identity sequence of
/// `table` past them (SQLite's AUTOINCREMENT follows by itself).
pub async fn sync_id_sequence(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    table: &str,
) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), MAX(id)) FROM {table} \
             HAVING MAX(id) IS NOT NULL"
        ))
        .execute(conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On SQLite every write goes through one connection: the read pool refuses a
    /// write at once (so a write sent to the wrong pool fails in the tests instead of
    /// queueing in SQLite's busy handler), and a second writer waits in the writer's
    /// queue until the first commits, then writes.
    #[tokio::test]
    async fn on_sqlite_only_the_one_writer_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writer.db").display());
        let db = Db::connect(&url).await.unwrap();
        for pool in [db.writer(), db.relaxed_pool()] {
            assert_eq!(pool.options().get_max_connections(), 1);
        }
        let insert = "INSERT INTO cache_changes (user_id) VALUES ($1)";

        let refused = sqlx::query(insert)
            .bind(1001)
            .execute(db.pool())
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");

        let mut first = db.begin().await.unwrap();
        sqlx::query(insert)
            .bind(1002)
            .execute(&mut *first)
            .await
            .unwrap();
        let second = tokio::spawn({
            let db = db.clone();
            async move { sqlx::query(insert).bind(1003).execute(db.writer()).await }
        });
        first.commit().await.unwrap();
        second.await.unwrap().unwrap();

        let written: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM cache_changes WHERE user_id > 1000 ORDER BY id",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(written, [1002, 1003]);
    }
}
