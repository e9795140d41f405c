//! The throttle state in the database, shared by every instance using it.

use super::{delay_ms, Recorded, Reserved, Rule};
use crate::db::Db;

/// Counts one failure and, past the rule's free allowance, extends the block. The
/// count is bumped by one upsert, so concurrent failures are all counted; the block
/// only ever moves later.
pub async fn record(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
    now_ms: i64,
) -> Result<Recorded, sqlx::Error> {
    let failures: i64 = sqlx::query_scalar(
        "INSERT INTO throttle (scope, subject, failures, blocked_until_ms, updated_at_ms) \
         VALUES ($1, $2, 1, 0, $3) ON CONFLICT (scope, subject) DO UPDATE SET \
         failures = CASE WHEN throttle.updated_at_ms < $4 THEN 1 ELSE throttle.failures + 1 END, \
         updated_at_ms = $3 RETURNING failures",
    )
    .bind(rule.scope)
    .bind(subject)
    .bind(now_ms)
    .bind(now_ms - rule.window_ms)
    .fetch_one(pool)
    .await?;
    let delay = delay_ms(rule, failures);
    if delay > 0 {
        sqlx::query(
            "UPDATE throttle SET blocked_until_ms = CASE WHEN blocked_until_ms < $1 THEN $1 \
             ELSE blocked_until_ms END WHERE scope = $2 AND subject = $3",
        )
        .bind(now_ms + delay)
        .bind(rule.scope)
        .bind(subject)
        .execute(pool)
        .await?;
    }
    Ok(Recorded {
        failures,
        blocked_ms: delay,
    })
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

pub async fn clear(pool: &sqlx::AnyPool, rule: &Rule, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM throttle WHERE scope = $1 AND subject = $2")
        .bind(rule.scope)
        .bind(subject)
        .execute(pool)
        .await?;
    Ok(())
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
/// The row is locked for the decision (PostgreSQL's upsert locks it, SQLite's
/// `BEGIN IMMEDIATE` the whole database), so concurrent attempts are counted one
/// after the other and no more of them than the rule allows get through.
pub async fn reserve(
    db: &Db,
    rule: &Rule,
    subject: &str,
    now_ms: i64,
) -> Result<Reserved, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (failures, blocked_until, updated_at): (i64, i64, i64) = sqlx::query_as(
        "INSERT INTO throttle (scope, subject, failures, blocked_until_ms, updated_at_ms) \
         VALUES ($1, $2, 0, 0, $3) ON CONFLICT (scope, subject) DO UPDATE SET \
         scope = excluded.scope RETURNING failures, blocked_until_ms, updated_at_ms",
    )
    .bind(rule.scope)
    .bind(subject)
    .bind(now_ms)
    .fetch_one(&mut *tx)
    .await?;
    if blocked_until > now_ms {
        tx.commit().await?;
        return Ok(Reserved::Blocked {
            until_ms: blocked_until,
        });
    }
    let failures = if updated_at < now_ms - rule.window_ms {
        1
    } else {
        failures + 1
    };
    let delay = delay_ms(rule, failures);
    let until = if delay > 0 {
        blocked_until.max(now_ms + delay)
    } else {
        blocked_until
    };
    sqlx::query(
        "UPDATE throttle SET failures = $1, blocked_until_ms = $2, updated_at_ms = $3 \
         WHERE scope = $4 AND subject = $5",
    )
    .bind(failures)
    .bind(until)
    .bind(now_ms)
    .bind(rule.scope)
    .bind(subject)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reserved::Counted {
        recorded: Recorded {
            failures,
            blocked_ms: delay,
        },
        set_until_ms: until,
        previous_until_ms: blocked_until,
    })
}

/// Gives back a reserved failure: the attempt succeeded. A block the reservation
/// started is undone unless a later failure has moved it since.
pub async fn release(
    pool: &sqlx::AnyPool,
    rule: &Rule,
    subject: &str,
    set_until_ms: i64,
    previous_until_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END, \
         blocked_until_ms = CASE WHEN blocked_until_ms = $1 THEN $2 ELSE blocked_until_ms END \
         WHERE scope = $3 AND subject = $4",
    )
    .bind(set_until_ms)
    .bind(previous_until_ms)
    .bind(rule.scope)
    .bind(subject)
    .execute(pool)
    .await?;
    Ok(())
}
