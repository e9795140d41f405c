//! The SQL behind reading and pruning the activity log.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Kind;
use crate::db::count::Total;
use crate::db::{self, Db};

/// Which entries a reader asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Set for readers without `access_logs`: their own entries only.
    pub only_user_id: Option<i64>,
    /// An email or a user id.
    pub user: Option<String>,
    pub level: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// A case-insensitive substring of the message.
    pub q: Option<String>,
    /// One kind of entry (access, auth, admin, change).
    pub kind: Option<Kind>,
    /// The client address, exactly.
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LogRow {
    pub id: i64,
    pub created_at: i64,
    pub level: String,
    pub kind: String,
    pub message: String,
    pub user_email: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub duration_ms: Option<i64>,
    /// JSON: for changes, the target and the before and after.
    pub details: Option<String>,
}

const COLUMNS: &str = "id, created_at, level, kind, message, user_email, client_ip, \
                       user_agent, method, path, status, duration_ms, details";

enum Arg {
    Int(i64),
    Text(String),
}

/// A WHERE clause with its arguments, numbered as it grows.
struct Where {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    fn new(filter: &Filter) -> Self {
        let mut w = Where {
            conditions: Vec::new(),
            args: Vec::new(),
        };
        if let Some(id) = filter.only_user_id {
            w.push("user_id = ?", Arg::Int(id));
        }
        if let Some(user) = &filter.user {
            match user.parse::<i64>() {
                Ok(id) => w.push("user_id = ?", Arg::Int(id)),
                Err(_) => w.push("lower(user_email) = lower(?)", Arg::Text(user.clone())),
            }
        }
        if let Some(level) = &filter.level {
            w.push("level = ?", Arg::Text(level.clone()));
        }
        if let Some(kind) = filter.kind {
            // A literal from our own enum, not an argument: the partial index of
            // authentication events (migration 0013) is chosen only for a literal.
            w.conditions.push(format!("kind = '{}'", kind.as_str()));
        }
        if let Some(ip) = &filter.ip {
            w.push("client_ip = ?", Arg::Text(ip.clone()));
        }
        if let Some(since) = filter.since {
            w.push("created_at >= ?", Arg::Int(since));
        }
        if let Some(until) = filter.until {
            w.push("created_at <= ?", Arg::Int(until));
        }
        if let Some(q) = &filter.q {
            let escaped = q
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            w.push(
                "lower(message) LIKE ? ESCAPE '\\'",
                Arg::Text(format!("%{escaped}%")),
            );
        }
        w
    }

    /// Adds a condition whose one `?` becomes the next `$N`.
    fn push(&mut self, condition: &str, arg: Arg) {
        self.args.push(arg);
        self.conditions
            .push(condition.replace('?', &format!("${}", self.args.len())));
    }

    fn condition(&self) -> String {
        self.conditions.join(" AND ")
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.condition())
        }
    }

    fn bind<'q>(
        &self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for arg in &self.args {
            query = match arg {
                Arg::Int(n) => query.bind(*n),
                Arg::Text(s) => query.bind(s.clone()),
            };
        }
        query
    }
}

fn row(r: &AnyRow) -> Result<LogRow, sqlx::Error> {
    Ok(LogRow {
        id: r.try_get(0)?,
        created_at: r.try_get(1)?,
        level: r.try_get(2)?,
        kind: r.try_get(3)?,
        message: r.try_get(4)?,
        user_email: r.try_get(5)?,
        client_ip: r.try_get(6)?,
        user_agent: r.try_get(7)?,
        method: r.try_get(8)?,
        path: r.try_get(9)?,
        status: r.try_get(10)?,
        duration_ms: r.try_get(11)?,
        details: r.try_get(12)?,
    })
}

/// How many entries match: exact up to [`db::count::EXACT_UP_TO`], estimated past it
/// (see `db::count` for how, and why the whole log is never counted).
pub async fn count(db: &Db, filter: &Filter) -> Result<Total, sqlx::Error> {
    let w = Where::new(filter);
    // Each filter's index leads with its column and ends with the id, so the
    // sample's id range is a range of that index too: no hint is needed.
    // The sample is 20,000 ids: more than 10,000 matches in ten million entries is
    // a share of 0.1 %, which a smaller sample would too often miss altogether.
    db::count::total(
        db,
        "activity_logs",
        "activity_logs",
        20_000,
        &w.condition(),
        &|q| w.bind(q),
    )
    .await
}

