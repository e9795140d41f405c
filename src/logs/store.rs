//! The SQL behind reading and pruning the activity log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Kind;
use crate::db::count::Total;
use crate::db::{self, Backend, Db};

/// Which entries a reader asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// How long an exact total counted by [`Totals::count`] is built on: new entries are
/// added to it by a short range count, but on PostgreSQL an id can commit after a
/// higher one was counted, and only a recount sees it.
const RECOUNT_AFTER: Duration = Duration::from_secs(60);
/// Filters whose exact totals an instance keeps, the least recently used dropped first.
const TOTALS_KEPT: usize = 8;
/// How long an estimated total (past [`db::count::EXACT_UP_TO`]) is reused: an
/// estimate a second old is as good as a new one, and making one walks some 30,000
/// index entries, most of what a first page of a large log costs.
const ESTIMATE_REUSED_FOR: Duration = Duration::from_secs(1);

/// The exact number of entries matching a filter, as counted at one moment.
#[derive(Debug, Clone)]
struct Counted {
    filter: Filter,
    count: i64,
    /// The table's highest id when counted: what arrived since has a higher one.
    highest: i64,
    /// The table's lowest id and earliest time when counted; see [`Oldest`].
    oldest: Oldest,
    at: Instant,
}

/// The table's lowest id and earliest `created_at`, two index probes: what tells
/// that counted entries were deleted. Only retention deletes entries, and it deletes
/// every one older than its cutoff, the earliest among them, so once it has run the
/// earliest time differs; the lowest id catches any other removal of the oldest ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Oldest {
    id: Option<i64>,
    at: Option<i64>,
}

/// The columns [`Oldest::read`] reads, in one statement.
const OLDEST: &str =
    "(SELECT MIN(id) FROM activity_logs), (SELECT MIN(created_at) FROM activity_logs)";

impl Oldest {
    fn read(row: &AnyRow, from: usize) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(from)?,
            at: row.try_get(from + 1)?,
        })
    }
}

/// Exact totals this instance counted, per filter (a few, least recently used
/// dropped), so that the deepest pages by `page` can be read from the oldest end.
/// Counting every match costs a walk of the whole index (0.15 s on SQLite, 0.6 s on
/// PostgreSQL at ten million entries, seconds for a substring search); keeping the
/// count and adding what arrived since costs two index probes and a short range count.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    kept: Arc<Mutex<Vec<Counted>>>,
    /// Recent estimates, per filter.
    estimates: Arc<Mutex<Vec<(Filter, Total, Instant)>>>,
}

impl Totals {
    /// How many entries match: [`count`]'s answer, except that an estimate made in the
    /// last [`ESTIMATE_REUSED_FOR`] is given again. Exact totals are always counted.
    pub async fn total(&self, db: &Db, filter: &Filter) -> Result<Total, sqlx::Error> {
        let reused = self.estimates.lock().ok().and_then(|mut estimates| {
            estimates.retain(|(_, _, at)| at.elapsed() < ESTIMATE_REUSED_FOR);
            estimates
                .iter()
                .find(|(f, _, _)| f == filter)
                .map(|(_, total, _)| *total)
        });
        if let Some(total) = reused {
            return Ok(total);
        }
        let total = count(db, filter).await?;
        if !total.exact {
            if let Ok(mut estimates) = self.estimates.lock() {
                if estimates.len() >= TOTALS_KEPT {
                    estimates.remove(0);
                }
                estimates.push((filter.clone(), total, Instant::now()));
            }
        }
        Ok(total)
    }

