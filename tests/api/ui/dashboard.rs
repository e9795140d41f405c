//! The dashboard without JavaScript: your own sign-ins, failures and devices for
//! everyone; the service's figures and charts for holders of `access_logs`, each
//! leading to the activity log filtered to exactly what it counts.

use reqwest::StatusCode;

use super::admin::{grant, id_of};
use super::browser::Browser;
use super::forms::signed_in;
use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    everyone_sees_their_own_sign_ins_and_devices,
    an_auditor_sees_the_service_in_figures_and_charts,
);

const DAY: i64 = 86_400;

/// Stores an authentication event `days_ago` days before now.
async fn auth_event(app: &TestApp, days_ago: i64, level: &str, message: &str, ip: &str) {
    sqlx::query(
        "INSERT INTO activity_logs (created_at, level, kind, message, client_ip) \
         VALUES ($1, $2, 'auth', $3, $4)",
    )
    .bind(gatehouse::db::now() - days_ago * DAY)
    .bind(level)
    .bind(message)
    .bind(ip)
    .execute(app.state.db.writer())
    .await
    .unwrap();
}

/// The number shown in the figure labelled `label`.
fn figure(html: &str, label: &str) -> String {
    let at = html
        .find(&format!("<span class=\"figure-label\">{label}</span>"))
        .unwrap_or_else(|| panic!("no figure {label}"));
    let before = &html[..at];
    let start = before.rfind("figure-value num\">").unwrap() + "figure-value num\">".len();
    before[start..].split('<').next().unwrap().to_owned()
}

