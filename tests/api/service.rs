//! The HTTP foundation: service routes, the error model, request ids, CORS, session
//! expiry and revocation across instances.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::helpers::{expect_error, json, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    service_routes_answer,
    every_failure_is_contract_json,
    a_database_failure_is_a_500_with_a_request_id,
    readyz_reports_an_unreachable_database,
    sessions_expire_absolutely_and_when_idle,
    revocation_reaches_every_instance_at_once,
    cors_allows_only_listed_origins,
    a_slow_request_is_answered_408,
);

async fn a_slow_request_is_answered_408(backend: Backend) {
    // An Argon2id verification takes well over 5 ms, so every login runs out of time.
    let app = TestApp::spawn_with(backend, &[("REQUEST_TIMEOUT", "5ms")]).await;
    let res = app
        .post(
            "/login",
            json!({"username_or_email": "nobody", "password": "Whatever-123-x"}),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::REQUEST_TIMEOUT).await,
        "The request took too long to process."
    );
}

async fn service_routes_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.get("/").await;
    assert_eq!(json(res).await, json!({"message": "Hello Friend!"}));
    // The OpenAPI document lists every JSON route of the table, and no web UI page.
    let doc = json(app.get("/openapi.json").await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for spec in gatehouse::app::routes().specs() {
        let method = spec.method.as_str().to_ascii_lowercase();
        if spec.refusal == gatehouse::auth::policy::Refusal::Page {
            assert!(doc["paths"][&spec.path].is_null(), "{}", spec.path);
            continue;
        }
        assert!(
            doc["paths"][&spec.path][&method].is_object(),
            "{} {} missing from /openapi.json",
            spec.method,
            spec.path
        );
    }
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(
        h.get("strict-transport-security").is_none(),
        "HSTS only in production"
    );
    let res = app.get("/nowhere").await;
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    // The old client doubles slashes.
    let res = app.get("//check_auth_status").await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get("///healthz?x=1").await;
    assert_eq!(res.status(), StatusCode::OK);

    // Request ids: a sane one is echoed, a hostile one replaced.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc-123");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "evil value; with spaces")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
}

async fn every_failure_is_contract_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    expect_error(app.get("/no/such/route").await, StatusCode::NOT_FOUND).await;
    expect_error(
        app.request(Method::DELETE, "/signup", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    expect_error(
        app.request(Method::PUT, "/healthz", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    // Over the limit, announced by Content-Length or streamed without it.
    // Oversized bodies go on their own client: the server closes a connection whose
    // body it refused, which must not be reused for the requests that follow.
    let big = vec![b'a'; gatehouse::app::BODY_LIMIT + 1];
    let res = new_client()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    let stream = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    // The server may answer 413 and close before the upload ends, in which case the
    // client sees the reset instead of the answer; any answer it does see is the 413.
    let sent = new_client()
        .post(app.url("/signup"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(res) = sent {
        expect_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    }
    let res = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username_or_email=x")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("content-type", "multipart/form-data; boundary=nope")
        .body("garbage")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    // The server is still fine afterwards.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

async fn a_database_failure_is_a_500_with_a_request_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("pat").await;
    sqlx::query("DROP TABLE user_roles")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let res = app.get("/current_user_details").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let header_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json(res).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "internal_error");
    assert_eq!(body["request_id"], header_id.as_str());
    let text = body.to_string().to_lowercase();
    for leak in [
        "user_roles",
        "select",
        "sqlite",
        "postgres",
        "/src/",
        "table",
    ] {
        assert!(!text.contains(leak), "500 body leaks {leak}: {text}");
    }
}

async fn readyz_reports_an_unreachable_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // The client carries a session cookie throughout, as monitoring behind a browser
    // session might.
    app.verified_user("mona").await;
    let ready = json(app.get("/readyz").await).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["details"]["activity_log_dropped_total"], 0, "{ready}");
    app.state.db.close().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.headers()["retry-after"], "5");
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("gatehouse_activity_log_dropped_total"));
    let res = app.get("/current_user_details").await;
    assert!(res.headers().contains_key("retry-after"));
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
    // Requests needing the database are an outage (503), not a client error.
    let res = app
        .post("/login", json!({"username_or_email": "x", "password": "y"}))
        .await;
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
}

async fn sessions_expire_absolutely_and_when_idle(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("SESSION_LIFETIME", "3s"), ("SESSION_IDLE_TIMEOUT", "1h")],
    )
    .await;
    app.verified_user("quinn").await;
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    // Sent by hand: the browser would drop the cookie itself at Max-Age.
    let cookie = format!("session={}", app.session_cookie().unwrap());
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let res = new_client()
        .get(app.url("/current_user_details"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    let app = TestApp::spawn_with(backend, &[("SESSION_IDLE_TIMEOUT", "2h")]).await;
    app.verified_user("rita").await;
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    // Two hours pass without a request.
    sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at - 7201")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    expect_error(
        app.get("/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // Activity keeps a session alive: a fresh one touched 100 minutes ago still works
    // and its clock is reset by the request.
    app.login("rita", PASSWORD).await;
    sqlx::query("UPDATE sessions SET last_seen_at = last_seen_at - 6000 WHERE revoked_at IS NULL")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    let stale = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND last_seen_at < {}",
            gatehouse::db::now() - 600
        ))
        .await;
    assert_eq!(stale, 0);
}

async fn revocation_reaches_every_instance_at_once(backend: Backend) {
    let a = TestApp::spawn(backend).await;
    let url = a.state.config.database_url.expose_secret().to_owned();
    let b = TestApp::spawn_with(backend, &[("DATABASE_URL", url.as_str())]).await;
    a.verified_user("sam").await;
    let cookie = format!("session={}", a.session_cookie().unwrap());
    let on_b = || {
        new_client()
            .get(b.url("/current_user_details"))
            .header("cookie", cookie.clone())
            .send()
    };
    assert_eq!(on_b().await.unwrap().status(), StatusCode::OK);
    assert_eq!(a.post("/logout", json!({})).await.status(), StatusCode::OK);
    expect_error(on_b().await.unwrap(), StatusCode::UNAUTHORIZED).await;
}

async fn cors_allows_only_listed_origins(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = new_client();
    let res = client
        .request(Method::OPTIONS, app.url("/login"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-csrftoken",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("x-csrftoken") && allowed.contains("content-type"));

    let res = client
        .get(app.url("/check_auth_status"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let res = client
        .request(Method::OPTIONS, app.url("/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = client
        .get(app.url("/check_auth_status"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}
