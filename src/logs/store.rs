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

/// How long an exact count made by [`Totals::count`] is built on: new entries are
/// added to it by a short range count, but on PostgreSQL an id can commit after a
/// higher one was counted, and only a recount sees it.
const RECOUNT_AFTER: Duration = Duration::from_secs(60);
/// The same on SQLite, where ids are handed out under the one writer's lock and so
/// commit in order: nothing but a prune (which the oldest entry tells) makes a count
/// wrong, and the bound only limits how long an unforeseen change (an operator's
/// `DELETE`) could go unseen.
const RECOUNT_AFTER_SQLITE: Duration = Duration::from_secs(600);

fn recount_after(backend: Backend) -> Duration {
    match backend {
        Backend::Sqlite => RECOUNT_AFTER_SQLITE,
        Backend::Postgres => RECOUNT_AFTER,
    }
}
/// Filters whose exact totals an instance keeps, the least recently used dropped first.
const TOTALS_KEPT: usize = 8;
/// How long an estimated total (past [`db::count::EXACT_UP_TO`]) is reused: an
/// estimate a second old is as good as a new one, and making one walks some 30,000
/// index entries, most of what a first page of a large log costs.
const ESTIMATE_REUSED_FOR: Duration = Duration::from_secs(1);
/// How old an estimate may be and still be given while one request makes the next.
/// Under steady reading a new one is made every [`ESTIMATE_REUSED_FOR`]; after a
/// quiet spell the first readers wait for a new one rather than get an old one.
const ESTIMATE_KEPT_FOR: Duration = Duration::from_secs(10);
/// An exact count keeps the id of every `MARK_EVERY`-th match counted from the oldest,
/// so that the match at any rank is a walk of at most half this many matches from a
/// kept id, whatever the depth: 10,000 ids (80 KB) for a view of ten million entries.
/// Between two kept ids lie `MARK_EVERY` matches; for a filter read through the
/// primary key (a time window, `q`, a kind but `auth`) that walk also reads the entries
/// between them that do not match, so a smaller step costs more memory but less per page.
const MARK_EVERY: i64 = 1_000;
/// A page by number deeper than this many entries from the newest (or past the middle
/// of the view) is placed by an exact count rather than by a walk from the newest.
const WALK_FROM_NEWEST_UP_TO: i64 = 20_000;

/// The exact number of entries matching a filter, as counted at one moment, and the
/// ids that place any rank.
#[derive(Debug, Clone)]
struct Counted {
    filter: Filter,
    count: i64,
    /// The ids of the matches at ranks 0, [`MARK_EVERY`], 2 × [`MARK_EVERY`], …
    /// counted from the oldest: one per started step of `count`. Ranks from the
    /// oldest stay true while entries only arrive with higher ids.
    marks: Arc<Vec<i64>>,
    /// The newest match's id, when there is one.
    newest: Option<i64>,
    /// The table's highest id when counted: what arrived since has a higher one.
    highest: i64,
    /// The table's lowest id and earliest time when counted; see [`Oldest`].
    oldest: Oldest,
    at: Instant,
}

/// Where one match lies: between two kept ids, and how far from each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// The kept id at or below the match.
    from: i64,
    /// The last id before the next kept one (or the newest match).
    to: i64,
    /// The match's place among the matches from `from` to `to`, from 0.
    at: i64,
    /// How many matches lie from `from` to `to`.
    len: i64,
}

impl Counted {
    /// The step holding the match at `rank` (from the oldest, below `count`).
    fn step(&self, rank: i64) -> Option<Step> {
        if !(0..self.count).contains(&rank) {
            return None;
        }
        let i = usize::try_from(rank / MARK_EVERY).ok()?;
        let from = *self.marks.get(i)?;
        let to = match self.marks.get(i + 1) {
            Some(next) => next - 1,
            None => self.newest?,
        };
        let first = rank / MARK_EVERY * MARK_EVERY;
        Some(Step {
            from,
            to,
            at: rank - first,
            len: (self.count - first).min(MARK_EVERY),
        })
    }

    /// A kept id at or below the match at `rank`: a lower bound for reading it.
    fn floor(&self, rank: i64) -> Option<i64> {
        let i = usize::try_from(rank.max(0) / MARK_EVERY).ok()?;
        self.marks.get(i).copied()
    }

