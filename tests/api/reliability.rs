//! Reliability under faults the tests cause for real: hostile and malformed input is
//! refused the same way on both databases, a PostgreSQL outage under load answers 503
//! and loses no record of an answered request, and the service recovers by itself.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    expect_error, new_client, postgres_available, postgres_url, Backend, TestApp,
};
use crate::on_both_databases;

on_both_databases!(
    control_characters_are_refused_naming_the_field,
    json_is_strict_and_paging_follows_one_rule,
    oversized_uris_and_headers_get_the_contract_body,
    an_admin_change_and_its_entry_are_one_transaction,
);

on_both_databases!(
    shutdown_finishes_within_the_grace_whatever_clients_do,
    slow_header_senders_are_cut_off,
    open_connections_are_bounded,
    a_sigkill_under_write_load_loses_no_acknowledged_write,
);

/// Logs in an Admin (who may search users and read every log) on the app's client.
async fn admin(app: &TestApp, name: &str) {
    app.verified_user(name).await;
    let id = app
        .scalar(&format!("SELECT id FROM users WHERE username = '{name}'"))
        .await;
    app.grant(id, "Super Admin").await;
}

async fn control_characters_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin(&app, "root").await;
    // JSON bodies: NUL and other control characters, escaped, in any field.
    for (body, field) in [
        (
            json!({"username_or_email": "ro\u{0}ot", "password": "x"}),
            "username_or_email",
        ),
        (
            json!({"username_or_email": "root", "password": "a\u{1b}b"}),
            "password",
        ),
    ] {
        let message = expect_error(app.post("/login", body).await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(&format!("`{field}`")), "{message}");
    }
    let message = expect_error(
        app.post("/admin/create_permission", json!({"name": "perm\u{0}x"}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("`name`"), "{message}");
    // A form body.
    let res = new_client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username_or_email=a%00b&password=x")
        .send()
        .await
        .unwrap();
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("`username_or_email`"), "{message}");
    // Query parameters, on every route, before the database sees them.
    for (path, param) in [
        ("/admin/users/details?q=a%00b", "q"),
        ("/logs?user=x%00", "user"),
        ("/logs?q=%1b%5b31m", "q"),
        ("/logs/export.csv?level=INFO%00", "level"),
        (
            "/user-email-subscriptions?email=a%00%40example.com",
            "email",
        ),
    ] {
        let message = expect_error(app.get(path).await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(&format!("`{param}`")), "{path}: {message}");
    }
    // Paths.
    let res = app.get("/verify_email/abc%00def").await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    // Tabs and line breaks stay allowed in JSON text, and nothing was stored.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM permissions WHERE name LIKE 'perm%'")
            .await,
        0
    );
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
}