/// Entries at an offset, newest first. The offset is walked on an index holding only
/// ids (the primary key's on PostgreSQL, `activity_logs_id` or the filter's index on
/// SQLite) to find the first id of the page, and the page is read from there, so a
/// deep page costs a scan of small index entries rather than of whole rows.
pub async fn page_at(
    db: &Db,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let w = Where::new(filter);
    let sql = format!(
        "SELECT id FROM activity_logs {} ORDER BY id DESC LIMIT 1 OFFSET {offset}",
        w.sql()
    );
    let first: Option<i64> = match w.bind(sqlx::query(&sql)).fetch_optional(db.pool()).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    match first {
        Some(id) => page_before(db, filter, id.saturating_add(1), limit).await,
        None => Ok(Vec::new()),
    }
}

/// Entries older than `before_id`, newest first: a range scan of the primary key.
pub async fn page_before(
    db: &Db,
    filter: &Filter,
    before_id: i64,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let mut w = Where::new(filter);
    w.push("id < ?", Arg::Int(before_id));
    let sql = format!(
        "SELECT {COLUMNS} FROM activity_logs {} ORDER BY id DESC LIMIT {limit}",
        w.sql()
    );
    let rows = w.bind(sqlx::query(&sql)).fetch_all(db.pool()).await?;
    rows.iter().map(row).collect()
}

/// The messages of the authentication events the dashboard counts.
pub const SIGN_IN: &[&str] = &["login ok"];
pub const FAILED_SIGN_IN: &[&str] = &["login failed", "login failed: invalid 2FA token"];

/// A message list as SQL: our own constants, never input.
fn messages_sql(messages: &[&str]) -> String {
    messages
        .iter()
        .map(|m| format!("'{}'", m.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many authentication events with one of `messages` each UTC day since `since`
/// holds, as (day number since the epoch, count), oldest first; days without any are
/// left out. One range scan of the partial index `activity_logs_auth` per message.
pub async fn auth_events_per_day(
    db: &Db,
    messages: &[&str],
    since: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT created_at / 86400 AS day, COUNT(*) FROM activity_logs \
         WHERE kind = 'auth' AND message IN ({}) AND created_at >= $1 \
         GROUP BY created_at / 86400 ORDER BY day",
        messages_sql(messages)
    );
    let rows = sqlx::query(&sql).bind(since).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// The addresses with the most authentication events with one of `messages` since
/// `since`, most first, at most `limit`; read from the index `activity_logs_auth`.
pub async fn top_addresses(
    db: &Db,
    messages: &[&str],
    since: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let sql = format!(
        "SELECT client_ip, COUNT(*) AS n FROM activity_logs \
         WHERE kind = 'auth' AND message IN ({}) AND created_at >= $1 \
         AND client_ip IS NOT NULL \
         GROUP BY client_ip ORDER BY n DESC, client_ip LIMIT {limit}",
        messages_sql(messages)
    );
    let rows = sqlx::query(&sql).bind(since).fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Deletes entries older than `days`, a bounded batch at a time so that pruning a
/// large backlog never holds the database's writer for long.
pub async fn prune(db: &Db, days: u32) -> Result<u64, sqlx::Error> {
    let cutoff = db::now() - i64::from(days) * 86_400;
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM activity_logs WHERE id IN \
             (SELECT id FROM activity_logs WHERE created_at < $1 ORDER BY id LIMIT 5000)",
        )
        .bind(cutoff)
        .execute(db.pool())
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < 5000 {
            return Ok(total);
        }
    }
}

/// An entry carried over from the old Flask service's log, with the id chosen for it.
pub struct ImportedEntry {
    pub id: i64,
    pub created_at: i64,
    pub level: &'static str,
    pub message: String,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub details: String,
}

/// Inserts imported entries (kind `access`, as the old service wrote them per request)
/// in one statement, with their ids as given.
pub async fn insert_imported(
    conn: &mut sqlx::AnyConnection,
    backend: db::Backend,
    entries: &[ImportedEntry],
) -> Result<(), sqlx::Error> {
    use db::JsonCol::{Int, Text};
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!([
                e.id,
                e.created_at,
                e.level,
                crate::logs::Kind::Access.as_str(),
                e.message,
                e.user_id,
                e.user_email,
                e.client_ip,
                e.user_agent,
                e.method,
                e.path,
                e.details
            ])
        })
        .collect();
    let select = db::json_rows(
        backend,
        &[
            Int, Int, Text, Text, Text, Int, Text, Text, Text, Text, Text, Text,
        ],
    );
    sqlx::query(&format!(
        "INSERT INTO activity_logs (id, created_at, level, kind, message, user_id, user_email, \
         client_ip, user_agent, method, path, details) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}