async fn everyone_sees_their_own_sign_ins_and_devices(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("dora").await;
    // Someone tries Dora's account with a wrong password.
    let res = app
        .post(
            "/login",
            serde_json::json!({ "username_or_email": "dora", "password": "wrong-password-1" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut w = signed_in(&app, "dora").await;
    app.state.activity.drain().await;
    w.open("/ui/").await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Your recent activity");
    w.sees("login ok");
    w.sees("<span class=\"badge badge-warn\">login failed</span>");
    w.sees("<strong class=\"num\">1</strong> failed attempt</a> on your account");
    // Two sessions: the app's client and this walker.
    w.sees("2 signed-in sessions");
    w.sees("this one");
    assert!(!w.html.contains("The service, last 30 days"));
    assert!(!w.html.contains("<svg class=\"chart\""));

    w.follow("failed attempt").await;
    assert!(
        w.path
            .starts_with("/ui/logs?kind=auth&q=login+failed&since="),
        "{}",
        w.path
    );
    w.sees("1 entry of your own");
    w.sees("login failed");
    w.sees("<option value=\"auth\" selected>");

    w.open("/ui/").await;
    w.follow("All your sign-in and account events").await;
    assert_eq!(w.path, "/ui/logs?kind=auth");
    assert!(
        !w.html.contains("data-label=\"Kind\">access"),
        "only authentication events"
    );
}

async fn an_auditor_sees_the_service_in_figures_and_charts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in ["alice", "bob"] {
        app.verified_user(name).await;
    }
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let alice = id_of(&app, "alice").await;
    sqlx::query("UPDATE users SET twofa_enabled = 1 WHERE id = $1")
        .bind(alice)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    for days_ago in [1, 1, 5] {
        auth_event(&app, days_ago, "INFO", "login ok", "192.0.2.1").await;
    }
    for (days_ago, ip) in [(0, "203.0.113.7"), (2, "203.0.113.7"), (3, "203.0.113.7")] {
        auth_event(&app, days_ago, "WARNING", "login failed", ip).await;
    }
    auth_event(
        &app,
        4,
        "WARNING",
        "login failed: invalid 2FA token",
        "198.51.100.2",
    )
    .await;
    // Older than 30 days: in no figure.
    auth_event(&app, 40, "WARNING", "login failed", "198.51.100.99").await;
    auth_event(&app, 40, "INFO", "login ok", "198.51.100.99").await;

    let mut w = signed_in(&app, "boss").await;
    app.state.activity.drain().await;
    let since = gatehouse::db::now() - 29 * DAY - DAY;
    let sign_ins = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM activity_logs WHERE message = 'login ok' AND created_at > {since}"
        ))
        .await;
    assert!(sign_ins >= 3 + 4, "three stored and four real sign-ins");
    w.open("/ui/").await;
    w.sees("The service, last 30 days");
    assert_eq!(figure(&w.html, "Sign-ins"), sign_ins.to_string());
    assert_eq!(figure(&w.html, "Failed sign-ins"), "4");
    assert_eq!(figure(&w.html, "New accounts"), "3");
    assert_eq!(figure(&w.html, "Two-factor on"), "1 of 3");
    // The app's client (one cookie jar: each sign-in there ended the one before) and
    // the walker.
    assert_eq!(figure(&w.html, "Active sessions"), "2");

    // Three charts drawn on the server, each with its text alternative.
    assert_eq!(w.html.matches("<svg class=\"chart\"").count(), 3);
    for title in [
        "Sign-ins per day",
        "Failed sign-ins per day",
        "New accounts per day",
    ] {
        w.sees(&format!("<h2>{title}</h2>"));
        w.sees(&format!("<summary>{title} as a table</summary>"));
    }
    w.sees("aria-labelledby=\"chart-failures-title chart-failures-desc\"");
    w.sees("Failed sign-ins in the last 30 days: 4.");
    assert!(
        !w.html.contains("style="),
        "no inline styles: the CSP forbids them"
    );
    assert!(!w.html.contains("198.51.100.99"), "older than 30 days");

    // The top failing address first, leading to exactly its failures.
    let first = w.html.find(">203.0.113.7</a>").unwrap();
    let second = w.html.find(">198.51.100.2</a>").unwrap();
    assert!(first < second);
    w.follow("203.0.113.7").await;
    assert!(w.path.contains("ip=203.0.113.7"), "{}", w.path);
    w.sees("3 entries");
    w.sees("value=\"203.0.113.7\"");

    w.open("/ui/").await;
    w.follow("Failed sign-ins").await;
    w.sees("4 entries");
    w.open("/ui/").await;
    w.follow("New accounts").await;
    w.sees("3 entries");
    w.sees("account created");
    w.open("/ui/").await;
    w.follow("Sign-ins").await;
    w.sees(&format!("{sign_ins} entries"));

    // A day's bar (and its table row) leads to that day's entries: yesterday had
    // two stored sign-ins and none of the real ones.
    let yesterday: String = gatehouse::db::iso8601(gatehouse::db::now() - DAY)
        .chars()
        .take(10)
        .collect();
    w.open("/ui/").await;
    w.follow(&format!(">{yesterday}")).await;
    assert!(w.path.contains("q=login+ok"), "{}", w.path);
    w.sees("2 entries");

    // A plain user's dashboard has none of the service's figures.
    let mut a = signed_in(&app, "bob").await;
    a.open("/ui/").await;
    assert!(!a.html.contains("The service, last 30 days"));
    assert!(!a.html.contains("203.0.113.7"));
}

/// The dashboard with its charts in a real browser, photographed in both themes at
/// 1440 and 360 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    // A month of traffic: a weekly rhythm of sign-ins, a burst of failures.
    for days_ago in 0..30 {
        for _ in 0..(3 + (days_ago * 7) % 11) {
            auth_event(&app, days_ago, "INFO", "login ok", "192.0.2.1").await;
        }
    }
    for (days_ago, n, ip) in [
        (3, 14, "203.0.113.7"),
        (4, 6, "198.51.100.2"),
        (12, 2, "192.0.2.50"),
    ] {
        for _ in 0..n {
            auth_event(&app, days_ago, "WARNING", "login failed", ip).await;
        }
    }
    let Some(b) = Browser::start(&app.url("/")).await else {
        return;
    };
    b.open("/ui/login").await;
    b.fill("Username or email", "boss").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;
    b.sees("The service, last 30 days").await;
    assert!(b.shows("svg.chart rect.bar").await, "bars are drawn");
    assert!(b.shows("svg.chart rect.bar-danger").await);
    assert!(!b.overflows_at(1440).await);
    assert!(!b.overflows_at(360).await, "the dashboard fits at 360 px");
    b.screenshots("dashboard").await;
    b.screenshots_at("dashboard-charts", Some(".section-title"))
        .await;
    b.screenshots_at("dashboard-failing", Some("#failing"))
        .await;
    b.click("203.0.113.7").await;
    b.at("/ui/logs?kind=auth").await;
    b.sees("14 entries").await;
}
