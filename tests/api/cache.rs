//! The in-memory session cache: what one instance changes is refused or applied on
//! another sharing the database at its very next request (on PostgreSQL the change
//! answers only once the other instance has dropped what it made stale; on SQLite the
//! next request reads the change log first), the cache is never trusted while its
//! PostgreSQL listener is down, and on SQLite a change made by plain SQL is seen too.

use gatehouse::auth::cache::SETTLE_TIMEOUT;
use gatehouse::auth::session::token_hash;
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::Connection;
use std::time::Instant;

use crate::helpers::{expect_error, new_client, postgres_url, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    logout_and_revocations_reach_the_other_instance,
    disabling_and_password_changes_reach_the_other_instance,
    role_changes_reach_the_other_instance,
    the_cache_is_bypassed_while_the_listener_is_down,
    a_silent_instance_delays_a_change_by_the_settle_timeout_at_most,
);

/// Two instances on one database, each with its cache (on by default) in use where it
/// can be.
async fn pair(backend: Backend) -> (TestApp, TestApp) {
    let a = TestApp::spawn(backend).await;
    let b = TestApp::spawn_with(
        backend,
        &[("DATABASE_URL", a.state.config.database_url.expose_secret())],
    )
    .await;
    if backend == Backend::Postgres {
        a.state.sessions.until_trusted().await;
        b.state.sessions.until_trusted().await;
    }
    (a, b)
}

/// A request to `app` carrying the session cookie value `cookie` and nothing else.
async fn with_cookie(app: &TestApp, cookie: &str, path: &str) -> Response {
    new_client()
        .get(app.url(path))
        .header("cookie", format!("session={cookie}"))
        .send()
        .await
        .unwrap()
}

/// Asserts that `app` answers for `cookie` from memory. A change made just before
/// (a login, a grant) may still drop the entry after the answer (a notification on
/// PostgreSQL, the change log on SQLite), which is safe; so the session is read again,
/// a bounded number of times, until it stays.
async fn assert_cached(app: &TestApp, cookie: &str) {
    let hash = token_hash(cookie);
    for _ in 0..50 {
        if app.state.sessions.get(&hash).is_some() {
            return;
        }
        let res = with_cookie(app, cookie, "/current_user_details").await;
        assert_eq!(res.status(), StatusCode::OK);
        app.state.sessions.catch_up().await;
    }
    panic!("the session is not answered from memory");
}

