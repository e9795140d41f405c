//! `gatehouse generate-data`, run with small counts: the accounts it makes can log in
//! and hold roles, and the log entries it makes are read by the log's routes.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{json, Backend, TestApp};
use crate::on_both_databases;

on_both_databases!(generated_data_is_usable);

async fn generated_data_is_usable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = app.scalar("SELECT COUNT(*) FROM users").await;
    gatehouse::seed::generate(&app.state.db, 230, 1_234)
        .await
        .unwrap();
    // Again, on top: usernames of the second run do not collide with the first's.
    gatehouse::seed::generate(&app.state.db, 3, 0)
        .await
        .unwrap();

    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, before + 233);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id WHERE u.username LIKE 'gen-%'")
            .await,
        233
    );
    assert!(
        app.scalar("SELECT COUNT(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = 'Admin'")
            .await
            >= 2
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM activity_logs WHERE user_agent = 'generated'")
            .await,
        1_234
    );
    // All inside the default retention of 90 days: a server started on them keeps them.
    let retained_since = gatehouse::db::now() - 90 * 86_400;
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM activity_logs WHERE user_agent = 'generated' \
             AND created_at < {retained_since}"
        ))
        .await,
        0
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM activity_logs WHERE user_agent = 'generated' AND user_id IS NULL"
        )
        .await,
        0
    );

    // An Admin among them logs in with the shared password and reads the log.
    let admin: String = sqlx::query_scalar(
        "SELECT u.username FROM users u JOIN user_roles ur ON ur.user_id = u.id \
         JOIN roles r ON r.id = ur.role_id WHERE r.name = 'Admin' ORDER BY u.id LIMIT 1",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    app.login(&admin, gatehouse::seed::PASSWORD).await;
    let res = app.get("/logs?level=ERROR").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    // Every 50th generated entry is an error.
    assert_eq!(body["total"], json!(1_234 / 50));
    assert_eq!(body["logs"][0]["log_level"], "ERROR");
}
