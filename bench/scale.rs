//! Listings at scale: `cargo bench --bench scale`.
//!
//! Runs on a large database (`SCALE_DATABASE_URL`, SQLite or PostgreSQL; default a
//! SQLite file `target/scale/gatehouse.db`). When it holds fewer than `SCALE_USERS`
//! accounts (default 1,000,000) or `SCALE_LOGS` log entries (default 10,000,000), the
//! missing ones are generated first with `gatehouse generate-data`'s generator, and
//! the time that took is printed. Then Gatehouse's router runs in this process and one
//! signed-in Super Admin calls each case through the whole middleware stack (no
//! socket), one request after another: the JSON routes and the web UI's pages for the
//! user list (first page, a deep page, a search) and the activity log (first, middle
//! and deepest pages, by number and by key, with and without filters, and the first
//! page of a 20-day window ending 20 days before the newest entry), each timed from
//! the request going in to the last byte coming out, p50 and p99, and the case's first
//! request on its own (that is when a page by number deep in a large view counts it
//! exactly). Last, the CSV export of the million oldest entries, with its rate and the
//! process's peak resident memory while it streamed.
//!
//! Settings: `BENCH_REQUESTS` (per case, default 200), `BENCH_CASE_SECONDS` (a case
//! stops early after this long, default 10), `SCALE_EXPORT_ROWS` (default 1,000,000).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use gatehouse::app::{self, AppState};
use gatehouse::auth::{password::PasswordHasher, session};
use gatehouse::config::{Config, Vars};
use gatehouse::db::Db;
use gatehouse::http::Origin;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use sqlx::Row;
use tower::ServiceExt;

const PASSWORD: &str = "Granite-Violin-42-Lantern";