    /// The id range that holds the `limit` newest matches below `before` (or all of
    /// them, when fewer): `None` when no match lies below it.
    fn below(&self, before: i64, limit: i64) -> Option<(i64, i64)> {
        let newest = self.newest?;
        let kept_below = self.marks.partition_point(|&id| id < before);
        // From the kept id `n` steps below `before` there are at least n × MARK_EVERY + 1
        // matches up to it.
        let steps = usize::try_from(limit / MARK_EVERY + 1).unwrap_or(usize::MAX);
        let from = *self
            .marks
            .get(kept_below.checked_sub(1)?.saturating_sub(steps))?;
        Some((from, newest.min(before.saturating_sub(1))))
    }
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

/// The table's highest id and its [`Oldest`], three index probes in one statement.
async fn edges<'e, E>(executor: E) -> Result<(Option<i64>, Oldest), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT (SELECT MAX(id) FROM activity_logs), (SELECT MIN(id) FROM activity_logs), \
         (SELECT MIN(created_at) FROM activity_logs)",
    )
    .fetch_one(executor)
    .await?;
    let oldest = Oldest {
        id: row.try_get(1)?,
        at: row.try_get(2)?,
    };
    Ok((row.try_get(0)?, oldest))
}

/// Whether the filter has an index that holds its matches in id order (a user, a
/// level, the authentication events of migration 0016); the others are read in id
/// order through the primary key.
fn in_id_order(filter: &Filter) -> bool {
    filter.only_user_id.is_some()
        || filter.user.is_some()
        || filter.level.is_some()
        || filter.kind == Some(Kind::Auth)
}

/// Whether the filter is a time window (`since`, `until` or both).
fn windowed(filter: &Filter) -> bool {
    filter.since.is_some() || filter.until.is_some()
}

/// Whether the filter's window ends before the newest entries: its newest match then
/// lies behind every entry logged since, which a read from the newest walks through
/// (the first page of 20 days ending 20 days ago: 2.8 s on PostgreSQL at ten million).
fn ends_in_the_past(filter: &Filter) -> bool {
    filter.until.is_some_and(|until| until < db::now())
}

/// The table as a read of the filter's matches in id order, from the newest, names
/// it. SQLite, without statistics, reads `kind = 'auth'` through the dashboard's
/// partial index `activity_logs_auth`, which holds every column a walk of ids reads
/// but is ordered by message and time, and sorts every authentication event for each
/// page; it is told to walk their ids' index instead. (A read between two ids written
/// out needs no telling: SQLite then picks an index holding that range by itself.)
fn in_order(backend: Backend, filter: &Filter) -> &'static str {
    let auth_only = filter.kind == Some(Kind::Auth)
        && !windowed(filter)
        && filter.only_user_id.is_none()
        && filter.user.is_none()
        && filter.level.is_none();
    if backend == Backend::Sqlite && auth_only {
        "activity_logs INDEXED BY activity_logs_auth_id"
    } else {
        "activity_logs"
    }
}

/// A read-only transaction whose statements all see one snapshot: SQLite's deferred
/// `BEGIN` takes it at the first read, PostgreSQL needs `REPEATABLE READ`.
async fn snapshot(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    match db.backend() {
        Backend::Sqlite => db.pool().begin().await,
        Backend::Postgres => {
            db.pool()
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
        }
    }
}

/// The matches with an id in `after + 1 ..= upto`.
struct Within {
    count: i64,
    /// The ids of the `skip`-th, `skip + MARK_EVERY`-th, … of them, from the oldest.
    marks: Vec<i64>,
    newest: Option<i64>,
}