/// Logs `username` in on a client of its own; returns the session cookie value.
async fn login_elsewhere(app: &TestApp, username: &str) -> String {
    let res = new_client()
        .post(app.url("/login"))
        .json(&json!({ "username_or_email": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("session="))
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned()
}

/// A live session read on `b`, so that its next request would come from memory.
async fn warm(b: &TestApp, cookie: &str) {
    let res = with_cookie(b, cookie, "/current_user_details").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_cached(b, cookie).await;
}

/// Asserts that `b` no longer holds `cookie`'s session in memory, without waiting for
/// anything: on PostgreSQL the change that made it stale answered only once `b` had
/// confirmed it; on SQLite `b` reads the change log first, as its next request would.
async fn dropped(b: &TestApp, cookie: &str) {
    b.state.sessions.catch_up().await;
    assert!(
        b.state.sessions.get(&token_hash(cookie)).is_none(),
        "the other instance still holds the session after the change answered"
    );
}

async fn refused(b: &TestApp, cookie: &str) {
    dropped(b, cookie).await;
    expect_error(
        with_cookie(b, cookie, "/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn logout_and_revocations_reach_the_other_instance(backend: Backend) {
    let (a, b) = pair(backend).await;
    a.verified_user("sam").await;

    let cookie = a.session_cookie().unwrap();
    warm(&b, &cookie).await;
    assert_eq!(a.post("/logout", json!({})).await.status(), StatusCode::OK);
    refused(&b, &cookie).await;

    // One session revoked from another of the same user.
    a.login("sam", PASSWORD).await;
    let other = login_elsewhere(&a, "sam").await;
    warm(&b, &other).await;
    let id = a
        .scalar(&format!(
            "SELECT id FROM sessions WHERE token_hash = '{}'",
            token_hash(&other)
        ))
        .await;
    let res = a
        .request(Method::DELETE, &format!("/sessions/{id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(&b, &other).await;

    // Every other session at once; the caller's own stays.
    let other = login_elsewhere(&a, "sam").await;
    warm(&b, &other).await;
    let own = a.session_cookie().unwrap();
    warm(&b, &own).await;
    let res = a.post("/sessions/revoke_others", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(&b, &other).await;
    let res = with_cookie(&b, &own, "/current_user_details").await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn disabling_and_password_changes_reach_the_other_instance(backend: Backend) {
    let (a, b) = pair(backend).await;
    a.verified_user("root").await;
    grant(&a, "root", "Super Admin").await;
    b.verified_user("tim").await;
    let tim = user_id(&a, "tim").await;

    // An administrator sets a new password: whoever knew the old one is out.
    let cookie = b.session_cookie().unwrap();
    warm(&b, &cookie).await;
    let new_password = "Harbor-Quartz-77-Meadow";
    let res = a
        .post(
            "/update_profile",
            json!({
                "user_id": tim, "first_name": "Test", "last_name": "User",
                "email": "tim@example.com", "username": "tim", "password": new_password,
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(&b, &cookie).await;

    b.login("tim", new_password).await;
    let cookie = b.session_cookie().unwrap();
    warm(&b, &cookie).await;
    let res = a
        .post(&format!("/admin/users/{tim}/disable"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(&b, &cookie).await;
}

async fn role_changes_reach_the_other_instance(backend: Backend) {
    let (a, b) = pair(backend).await;
    a.verified_user("root").await;
    grant(&a, "root", "Super Admin").await;
    b.verified_user("subject").await;
    let cookie = b.session_cookie().unwrap();
    let subject = user_id(&a, "subject").await;
    let admin = role_id(&a, "Admin").await;

    expect_error(
        with_cookie(&b, &cookie, "/roles").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_cached(&b, &cookie).await;
    let res = a
        .post(
            "/assign_role_to_user",
            json!({ "user_id": subject, "role_id": admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    dropped(&b, &cookie).await;
    assert_eq!(
        with_cookie(&b, &cookie, "/roles").await.status(),
        StatusCode::OK
    );
    assert_cached(&b, &cookie).await;

    // A permission taken from the role, and given back, reaches every holder.
    let permission = json!({ "role_name": "Admin", "permission_name": "manage_users" });
    let res = a
        .post("/revoke_permission_from_role", permission.clone())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    dropped(&b, &cookie).await;
    expect_error(
        with_cookie(&b, &cookie, "/roles").await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_cached(&b, &cookie).await;
    let res = a.post("/assign_permission_to_role", permission).await;
    assert_eq!(res.status(), StatusCode::OK);
    dropped(&b, &cookie).await;
    assert_eq!(
        with_cookie(&b, &cookie, "/roles").await.status(),
        StatusCode::OK
    );

    let res = a
        .post(
            "/remove_role_from_user",
            json!({ "user_id": subject, "role_id": admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    dropped(&b, &cookie).await;
    expect_error(
        with_cookie(&b, &cookie, "/roles").await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

/// On PostgreSQL, a change the listener never hears of (made with triggers off) is
/// still seen at the next request once the listener has lost its connection: the cache
/// is bypassed while it is down, and emptied when it comes back. On SQLite, a change
/// made by plain SQL on another connection is seen at the next request.
async fn the_cache_is_bypassed_while_the_listener_is_down(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    if backend == Backend::Postgres {
        app.state.sessions.until_trusted().await;
    }
    app.verified_user("lee").await;
    let cookie = app.session_cookie().unwrap();
    warm(&app, &cookie).await;

    let silent_revoke = format!(
        "UPDATE sessions SET revoked_at = 1 WHERE token_hash = '{}'",
        token_hash(&cookie)
    );
    match backend {
        Backend::Sqlite => {
            let path = app
                .state
                .config
                .database_url
                .expose_secret()
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                .await
                .unwrap();
            sqlx::query(&silent_revoke)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let mut listening = app.state.sessions.listening();
            let mut conn = sqlx::PgConnection::connect(&postgres_url().unwrap())
                .await
                .unwrap();
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1",
            )
            .bind(app.state.sessions.listener_name())
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert_eq!(killed, [true]);
            // The listener has noticed once its state changes.
            listening.changed().await.unwrap();

            // Revoked without a notification: the triggers are off for this change.
            let schema = app
                .state
                .config
                .database_url
                .expose_secret()
                .split("search_path%3D")
                .nth(1)
                .unwrap()
                .to_owned();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("SET LOCAL session_replication_role = replica")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(&silent_revoke.replace("sessions", &format!("{schema}.sessions")))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    }
    refused(&app, &cookie).await;
}

/// An instance that is listed as listening but never answers (here a bare connection
/// under a listener's name) holds a change up for `SETTLE_TIMEOUT` and no longer: the
/// change still answers, and is still seen by the instances that did answer.
async fn a_silent_instance_delays_a_change_by_the_settle_timeout_at_most(backend: Backend) {
    if backend == Backend::Sqlite {
        // Nothing is cached on SQLite, so a change waits for no one.
        return;
    }
    let (a, b) = pair(backend).await;
    a.verified_user("kim").await;
    let cookie = a.session_cookie().unwrap();
    warm(&b, &cookie).await;

    let name = a.state.sessions.listener_name();
    let silent_name = format!("{}ffffffff", &name[..name.len() - 8]);
    let mut silent = sqlx::PgConnection::connect(&postgres_url().unwrap())
        .await
        .unwrap();
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(&silent_name)
        .execute(&mut silent)
        .await
        .unwrap();

    let started = Instant::now();
    assert_eq!(a.post("/logout", json!({})).await.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= SETTLE_TIMEOUT,
        "the change did not wait for the silent instance ({waited:?})"
    );
    assert!(
        waited < SETTLE_TIMEOUT * 5,
        "the change waited too long ({waited:?})"
    );
    refused(&b, &cookie).await;
    silent.close().await.unwrap();
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM users WHERE username = '{username}'"
    ))
    .await
}

async fn role_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM roles WHERE name = '{name}'"))
        .await
}

async fn grant(app: &TestApp, username: &str, role: &str) {
    let id = user_id(app, username).await;
    app.grant(id, role).await;
}
