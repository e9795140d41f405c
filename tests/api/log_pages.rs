//! The activity log's pages by number (`GET /logs?page=N`) at both ends and in the
//! middle of a generated log, and its pages by `before_id`, with and without filters
//! (time windows among them): each is exactly the page `OFFSET` or `id <` gives, also
//! after new entries arrive (with higher ids but older times, so that ids and times
//! disagree) and after retention prunes the oldest.

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
        (
            &*format!("kind=auth&since={since}&until={until}"),
            format!("kind = 'auth' AND created_at >= {since} AND created_at <= {until}"),
        ),
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

/// `GET /logs/export.csv` with the case's filters holds exactly the ids SQL selects,
/// newest first; a window's export reads between its first and last match's ids.
async fn export_equals_sql(app: &TestApp, case: &Case) {
    let expected = stored_ids(app, case, "ORDER BY id DESC").await;
    let res = app.get(&format!("/logs/export.csv?{}", case.query)).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK, "{}", case.query);
    let csv = res.text().await.unwrap();
    let ids: Vec<i64> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), expected.len(), "{}", case.query);
    assert!(ids == expected, "export of {} differs from SQL", case.query);
}

/// The first, middle and last pages (and the one past the end) and pages around a
/// quarter and three quarters of the view, at two page sizes; and pages by
/// `before_id` from an answer's `next_before_id` and from ids of the table's middle.
async fn check_both_ends(app: &TestApp, case: &Case) {
    export_equals_sql(app, case).await;
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
        // The newest 1,200 entries whole: after arrivals, ranks whose place was counted
        // with them rather than by the first count.
        let newest = (per_page == 100).then_some(3..=12).into_iter().flatten();
        for page in [
            1,
            2,
            last / 4,
            middle,
            middle + 1,
            middle + 2,
            last * 3 / 4,
            last - 1,
            last,
            last + 1,
        ]
        .into_iter()
        .chain(newest)
        {
            if page < 1 {
                continue;
            }
            let body = page_equals_offset(app, case, page, per_page).await;
            if let Some(next) = body["next_before_id"].as_i64() {
                page_equals_before(app, case, next, per_page).await;
            }
            if page >= last - 1 {
                // Past the middle the page is placed by an exact total, which the
                // answer carries (checked against the count as it is now: every
                // request adds its access line to the unfiltered log).
                assert_eq!(body["total_estimated"], false, "{} page {page}", case.query);
            }
        }
    }
    // Below ids that need not match: past the newest, the table's middle, its oldest.
    let lowest = app.scalar("SELECT MIN(id) FROM activity_logs").await;
    let highest = app.scalar("SELECT MAX(id) FROM activity_logs").await;
    for before in [highest + 1, lowest + (highest - lowest) / 2, lowest + 1] {
        page_equals_before(app, case, before, 7).await;
    }
}

/// Reads the page below `before_id` and checks it holds the ids `id <` gives on the
/// same data, and that an exact total is the count.
async fn page_equals_before(app: &TestApp, case: &Case, before_id: i64, per_page: i64) {
    page_equals(
        app,
        case,
        &format!("before_id={before_id}&per_page={per_page}"),
        &format!("AND id < {before_id} ORDER BY id DESC LIMIT {per_page}"),
    )
    .await;
}

/// Reads `/logs?<the case's query>&<params>` and checks it holds the ids of `SELECT id
/// … WHERE <the case's condition> <rest>` on the same data, and that an exact total is
/// the count; returns the answer and the count.
async fn page_equals(app: &TestApp, case: &Case, params: &str, rest: &str) -> (Value, i64) {
    // Every request so far is stored, so the data holds still until this one's own
    // access line, which is written after its page was read.
    let expected = stored_ids(app, case, rest).await;
    let total = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM activity_logs WHERE {}",
            case.condition
        ))
        .await;
    let body: Value = json(app.get(&format!("/logs?{}&{params}", case.query)).await).await;
    assert_eq!(ids(&body), expected, "{} {params}", case.query);
    if body["total_estimated"] == false {
        assert_eq!(body["total"], total, "{} {params}", case.query);
    }
    (body, total)
}

fn ids(body: &Value) -> Vec<i64> {
    body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

/// Reads `page` and checks it holds the ids `OFFSET` gives on the same data, and that
/// an exact total is the count.
async fn page_equals_offset(app: &TestApp, case: &Case, page: i64, per_page: i64) -> Value {
    let (body, total) = page_equals(
        app,
        case,
        &format!("page={page}&per_page={per_page}"),
        &format!(
            "ORDER BY id DESC LIMIT {per_page} OFFSET {}",
            (page - 1) * per_page
        ),
    )
    .await;
    assert_eq!(body["current_page"], page);
    if body["total_estimated"] == false {
        assert_eq!(
            body["total_pages"],
            (total + per_page - 1) / per_page,
            "{} page {page}",
            case.query
        );
    }
    body
}

/// The ids of the case's entries in the order `rest` gives, once every request so far
/// is stored.
async fn stored_ids(app: &TestApp, case: &Case, rest: &str) -> Vec<i64> {
    app.state.activity.drain().await;
    sqlx::query_scalar(&format!(
        "SELECT id FROM activity_logs WHERE {} {rest}",
        case.condition
    ))
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
}