    /// The filter's exact total now, when this instance counted it in the last
    /// [`RECOUNT_AFTER`] and no counted entry has been pruned since: the count plus
    /// the matches with a higher id than any counted.
    async fn current(&self, db: &Db, filter: &Filter) -> Result<Option<i64>, sqlx::Error> {
        let Some(counted) = self.kept(filter) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!("SELECT {OLDEST}"))
            .fetch_one(db.pool())
            .await?;
        if Oldest::read(&row, 0)? != counted.oldest {
            return Ok(None);
        }
        // What arrived since is a short range of the primary key, and must be read as
        // one: a time window's own index would be walked from the window's start.
        // PostgreSQL sees that from the id written out (our own integer, not input);
        // SQLite, without statistics, has to be told.
        let table = match db.backend() {
            Backend::Sqlite => "activity_logs NOT INDEXED",
            Backend::Postgres => "activity_logs",
        };
        let mut w = Where::new(filter);
        w.conditions.push(format!("id > {}", counted.highest));
        let sql = format!("SELECT COUNT(*), MAX(id) FROM {table} {}", w.sql());
        let row = w.bind(sqlx::query(&sql)).fetch_one(db.pool()).await?;
        let arrived: i64 = row.try_get(0)?;
        let newest: Option<i64> = row.try_get(1)?;
        let total = counted.count + arrived;
        // What arrived is counted in from now on, so that the next range starts past
        // it rather than growing with everything logged until the recount.
        if let Some(newest) = newest {
            self.fold(filter, total, newest);
        }
        Ok(Some(total))
    }

    /// Adds what arrived up to `newest` to the filter's kept count, if it is still kept.
    fn fold(&self, filter: &Filter, count: i64, newest: i64) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if let Some(counted) = kept.iter_mut().find(|c| &c.filter == filter) {
            if newest > counted.highest {
                counted.count = count;
                counted.highest = newest;
            }
        }
    }

    /// Counts every match, keeps the count and returns it. One statement, so the
    /// count and the ids that bound it are of one snapshot.
    async fn count(&self, db: &Db, filter: &Filter) -> Result<i64, sqlx::Error> {
        let w = Where::new(filter);
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM activity_logs {}), \
             (SELECT MAX(id) FROM activity_logs), {OLDEST}",
            w.sql()
        );
        let at = Instant::now();
        let row = w.bind(sqlx::query(&sql)).fetch_one(db.pool()).await?;
        let count: i64 = row.try_get(0)?;
        let highest: Option<i64> = row.try_get(1)?;
        self.keep(Counted {
            filter: filter.clone(),
            count,
            highest: highest.unwrap_or(0),
            oldest: Oldest::read(&row, 2)?,
            at,
        });
        Ok(count)
    }

    /// The filter's count while it is young enough, marked as the most recently used.
    fn kept(&self, filter: &Filter) -> Option<Counted> {
        // A poisoned lock only costs a recount.
        let mut kept = self.kept.lock().ok()?;
        kept.retain(|c| c.at.elapsed() < RECOUNT_AFTER);
        let i = kept.iter().position(|c| &c.filter == filter)?;
        let counted = kept.remove(i);
        kept.push(counted.clone());
        Some(counted)
    }

    fn keep(&self, counted: Counted) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        kept.retain(|c| c.filter != counted.filter);
        if kept.len() >= TOTALS_KEPT {
            kept.remove(0);
        }
        kept.push(counted);
    }
}

/// The page of entries at `offset` (newest first) and the total it was read against.
///
/// The total is this instance's exact count when it has one (see [`Totals`]), else
/// [`count`]'s. When that says the page lies in the older half, the filter is counted
/// exactly (once per [`RECOUNT_AFTER`]), so that the answer's total is the one the page
/// was placed by. With an exact total, a page in the older half is found from the
/// oldest end, a walk of `total - offset` index entries instead of `offset`; a page
/// in the newer half, and any page without an exact total, walks from the newest.
/// Pages near the middle of a large log therefore still cost a walk of half of it.
pub async fn page_at(
    db: &Db,
    totals: &Totals,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> Result<(Total, Vec<LogRow>), sqlx::Error> {
    let mut total = match totals.current(db, filter).await? {
        Some(value) => Total { value, exact: true },
        None => totals.total(db, filter).await?,
    };
    if !total.exact && offset > total.value / 2 {
        total = Total {
            value: totals.count(db, filter).await?,
            exact: true,
        };
    }
    if total.exact && offset >= total.value {
        return Ok((total, Vec::new()));
    }
    // The page's newest entry, counted from the oldest one.
    let from_oldest = total.value - 1 - offset;
    let first = if total.exact && from_oldest < offset {
        match nth_id(db, filter, "ASC", from_oldest).await? {
            Some(id) => Some(id),
            // Fewer entries than counted (pruned within a count's lifetime, without
            // the oldest): the walk from the newest is always right.
            None => nth_id(db, filter, "DESC", offset).await?,
        }
    } else {
        nth_id(db, filter, "DESC", offset).await?
    };
    let rows = match first {
        Some(id) => page_before(db, filter, id.saturating_add(1), limit).await?,
        None => Vec::new(),
    };
    Ok((total, rows))
}

/// The id `n` entries from the newest (`DESC`) or the oldest (`ASC`) match, walked on
/// an index holding only ids (the primary key's on PostgreSQL, `activity_logs_id` or
/// the filter's index on SQLite), so a long walk reads small index entries rather
/// than whole rows.
async fn nth_id(db: &Db, filter: &Filter, order: &str, n: i64) -> Result<Option<i64>, sqlx::Error> {
    let w = Where::new(filter);
    let sql = format!(
        "SELECT id FROM activity_logs {} ORDER BY id {order} LIMIT 1 OFFSET {n}",
        w.sql()
    );
    match w.bind(sqlx::query(&sql)).fetch_optional(db.pool()).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
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
