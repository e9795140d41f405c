//! Totals for paged listings over tables of millions of rows (the activity log, the
//! users), without counting every match on every request.
//!
//! `COUNT(*)` reads every matching index entry: 0.03–0.4 s on ten million log entries,
//! on every page view, and it grows with the table. A listing here counts at most
//! [`EXACT_UP_TO`] + 1 matches (a `LIMIT`ed subquery, which stops there). Up to that
//! many the total is exact. Past it, the total is an estimate from the newest matches:
//! the ids from the newest match down to the one at offset [`EXACT_UP_TO`] hold
//! `EXACT_UP_TO + 1` matches, and the ids below are assumed to hold matches at the
//! same density down to the table's lowest id. Unfiltered, with ids handed out in
//! order and only the oldest entries pruned, that is exact; for a filter whose matches
//! bunch up in time it is only an estimate, and the answer says so (`exact: false`).
//! Each step walks an index: at most 2 × [`EXACT_UP_TO`] entries, whatever the table's
//! size.

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

    /// `EXACT_UP_TO + 1` matches lie in the ids `nth..=newest`; the ids from `lowest`
    /// up to `nth` are taken to hold matches at that density.
    fn estimated(newest: i64, nth: i64, lowest: i64) -> Self {
        let sample = i128::from(EXACT_UP_TO + 1);
        let span = (i128::from(newest) - i128::from(nth) + 1).max(1);
        let all = (i128::from(newest) - i128::from(lowest) + 1).max(span);
        let value = (sample * all + span / 2) / span;
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

/// The total of `SELECT … FROM {table} {filter}`, where `table` has an integer `id`
/// key indexed for `ORDER BY id DESC` and `filter` is a `WHERE` clause (or nothing)
/// whose arguments `bind` supplies.
pub async fn total(
    db: &Db,
    table: &str,
    filter: &str,
    bind: Bind<'_>,
) -> Result<Total, sqlx::Error> {
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
    let id_at = |offset: i64| {
        format!("SELECT id FROM {table} {filter} ORDER BY id DESC LIMIT 1 OFFSET {offset}")
    };
    let (newest_sql, nth_sql) = (id_at(0), id_at(EXACT_UP_TO));
    let newest = bind(sqlx::query(&newest_sql))
        .fetch_optional(db.pool())
        .await?;
    let nth = bind(sqlx::query(&nth_sql))
        .fetch_optional(db.pool())
        .await?;
    let lowest: Option<i64> = sqlx::query_scalar(&format!("SELECT MIN(id) FROM {table}"))
        .fetch_one(db.pool())
        .await?;
    match (newest, nth, lowest) {
        (Some(newest), Some(nth), Some(lowest)) => Ok(Total::estimated(
            newest.try_get(0)?,
            nth.try_get(0)?,
            lowest,
        )),
        // Rows went between the statements: what was counted is what is known.
        _ => Ok(Total {
            value: counted,
            exact: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ids_estimate_exactly() {
        // Ids 1..=1_000_000, every one a match.
        let nth = 1_000_000 - EXACT_UP_TO;
        let total = Total::estimated(1_000_000, nth, 1);
        assert_eq!(total.value, 1_000_000);
        assert!(!total.exact);
        assert_eq!(total.pages(100), 10_000);
    }

    #[test]
    fn sparse_matches_scale_by_their_density() {
        // One id in ten matches: the sample spans ten times its size.
        let newest = 5_000_000;
        let nth = newest - (EXACT_UP_TO * 10) + 1;
        let total = Total::estimated(newest, nth, 1);
        assert_eq!(total.value, 500_050);
    }

    #[test]
    fn an_estimate_is_never_below_what_was_counted() {
        let total = Total::estimated(20_000, 1, 5);
        assert_eq!(total.value, EXACT_UP_TO + 1);
    }
}
