//! The import benchmark: `cargo bench --bench import`.
//!
//! Builds an old Flask service database of `BENCH_USERS` users (default 100,000) with
//! their data (a role each, two log entries each, one board per hundred users with
//! five columns of ten tickets, a Stripe customer, subscription and two orders for one
//! user in ten), then times `import-flask` into a fresh SQLite file and, when
//! `TEST_DATABASE_URL` is set, into a fresh PostgreSQL schema. Every user carries the
//! same real Werkzeug scrypt hash: the importer carries hashes over and never computes
//! one, so making 100,000 of them here would time nothing but this set-up. The issue
//! asks for under a minute.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use gatehouse::db::Db;
use gatehouse::import::{self, Options};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

const HASH: &str = "scrypt:32768:8:1$ZtkX0d91git46Lmu$3867bef859f882ae993fbf8a57660f78987fe0a17804de258f75920c4a9961ae3e391251a07d795615697bd036012bc6be66d064886494573247c031c8a9b37d";
const SECRET_KEY: &[u8] = b"bench-secret-key-that-is-long-enough-0123";

async fn old_database(path: &Path, users: i64) {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(false)
        .connect()
        .await
        .unwrap();
    let boards = users / 100;
    let customers = users / 10;
    let script = format!(
        r#"
        CREATE TABLE user (id INTEGER NOT NULL, first_name VARCHAR(60), last_name VARCHAR(60), username VARCHAR(80) NOT NULL, email VARCHAR(120) NOT NULL, password_hash VARCHAR(128), twofa_secret VARCHAR(60), twofa_enabled BOOLEAN NOT NULL, stripe_customer_id VARCHAR(60), verified BOOLEAN NOT NULL, created_at DATETIME, PRIMARY KEY (id));
        CREATE TABLE roles (id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id));
        CREATE TABLE permissions (id INTEGER NOT NULL, name VARCHAR(50), role_id INTEGER, PRIMARY KEY (id));
        CREATE TABLE user_roles (user_id INTEGER NOT NULL, role_id INTEGER NOT NULL, PRIMARY KEY (user_id, role_id));
        CREATE TABLE board (id INTEGER NOT NULL, name VARCHAR(100) NOT NULL, PRIMARY KEY (id));
        CREATE TABLE "column" (id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, position INTEGER NOT NULL, board_id INTEGER NOT NULL, PRIMARY KEY (id));
        CREATE TABLE ticket (id INTEGER NOT NULL, title VARCHAR(200) NOT NULL, description TEXT, position INTEGER NOT NULL, column_id INTEGER NOT NULL, created_at DATETIME, PRIMARY KEY (id));
        CREATE TABLE log_entry (id INTEGER NOT NULL, timestamp DATETIME, log_level VARCHAR(10), message TEXT, client_ip VARCHAR(15), user_agent TEXT, user_email VARCHAR(60), PRIMARY KEY (id));
        CREATE TABLE stripe_products (id INTEGER NOT NULL, product_id VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, description TEXT, active BOOLEAN, type VARCHAR(50) NOT NULL, created_at DATETIME, updated_at DATETIME, PRIMARY KEY (id));
        CREATE TABLE stripe_prices (id INTEGER NOT NULL, price_id VARCHAR(255) NOT NULL, product_id VARCHAR(255) NOT NULL, unit_amount FLOAT NOT NULL, currency VARCHAR(10) NOT NULL, recurring JSON, active BOOLEAN, nickname VARCHAR(255), created_at DATETIME, updated_at DATETIME, PRIMARY KEY (id));
        CREATE TABLE stripe_subscriptions (id INTEGER NOT NULL, subscription_id VARCHAR(255) NOT NULL, user_id INTEGER NOT NULL, price_id VARCHAR(255) NOT NULL, status VARCHAR(50) NOT NULL, previous_status VARCHAR(50), current_period_end DATETIME NOT NULL, trial_end DATETIME, created_at DATETIME, PRIMARY KEY (id));
        CREATE TABLE "order" (id INTEGER NOT NULL, user_id INTEGER NOT NULL, product_id VARCHAR(120) NOT NULL, quantity INTEGER NOT NULL, price FLOAT NOT NULL, timestamp DATETIME, PRIMARY KEY (id));
        BEGIN;
        INSERT INTO user WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users})
            SELECT i, 'First', 'Last', 'user' || i, 'User' || i || '@example.com', '{HASH}', NULL, 0,
                   CASE WHEN i <= {customers} THEN 'cus_' || i END, i % 7 <> 0, '2026-11-30 13:22:25.511350' FROM n;
        INSERT INTO roles VALUES (1, 'Super Admin'), (2, 'Admin'), (3, 'Editors');
        INSERT INTO permissions VALUES (1, 'view_dashboard', 1), (2, 'edit', 2), (3, 'publish', 3);
        INSERT INTO user_roles SELECT id, 1 + id % 3 FROM user;
        INSERT INTO log_entry SELECT id * 2 - 1, '2026-11-30 13:26:07.017413', 'INFO', 'Before Request: GET http://localhost/boards - Client IP: 127.0.0.1 - User Agent: probe', '127.0.0.1', 'probe', NULL FROM user;
        INSERT INTO log_entry SELECT id * 2, '2026-11-30 13:26:07.129902', 'INFO', 'After Request: GET http://localhost/boards - Client IP: 127.0.0.1 - User Agent: probe', '127.0.0.1', 'probe', email FROM user;
        INSERT INTO board SELECT id, 'Board ' || id FROM user WHERE id <= {boards};
        INSERT INTO "column" WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {boards} * 5)
            SELECT i, 'Column ' || i, i, 1 + (i - 1) / 5 FROM n;
        INSERT INTO ticket WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {boards} * 50)
            SELECT i, 'Ticket ' || i, 'Body', 1 + (i - 1) / 10, 1 + (i - 1) / 10, '2026-11-30 13:26:07.401034' FROM n;
        INSERT INTO stripe_products VALUES (1, 'prod_1', 'Pro plan', NULL, 1, 'service', NULL, NULL);
        INSERT INTO stripe_prices VALUES (1, 'price_1', 'prod_1', 19.98, 'usd', '{{"interval": "month"}}', 1, NULL, NULL, NULL);
        INSERT INTO stripe_subscriptions SELECT id, 'sub_' || id, id, 'price_1', 'active', NULL, '2026-12-31 00:00:00', NULL, NULL FROM user WHERE id <= {customers};
        INSERT INTO "order" SELECT id, id, 'price_1', 1, 19.98, NULL FROM user WHERE id <= {customers};
        INSERT INTO "order" SELECT {customers} + id, id, 'price_1', 2, 39.96, NULL FROM user WHERE id <= {customers};
        COMMIT;
        "#
    );
    sqlx::raw_sql(&script).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn time_import(label: &str, url: &str, old: &Path) {
    let db = Db::connect(url).await.unwrap();
    let options = Options {
        from: old.to_owned(),
        dry_run: false,
        server_utc_offset: time::UtcOffset::UTC,
        progress: false,
    };
    let start = Instant::now();
    let report = import::run(&db, SECRET_KEY, &options).await.unwrap();
    let first = start.elapsed();
    let start = Instant::now();
    let again = import::run(&db, SECRET_KEY, &options).await.unwrap();
    let second = start.elapsed();
    let rows: usize = report.tables.iter().map(|t| t.imported).sum();
    println!(
        "{label}: imported {rows} rows ({} users) in {:.1} s; a second run found {} users already there in {:.1} s",
        report.table("user").map_or(0, |t| t.imported),
        first.as_secs_f64(),
        again.table("user").map_or(0, |t| t.already),
        second.as_secs_f64(),
    );
    db.close().await;
}

#[tokio::main]
async fn main() {
    let users: i64 = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("default.db");
    let start = Instant::now();
    old_database(&old, users).await;
    println!(
        "old database with {users} users built in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let sqlite = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    time_import("sqlite", &sqlite, &old).await;

    if let Some(base) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let schema = format!("gh_bench_import_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        time_import("postgres", &url, &old).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
