//! The activity log's pages by number (`GET /logs?page=N`) from both ends of a
//! generated log, with and without filters: each is exactly the page `OFFSET` gives,
//! also after new entries arrive and after retention prunes the oldest.

use serde_json::Value;

use crate::helpers::{json, Backend, TestApp};
use crate::on_both_databases;

on_both_databases!(pages_by_number_equal_offset_from_both_ends);

const DAY: i64 = 86_400;

/// A query string and the SQL condition that selects the same entries.
struct Case {
    query: String,
    condition: String,
}

async fn pages_by_number_equal_offset_from_both_ends(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("reader").await;
    let reader = app
        .scalar("SELECT id FROM users WHERE username = 'reader'")
        .await;
    app.grant(reader, "Admin").await;
    app.login("reader", crate::helpers::PASSWORD).await;
    // More entries than are counted exactly (10,000), over the generator's 60 days.
    gatehouse::seed::generate(&app.state.db, 20, 24_000)
        .await
        .unwrap();
    let user = app
        .scalar("SELECT MAX(user_id) FROM activity_logs WHERE user_agent = 'generated'")
        .await;
    let now = gatehouse::db::now();
    let (since, until) = (now - 40 * DAY, now - 10 * DAY);
    let cases = [
        ("", "1 = 1".to_owned()),
        ("level=ERROR", "level = 'ERROR'".to_owned()),
        ("kind=auth", "kind = 'auth'".to_owned()),
        (
            "level=warning&kind=access",
            "level = 'WARNING' AND kind = 'access'".to_owned(),
        ),
        (&*format!("user={user}"), format!("user_id = {user}")),
        (
            &*format!("since={since}&until={until}"),
            format!("created_at >= {since} AND created_at <= {until}"),
        ),
        ("q=LOGIN", "lower(message) LIKE '%login%'".to_owned()),
    ]
    .map(|(query, condition)| Case {
        query: query.to_owned(),
        condition,
    });

    for case in &cases {
        check_both_ends(&app, case).await;
    }

    // New entries arrive: the kept totals grow by them.
    gatehouse::seed::generate(&app.state.db, 0, 1_500)
        .await
        .unwrap();
    for case in &cases {
        check_both_ends(&app, case).await;
    }

    // Retention removes the oldest entries: the kept totals are counted again.
    let pruned = gatehouse::logs::store::prune(&app.state.db, 30)
        .await
        .unwrap();
    assert!(pruned > 10_000, "{pruned}");
    for case in &cases {
        check_both_ends(&app, case).await;
    }
}

/// The first, middle and last pages (and the one past the end) at two page sizes.
async fn check_both_ends(app: &TestApp, case: &Case) {
    for per_page in [100, 7] {
        app.state.activity.drain().await;
        let total = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM activity_logs WHERE {}",
                case.condition
            ))
            .await;
        let last = (total + per_page - 1) / per_page;
        let middle = last / 2;
        for page in [
            1,
            2,
            middle,
            middle + 1,
            middle + 2,
            last - 1,
            last,
            last + 1,
        ] {
            if page < 1 {
                continue;
            }
            let body = page_equals_offset(app, case, page, per_page).await;
            if page >= last - 1 {
                // Past the middle the page is placed by an exact total, which the
                // answer carries (checked against the count as it is now: every
                // request adds its access line to the unfiltered log).
                assert_eq!(body["total_estimated"], false, "{} page {page}", case.query);
            }
        }
    }
}

/// Reads `page` and checks it holds the ids `OFFSET` gives on the same data, and that
/// an exact total is the count.
async fn page_equals_offset(app: &TestApp, case: &Case, page: i64, per_page: i64) -> Value {
    // Every request so far is stored, so the data holds still until this one's own
    // access line, which is written after its page was read.
    app.state.activity.drain().await;
    let expected: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT id FROM activity_logs WHERE {} ORDER BY id DESC LIMIT {per_page} OFFSET {}",
        case.condition,
        (page - 1) * per_page
    ))
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let total = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM activity_logs WHERE {}",
            case.condition
        ))
        .await;
    let body: Value = json(
        app.get(&format!(
            "/logs?{}&page={page}&per_page={per_page}",
            case.query
        ))
        .await,
    )
    .await;
    let ids: Vec<i64> = body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, expected, "{} page {page} of {per_page}", case.query);
    assert_eq!(body["current_page"], page);
    if body["total_estimated"] == false {
        assert_eq!(body["total"], total, "{} page {page}", case.query);
        assert_eq!(
            body["total_pages"],
            (total + per_page - 1) / per_page,
            "{} page {page}",
            case.query
        );
    }
    body
}
