//! Several instances on one database (issue 15), as a deployment behind a load
//! balancer runs them, with the default settings: what one instance changes holds on
//! the other at its very next request, the throttle keeps one count whichever
//! instance a guess reaches, and each queued email is sent once however many
//! instances drain the outbox. (`cache.rs` repeats the session checks and shows they
//! were answered from the session cache; `throttle.rs` has the Redis backend.)

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{expect_error, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;
use crate::smtp::SmtpServer;

on_both_databases!(
    two_instances_agree_on_sessions_roles_and_throttling,
    each_queued_email_is_sent_once_by_two_instances,
);

/// A second instance on `a`'s database, with `vars` besides.
async fn beside(a: &TestApp, backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("DATABASE_URL", a.state.config.database_url.expose_secret())];
    all.extend_from_slice(vars);
    TestApp::spawn_with(backend, &all).await
}

/// A request to `app` with the session cookie `cookie` and nothing else.
async fn get_with(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    new_client()
        .get(app.url(path))
        .header("cookie", format!("session={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn id_of(app: &TestApp, table: &str, name_column: &str, name: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM {table} WHERE {name_column} = '{name}'"
    ))
    .await
}

async fn two_instances_agree_on_sessions_roles_and_throttling(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    // The accounts are made before B starts: their verification mail goes to A's
    // outbox folder, which B's sender would otherwise race A's for.
    a.verified_user("root").await;
    let root = id_of(&a, "users", "username", "root").await;
    a.grant(root, "Super Admin").await;
    a.verified_user("sam").await;
    let b = beside(&a, backend, &[]).await;

    // A logout on A: the session is refused on B.
    let cookie = a.session_cookie().unwrap();
    let res = get_with(&b, &cookie, "/current_user_details").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(a.post("/logout", json!({})).await.status(), StatusCode::OK);
    expect_error(
        get_with(&b, &cookie, "/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A session made on B, revoked from A: refused on B.
    a.login("sam", PASSWORD).await;
    b.login("sam", PASSWORD).await;
    let on_b = b.session_cookie().unwrap();
    assert_eq!(
        b.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    let id = a
        .scalar(&format!(
            "SELECT id FROM sessions WHERE token_hash = '{}'",
            gatehouse::auth::session::token_hash(&on_b)
        ))
        .await;
    let res = a
        .request(Method::DELETE, &format!("/sessions/{id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    expect_error(
        b.get("/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A role removed on A: its permission is refused on B.
    a.login("root", PASSWORD).await;
    let subject = id_of(&a, "users", "username", "sam").await;
    let admin = id_of(&a, "roles", "name", "Admin").await;
    let res = a
        .post(
            "/assign_role_to_user",
            json!({ "user_id": subject, "role_id": admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    b.login("sam", PASSWORD).await;
    assert_eq!(b.get("/roles").await.status(), StatusCode::OK);
    let res = a
        .post(
            "/remove_role_from_user",
            json!({ "user_id": subject, "role_id": admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    expect_error(b.get("/roles").await, StatusCode::FORBIDDEN).await;

    // Wrong passwords spread over both instances make one count: five free failures
    // in all (three on A, two on B), then both refuse even the right password.
    let guesser = new_client();
    for (i, app) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let res = guesser
            .post(app.url("/login"))
            .json(&json!({"username_or_email": "sam", "password": "Wrong-Guess-123!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {}", i + 1);
    }
    assert_eq!(
        a.scalar("SELECT MAX(failures) FROM throttle WHERE scope = 'login_account'")
            .await,
        5
    );
    for app in [&b, &a] {
        let res = guesser
            .post(app.url("/login"))
            .json(&json!({"username_or_email": "sam", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    }
}

async fn each_queued_email_is_sent_once_by_two_instances(backend: Backend) {
    const MESSAGES: i64 = 200;
    let smtp = SmtpServer::start().await;
    let port = smtp.port.to_string();
    let mail = [
        ("MAIL_BACKEND", "smtp"),
        ("MAIL_SERVER", "127.0.0.1"),
        ("MAIL_PORT", port.as_str()),
        ("EMAIL_SENDER", "Gatehouse Tests <gatehouse@test.local>"),
    ];
    let a = TestApp::spawn_with(backend, &mail).await;
    let b = beside(&a, backend, &mail).await;
    // Both senders are idle on an empty outbox; the messages arrive in one commit,
    // as a burst of signups on several instances would leave them.
    sqlx::query(&format!(
        "INSERT INTO mail_outbox (recipient, subject, text_body, html_body, created_at, \
         next_attempt_at) \
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {MESSAGES}) \
         SELECT 'user' || n || '@example.com', 'Message ' || n, 'Hello', '<p>Hello</p>', 0, 0 \
         FROM seq"
    ))
    .execute(a.state.db.writer())
    .await
    .unwrap();
    // Both drain at once, racing for the same rows. A pass ends when it finds no row
    // it may lease, having recorded the outcome of every row it leased; so once both
    // passes are done, every message has been delivered by one of them.
    tokio::join!(a.state.mailer.drain(), b.state.mailer.drain());

    assert_eq!(a.scalar("SELECT COUNT(*) FROM mail_outbox").await, 0);
    let received = smtp.received();
    let mut times: HashMap<String, usize> = HashMap::new();
    for message in &received {
        *times.entry(message.subject.clone()).or_default() += 1;
    }
    assert_eq!(received.len(), MESSAGES as usize, "messages at the sink");
    for n in 1..=MESSAGES {
        assert_eq!(times.get(&format!("Message {n}")), Some(&1), "Message {n}");
    }
}