/// Counts the matches with an id in `after + 1 ..= upto` and finds the ids of the
/// `skip`-th and every [`MARK_EVERY`]-th after it: one walk of the matches in id
/// order, each step an `OFFSET` from the last id found (a recursive query, which
/// both databases run; numbering every match with `row_number()` took 30 times as
/// long on SQLite), then a count of the last step. Two statements: call it in one
/// [`snapshot`].
async fn within(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    filter: &Filter,
    after: i64,
    upto: i64,
    skip: i64,
) -> Result<Within, sqlx::Error> {
    let w = Where::new(filter);
    // Every step reads the whole range, and only the primary key has it in id order
    // for a filter without an index of its own (see `in_order`).
    let table = if backend == Backend::Sqlite && !w.conditions.is_empty() && !in_id_order(filter) {
        "activity_logs NOT INDEXED"
    } else {
        "activity_logs"
    };
    let and: String = w.conditions.iter().map(|c| format!(" AND {c}")).collect();
    let step = MARK_EVERY - 1;
    // The steps are bounded by `upto` outside their subqueries. Inside, PostgreSQL
    // took `id > m.id AND id <= {upto}` for a range of 0.5 % of the table, and for a
    // log of a few hundred thousand entries planned each step as a bitmap scan of the
    // whole rest of the range and a sort: 17 s for 490,000 entries instead of 0.09 s.
    // Open-ended, each step is a walk of the primary key in order, as intended; the
    // last one may pass `upto` by a step's worth of matches, and is dropped.
    let sql = format!(
        "WITH RECURSIVE m(id) AS (\
         SELECT (SELECT id FROM {table} WHERE id > {after}{and} \
         ORDER BY id LIMIT 1 OFFSET {skip}) \
         UNION ALL SELECT (SELECT id FROM {table} WHERE id > m.id{and} \
         ORDER BY id LIMIT 1 OFFSET {step}) FROM m WHERE m.id <= {upto}) \
         SELECT id FROM m WHERE id <= {upto}"
    );
    let mut marks = w
        .bind(sqlx::query(&sql))
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<Vec<_>, _>>()?;
    marks.sort_unstable();
    let (from, before) = match marks.last() {
        Some(&last) => (last, skip + (marks.len() as i64 - 1) * MARK_EVERY),
        None => (after.saturating_add(1), 0),
    };
    let sql =
        format!("SELECT COUNT(*), MAX(id) FROM {table} WHERE id >= {from} AND id <= {upto}{and}");
    let row = w.bind(sqlx::query(&sql)).fetch_one(&mut *conn).await?;
    let tail: i64 = row.try_get(0)?;
    Ok(Within {
        count: before + tail,
        marks,
        newest: row.try_get(1)?,
    })
}

/// Exact totals this instance counted, per filter (a few, least recently used
/// dropped), with the ids that let any page by number be read with a short walk.
/// Counting every match costs a walk of the whole view (0.15 s on SQLite, 0.6 s on
/// PostgreSQL for ten million entries, seconds for a substring search); keeping the
/// count and adding what arrived since costs two index probes and a short range count.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    kept: Arc<Mutex<Vec<Counted>>>,
    /// Recent estimates, per filter.
    estimates: Arc<Mutex<Vec<Estimate>>>,
    /// Held while a view is counted in full: one count at a time per instance.
    counting: Arc<tokio::sync::Mutex<()>>,
}

/// An estimated total and when it was made; `renewing` while one request makes the
/// next, during which the others are given this one.
#[derive(Debug)]
struct Estimate {
    filter: Filter,
    total: Total,
    at: Instant,
    renewing: bool,
}

/// What [`Totals::total`] finds kept for a filter.
enum Estimated {
    /// An estimate to answer with.
    Reuse(Total),
    /// None fresh: this request makes it, and the guard's drop gives the turn back
    /// should it not finish.
    Renew(Renewal),
}

/// The turn of the one request making a filter's next estimate.
struct Renewal {
    estimates: Arc<Mutex<Vec<Estimate>>>,
    filter: Filter,
}

impl Renewal {
    /// Keeps `total` as the filter's estimate, the least recently made dropped first;
    /// an exact total is not kept, and leaves none.
    fn done(self, total: Total) {
        let Ok(mut estimates) = self.estimates.lock() else {
            return;
        };
        estimates.retain(|e| e.filter != self.filter);
        if total.exact {
            return;
        }
        if estimates.len() >= TOTALS_KEPT {
            estimates.remove(0);
        }
        estimates.push(Estimate {
            filter: self.filter.clone(),
            total,
            at: Instant::now(),
            renewing: false,
        });
    }
}

