//! Account recovery and the user's own sessions: forgotten passwords through the
//! emailed link (over real SMTP), reset links that work once and die with any
//! password change, the weak-password list, and listing and ending sessions.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, link_in, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;
use crate::smtp::SmtpServer;
use crate::twofa::smtp_user;

on_both_databases!(
    forgot_password_answers_the_same_for_everyone,
    a_reset_through_the_emailed_link,
    reset_links_expire_and_die_with_any_password_change,
    weak_passwords_are_refused_everywhere,
    users_list_and_end_their_own_sessions,
);

const SENT: &str = "If an account exists for that email, a password reset link has been sent";
const NEW_PASSWORD: &str = "Harbor-Quartz-77-Meadow";

async fn smtp_app(backend: Backend, port: u16) -> TestApp {
    let port = port.to_string();
    TestApp::spawn_with(
        backend,
        &[
            ("MAIL_BACKEND", "smtp"),
            ("MAIL_SERVER", "127.0.0.1"),
            ("MAIL_PORT", port.as_str()),
            ("EMAIL_SENDER", "Gatehouse Tests <gatehouse@test.local>"),
        ],
    )
    .await
}

async fn wait_for(
    smtp: &SmtpServer,
    to: &str,
    subject: &str,
    count: usize,
) -> Vec<crate::helpers::ParsedEmail> {
    for _ in 0..200 {
        let found: Vec<_> = smtp
            .received()
            .into_iter()
            .filter(|m| m.to == to && m.subject.contains(subject))
            .collect();
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} emails to {to} about {subject:?} within 10 s");
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    new_client()
        .post(app.url("/forgot_password"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
}

async fn reset(app: &TestApp, link_or_path: &str, password: &str) -> reqwest::Response {
    let url = if link_or_path.starts_with("http") {
        link_or_path.to_owned()
    } else {
        app.url(link_or_path)
    };
    new_client()
        .post(url)
        .json(&json!({ "password": password, "email": "ignored@example.com" }))
        .send()
        .await
        .unwrap()
}

async fn forgot_password_answers_the_same_for_everyone(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = smtp_app(backend, smtp.port).await;
    smtp_user(&app, &smtp, "abby").await;
    let before = smtp.received().len();

    let known = forgot(&app, "ABBY@example.com").await;
    let unknown = forgot(&app, "nobody@example.com").await;
    assert_eq!(known.status(), StatusCode::OK);
    assert_eq!(unknown.status(), StatusCode::OK);
    let (known, unknown) = (json(known).await, json(unknown).await);
    assert_eq!(known, json!({"success": true, "message": SENT}));
    assert_eq!(known, unknown);

    let mail = wait_for(&smtp, "abby@example.com", "Reset your password", 1).await;
    assert!(mail[0].html.contains("href=\""));
    app.state.mailer.drain().await;
    assert_eq!(
        smtp.received().len(),
        before + 1,
        "nothing is sent for an address without an account"
    );
    // Only the hash of the token is stored.
    let link = link_in(&mail[0]);
    let token = link.rsplit('/').next().unwrap();
    assert!(link.starts_with(&app.url("/reset_password/")), "{link}");
    let stored: String =
        sqlx::query_scalar("SELECT token_hash FROM email_tokens WHERE purpose = 'reset_password'")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert_ne!(stored, token);

    // Bad input.
    for (body, field) in [
        (json!({}), "email"),
        (json!({"email": 42}), "email"),
        (json!({"email": ""}), "email"),
        (json!({"email": "not-an-email"}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(300))}),
            "email",
        ),
    ] {
        let res = new_client()
            .post(app.url("/forgot_password"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(field), "{message}");
    }
    // Requests are logged as auth events, without the token.
    let mut logged = 0;
    for _ in 0..40 {
        logged = app
            .scalar(
                "SELECT COUNT(*) FROM activity_logs WHERE message LIKE 'password reset requested%'",
            )
            .await;
        if logged >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged, 2);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM activity_logs WHERE details LIKE '%{token}%' OR message LIKE '%{token}%'"
        ))
        .await,
        0
    );
}

