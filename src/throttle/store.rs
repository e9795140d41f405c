//! The throttle state in the database, shared by every instance using it.

use std::sync::LazyLock;

use super::{delay_ms, Recorded, Reserved, Return, Rule};
use crate::db::batch::{shift_parameters, with_steps, Step, Value};

/// Counts one failure and, past the rule's free allowance, extends the block. One
/// upsert counts and blocks, so concurrent failures are all counted; the block only
/// ever moves later.
pub async fn record(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
    now_ms: i64,
) -> Result<Recorded, sqlx::Error> {
    let (failures, _) = count_failure(&RECORD, rule, subject, now_ms)
        .fetch_one(pool)
        .await?;
    Ok(Recorded {
        failures,
        blocked_ms: delay_ms(rule, failures),
    })
}

/// The upsert that counts one failure of a subject and moves its block to what
/// [`delay_ms`] gives for the new count, if that is later; it returns the count and
/// the block. `only_if` may add a `WHERE` on the row as it was, which, when false,
/// leaves the row alone and returns nothing. Bound by [`count_failure`].
fn count_failure_sql(only_if: &str) -> String {
    // The SET expressions of an upsert all read the row as it was, so the block's
    // expression works the new count out again itself.
    const FAILURES: &str =
        "(CASE WHEN throttle.updated_at_ms < $4 THEN 1 ELSE throttle.failures + 1 END)";
    // `delay_ms` in SQL: the base doubled once per failure past the free allowance,
    // at most 30 times, up to the cap. The shift count is cast because PostgreSQL
    // shifts a bigint only by an integer.
    let doublings =
        format!("CAST(CASE WHEN {FAILURES} - $5 > 30 THEN 30 ELSE {FAILURES} - $5 END AS INTEGER)");
    let until =
        format!("$3 + (CASE WHEN ($6 << {doublings}) > $7 THEN $7 ELSE ($6 << {doublings}) END)");
    format!(
        "INSERT INTO throttle (scope, subject, failures, blocked_until_ms, updated_at_ms) \
         VALUES ($1, $2, 1, $8, $3) ON CONFLICT (scope, subject) DO UPDATE SET \
         failures = {FAILURES}, \
         blocked_until_ms = CASE WHEN {FAILURES} < $5 OR {until} <= throttle.blocked_until_ms \
         THEN throttle.blocked_until_ms ELSE {until} END, \
         updated_at_ms = $3 {only_if} \
         RETURNING failures, blocked_until_ms"
    )
}

static RECORD: LazyLock<String> = LazyLock::new(|| count_failure_sql(""));
static RESERVE: LazyLock<String> =
    LazyLock::new(|| count_failure_sql("WHERE throttle.blocked_until_ms <= $3"));

/// Binds [`RECORD`] or [`RESERVE`].
fn count_failure<'q>(
    sql: &'q str,
    rule: &Rule,
    subject: &'q str,
    now_ms: i64,
) -> sqlx::query::QueryAs<'q, sqlx::Any, (i64, i64), sqlx::any::AnyArguments<'q>> {
    bind_count(sqlx::query_as(sql), rule, subject, now_ms)
}

/// The eight parameters of [`count_failure_sql`], after those already bound.
fn bind_count<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    rule: &Rule,
    subject: &'q str,
    now_ms: i64,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    let first = delay_ms(rule, 1);
    query
        .bind(rule.scope)
        .bind(subject)
        .bind(now_ms)
        .bind(now_ms - rule.window_ms)
        .bind(rule.free)
        .bind(rule.base_ms)
        .bind(rule.cap_ms)
        .bind(if first > 0 { now_ms + first } else { 0 })
}

/// When the subject may try again (Unix milliseconds; 0 when never blocked).
pub async fn blocked_until(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query_scalar(
        "SELECT blocked_until_ms FROM throttle WHERE scope = $1 AND subject = $2",
    )
    .bind(rule.scope)
    .bind(subject)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
}

