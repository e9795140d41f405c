//! The activity log: what is recorded, who sees what, filters, export, deep pages,
//! metrics, and nothing lost on a clean shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    logs_record_access_and_auth_events_with_visibility_rules,
    log_filters_and_csv_export,
    deep_pages_of_a_large_log,
    nothing_is_lost_on_a_clean_shutdown,
    metrics_count_requests_logins_and_queues,
    the_writer_stores_every_field_of_every_entry_in_order,
);

/// Waits for the writer to store at least `n` entries matching `condition`.
async fn wait_for_entries(app: &TestApp, condition: &str, n: i64) {
    for _ in 0..100 {
        let count = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM activity_logs WHERE {condition}"
            ))
            .await;
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} log entries where {condition}");
}

async fn logs_record_access_and_auth_events_with_visibility_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.state.config.database_url.expose_secret().to_owned();
    let admin = TestApp::spawn_with(backend, &[("DATABASE_URL", url.as_str())]).await;
    admin.verified_user("auditor").await;
    let id = app
        .scalar("SELECT id FROM users WHERE username = 'auditor'")
        .await;
    app.grant(id, "Admin").await;

    app.verified_user("plain").await;
    let bad = app
        .post(
            "/login",
            json!({"username_or_email": "plain", "password": "Wrong-Password-1"}),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    wait_for_entries(&app, "message = 'login failed'", 1).await;
    // The failed login (made with the session cookie) and the details request.
    wait_for_entries(
        &app,
        "user_email = 'plain@example.com' AND kind = 'access'",
        2,
    )
    .await;

    // A plain user sees only their own entries.
    let mine: Value = json(app.get("/logs?per_page=100").await).await;
    let entries = mine["logs"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|e| e["user_email"] == "plain@example.com"));
    let first = &entries[0];
    for key in [
        "id",
        "timestamp",
        "log_level",
        "message",
        "client_ip",
        "user_agent",
        "user_email",
    ] {
        assert!(first.get(key).is_some(), "{key}");
    }
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(entries.iter().any(|e| e["message"] == "login ok"));
    assert!(entries.iter().any(|e| e["message"] == "login failed"));
    assert!(entries
        .iter()
        .any(|e| e["message"] == "GET /current_user_details 200"));
    // Filtering by someone else's account does not widen the view.
    let theirs: Value = json(app.get("/logs?user=auditor@example.com").await).await;
    assert_eq!(theirs["logs"], json!([]));

    // access_logs sees everyone.
    let all: Value = json(admin.get("/logs?per_page=100").await).await;
    let emails: std::collections::HashSet<&str> = all["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["user_email"].as_str())
        .collect();
    assert!(emails.contains("plain@example.com") && emails.contains("auditor@example.com"));
    let res = app.get("/logs/export.csv").await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    expect_error(
        crate::helpers::new_client()
            .get(app.url("/logs"))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

async fn log_filters_and_csv_export(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("boss").await;
    let id = app
        .scalar("SELECT id FROM users WHERE username = 'boss'")
        .await;
    app.grant(id, "Admin").await;
    for _ in 0..3 {
        app.post(
            "/login",
            json!({"username_or_email": "boss", "password": "Wrong-Password-2"}),
        )
        .await;
    }
    app.login("boss", PASSWORD).await;
    wait_for_entries(&app, "message = 'login failed'", 3).await;

    let warnings: Value = json(app.get("/logs?level=warning&q=LOGIN%20FAILED").await).await;
    let logs = warnings["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 3, "{warnings:#}");
    assert!(logs.iter().all(|e| e["log_level"] == "WARNING"));
    let none: Value = json(app.get("/logs?since=2099-01-01T00:00:00Z").await).await;
    assert_eq!(none["logs"], json!([]));
    let old: Value = json(app.get("/logs?until=2000-01-01T00:00:00Z").await).await;
    assert_eq!(old["total_pages"], 0);
    let by_user: Value = json(app.get(&format!("/logs?user={id}&per_page=100")).await).await;
    assert!(by_user["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_email"] == "boss@example.com"));
    let literal: Value = json(app.get("/logs?q=%25").await).await;
    assert_eq!(literal["logs"], json!([]), "% is matched literally");
    for bad in [
        "level=LOUD",
        "since=yesterday",
        "per_page=-1",
        "before_id=x",
    ] {
        expect_error(
            app.get(&format!("/logs?{bad}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }

    let res = app
        .get("/logs/export.csv?level=WARNING&q=login%20failed")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("id,timestamp,level"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.contains("WARNING")));
}

async fn deep_pages_of_a_large_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("reader").await;
    let id = app
        .scalar("SELECT id FROM users WHERE username = 'reader'")
        .await;
    app.grant(id, "Admin").await;
    // A generated volume, inserted in SQL (both backends).
    const ROWS: i64 = 200_000;
    sqlx::query(&format!(
        "INSERT INTO activity_logs (created_at, level, kind, message, user_email) \
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {ROWS}) \
         SELECT 1700000000 + n, 'INFO', 'access', 'generated ' || n, 'bulk@example.com' FROM seq"
    ))
    .execute(app.state.db.writer())
    .await
    .unwrap();
    // The writer stores the access lines of the requests so far, so the count holds.
    app.state.activity.drain().await;
    let total = app.scalar("SELECT COUNT(*) FROM activity_logs").await;
    assert!(total >= ROWS);

    // Past 10,000 entries the first page's total is estimated from the ids, which here
    // run without a gap, so the estimate is the count.
    let first: Value = json(app.get("/logs?per_page=100").await).await;
    assert_eq!(first["total"], total);
    assert_eq!(first["total_estimated"], true);

    // The last page by number: in the older half, so placed by an exact count, which
    // the answer carries.
    app.state.activity.drain().await;
    let total = app.scalar("SELECT COUNT(*) FROM activity_logs").await;
    let last_page = (total + 99) / 100;
    let page: Value = json(
        app.get(&format!("/logs?page={last_page}&per_page=100"))
            .await,
    )
    .await;
    assert_eq!(page["total_pages"], last_page);
    assert_eq!(page["total"], total);
    assert_eq!(page["total_estimated"], false);
    // This instance keeps that count: the first page now reads it, with the access
    // line of the request before added.
    app.state.activity.drain().await;
    let first: Value = json(app.get("/logs?per_page=100").await).await;
    assert_eq!(first["total"], total + 1);
    assert_eq!(first["total_estimated"], false);
    let errors: Value = json(app.get("/logs?level=ERROR").await).await;
    assert_eq!(errors["total"], 0);
    assert_eq!(errors["total_estimated"], false);
    // The last page ends with the oldest entry. (Which entries share it with that one
    // depends on whether the writer stored the sign-up's lines before the bulk insert.)
    let logs = page["logs"].as_array().unwrap();
    let oldest = app.scalar("SELECT MIN(id) FROM activity_logs").await;
    assert_eq!(logs.last().unwrap()["id"], oldest);

    // Deep reading by keyset: from an id near the bottom, exactly the next rows.
    let anchor = app
        .scalar("SELECT id FROM activity_logs WHERE message = 'generated 1001'")
        .await;
    let deep: Value = json(
        app.get(&format!("/logs?before_id={anchor}&per_page=100"))
            .await,
    )
    .await;
    let logs = deep["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 100);
    assert_eq!(logs[0]["message"], "generated 1000");
    assert_eq!(logs[99]["message"], "generated 901");
    let next = deep["next_before_id"].as_i64().unwrap();
    let after: Value = json(
        app.get(&format!("/logs?before_id={next}&per_page=100"))
            .await,
    )
    .await;
    assert_eq!(after["logs"][0]["message"], "generated 900");

    // Retention prunes what is older than the window, and nothing newer.
    let pruned = gatehouse::logs::store::prune(&app.state.db, 1)
        .await
        .unwrap();
    assert_eq!(pruned as i64, ROWS);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM activity_logs WHERE message LIKE 'generated%'")
            .await,
        0
    );
}

async fn nothing_is_lost_on_a_clean_shutdown(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let url = app.state.config.database_url.expose_secret().to_owned();
    for _ in 0..50 {
        app.get("/check_auth_status").await;
    }
    app.shutdown().await;
    let db = gatehouse::db::Db::connect(&url).await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM activity_logs WHERE path = '/check_auth_status'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(stored, 50);
}

async fn metrics_count_requests_logins_and_queues(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("metered").await;
    app.post(
        "/login",
        json!({"username_or_email": "metered", "password": "Wrong-Password-3"}),
    )
    .await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            "gatehouse_http_requests_total{route=\"/login\",method=\"POST\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_logins_total{outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(text.contains("gatehouse_logins_total{outcome=\"invalid_credentials\"} 1"));
    assert!(
        text.contains(
            "gatehouse_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/signup\",method=\"POST\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("gatehouse_mail_outbox_depth "));
    assert!(text.contains("gatehouse_activity_log_queue_depth "));
    assert!(text.contains("gatehouse_activity_log_dropped_total 0"));
    assert!(text.ends_with("# EOF\n"), "one OpenMetrics exposition");
}

/// Entries recorded faster than one batch holds, with every field set or left empty,
/// text that SQL and JSON must carry as it is, and details: each is stored exactly
/// once, in the order recorded. A NUL, which PostgreSQL's text cannot hold, is stored
/// as U+FFFD on both databases (a batch it refused would be retried forever).
async fn the_writer_stores_every_field_of_every_entry_in_order(backend: Backend) {
    use gatehouse::logs::{Kind, Level, LogEntry};

    let app = TestApp::spawn(backend).await;
    app.state.activity.drain().await;
    let before = app
        .scalar("SELECT COALESCE(MAX(id), 0) FROM activity_logs")
        .await;
    const ENTRIES: i64 = 301;
    // Times long past, which no entry of the app's own can have.
    const FIRST: i64 = 1_700_000_000_000;
    let recorded: Vec<LogEntry> = (0..ENTRIES)
        .map(|i| {
            let mut entry = LogEntry::new(
                if i % 3 == 0 {
                    Kind::Access
                } else {
                    Kind::Change
                },
                if i % 2 == 0 {
                    Level::Info
                } else {
                    Level::Error
                },
                format!("entry {i}: it's \"quoted\", ?, $1, ; -- ✓"),
            );
            entry.created_at = FIRST + i;
            if i % 5 != 0 {
                entry.user_id = Some(i);
                entry.user_email = Some(format!("user{i}@example.com"));
                entry.client_ip = Some("2001:db8::1".to_owned());
                entry.user_agent = Some("Agent/1.0 (\u{0}\u{7f} '\\')".to_owned());
                entry.method = Some("GET".to_owned());
                entry.path = Some(format!("/p/{i}"));
                entry.status = Some(200 + i);
                entry.duration_ms = Some(i * 7);
                entry.details = Some(json!({"n": i, "text": "a \"b\" ✓", "list": [1, null]}));
            }
            entry
        })
        .collect();
    for entry in recorded.clone() {
        app.state.activity.record(entry);
    }
    app.state.activity.drain().await;

    let rows = sqlx::query(&format!(
        "SELECT created_at, level, kind, message, user_id, user_email, client_ip, user_agent, \
         method, path, status, duration_ms, details FROM activity_logs \
         WHERE id > {before} AND created_at BETWEEN {FIRST} AND {FIRST} + {ENTRIES} \
         ORDER BY id"
    ))
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, ENTRIES);
    for (row, e) in rows.iter().zip(&recorded) {
        use sqlx::Row;
        assert_eq!(row.get::<i64, _>(0), e.created_at);
        assert_eq!(row.get::<String, _>(1), e.level.as_str());
        assert_eq!(row.get::<String, _>(2), e.kind.as_str());
        assert_eq!(row.get::<String, _>(3), e.message);
        assert_eq!(row.get::<Option<i64>, _>(4), e.user_id);
        assert_eq!(row.get::<Option<String>, _>(5), e.user_email);
        assert_eq!(row.get::<Option<String>, _>(6), e.client_ip);
        assert_eq!(
            row.get::<Option<String>, _>(7),
            e.user_agent.as_ref().map(|a| a.replace('\0', "\u{FFFD}"))
        );
        assert_eq!(row.get::<Option<String>, _>(8), e.method);
        assert_eq!(row.get::<Option<String>, _>(9), e.path);
        assert_eq!(row.get::<Option<i64>, _>(10), e.status);
        assert_eq!(row.get::<Option<i64>, _>(11), e.duration_ms);
        let details: Option<Value> = row
            .get::<Option<String>, _>(12)
            .map(|d| serde_json::from_str(&d).unwrap());
        assert_eq!(details, e.details);
    }
}