async fn a_reset_through_the_emailed_link(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = smtp_app(backend, smtp.port).await;
    smtp_user(&app, &smtp, "bert").await;
    // A second device is logged in too.
    let phone = new_client();
    let res = phone
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "bert", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    assert_eq!(
        forgot(&app, "bert@example.com").await.status(),
        StatusCode::OK
    );
    let link = link_in(&wait_for(&smtp, "bert@example.com", "Reset your password", 1).await[0]);

    // A refused password leaves the link usable.
    let message = expect_error(reset(&app, &link, "short").await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("8 to 128"), "{message}");
    let message = expect_error(
        reset(&app, &link, "Bert-Password-1!").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(message.contains("username"), "{message}");
    let res = new_client()
        .post(&link)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("password"), "{message}");

    let res = reset(&app, &link, NEW_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "Password has been reset"})
    );
    // Every session of the user is over.
    expect_error(
        app.get("/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = phone
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    // The owner is told.
    let notice = &wait_for(&smtp, "bert@example.com", "password was changed", 1).await[0];
    assert!(notice.text.contains("127.0.0.1"), "{}", notice.text);
    assert!(notice.html.contains("<h1"));
    // The new password works, the old does not, and the link is spent.
    let res = new_client()
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "bert", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    app.login("bert", NEW_PASSWORD).await;
    expect_error(
        reset(&app, &link, "Another-Good-Pass-88").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    app.login("bert", NEW_PASSWORD).await;

    let mut logged = 0;
    for _ in 0..40 {
        logged = app
            .scalar("SELECT COUNT(*) FROM activity_logs WHERE message = 'password reset completed'")
            .await;
        if logged == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logged, 1);
}

async fn reset_links_expire_and_die_with_any_password_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("cleo").await;
    let link_for = |n: usize| {
        let app = &app;
        async move {
            assert_eq!(
                forgot(app, "cleo@example.com").await.status(),
                StatusCode::OK
            );
            let mut links = Vec::new();
            for _ in 0..200 {
                links = std::fs::read_dir(app.outbox_dir())
                    .map(|d| {
                        d.flatten()
                            .map(|e| crate::helpers::parse_email(&std::fs::read(e.path()).unwrap()))
                            .filter(|m| m.subject.contains("Reset your password"))
                            .map(|m| link_in(&m))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if links.len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(links.len() >= n, "reset email {n} arrived");
            links
        }
    };
    // Unknown, forged and absurd tokens.
    for path in [
        "/reset_password/not-a-token".to_owned(),
        format!("/reset_password/{}", "A".repeat(43)),
        format!("/reset_password/{}", "x".repeat(5000)),
    ] {
        let message = expect_error(
            reset(&app, &path, NEW_PASSWORD).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains("invalid"), "{message}");
    }

    // Expired after an hour (moved into the past here).
    let first = link_for(1).await;
    sqlx::query(
        "UPDATE email_tokens SET expires_at = expires_at - 3601 WHERE purpose = 'reset_password'",
    )
    .execute(app.state.db.writer())
    .await
    .unwrap();
    expect_error(
        reset(&app, &first[0], NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // A password change from the profile retires outstanding links.
    let links = link_for(2).await;
    let fresh = links.iter().find(|l| **l != first[0]).unwrap().clone();
    let res = app
        .post(
            "/update_profile",
            json!({"first_name": "Cleo", "last_name": "User", "username": "cleo",
                   "email": "cleo@example.com", "password": NEW_PASSWORD, "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    expect_error(
        reset(&app, &fresh, "Another-Good-Pass-88").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    app.login("cleo", NEW_PASSWORD).await;
    // ...and the change was notified by email.
    crate::helpers::wait_for_file_email(
        &app.outbox_dir(),
        "cleo@example.com",
        "password was changed",
    )
    .await;

    // A reset retires the other links too.
    let links = link_for(3).await;
    let live: Vec<String> = links
        .into_iter()
        .filter(|l| *l != first[0] && *l != fresh)
        .collect();
    assert_eq!(live.len(), 1);
    // Two links for one account: use one, the other dies. (A fourth request within
    // the hour would be throttled; the throttle has its own tests.)
    sqlx::query("DELETE FROM throttle")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let all = link_for(4).await;
    let other: Vec<&String> = all
        .iter()
        .filter(|l| **l != first[0] && **l != fresh && **l != live[0])
        .collect();
    assert_eq!(other.len(), 1);
    assert_eq!(
        reset(&app, &live[0], "Copper-Falcon-31-Garden")
            .await
            .status(),
        StatusCode::OK
    );
    expect_error(
        reset(&app, other[0], "Another-Good-Pass-88").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    app.login("cleo", "Copper-Falcon-31-Garden").await;
}

async fn weak_passwords_are_refused_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post(
            "/signup",
            json!({"first_name": "Dora", "last_name": "X", "username": "dora",
                   "email": "dora@example.com", "password": "P@ssw0rd2024!"}),
        )
        .await;
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("most common passwords"), "{message}");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 0);

    app.verified_user("dora").await;
    let res = app
        .post(
            "/update_profile",
            json!({"first_name": "Dora", "last_name": "X", "username": "dora",
                   "email": "dora@example.com", "password": "Sunshine$77", "current_password": PASSWORD}),
        )
        .await;
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("too easy to guess"), "{message}");

    assert_eq!(
        forgot(&app, "dora@example.com").await.status(),
        StatusCode::OK
    );
    let link = app
        .email_link("dora@example.com", "Reset your password")
        .await;
    for weak in ["Qwerty123!", "Monkey-99"] {
        let message = expect_error(reset(&app, &link, weak).await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("too easy to guess"), "{message}");
    }
    // Still the old password: nothing was changed by the refusals.
    app.login("dora", PASSWORD).await;
}

async fn users_list_and_end_their_own_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    expect_error(app.get("/sessions").await, StatusCode::UNAUTHORIZED).await;
    expect_error(
        app.request(Method::POST, "/sessions/revoke_others", None)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    expect_error(
        app.request(Method::DELETE, "/sessions/1", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    app.verified_user("eddy").await;
    let other_user = new_client();
    assert_eq!(app.signup("fran").await.status(), StatusCode::CREATED);
    let link = app.email_link("fran@example.com", "Verify").await;
    app.client.get(link).send().await.unwrap();
    let res = other_user
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "fran", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let phone = new_client();
    let res = phone
        .post(app.url("/login"))
        .header("user-agent", "PhoneBrowser/1.0")
        .json(&json!({"username_or_email": "eddy", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = app.get("/sessions").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["success"], true);
    let sessions = body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "only eddy's live sessions: {body}");
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let phone_session = sessions.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(phone_session["user_agent"], "PhoneBrowser/1.0");
    assert_eq!(phone_session["ip"], "127.0.0.1");
    for s in &sessions {
        for field in ["created_at", "last_seen_at"] {
            let t = s[field].as_str().unwrap();
            assert!(t.ends_with('Z') && t.contains('T'), "{t}");
        }
        assert!(s["id"].is_i64());
    }
    let fran_session = app
        .scalar("SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = 'fran'")
        .await;

    // Another user's session and unknown ids are not found; CSRF applies.
    for path in [
        format!("/sessions/{fran_session}"),
        "/sessions/999999".to_owned(),
        "/sessions/abc".to_owned(),
        "/sessions/-1".to_owned(),
        format!("/sessions/{}", "9".repeat(40)),
    ] {
        expect_error(
            app.request(Method::DELETE, &path, None).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    let res = other_user
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "fran's session untouched");
    let phone_id = phone_session["id"].as_i64().unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/sessions/{phone_id}")))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN).await;

    // Ending the phone's session.
    let res = app
        .request(Method::DELETE, &format!("/sessions/{phone_id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["success"], true);
    let res = phone
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    expect_error(
        app.request(Method::DELETE, &format!("/sessions/{phone_id}"), None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Ending all the others.
    let tablets: Vec<reqwest::Client> = (0..3).map(|_| new_client()).collect();
    for tablet in &tablets {
        let res = tablet
            .post(app.url("/login"))
            .json(&json!({"username_or_email": "eddy", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .request(Method::POST, "/sessions/revoke_others", None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["revoked"], 3);
    for tablet in &tablets {
        let res = tablet
            .get(app.url("/current_user_details"))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    let res = other_user
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "other users are untouched");
    let body = json(app.get("/sessions").await).await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);

    // Ending the current session is logging out.
    let current_id = body["sessions"][0]["id"].as_i64().unwrap();
    let res = app
        .request(Method::DELETE, &format!("/sessions/{current_id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    expect_error(app.get("/sessions").await, StatusCode::UNAUTHORIZED).await;
}