impl Drop for Renewal {
    /// A request that fails or is dropped while renewing lets the next one try.
    fn drop(&mut self) {
        if let Ok(mut estimates) = self.estimates.lock() {
            if let Some(e) = estimates.iter_mut().find(|e| e.filter == self.filter) {
                e.renewing = false;
            }
        }
    }
}

impl Totals {
    /// How many entries match: [`count`]'s answer, except that an estimate made in the
    /// last [`ESTIMATE_REUSED_FOR`] is given again, and so is an older one while
    /// another request makes the next (at most [`ESTIMATE_KEPT_FOR`] old): requests
    /// that arrive together do not each walk the same 30,000 index entries. Exact
    /// totals are always counted.
    pub async fn total(&self, db: &Db, filter: &Filter) -> Result<Total, sqlx::Error> {
        let renewal = match self.estimate_for(filter) {
            Estimated::Reuse(total) => return Ok(total),
            Estimated::Renew(renewal) => renewal,
        };
        let total = count(db, filter).await?;
        renewal.done(total);
        Ok(total)
    }

    fn estimate_for(&self, filter: &Filter) -> Estimated {
        let renew = || {
            Estimated::Renew(Renewal {
                estimates: Arc::clone(&self.estimates),
                filter: filter.clone(),
            })
        };
        let Ok(mut estimates) = self.estimates.lock() else {
            return renew();
        };
        estimates.retain(|e| e.at.elapsed() < ESTIMATE_KEPT_FOR);
        let Some(kept) = estimates.iter_mut().find(|e| e.filter == *filter) else {
            return renew();
        };
        if kept.at.elapsed() < ESTIMATE_REUSED_FOR || kept.renewing {
            return Estimated::Reuse(kept.total);
        }
        kept.renewing = true;
        drop(estimates);
        renew()
    }

    /// The filter's exact count now, when this instance counted it in the last
    /// [`RECOUNT_AFTER`] ([`RECOUNT_AFTER_SQLITE`]) and no counted entry has been
    /// pruned since: the count plus the matches with a higher id than any counted,
    /// with kept ids for them too.
    async fn current(&self, db: &Db, filter: &Filter) -> Result<Option<Counted>, sqlx::Error> {
        let Some(counted) = self.kept(db.backend(), filter) else {
            return Ok(None);
        };
        let (highest, oldest) = edges(db.pool()).await?;
        if oldest != counted.oldest {
            return Ok(None);
        }
        let Some(highest) = highest else {
            return Ok(None);
        };
        // What arrived since is a short range of the primary key, and must be read as
        // one: a time window's own index would be walked from the window's start.
        // PostgreSQL sees that from the range's two ends written out (our own
        // integers, not input), even without statistics: with only its lower end, a
        // table never analysed (autovacuum off) had it planned as a third of the
        // table, a parallel scan of all of it (240 ms for 490,000 entries, per page).
        // SQLite, without statistics, has to be told.
        let table = match db.backend() {
            Backend::Sqlite => "activity_logs NOT INDEXED",
            Backend::Postgres => "activity_logs",
        };
        let mut w = Where::new(filter);
        w.conditions
            .push(format!("id > {} AND id <= {highest}", counted.highest));
        let sql = format!("SELECT COUNT(*), MAX(id) FROM {table} {}", w.sql());
        let row = w.bind(sqlx::query(&sql)).fetch_one(db.pool()).await?;
        let arrived: i64 = row.try_get(0)?;
        let newest: Option<i64> = row.try_get(1)?;
        let Some(newest) = newest else {
            return Ok(Some(counted));
        };
        let kept_for = counted.marks.len() as i64 * MARK_EVERY;
        let now = if counted.count + arrived <= kept_for {
            Counted {
                count: counted.count + arrived,
                newest: Some(newest),
                highest: newest,
                ..counted.clone()
            }
        } else {
            // A rank past the last step arrived: its id is kept too, read with the
            // count in one snapshot so that the two agree.
            let mut tx = snapshot(db).await?;
            let upto: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM activity_logs")
                .fetch_one(&mut *tx)
                .await?;
            let upto = upto.unwrap_or(newest).max(newest);
            let arrived = within(
                &mut tx,
                db.backend(),
                filter,
                counted.highest,
                upto,
                kept_for - counted.count,
            )
            .await?;
            tx.commit().await?;
            let mut marks = counted.marks.as_ref().clone();
            marks.extend(arrived.marks);
            Counted {
                count: counted.count + arrived.count,
                marks: Arc::new(marks),
                newest: arrived.newest.or(counted.newest),
                highest: upto,
                ..counted.clone()
            }
        };
        // What arrived is counted in from now on, so that the next range starts past
        // it rather than growing with everything logged until the recount.
        self.fold(&counted, &now);
        Ok(Some(now))
    }

