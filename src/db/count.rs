//! Totals for paged listings over tables of millions of rows (the activity log, the
//! users), without counting every match on every request.
//!
//! `COUNT(*)` reads every matching index entry: 0.03–0.4 s on ten million log entries,
//! on every page view, and it grows with the table. A listing here counts at most
//! [`EXACT_UP_TO`] + 1 matches (a `LIMIT`ed subquery, which stops there). Up to that
//! many the total is exact. Past it, the total is estimated from a sample: the newest
//! `sample` ids of the table (a range of the primary key, read in one short walk)
//! are checked against the filter, and the share that matches is taken to hold for
//! every id from the table's lowest to its highest. Unfiltered, with ids handed out in
//! order and only the oldest entries pruned, that is the count; for a filter whose
//! matches bunch up in time it is only an estimate, and the answer says so
//! (`exact: false`). Every step costs the same whatever the table's size.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Row;

use super::Db;

/// Matches counted exactly; past this the total is estimated.
pub const EXACT_UP_TO: i64 = 10_000;

/// A listing's total, and whether it was counted or estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub value: i64,
    pub exact: bool,
}

impl Total {
    /// Pages of `per_page` the total fills.
    pub fn pages(self, per_page: i64) -> i64 {
        (self.value + per_page - 1) / per_page
    }

    /// `matched` of the ids `sampled_from..=highest` match; the ids from `lowest`
    /// are taken to match in the same share. Never below what was counted exactly.
    fn estimated(matched: i64, sampled_from: i64, highest: i64, lowest: i64) -> Self {
        let span = (i128::from(highest) - i128::from(sampled_from) + 1).max(1);
        let all = (i128::from(highest) - i128::from(lowest) + 1).max(span);
        let value = (i128::from(matched) * all + span / 2) / span;
        Total {
            value: i64::try_from(value)
                .unwrap_or(i64::MAX)
                .max(EXACT_UP_TO + 1),
            exact: false,
        }
    }
}

/// Binds a listing's filter arguments to one of the statements below.
pub type Bind<'a> = &'a (dyn for<'q> Fn(
    Query<'q, sqlx::Any, AnyArguments<'q>>,
) -> Query<'q, sqlx::Any, AnyArguments<'q>>
         + Sync);

/// The total of `SELECT … FROM {table} WHERE {condition}` (no `WHERE` when
/// `condition` is empty), whose arguments `bind` supplies. `table` has an integer
/// primary key `id`; `sample_from` is the table as the sample reads it, where a
/// backend needs telling to walk the key's range rather than a filter's index, and
/// `sample` how many of the newest ids it reads: a larger sample estimates sparse
/// matches better and costs more per request.
pub async fn total(
    db: &Db,
    table: &str,
    sample_from: &str,
    sample: i64,
    condition: &str,
    bind: Bind<'_>,
) -> Result<Total, sqlx::Error> {
    let filter = if condition.is_empty() {
        String::new()
    } else {
        format!("WHERE {condition}")
    };
    let capped = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {table} {filter} LIMIT {}) capped",
        EXACT_UP_TO + 1
    );
    let counted: i64 = bind(sqlx::query(&capped))
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
    if counted <= EXACT_UP_TO {
        return Ok(Total {
            value: counted,
            exact: true,
        });
    }
    // Two statements: SQLite answers MIN or MAX from an index only when it is the
    // statement's one aggregate.
    let bound = |f: &str| format!("SELECT {f}(id) FROM {table}");
    let lowest: Option<i64> = sqlx::query_scalar(&bound("MIN"))
        .fetch_one(db.pool())
        .await?;
    let highest: Option<i64> = sqlx::query_scalar(&bound("MAX"))
        .fetch_one(db.pool())
        .await?;
    let (Some(lowest), Some(highest)) = (lowest, highest) else {
        // The rows went between the statements: what was counted is what is known.
        return Ok(Total {
            value: counted,
            exact: false,
        });
    };
    let sampled_from = highest.saturating_sub(sample - 1).max(lowest);
    let and = if condition.is_empty() {
        String::new()
    } else {
        format!("AND ({condition})")
    };
    // Ordered and limited, so that a planner without statistics for the newest ids
    // still walks the key's range rather than scanning the table (PostgreSQL chose a
    // parallel scan of ten million rows, 0.7 s, before the table was first analysed).
    let sample_sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {sample_from} WHERE id >= {sampled_from} {and} \
         ORDER BY id DESC LIMIT {sample}) sampled"
    );
    let matched: i64 = bind(sqlx::query(&sample_sql))
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
    Ok(Total::estimated(matched, sampled_from, highest, lowest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: i64 = 20_000;

    #[test]
    fn contiguous_ids_estimate_exactly() {
        // Ids 1..=1_000_000, every one a match.
        let total = Total::estimated(SAMPLE, 1_000_000 - SAMPLE + 1, 1_000_000, 1);
        assert_eq!(total.value, 1_000_000);
        assert!(!total.exact);
        assert_eq!(total.pages(100), 10_000);
    }

    #[test]
    fn sparse_matches_scale_by_their_share() {
        // One id in ten matches.
        let total = Total::estimated(SAMPLE / 10, 5_000_000 - SAMPLE + 1, 5_000_000, 1);
        assert_eq!(total.value, 500_000);
    }

    #[test]
    fn an_estimate_is_never_below_what_was_counted() {
        let total = Total::estimated(3, 1_000_000 - SAMPLE + 1, 1_000_000, 1);
        assert_eq!(total.value, EXACT_UP_TO + 1);
    }
}
