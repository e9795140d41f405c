//! The throttle state in the database, shared by every instance using it.

use super::{delay_ms, Recorded, Rule};

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
