//! The web UI's rendering benchmark: `cargo bench --bench ui`.
//!
//! Builds Gatehouse's router in this process over a fresh SQLite file, makes one
//! signed-in Super Admin, and calls each page through the whole middleware stack (no
//! socket): a warm-up that is thrown away, then `BENCH_REQUESTS` (default 2000) calls
//! one after another, each timed from the request going in to the last byte of the
//! body coming out. That is the server's time for the page: session lookup, the
//! page's queries, rendering and the security headers. It prints p50 and p99 per page.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use gatehouse::app::{self, AppState};
use gatehouse::auth::{password::PasswordHasher, session};
use gatehouse::config::{Config, Vars};
use gatehouse::db::Db;
use gatehouse::http::Origin;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;
use tower::ServiceExt;

const PASSWORD: &str = "Granite-Violin-42-Lantern";

fn main() {
    let requests: u64 = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(requests));
}

async fn run(requests: u64) {
    let dir = tempfile::tempdir().unwrap();
    let vars = Vars::from_pairs([
        ("APP_ENV", "testing".to_owned()),
        ("DATA_DIR", dir.path().display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gatehouse.db").display()),
        ),
        (
            "SECRET_KEY",
            "gatehouse-bench-secret-key-0123456789abc".to_owned(),
        ),
        ("MAIL_BACKEND", "file".to_owned()),
    ]);
    let config = Config::from_vars(&vars).unwrap();
    let db = Db::connect(config.database_url.expose_secret())
        .await
        .unwrap();
    let hasher = PasswordHasher::new(1).unwrap();
    let admin = gatehouse::accounts::create_admin(
        &db,
        &hasher,
        &config.password_policy,
        "bench",
        "bench@example.com",
        Some(PASSWORD),
    )
    .await
    .unwrap();
    let new = session::create(&db, &config, admin.id, &Origin::default())
        .await
        .unwrap();
    let cookie = format!("session={}", new.token);
    let state = AppState::new(config, db).unwrap();
    let router = app::router(state);

    let css = gatehouse::ui::stylesheet_url();
    let pages: [(&str, &str, bool); 10] = [
        ("sign in", "/ui/login", false),
        ("sign up", "/ui/signup", false),
        ("forgot password", "/ui/forgot", false),
        ("reset password", "/ui/reset/some-token", false),
        ("not found (404)", "/ui/no-such-page", false),
        ("stylesheet", css, false),
        ("dashboard", "/ui/", true),
        ("profile", "/ui/profile", true),
        ("security", "/ui/security", true),
        ("2FA set-up (QR code)", "/ui/security/2fa", true),
    ];
    println!("Gatehouse web UI: server time per page, {requests} sequential requests each");
    println!(
        "{:<24} {:>10} {:>10} {:>10}",
        "page", "p50 µs", "p99 µs", "bytes"
    );
    for (name, path, signed_in) in pages {
        let mut histogram = Histogram::<u64>::new(3).unwrap();
        let mut size = 0;
        for i in 0..(requests + requests / 10) {
            let mut request = Request::get(path);
            if signed_in {
                request = request.header(header::COOKIE, &cookie);
            }
            let request = request.body(Body::empty()).unwrap();
            let started = Instant::now();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let elapsed = started.elapsed();
            assert!(
                status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                "{path}: {status}"
            );
            size = body.len();
            if i >= requests / 10 {
                histogram
                    .record(u64::try_from(elapsed.as_nanos()).unwrap())
                    .unwrap();
            }
        }
        println!(
            "{:<24} {:>10.1} {:>10.1} {:>10}",
            name,
            histogram.value_at_quantile(0.5) as f64 / 1000.0,
            histogram.value_at_quantile(0.99) as f64 / 1000.0,
            size
        );
    }
}
