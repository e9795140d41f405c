//! Several writes sent to the database in one round trip.
//!
//! On a busy machine most of what a short statement costs is its trip rather than its
//! work: the threads woken to send it, to run it and to hand its answer back
//! (docs/performance.md measures it). A request that makes several writes that do not
//! depend on one another's answers sends them together with [`run`]:
//!
//! - on PostgreSQL as the steps of one statement (`WITH s0 AS (…), s1 AS (…) SELECT 0`),
//!   which commits all of them or none. The steps see the data as it was before the
//!   statement, so no two of them may write the same row;
//! - on SQLite as one call that runs them one after the other on its connection, each
//!   committing on its own: the first that fails ends the call, and the steps before
//!   it stay done.

use sqlx::AnyPool;

use super::Backend;

/// A value bound to one of a step's parameters.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(i64),
    OptionalInt(Option<i64>),
    Text(&'a str),
    OptionalText(Option<&'a str>),
}

/// One write: a statement with the parameters `$1`…`$N`, and their values in order.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    sql: &'a str,
    values: Vec<Value<'a>>,
}

impl<'a> Step<'a> {
    pub fn new(sql: &'a str, values: Vec<Value<'a>>) -> Self {
        Self { sql, values }
    }
}

/// Runs `steps` in one round trip, in their order on SQLite; see the module's
/// documentation for what each backend promises.
pub async fn run(pool: &AnyPool, backend: Backend, steps: &[Step<'_>]) -> Result<(), sqlx::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    let mut statements = Vec::with_capacity(steps.len());
    let mut bound = 0;
    for step in steps {
        statements.push(shift_parameters(step.sql, bound));
        bound += step.values.len();
    }
    let sql = match backend {
        _ if statements.len() == 1 => statements.swap_remove(0),
        Backend::Postgres => format!("{} SELECT 0", with_steps("s", &statements)),
        Backend::Sqlite => statements.join("; "),
    };
    let mut query = sqlx::query(&sql);
    for &value in steps.iter().flat_map(|step| &step.values) {
        query = bind(query, value);
    }
    query.execute(pool).await?;
    Ok(())
}

/// Binds `value` as the query's next parameter.
pub fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    value: Value<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    match value {
        Value::Int(v) => query.bind(v),
        Value::OptionalInt(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::OptionalText(v) => query.bind(v),
    }
}

/// `WITH p0 AS (step), p1 AS (step) ...`: PostgreSQL runs every data-modifying step of
/// a `WITH` exactly once, whether or not the statement reads its rows.
pub fn with_steps(prefix: &str, steps: &[String]) -> String {
    let named: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| format!("{prefix}{i} AS ({step})"))
        .collect();
    format!("WITH {}", named.join(", "))
}

/// The statement with each placeholder `$N` renumbered `$(N + by)`, so that several
/// statements' parameters can follow one another in one statement, or in one call of
/// several statements on SQLite (which binds `$N` to the call's `N`th value).
pub fn shift_parameters(sql: &str, by: usize) -> String {
    let mut shifted = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        shifted.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => shifted.push_str(&(n + by).to_string()),
            Err(_) => shifted.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    shifted.push_str(rest);
    shifted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_shift_past_those_before() {
        assert_eq!(
            shift_parameters("a = $1 AND b = $12 OR $ c", 8),
            "a = $9 AND b = $20 OR $ c"
        );
        assert_eq!(
            shift_parameters("DELETE FROM t WHERE a = $1", 0),
            "DELETE FROM t WHERE a = $1"
        );
        assert_eq!(
            with_steps("g", &["DELETE x".into(), "UPDATE y".into()]),
            "WITH g0 AS (DELETE x), g1 AS (UPDATE y)"
        );
    }
}