    /// The filter's kept exact count when there is one; else [`Totals::total`]'s answer,
    /// unless that is an estimate `needs_count` will not place the page by, and then an
    /// exact count made now.
    async fn counted_or_total(
        &self,
        db: &Db,
        filter: &Filter,
        needs_count: impl FnOnce(&Total) -> bool,
    ) -> Result<Result<Counted, Total>, sqlx::Error> {
        if let Some(counted) = self.current(db, filter).await? {
            return Ok(Ok(counted));
        }
        let total = self.total(db, filter).await?;
        if total.exact || !needs_count(&total) {
            return Ok(Err(total));
        }
        Ok(Ok(self.count(db, filter).await?))
    }

    /// Replaces the filter's kept count `was` by `now`, unless it changed meanwhile.
    fn fold(&self, was: &Counted, now: &Counted) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if let Some(counted) = kept
            .iter_mut()
            .find(|c| c.filter == was.filter && c.highest == was.highest && c.count == was.count)
        {
            *counted = now.clone();
        }
    }

    /// Counts every match, with the ids of every [`MARK_EVERY`]-th, keeps the count
    /// and returns it. One snapshot, so the count and the ids that bound it agree.
    ///
    /// One count at a time per instance: requests that need a count while one is made
    /// wait for it and then build on it, if it was theirs, instead of each walking the
    /// view (32 readers of a deep page, each counting 350,000 entries at once on
    /// PostgreSQL, were answered 16 times in 10 s). It also bounds what deep pages of
    /// many different filters can ask of the database at once.
    async fn count(&self, db: &Db, filter: &Filter) -> Result<Counted, sqlx::Error> {
        let _turn = self.counting.lock().await;
        if let Some(counted) = self.current(db, filter).await? {
            return Ok(counted);
        }
        let at = Instant::now();
        let mut tx = snapshot(db).await?;
        let (highest, oldest) = edges(&mut *tx).await?;
        let range = match (oldest.id, highest) {
            (Some(lowest), Some(highest)) if !windowed(filter) => Some((lowest - 1, highest)),
            (Some(_), Some(_)) => window_ids(&mut *tx, filter)
                .await?
                .map(|(first, last)| (first - 1, last)),
            _ => None,
        };
        let matches = match range {
            Some((after, upto)) => within(&mut tx, db.backend(), filter, after, upto, 0).await?,
            None => Within {
                count: 0,
                marks: Vec::new(),
                newest: None,
            },
        };
        tx.commit().await?;
        let counted = Counted {
            filter: filter.clone(),
            count: matches.count,
            marks: Arc::new(matches.marks),
            newest: matches.newest,
            highest: highest.unwrap_or(0),
            oldest,
            at,
        };
        self.keep(counted.clone());
        Ok(counted)
    }

    /// The filter's count while it is young enough, marked as the most recently used.
    fn kept(&self, backend: Backend, filter: &Filter) -> Option<Counted> {
        // A poisoned lock only costs a recount.
        let mut kept = self.kept.lock().ok()?;
        kept.retain(|c| c.at.elapsed() < recount_after(backend));
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
/// With an exact count of the view (see [`Totals`]) the page's newest entry is found
/// from the kept id nearest below it, a walk of at most half of [`MARK_EVERY`]
/// matches at any depth, and the page is read between that entry and a kept id below
/// its oldest one. A page deeper than [`WALK_FROM_NEWEST_UP_TO`] entries or past the
/// middle by [`count`]'s total, or any page of a time window ending in the past, has
/// the view counted exactly first (once per [`RECOUNT_AFTER`], [`RECOUNT_AFTER_SQLITE`]
/// on SQLite); other pages are walked from the newest entry.
pub async fn page_at(
    db: &Db,
    totals: &Totals,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> Result<(Total, Vec<LogRow>), sqlx::Error> {
    let needs_count = |total: &Total| {
        offset > WALK_FROM_NEWEST_UP_TO.min(total.value / 2) || ends_in_the_past(filter)
    };
    let counted = match totals.counted_or_total(db, filter, needs_count).await? {
        Ok(counted) => counted,
        Err(total) => return from_newest(db, filter, total, offset, limit).await,
    };
    let total = Total {
        value: counted.count,
        exact: true,
    };
    if offset >= counted.count {
        return Ok((total, Vec::new()));
    }
    let rank = counted.count - 1 - offset;
    let first = match counted.step(rank) {
        Some(step) => nth_in_step(db, filter, step).await?,
        None => None,
    };
    match (first, counted.floor(rank - limit + 1)) {
        (Some(first), Some(from)) => {
            Ok((total, page_within(db, filter, from, first, limit).await?))
        }
        // Fewer entries than counted (pruned within a count's lifetime, without the
        // oldest): the walk from the newest is always right.
        _ => from_newest(db, filter, total, offset, limit).await,
    }
}

/// The page at `offset` walked from the newest match, placed by `total`.
async fn from_newest(
    db: &Db,
    filter: &Filter,
    total: Total,
    offset: i64,
    limit: i64,
) -> Result<(Total, Vec<LogRow>), sqlx::Error> {
    if total.exact && offset >= total.value {
        return Ok((total, Vec::new()));
    }
    let w = Where::new(filter);
    let sql = format!(
        "SELECT id FROM {} {} ORDER BY id DESC LIMIT 1 OFFSET {offset}",
        in_order(db.backend(), filter),
        w.sql()
    );
    let first: Option<i64> = match w.bind(sqlx::query(&sql)).fetch_optional(db.pool()).await? {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    };
    let rows = match first {
        Some(id) => page_before(db, filter, id.saturating_add(1), limit).await?,
        None => Vec::new(),
    };
    Ok((total, rows))
}

/// The id of the match a [`Step`] places, walked from the nearer end of its range on
/// an index holding ids (the primary key's, `activity_logs_id` or the filter's), both
/// ends written out so that either database reads that range and no more.
async fn nth_in_step(db: &Db, filter: &Filter, step: Step) -> Result<Option<i64>, sqlx::Error> {
    let (order, n) = if step.at <= step.len - 1 - step.at {
        ("ASC", step.at)
    } else {
        ("DESC", step.len - 1 - step.at)
    };
    let mut w = Where::new(filter);
    w.conditions
        .push(format!("id >= {} AND id <= {}", step.from, step.to));
    let sql = format!(
        "SELECT id FROM activity_logs {} ORDER BY id {order} LIMIT 1 OFFSET {n}",
        w.sql()
    );
    match w.bind(sqlx::query(&sql)).fetch_optional(db.pool()).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// Up to `limit` matches with an id from `from` to `to`, newest first: a range of the
/// primary key (or of the filter's index), both ends written out.
async fn page_within(
    db: &Db,
    filter: &Filter,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let mut w = Where::new(filter);
    w.conditions.push(format!("id >= {from} AND id <= {to}"));
    let sql = format!(
        "SELECT {COLUMNS} FROM activity_logs {} ORDER BY id DESC LIMIT {limit}",
        w.sql()
    );
    let rows = w.bind(sqlx::query(&sql)).fetch_all(db.pool()).await?;
    rows.iter().map(row).collect()
}

/// The page of entries older than `before_id` (newest first) and the view's total:
/// the exact one when this instance keeps it, and then the page is read between kept
/// ids; else [`Totals::total`]'s, except that a time window ending in the past with
/// more than [`db::count::EXACT_UP_TO`] matches is counted first, since a read from
/// the newest would walk everything logged after it.
pub async fn page_below(
    db: &Db,
    totals: &Totals,
    filter: &Filter,
    before_id: i64,
    limit: i64,
) -> Result<(Total, Vec<LogRow>), sqlx::Error> {
    let needs_count = |_: &Total| ends_in_the_past(filter);
    let counted = match totals.counted_or_total(db, filter, needs_count).await? {
        Ok(counted) => counted,
        Err(total) => return Ok((total, page_before(db, filter, before_id, limit).await?)),
    };
    let total = Total {
        value: counted.count,
        exact: true,
    };
    let rows = match counted.below(before_id, limit) {
        Some((from, to)) => page_within(db, filter, from, to, limit).await?,
        None => Vec::new(),
    };
    Ok((total, rows))
}

/// Entries older than `before_id`, newest first: a range scan of the primary key.
pub async fn page_before(
    db: &Db,
    filter: &Filter,
    before_id: i64,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    page_between(db, filter, None, before_id, limit).await
}

/// [`page_before`] that stops at `above_id` (exclusive) when given: below the lowest
/// id a filter can match, a walk in id order would only pass entries that fail it.
pub async fn page_between(
    db: &Db,
    filter: &Filter,
    above_id: Option<i64>,
    before_id: i64,
    limit: i64,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let mut w = Where::new(filter);
    w.push("id < ?", Arg::Int(before_id));
    if let Some(above) = above_id {
        w.push("id > ?", Arg::Int(above));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM {} {} ORDER BY id DESC LIMIT {limit}",
        in_order(db.backend(), filter),
        w.sql()
    );
    // A window is planned for its own values each time: after five runs of a prepared
    // statement PostgreSQL may settle on a generic plan, and for a time range that plan
    // reads the window's rest through `activity_logs_created_id` and sorts it, for every
    // batch of an export (39 ms a batch where the primary key takes 0.5 ms).
    let query = w.bind(sqlx::query(&sql)).persistent(!windowed(filter));
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(row).collect()
}

/// Where a walk of `filter`'s matches below `before_id` by [`page_between`] starts and
/// stops, as (`above_id`, `before_id`): a time window's between its first and last
/// match's ids ([`window_ids`]), since from the newest entry down to the oldest the
/// walk would pass everything logged after the window and before it; any other filter
/// down to the oldest entry.
pub async fn export_bounds(
    db: &Db,
    filter: &Filter,
    before_id: i64,
) -> Result<(Option<i64>, i64), sqlx::Error> {
    if !windowed(filter) {
        return Ok((None, before_id));
    }
    Ok(match window_ids(db.pool(), filter).await? {
        Some((first, last)) => (Some(first - 1), before_id.min(last.saturating_add(1))),
        None => (Some(before_id), before_id),
    })
}

/// The lowest and highest id among a time window's matches, or `None` when it has
/// none. A window's matches are walked in id order through the primary key; these
/// bounds keep the walk to the ids the window holds. They are read from the window's
/// own index (`id + 0`: PostgreSQL would otherwise answer `MIN` and `MAX` by walking
/// the primary key from either end until a match, through everything outside the
/// window). Ids and times need not agree: the bounds are those of the matches.
pub async fn window_ids<'e, E>(
    executor: E,
    filter: &Filter,
) -> Result<Option<(i64, i64)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let w = Where::new(filter);
    let sql = format!(
        "SELECT MIN(id + 0), MAX(id + 0) FROM activity_logs {}",
        w.sql()
    );
    let row = w.bind(sqlx::query(&sql)).fetch_one(executor).await?;
    Ok(row.try_get::<Option<i64>, _>(0)?.zip(row.try_get(1)?))
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
        .execute(db.writer())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(value: i64) -> Total {
        Total {
            value,
            exact: false,
        }
    }

    /// Keeps `total` for `filter` as if it had been made `age` ago.
    fn kept_since(totals: &Totals, filter: &Filter, total: Total, age: Duration) {
        totals.estimates.lock().unwrap().push(Estimate {
            filter: filter.clone(),
            total,
            at: Instant::now().checked_sub(age).unwrap(),
            renewing: false,
        });
    }

    /// The estimate `totals` gives for `filter`, if it gives one rather than the turn to
    /// make it (a turn taken here is given back at once).
    fn reused(totals: &Totals, filter: &Filter) -> Option<Total> {
        match totals.estimate_for(filter) {
            Estimated::Reuse(total) => Some(total),
            Estimated::Renew(_) => None,
        }
    }

    /// One request at a time makes a filter's next estimate; those arriving meanwhile
    /// are given the last one, unless it is older than `ESTIMATE_KEPT_FOR`.
    #[test]
    fn one_request_renews_an_estimate_while_the_others_reuse_it() {
        let totals = Totals::default();
        let filter = Filter {
            level: Some("error".into()),
            ..Filter::default()
        };
        let Estimated::Renew(first) = totals.estimate_for(&filter) else {
            panic!("nothing was kept yet");
        };
        first.done(estimate(50_000));
        assert_eq!(reused(&totals, &filter), Some(estimate(50_000)));
        assert!(reused(&totals, &Filter::default()).is_none());

        // Stale: the first request renews it, the next ones reuse it meanwhile.
        totals.estimates.lock().unwrap().clear();
        kept_since(&totals, &filter, estimate(40_000), Duration::from_secs(2));
        let Estimated::Renew(renewal) = totals.estimate_for(&filter) else {
            panic!("a stale estimate is renewed");
        };
        for _ in 0..3 {
            assert_eq!(reused(&totals, &filter), Some(estimate(40_000)));
        }
        // A renewal that does not finish (its request failed or went away) gives the
        // turn to the next request.
        drop(renewal);
        let Estimated::Renew(second) = totals.estimate_for(&filter) else {
            panic!("the turn was not given back");
        };
        second.done(estimate(60_000));
        assert_eq!(reused(&totals, &filter), Some(estimate(60_000)));

        // An exact total leaves no estimate behind.
        totals.estimates.lock().unwrap().clear();
        kept_since(&totals, &filter, estimate(40_000), Duration::from_secs(2));
        let Estimated::Renew(third) = totals.estimate_for(&filter) else {
            panic!("a stale estimate is renewed");
        };
        third.done(Total {
            value: 9_000,
            exact: true,
        });
        assert!(reused(&totals, &filter).is_none());

        // Too old to be given at all, even while another request renews it.
        totals.estimates.lock().unwrap().clear();
        kept_since(&totals, &filter, estimate(40_000), ESTIMATE_KEPT_FOR);
        let _renewing = totals.estimate_for(&filter);
        assert!(reused(&totals, &filter).is_none());
    }

    /// A count of 2,500 matches, every other id from 1 (ids 1, 3, …, 4,999).
    fn counted() -> Counted {
        let id = |rank: i64| 1 + 2 * rank;
        Counted {
            filter: Filter::default(),
            count: 2_500,
            marks: Arc::new(vec![id(0), id(MARK_EVERY), id(2 * MARK_EVERY)]),
            newest: Some(id(2_499)),
            highest: 5_000,
            oldest: Oldest {
                id: Some(1),
                at: Some(0),
            },
            at: Instant::now(),
        }
    }

    #[test]
    fn a_rank_is_placed_between_two_kept_ids() {
        let c = counted();
        let step = c.step(1_200).unwrap();
        assert_eq!(
            step,
            Step {
                from: 2_001,
                to: 4_000,
                at: 200,
                len: MARK_EVERY
            }
        );
        // The last step runs to the newest match and holds what is left.
        let step = c.step(2_499).unwrap();
        assert_eq!(
            (step.from, step.to, step.at, step.len),
            (4_001, 4_999, 499, 500)
        );
        assert_eq!(c.step(0).map(|s| (s.from, s.at)), Some((1, 0)));
        assert_eq!(c.step(2_500), None);
        assert_eq!(c.floor(-99), Some(1));
        assert_eq!(c.floor(1_999), Some(2_001));
    }

    #[test]
    fn a_page_below_an_id_starts_a_whole_step_lower() {
        let c = counted();
        // Below 3,000 (ranks up to 1,499): from the kept id a step below the nearest.
        assert_eq!(c.below(3_000, 100), Some((1, 2_999)));
        // Past the newest match: up to it, from two steps down.
        assert_eq!(c.below(i64::MAX, 100), Some((2_001, 4_999)));
        // A page longer than a step reaches further down.
        assert_eq!(c.below(i64::MAX, MARK_EVERY + 1), Some((1, 4_999)));
        // At or below the oldest match: nothing.
        assert_eq!(c.below(1, 100), None);
        assert_eq!(c.below(2, 100), Some((1, 1)));
    }
}