/// Forgets entries that no longer block and whose failures have lapsed.
pub async fn prune(
    pool: &sqlx::AnyPool,
    now_ms: i64,
    longest_window_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done =
        sqlx::query("DELETE FROM throttle WHERE updated_at_ms < $1 AND blocked_until_ms < $2")
            .bind(now_ms - longest_window_ms)
            .bind(now_ms)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// Counts an attempt as a failure before it is judged, unless the subject is blocked.
/// One upsert decides and counts, so concurrent attempts are counted one after the
/// other (the row is locked for it: by PostgreSQL's upsert, by SQLite's single writer)
/// and no more of them than the rule allows get through. A blocked row is left alone.
pub async fn reserve(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
    now_ms: i64,
) -> Result<Reserved, sqlx::Error> {
    let counted = count_failure(&RESERVE, rule, subject, now_ms)
        .fetch_optional(pool)
        .await?;
    reserved(pool, rule, subject, now_ms, counted).await
}

/// [`reserve`] for several subjects (of distinct rules) in one PostgreSQL statement:
/// each upsert is a step of one `WITH`, so a login's reservations cost one round trip
/// and are counted together or not at all.
pub async fn reserve_together(
    pool: &sqlx::AnyPool,
    keys: &[(&Rule, &str)],
    now_ms: i64,
) -> Result<Vec<Reserved>, sqlx::Error> {
    let steps: Vec<String> = (0..keys.len())
        .map(|i| shift_parameters(&RESERVE, i * COUNT_PARAMETERS))
        .collect();
    let picks: Vec<String> = (0..keys.len())
        .map(|i| format!("SELECT CAST({i} AS BIGINT), failures, blocked_until_ms FROM k{i}"))
        .collect();
    let sql = format!("{} {}", with_steps("k", &steps), picks.join(" UNION ALL "));
    let mut query = sqlx::query_as::<_, (i64, i64, i64)>(&sql);
    for (rule, subject) in keys {
        query = bind_count(query, rule, subject, now_ms);
    }
    let rows = query.fetch_all(pool).await?;
    let mut answers = Vec::with_capacity(keys.len());
    for (i, (rule, subject)) in keys.iter().enumerate() {
        let counted = rows
            .iter()
            .find(|(k, ..)| usize::try_from(*k).is_ok_and(|k| k == i))
            .map(|&(_, failures, until)| (failures, until));
        answers.push(reserved(pool, rule, subject, now_ms, counted).await?);
    }
    Ok(answers)
}

/// What a reservation did, from the count and block its upsert returned (none: the
/// subject was blocked, and is asked when it may try again).
async fn reserved(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
    now_ms: i64,
    counted: Option<(i64, i64)>,
) -> Result<Reserved, sqlx::Error> {
    let Some((failures, until)) = counted else {
        return Ok(Reserved::Blocked {
            until_ms: blocked_until(pool, rule, subject).await?,
        });
    };
    let delay = delay_ms(rule, failures);
    Ok(Reserved::Counted {
        recorded: Recorded {
            failures,
            blocked_ms: delay,
        },
        set_until_ms: until,
        // A block this attempt started replaced one that had ended by `now_ms`; giving
        // back `now_ms` restores "not blocked" for every later decision, which is all
        // the old value meant.
        previous_until_ms: if delay > 0 { now_ms } else { until },
    })
}

const RELEASE: &str =
    "UPDATE throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
     blocked_until_ms = CASE WHEN blocked_until_ms = $1 THEN $2 ELSE blocked_until_ms END \
     WHERE scope = $3 AND subject = $4";
const CLEAR: &str = "DELETE FROM throttle WHERE scope = $1 AND subject = $2";

/// The write that gives back a reserved failure ([`Return::Release`]) or forgets a
/// subject ([`Return::Clear`]), to be run with [`batch::run`].
pub fn give_back_step<'a>(item: &Return<'a>) -> Step<'a> {
    match *item {
        Return::Release {
            rule,
            subject,
            set_until_ms,
            previous_until_ms,
        } => Step::new(
            RELEASE,
            vec![
                Value::Int(set_until_ms),
                Value::Int(previous_until_ms),
                Value::Text(rule.scope),
                Value::Text(subject),
            ],
        ),
        Return::Clear { rule, subject } => {
            Step::new(CLEAR, vec![Value::Text(rule.scope), Value::Text(subject)])
        }
    }
}

/// The parameters [`count_failure_sql`] takes.
const COUNT_PARAMETERS: usize = 8;