fn env_i64(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Resident memory of this process now and at its peak since the last reset, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn run() {
    let url = std::env::var("SCALE_DATABASE_URL").unwrap_or_else(|_| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/scale");
        std::fs::create_dir_all(&dir).unwrap();
        format!("sqlite://{}", dir.join("gatehouse.db").display())
    });
    let want_users = env_i64("SCALE_USERS", 1_000_000);
    let want_logs = env_i64("SCALE_LOGS", 10_000_000);
    let requests = u64::try_from(env_i64("BENCH_REQUESTS", 200)).unwrap();
    let case_time = Duration::from_secs(u64::try_from(env_i64("BENCH_CASE_SECONDS", 10)).unwrap());
    let export_rows = env_i64("SCALE_EXPORT_ROWS", 1_000_000);

    let data_dir = tempfile::tempdir().unwrap();
    let vars = Vars::from_pairs([
        ("APP_ENV", "testing".to_owned()),
        ("DATA_DIR", data_dir.path().display().to_string()),
        ("DATABASE_URL", url.clone()),
        (
            "SECRET_KEY",
            "gatehouse-bench-secret-key-0123456789abc".to_owned(),
        ),
        ("MAIL_BACKEND", "log".to_owned()),
    ]);
    let config = Config::from_vars(&vars).unwrap();
    let started = Instant::now();
    let db = Db::connect(config.database_url.expose_secret())
        .await
        .unwrap();
    println!(
        "Gatehouse at scale: {:?}, opened (with any pending migration) in {:.1} s",
        db.backend(),
        started.elapsed().as_secs_f64()
    );

    let users = scalar(&db, "SELECT COUNT(*) FROM users").await;
    let logs = scalar(&db, "SELECT COUNT(*) FROM activity_logs").await;
    let (add_users, add_logs) = ((want_users - users).max(0), (want_logs - logs).max(0));
    if add_users > 0 || add_logs > 0 {
        println!("generating {add_users} accounts and {add_logs} log entries");
        let started = Instant::now();
        gatehouse::seed::generate(&db, add_users, add_logs)
            .await
            .unwrap();
        println!("generated in {:.1} s", started.elapsed().as_secs_f64());
    }
    let users = scalar(&db, "SELECT COUNT(*) FROM users").await;
    let logs = scalar(&db, "SELECT COUNT(*) FROM activity_logs").await;
    println!("data: {users} accounts, {logs} log entries");

    let hasher = PasswordHasher::new(1).unwrap();
    let tag = format!("{:08x}", rand::random::<u32>());
    let admin = gatehouse::accounts::create_admin(
        &db,
        &hasher,
        &config.password_policy,
        &format!("scale-{tag}"),
        &format!("scale-{tag}@example.com"),
        Some(PASSWORD),
    )
    .await
    .unwrap();
    let new = session::create(&db, &config, admin.id, &Origin::default())
        .await
        .unwrap();
    let cookie = format!("session={}", new.token);
    let state = AppState::new(config, db.clone()).unwrap();
    let router = app::router(state);

    // Positions to read from, taken from the data as it is.
    let min_user = scalar(&db, "SELECT MIN(id) FROM users").await;
    let max_user = scalar(&db, "SELECT MAX(id) FROM users").await;
    let deep_user = max_user - 50;
    let middle: String = sqlx::query(
        "SELECT username, lower(username) FROM users WHERE id >= $1 ORDER BY id LIMIT 1",
    )
    .bind(min_user + (max_user - min_user) / 2)
    .fetch_one(db.pool())
    .await
    .unwrap()
    .try_get(1)
    .unwrap();
    // A prefix matching the middle account and its ten next by number (…12345 and
    // …123450 to …123459), as a person narrowing a search would type.
    let prefix = &middle[..middle.len() - 1];
    let deep_name: String = sqlx::query_scalar(
        "SELECT lower(username) FROM users ORDER BY lower(username) DESC LIMIT 1 OFFSET 60",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let min_log = scalar(&db, "SELECT MIN(id) FROM activity_logs").await;
    let a_user = scalar(
        &db,
        &format!(
            "SELECT MAX(user_id) FROM activity_logs WHERE id < {}",
            min_log + 1000
        ),
    )
    .await;
    let per_page = 100;
    let last_page = (logs + per_page - 1) / per_page;
    // Filtered views and their last pages by number, counted here so the bench reads
    // the very last page whatever the data.
    let day = 86_400;
    let newest_at = scalar(&db, "SELECT MAX(created_at) FROM activity_logs").await;
    let (since, until) = (newest_at - 40 * day, newest_at - 20 * day);
    let mut deep_pages = Vec::new();
    for (name, query, condition) in [
        (
            "ERROR",
            "level=ERROR".to_owned(),
            "level = 'ERROR'".to_owned(),
        ),
        (
            "kind=auth",
            "kind=auth".to_owned(),
            "kind = 'auth'".to_owned(),
        ),
        (
            "q=login",
            "q=login".to_owned(),
            "lower(message) LIKE '%login%'".to_owned(),
        ),
        (
            "20 days",
            format!("since={since}&until={until}"),
            format!("created_at >= {since} AND created_at <= {until}"),
        ),
    ] {
        let matches = scalar(
            &db,
            &format!("SELECT COUNT(*) FROM activity_logs WHERE {condition}"),
        )
        .await;
        let last = (matches + per_page - 1) / per_page;
        deep_pages.push((
            format!("JSON logs, {name} last page (page)"),
            format!("/logs?per_page={per_page}&{query}&page={last}"),
        ));
    }
    // A time window ending in the past: its first page lies behind 20 days of newer
    // entries, which a read from the newest walks through.
    let window = format!("since={since}&until={until}");
    deep_pages.push((
        "JSON logs, 20 days first page".to_owned(),
        format!("/logs?per_page={per_page}&{window}"),
    ));
    deep_pages.push((
        "UI logs, 20 days first page".to_owned(),
        format!("/ui/logs?{window}"),
    ));
    let oldest_errors = scalar(
        &db,
        "SELECT MAX(id) FROM (SELECT id FROM activity_logs WHERE level = 'ERROR' \
         ORDER BY id LIMIT 100) t",
    )
    .await;

    let enc = |s: &str| serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_owned();
    let mut cases: Vec<(String, String)> = vec![
        (
            "JSON users, first page",
            "/admin/users/details?per_page=20".into(),
        ),
        (
            "JSON users, page 50,000 (offset)",
            "/admin/users/details?per_page=20&page=50000".into(),
        ),
        (
            "JSON users, last page (after=)",
            format!("/admin/users/details?per_page=20&after={deep_user}"),
        ),
        (
            "JSON users, prefix search",
            format!("/admin/users/details?q={}", enc(prefix)),
        ),
        (
            "JSON users, search 'gen'",
            "/admin/users/details?q=gen".into(),
        ),
        ("UI users, first page", "/ui/users".into()),
        (
            "UI users, deepest page (key)",
            format!("/ui/users?after={deep_user}"),
        ),
        (
            "UI users by name, deep (key)",
            format!("/ui/users?sort=username&after={}", enc(&deep_name)),
        ),
        (
            "UI users, prefix search",
            format!("/ui/users?q={}", enc(prefix)),
        ),
        (
            "UI users, search 'gen'",
            "/ui/users?q=gen&sort=email".into(),
        ),
        (
            "JSON logs, first page",
            format!("/logs?per_page={per_page}"),
        ),
        (
            "JSON logs, last page (offset)",
            format!("/logs?per_page={per_page}&page={last_page}"),
        ),
        (
            "JSON logs, middle page (offset)",
            format!("/logs?per_page={per_page}&page={}", last_page / 2),
        ),
        (
            "JSON logs, 3/4 deep (offset)",
            format!("/logs?per_page={per_page}&page={}", last_page * 3 / 4),
        ),
        (
            "JSON logs, deepest (before_id)",
            format!("/logs?per_page={per_page}&before_id={}", min_log + per_page),
        ),
        (
            "JSON logs, ERROR first page",
            format!("/logs?per_page={per_page}&level=ERROR"),
        ),
        (
            "JSON logs, ERROR deepest",
            format!("/logs?per_page={per_page}&level=ERROR&before_id={oldest_errors}"),
        ),
        (
            "JSON logs, one user",
            format!("/logs?per_page={per_page}&user={a_user}"),
        ),
        (
            "JSON logs, email (no match)",
            format!("/logs?per_page={per_page}&user=nobody%40example.com"),
        ),
        ("UI logs, first page", "/ui/logs".into()),
        (
            "UI logs, deepest (before_id)",
            format!("/ui/logs?before_id={}", min_log + 50),
        ),
        ("UI logs, ERROR first page", "/ui/logs?level=ERROR".into()),
        (
            "UI logs, ERROR deepest",
            format!("/ui/logs?level=ERROR&before_id={oldest_errors}"),
        ),
        ("UI logs, one user", format!("/ui/logs?user={a_user}")),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_owned(), path))
    .collect();
    cases.extend(deep_pages);

    println!(
        "{requests} sequential requests per case (after {} thrown away), or {} s at most",
        requests / 10,
        case_time.as_secs()
    );
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>6} {:>8}  p50 < 20 ms",
        "case", "first ms", "p50 ms", "p99 ms", "n", "bytes"
    );
    for (name, path) in &cases {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        let mut size = 0;
        let mut first = Duration::ZERO;
        let began = Instant::now();
        for i in 0..(requests + requests / 10) {
            if began.elapsed() > case_time && !histogram.is_empty() {
                break;
            }
            let t = Instant::now();
            let (status, body) = get(&router, path, &cookie).await;
            let elapsed = t.elapsed();
            assert_eq!(status, StatusCode::OK, "{path}");
            size = body.len();
            if i == 0 {
                first = elapsed;
            }
            if i >= requests / 10 || began.elapsed() > case_time {
                histogram
                    .record(u64::try_from(elapsed.as_nanos()).unwrap())
                    .unwrap();
            }
        }
        let p50 = histogram.value_at_quantile(0.5) as f64 / 1e6;
        println!(
            "{:<38} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>8}  {}",
            name,
            first.as_secs_f64() * 1e3,
            p50,
            histogram.value_at_quantile(0.99) as f64 / 1e6,
            histogram.len(),
            size,
            if p50 < 20.0 { "yes" } else { "NO" }
        );
    }
    // The requests above only queue their access lines (the log's writer task is not
    // started here), so the export below reads exactly the generated entries.
    // The export: the oldest `export_rows` entries, streamed and read as they come.
    let before = min_log + export_rows;
    let path = format!("/logs/export.csv?before_id={before}");
    // Writing 5 to clear_refs resets the peak (VmHWM) to the current resident size.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (rss_before, _) = rss();
    let t = Instant::now();
    let response = router
        .clone()
        .oneshot(
            Request::get(&path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes += data.len();
            lines += data.iter().filter(|b| **b == b'\n').count();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (rss_after, peak) = rss();
    let rows = lines.saturating_sub(1);
    println!(
        "CSV export below id {before}: {rows} rows, {:.1} MB in {secs:.1} s = {:.0} rows/s",
        bytes as f64 / 1e6,
        rows as f64 / secs
    );
    println!(
        "resident memory: {} MiB before, {} MiB after, peak during the export {} MiB{}",
        rss_before / 1024,
        rss_after / 1024,
        peak / 1024,
        if reset {
            ""
        } else {
            " (peak since start: clear_refs not writable)"
        }
    );
}

async fn get(router: &Router, path: &str, cookie: &str) -> (StatusCode, axum::body::Bytes) {
    let request = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}
