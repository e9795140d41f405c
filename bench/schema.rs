//! What the benchmarks that include it share (`#[path = "schema.rs"] mod schema;`):
//! a schema of its own in a PostgreSQL database, for a benchmark that runs over
//! `BENCH_DATABASE_URL`, made at the start and dropped at the end; and reading their
//! numeric settings.

use sqlx::Connection as _;

const SCHEMA_OPTION: &str = "options=-c%20search_path%3D";

/// A new schema named `<prefix>_<random>` in the database at `base`: the URL that
/// works in it, and its name.
pub async fn fresh(base: &str, prefix: &str) -> (String, String) {
    let schema = format!("{prefix}_{:08x}", rand::random::<u32>());
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("a connection to BENCH_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("the benchmark's schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    (format!("{base}{sep}{SCHEMA_OPTION}{schema}"), schema)
}

/// Drops the schema that `url`, made by [`fresh`], works in; nothing for another URL.
pub async fn drop(url: &str) {
    let Some((base, schema)) = url.split_once(SCHEMA_OPTION) else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(base.trim_end_matches(['?', '&']))
        .await
        .expect("a connection to drop the benchmark's schema");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .expect("the benchmark's schema dropped");
}

/// A whole-number setting from the environment, or `default` when unset; anything
/// else ends the benchmark with a message.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name} must be a whole number, not {v:?}");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}