async fn json_is_strict_and_paging_follows_one_rule(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin(&app, "root").await;
    let csrf = app.csrf.lock().unwrap().clone().unwrap();
    for (content_type, body, status) in [
        (
            "application/json",
            r#"{"name": "reports.read"} trailing"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            r#"{"name": "reports.read"}{"name": "x"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json-patch+json",
            r#"{"name": "reports.read"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/merge-patch+json",
            r#"{"name": "reports.read"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let res = app
            .client
            .post(app.url("/admin/create_permission"))
            .header("content-type", content_type)
            .header("x-csrftoken", &csrf)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(res, status).await;
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM permissions WHERE name = 'reports.read'")
            .await,
        0,
        "nothing refused was stored"
    );
    // One rule for paging parameters, wherever they are read.
    for path in [
        "/logs?before_id=AAA",
        "/logs/export.csv?before_id=AAA",
        "/logs?before_id=-5",
        "/logs/export.csv?page=-1",
        "/logs?page=-1",
        "/logs?per_page=0",
        "/admin/users/details?page=-1",
        "/admin/users/details?per_page=abc",
    ] {
        let message = expect_error(app.get(path).await, StatusCode::BAD_REQUEST).await;
        assert!(
            message.contains("must be a positive integer"),
            "{path}: {message}"
        );
    }
    let res = app.get("/logs/export.csv?before_id=1&page=2").await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A PostgreSQL database of its own, so that an outage can be caused without touching
/// the shared server: connections to it are refused and its sessions terminated.
pub(crate) struct OutageDb {
    admin: sqlx::PgConnection,
    name: String,
    pub url: String,
}

impl OutageDb {
    pub(crate) async fn create() -> Self {
        let base = postgres_url().unwrap();
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        let name = format!("gh_outage_{:012x}", rand::thread_rng().gen::<u64>() >> 16);
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let options: sqlx::postgres::PgConnectOptions = base.parse().unwrap();
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        Self { admin, name, url }
    }

    pub(crate) async fn go_down(&mut self) {
        self.run(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ))
        .await;
        self.end_sessions().await;
    }

    /// Ends every session on the database, as a restart of the server would.
    pub(crate) async fn end_sessions(&mut self) {
        self.run(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ))
        .await;
    }

    pub(crate) async fn come_back(&mut self) {
        self.run(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }

    pub(crate) async fn drop_it(mut self) {
        self.run(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }

    /// Runs `sql` on the administrative connection, outside the database.
    async fn run(&mut self, sql: &str) {
        sqlx::query(sql).execute(&mut self.admin).await.unwrap();
    }
}

/// A pooled connection is handed out unchecked only when it was in use a moment ago: one
/// the server ended while it sat idle longer is found dead and replaced, and the query
/// never sees it. (Without that check the query fails with the ended connection's
/// error.)
#[tokio::test]
async fn an_idle_postgres_connection_the_server_ended_is_replaced_before_use() {
    if !postgres_available().await {
        return;
    }
    let mut outage = OutageDb::create().await;
    let db = gatehouse::db::Db::connect(&outage.url).await.unwrap();
    let backend = "SELECT pg_backend_pid()";
    let mut before = Vec::new();
    for pool in [db.pool(), db.relaxed_pool()] {
        let pid: i32 = sqlx::query_scalar(backend).fetch_one(pool).await.unwrap();
        before.push(pid);
    }
    outage.end_sessions().await;
    // The ended connections wait in the pools until they count as idle.
    tokio::time::sleep(gatehouse::db::CHECK_IDLE_AFTER + Duration::from_millis(100)).await;
    for (pool, ended) in [db.pool(), db.relaxed_pool()].into_iter().zip(before) {
        let pid: i32 = sqlx::query_scalar(backend).fetch_one(pool).await.unwrap();
        assert_ne!(pid, ended, "a new connection answers");
    }
    db.close().await;
    outage.drop_it().await;
}

/// Connections used a moment ago are handed out unchecked, so when the server ends them
/// the first request to meet one fails; from then on every connection is checked before
/// it is handed out for a while, and the others do not fail a request each. (Without that
/// the second statement below fails too.)
#[tokio::test]
async fn after_a_statement_fails_on_an_ended_connection_every_connection_is_checked() {
    if !postgres_available().await {
        return;
    }
    let mut outage = OutageDb::create().await;
    let db = gatehouse::db::Db::connect(&outage.url).await.unwrap();
    let pool = db.pool();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    for conn in &mut held {
        sqlx::query("SELECT 1").execute(&mut **conn).await.unwrap();
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.num_idle() < pool.size() as usize {
        assert!(
            Instant::now() < deadline,
            "the connections come back to the pool"
        );
        tokio::task::yield_now().await;
    }
    outage.end_sessions().await;
    // The request that meets the first ended connection fails, as the service maps it.
    if let Err(e) = sqlx::query("SELECT 1").execute(pool).await {
        let _ = gatehouse::error::AppError::from(e);
    }
    for _ in 0..3 {
        sqlx::query("SELECT 1").execute(pool).await.unwrap();
    }
    db.close().await;
    outage.drop_it().await;
}

/// Whether the answer is the contract's 503 for an outage.
async fn is_outage_answer(res: reqwest::Response) -> bool {
    if res.status() != StatusCode::SERVICE_UNAVAILABLE {
        return false;
    }
    assert!(
        res.headers().contains_key("retry-after"),
        "503 without Retry-After"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "service_unavailable", "{body}");
    assert_eq!(body["success"], false);
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_under_load_answers_503_loses_no_record_and_recovers() {
    if !postgres_available().await {
        return;
    }
    let mut db = OutageDb::create().await;
    let app = TestApp::spawn_with(Backend::Postgres, &[("DATABASE_URL", db.url.as_str())]).await;
    app.verified_user("olga").await;
    let cookie = format!("session={}", app.session_cookie().unwrap());

    db.go_down().await;
    // Load while the database is away: logins (authentication events) and reads.
    let load = (0..20).map(|i| {
        let app = &app;
        async move {
            let res = if i % 2 == 0 {
                new_client()
                    .post(app.url("/login"))
                    .json(&json!({"username_or_email": "olga", "password": "Wrong-Guess-1!"}))
                    .send()
                    .await
                    .unwrap()
            } else {
                app.get("/current_user_details").await
            };
            is_outage_answer(res).await
        }
    });
    let outcomes = futures::future::join_all(load).await;
    assert!(
        outcomes.iter().all(|o| *o),
        "every request is a 503: {outcomes:?}"
    );
    // Monitoring still answers, whatever cookie comes with it.
    for path in ["/healthz", "/metrics"] {
        let res = new_client()
            .get(app.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let res = new_client()
        .get(app.url("/readyz"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(is_outage_answer(res).await);

    db.come_back().await;
    // Recovery needs nobody: the next requests succeed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut refused_while_recovering = 0;
    loop {
        let res = app.get("/current_user_details").await;
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(is_outage_answer(res).await);
        refused_while_recovering += 1;
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        tokio::task::yield_now().await;
    }
    let res = app
        .post(
            "/login",
            json!({"username_or_email": "olga", "password": "Wrong-Guess-1!"}),
        )
        .await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    // The failed login is on record before its answer, and every answered request of
    // the outage has its access line once the writer has caught up: none dropped.
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM activity_logs WHERE message = 'login failed'")
            .await,
        1
    );
    app.state.activity.drain().await;
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM activity_logs WHERE kind = 'access' AND status = 503")
            .await,
        20 + refused_while_recovering
    );
    assert_eq!(app.state.activity.dropped(), 0);
    let res = app.get("/readyz").await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["details"]["activity_log_dropped_total"], 0, "{body}");
    drop(app);
    db.drop_it().await;
}

/// Reads until the server closes the connection, or `within` passes; returns what was
/// read and whether the connection was closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// SIGTERM's path with a half-sent header, a slow header sender, an idle keep-alive
/// connection and a request in flight: the request is answered and the server is gone
/// within the grace period, although the header timeout is far longer.
async fn shutdown_finishes_within_the_grace_whatever_clients_do(backend: Backend) {
    let mut app = TestApp::spawn_with(
        backend,
        &[("SHUTDOWN_GRACE", "1s"), ("HEADER_READ_TIMEOUT", "60s")],
    )
    .await;
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: gatehouse\r\nX-Slow: ")
        .await
        .unwrap();
    let slow_addr = app.addr;
    let slowloris = tokio::spawn(async move {
        let mut slow = TcpStream::connect(slow_addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        for i in 0.. {
            if slow
                .write_all(format!("X-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gatehouse\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A login (an Argon2 hash) is in flight when the shutdown begins.
    let in_flight = {
        let url = app.url("/login");
        tokio::spawn(async move {
            new_client()
                .post(url)
                .json(&json!({"username_or_email": "nobody", "password": "Wrong-Guess-1!"}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::task::yield_now().await;

    let started = Instant::now();
    app.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    if let Ok(status) = in_flight.await.unwrap() {
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "an accepted request is answered"
        );
    }
    for stream in [&mut half, &mut idle] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(2)).await;
        assert!(closed, "every connection is closed at shutdown");
    }
    slowloris.await.unwrap();
}

/// A client that sends its header a line at a time, never finishing, is disconnected
/// after the header read timeout.
async fn slow_header_senders_are_cut_off(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("HEADER_READ_TIMEOUT", "1s")]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    for i in 0..40 {
        if slow
            .write_all(format!("X-Line-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            cut_off = true;
            break;
        }
        let (_, closed) = read_until_closed(&mut slow, Duration::from_millis(100)).await;
        if closed {
            cut_off = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        cut_off,
        "a slow header sender kept its connection for {took:?}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "cut off too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut off too late: {took:?}");
    // Everyone else is served.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

/// With `MAX_CONNECTIONS` open, a further client waits until one closes.
async fn open_connections_are_bounded(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MAX_CONNECTIONS", "2")]).await;
    let mut first = TcpStream::connect(app.addr).await.unwrap();
    let mut second = TcpStream::connect(app.addr).await.unwrap();
    for stream in [&mut first, &mut second] {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gatehouse\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // Both stay open (keep-alive); a third client is not served meanwhile...
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gatehouse\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut third, Duration::from_millis(300)).await;
    assert!(answer.is_empty(), "served beyond the bound: {answer}");
    // ...until one of the others goes.
    drop(first);
    let (answer, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed);
    drop(second);
}

async fn oversized_uris_and_headers_get_the_contract_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let long = format!("/logs?q={}", "a".repeat(gatehouse::http::MAX_URI_BYTES));
    let message = expect_error(
        new_client().get(app.url(&long)).send().await.unwrap(),
        StatusCode::URI_TOO_LONG,
    )
    .await;
    assert_eq!(message, "The request URI is too long.");
    let mut many = new_client().get(app.url("/healthz"));
    for i in 0..=gatehouse::http::MAX_HEADERS {
        many = many.header(format!("x-h-{i}"), "v");
    }
    expect_error(
        many.send().await.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    )
    .await;
    let big = new_client()
        .get(app.url("/healthz"))
        .header("x-big", "b".repeat(gatehouse::http::MAX_HEADER_BYTES))
        .send()
        .await
        .unwrap();
    expect_error(big, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

/// The real binary, serving `database_url` from `dir` on `port` (or running another
/// command when `args` says so).
fn binary(dir: &std::path::Path, database_url: &str, port: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "error")
        .env("DATABASE_URL", database_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("MAIL_BACKEND", "file")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// A running server process, killed (SIGKILL) when dropped, so that a failing
/// assertion does not leave it running.
struct Server(std::process::Child);

impl Server {
    /// SIGKILL, as a power cut would end it, and wait for it to be gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `serve` and waits (bounded) until it answers.
async fn start_server(dir: &std::path::Path, database_url: &str, port: u16) -> Server {
    let mut server = Server(binary(dir, database_url, port).spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut up = false;
    while !up && tokio::time::Instant::now() < deadline {
        up = new_client().get(&url).send().await.is_ok();
        if !up {
            // Waiting on another process to listen: nothing to be told by, so poll.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if !up {
        server.kill();
        panic!("the server did not come up");
    }
    server
}

/// A logged-in client of the real server; returns it with its CSRF token.
async fn log_in(base: &str, password: &str) -> (reqwest::Client, String) {
    let client = new_client();
    let res = client
        .post(format!("{base}/login"))
        .json(&json!({"username_or_email": "root", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    (client, body["csrf_token"].as_str().unwrap().to_owned())
}

#[derive(Debug, Clone)]
enum Acknowledged {
    Ticket(i64),
    Permission(String),
}

/// Writes (tickets inserted at the top of one column, which shifts every other
/// ticket, and permissions) from four clients, SIGKILL while they run, restart on the
/// same database: every acknowledged write is there with its activity log entry, and
/// the column's order is dense.
async fn a_sigkill_under_write_load_loses_no_acknowledged_write(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, schema) = crate::helpers::fresh_database(backend, dir.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = binary(dir.path(), &database_url, port)
        .args([
            "create-admin",
            "--username",
            "root",
            "--email",
            "root@example.com",
        ])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    let password = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once): "))
        .unwrap()
        .to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(dir.path(), &database_url, port).await;
    let (client, csrf) = log_in(&base, &password).await;
    let post = |path: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .header("x-csrftoken", &csrf)
            .json(&body)
            .send()
    };
    let id = |res: reqwest::Response| async move {
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    };
    let board = id(post("/boards".into(), json!({"name": "Load"}))
        .await
        .unwrap())
    .await;
    let column = id(
        post(format!("/boards/{board}/columns"), json!({"name": "Todo"}))
            .await
            .unwrap(),
    )
    .await;

    let (count_tx, mut count) = tokio::sync::watch::channel(0usize);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, csrf, base) = (client.clone(), csrf.clone(), base.clone());
            let (acknowledged, count_tx) = (acknowledged.clone(), count_tx.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let (path, body) = if i % 2 == 0 {
                        (
                            format!("/columns/{column}/tickets"),
                            json!({"title": format!("t{w}-{i}"), "order": 0}),
                        )
                    } else {
                        (
                            "/admin/create_permission".to_owned(),
                            json!({"name": format!("load.w{w}.p{i}")}),
                        )
                    };
                    let sent = client
                        .post(format!("{base}{path}"))
                        .header("x-csrftoken", &csrf)
                        .json(&body)
                        .send()
                        .await;
                    let Ok(res) = sent else { return };
                    if !res.status().is_success() {
                        return;
                    }
                    let Ok(answer) = res.json::<Value>().await else {
                        return;
                    };
                    let write = if i % 2 == 0 {
                        Acknowledged::Ticket(answer["id"].as_i64().unwrap())
                    } else {
                        Acknowledged::Permission(body["name"].as_str().unwrap().to_owned())
                    };
                    acknowledged.lock().unwrap().push(write);
                    count_tx.send_modify(|n| *n += 1);
                }
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), count.wait_for(|n| *n >= 40))
        .await
        .expect("the load got going")
        .unwrap();
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let mut server = start_server(dir.path(), &database_url, port).await;
    let db = gatehouse::db::Db::connect(&database_url).await.unwrap();
    let messages: Vec<String> = sqlx::query_scalar("SELECT message FROM activity_logs")
        .fetch_all(db.pool())
        .await
        .unwrap();
    let tickets: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, sort_order FROM tickets WHERE column_id = $1 ORDER BY sort_order",
    )
    .bind(column)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let permissions: Vec<String> = sqlx::query_scalar("SELECT name FROM permissions")
        .fetch_all(db.pool())
        .await
        .unwrap();
    for write in &acknowledged {
        match write {
            Acknowledged::Ticket(ticket) => {
                assert!(
                    tickets.iter().any(|(id, _)| id == ticket),
                    "ticket {ticket} lost"
                );
                let prefix = format!("ticket {ticket} created");
                assert!(
                    messages.iter().any(|m| m.starts_with(&prefix)),
                    "no log entry for ticket {ticket}"
                );
            }
            Acknowledged::Permission(name) => {
                assert!(permissions.contains(name), "permission {name} lost");
                assert!(
                    messages.iter().any(|m| m.contains(name.as_str())),
                    "no log entry for permission {name}"
                );
            }
        }
    }
    let positions: Vec<i64> = tickets.iter().map(|(_, p)| *p).collect();
    let dense: Vec<i64> = (0..i64::try_from(positions.len()).unwrap()).collect();
    assert_eq!(positions, dense, "the order is dense after the crash");
    // The restarted server serves the board.
    let (client, _) = log_in(&base, &password).await;
    let res = client
        .get(format!("{base}/columns/{column}/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.kill();
    db.close().await;
    if let Some(schema) = schema {
        let mut conn = sqlx::PgConnection::connect(&postgres_url().unwrap())
            .await
            .unwrap();
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A role or permission change and its activity log entry commit together: the entry
/// is there the moment the answer is, and a refused change leaves none.
async fn an_admin_change_and_its_entry_are_one_transaction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    admin(&app, "root").await;
    let entries = || {
        app.scalar(
            "SELECT COUNT(*) FROM activity_logs WHERE kind = 'admin' AND message LIKE '%reports.export%'",
        )
    };
    let res = app
        .post(
            "/admin/create_permission",
            json!({"name": "reports.export"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(entries().await, 1);
    let res = app
        .post(
            "/admin/create_permission",
            json!({"name": "reports.export"}),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT).await;
    assert_eq!(entries().await, 1, "a refused change leaves no entry");
    let res = app
        .post(
            "/admin/assign_permission_to_role",
            json!({"permission_name": "reports.export", "role_name": "Admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(entries().await, 2);
}
