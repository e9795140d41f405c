//! Signup, verification, login, logout, profile: every row of the contract's
//! "Accounts" table, and the bad input around them.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    signup_verify_and_login,
    signup_refuses_bad_input_and_keeps_what_it_had,
    usernames_and_emails_are_unique_ignoring_case,
    login_accepts_json_urlencoded_and_multipart,
    login_failures_reveal_nothing,
    unverified_and_disabled_accounts_cannot_log_in,
    logout_revokes_the_session_server_side,
    login_rotates_the_session,
    protected_routes_need_a_session,
    update_profile_rules,
    password_change_needs_proof_and_ends_other_sessions,
);

async fn signup_verify_and_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app.signup("alice").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "Please check your email to verify your account"})
    );

    let welcome =
        crate::helpers::wait_for_file_email(&app.outbox_dir(), "alice@example.com", "Welcome")
            .await;
    assert!(welcome.text.contains("alice"));
    assert!(welcome.html.contains("<h1"));
    let link = app.email_link("alice@example.com", "Verify").await;
    assert!(link.starts_with(&app.url("/verify_email/")), "{link}");

    let res = app.client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "Your account has been verified"})
    );
    // A link works once.
    let res = app.client.get(&link).send().await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app.get("/verify_email/not-a-token").await;
    expect_error(res, StatusCode::BAD_REQUEST).await;

    let res = app
        .post(
            "/login",
            json!({"username_or_email": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies.iter().find(|c| c.starts_with("session=")).unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"));
    assert!(session.contains("Path=/"));
    let token_value = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("session=");
    assert_eq!(token_value.len(), 43, "256 bits, base64url");
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("X-CSRFToken="))
        .unwrap();
    assert!(csrf_cookie.contains("SameSite=Strict") && !csrf_cookie.contains("HttpOnly"));

    let body = json(res).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Login successful");
    let user = &body["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["first_name"], "Test");
    assert_eq!(user["twofa_enabled"], false);
    assert_eq!(user["roles"], json!(["User"]));
    assert_eq!(user["permissions"], json!(["view_dashboard"]));
    assert!(user["id"].is_i64());
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf_cookie.starts_with(&format!("X-CSRFToken={csrf};")));

    // Only a hash of the session value is stored.
    let stored: i64 = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = '{token_value}'"
        ))
        .await;
    assert_eq!(stored, 0);

    let res = app.get("/check_auth_status").await;
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "User is currently logged in"})
    );
    let res = app.get("/current_user_details").await;
    let details = json(res).await;
    assert_eq!(details["success"], true);
    assert_eq!(details["message"], *user);
    assert_eq!(details["user"], *user);
    let res = app.get("/csrf_token").await;
    assert_eq!(json(res).await, json!({ "csrf_token": csrf }));
}

fn signup_body(overrides: Value) -> Value {
    let mut body = json!({
        "first_name": "Bob",
        "last_name": "Builder",
        "username": "bob",
        "email": "bob@example.com",
        "password": PASSWORD,
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body
}

async fn signup_refuses_bad_input_and_keeps_what_it_had(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("keeper").await.status(), StatusCode::CREATED);

    let cases: Vec<(Value, &str)> = vec![
        (json!({"email": null}), "email"),
        (json!({"first_name": 5}), "first_name"),
        (json!({"password": ["a"]}), "password"),
        (json!({"first_name": "  "}), "first_name"),
        (json!({"last_name": "x".repeat(101)}), "last_name"),
        (json!({"username": "ab"}), "username"),
        (
            json!({"username": "robert'); DROP TABLE users;--"}),
            "username",
        ),
        (json!({"username": "x".repeat(10_000)}), "username"),
        (json!({"email": "not-an-email"}), "email"),
        (
            json!({"email": format!("{}@example.com", "a".repeat(300))}),
            "email",
        ),
        (json!({"password": "short"}), "Password must"),
        (json!({"password": "alllowercase-and-long"}), "upper-case"),
        (json!({"password": "Password1!"}), "too easy to guess"),
        (json!({"password": "x".repeat(200)}), "8 to 128"),
    ];
    for (overrides, needle) in cases {
        let res = app.post("/signup", signup_body(overrides.clone())).await;
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(
            message.contains(needle),
            "{overrides}: {message:?} should mention {needle}"
        );
    }

    // Hostile text in free-form fields is stored as text, not executed.
    let res = app
        .post(
            "/signup",
            signup_body(json!({"first_name": "Robert'); DROP TABLE users;--"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let name: String = sqlx::query_scalar("SELECT first_name FROM users WHERE username = 'bob'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(name, "Robert'); DROP TABLE users;--");

    // Not JSON at all, JSON of the wrong shape, the wrong media type, too large.
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/signup"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = raw("{\"first_name\": ", "application/json").await.unwrap();
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.starts_with("Malformed JSON"), "{message}");
    let res = raw("[1, 2, 3]", "application/json").await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = raw("null", "application/json").await.unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = raw("first_name=x", "text/plain").await.unwrap();
    expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let huge = format!(
        "{{\"first_name\": \"{}\"}}",
        "x".repeat(gatehouse::app::BODY_LIMIT + 10)
    );
    // Its own client: the server closes a connection whose body it refused, and a
    // pooled connection about to close must not carry the next request.
    let res = new_client()
        .post(app.url("/signup"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;

    assert_eq!(app.scalar("SELECT COUNT(*) FROM users").await, 2);
    let res = app.signup("keeper").await;
    expect_error(res, StatusCode::CONFLICT).await;
}

async fn usernames_and_emails_are_unique_ignoring_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("carol").await.status(), StatusCode::CREATED);
    let res = app
        .post(
            "/signup",
            signup_body(json!({"username": "CAROL", "email": "other@example.com"})),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::CONFLICT).await,
        "Username already exists"
    );
    let res = app
        .post(
            "/signup",
            signup_body(json!({"username": "carol2", "email": "Carol@Example.COM"})),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::CONFLICT).await,
        "Email already exists"
    );

    // The database itself refuses, whatever the application checks first.
    let direct = sqlx::query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, \
         created_at, updated_at, password_changed_at) \
         VALUES ('cArOl', 'x@example.com', 'a', 'b', 'h', 0, 0, 0)",
    )
    .execute(app.state.db.writer())
    .await;
    app.state.sessions.caught_up().await;
    assert!(direct.is_err());

    // Concurrent signups for one name: exactly one wins.
    let attempts = (0..4).map(|i| {
        app.post(
            "/signup",
            signup_body(json!({"username": "dave", "email": format!("dave{i}@example.com")})),
        )
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        3
    );
}

async fn login_accepts_json_urlencoded_and_multipart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("erin").await;

    let form = app
        .client
        .post(app.url("/login"))
        .form(&[
            ("username_or_email", "ERIN@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    assert_eq!(json(form).await["user"]["username"], "erin");

    // The Next.js client sends FormData.
    let multipart = reqwest::multipart::Form::new()
        .text("username_or_email", "erin")
        .text("password", PASSWORD);
    let res = new_client()
        .post(app.url("/login"))
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(json(res).await["csrf_token"].is_string());

    let missing = reqwest::multipart::Form::new().text("username_or_email", "erin");
    let res = new_client()
        .post(app.url("/login"))
        .multipart(missing)
        .send()
        .await
        .unwrap();
    assert!(expect_error(res, StatusCode::BAD_REQUEST)
        .await
        .contains("password"));
    let res = new_client()
        .post(app.url("/login"))
        .json(&json!({"username_or_email": 42, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(expect_error(res, StatusCode::BAD_REQUEST)
        .await
        .contains("username_or_email"));
}

async fn login_failures_reveal_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("frank").await;
    let client = new_client();
    for (who, password) in [
        ("frank", "Wrong-Password-123"),
        ("nobody", PASSWORD),
        ("nobody@example.com", "Wrong-Password-123"),
        ("' OR '1'='1", "' OR '1'='1"),
        (&"x".repeat(5000) as &str, PASSWORD),
    ] {
        let res = client
            .post(app.url("/login"))
            .json(&json!({"username_or_email": who, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("set-cookie").is_none());
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Invalid credentials"
        );
    }
    // A wrong password for an unverified account says nothing about verification.
    assert_eq!(app.signup("grace").await.status(), StatusCode::CREATED);
    let res = client
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "grace", "password": "Wrong-Password-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(res, StatusCode::UNAUTHORIZED).await,
        "Invalid credentials"
    );
}

async fn unverified_and_disabled_accounts_cannot_log_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.signup("heidi").await.status(), StatusCode::CREATED);
    let res = app
        .post(
            "/login",
            json!({"username_or_email": "heidi", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::UNAUTHORIZED).await,
        "Please verify your email address before logging in"
    );

    app.verified_user("ivan").await;
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    sqlx::query("UPDATE users SET disabled = 1 WHERE username = 'ivan'")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    // The live session dies with the account, at once.
    expect_error(
        app.get("/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = app
        .post(
            "/login",
            json!({"username_or_email": "ivan", "password": PASSWORD}),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;

    let relaxed = TestApp::spawn_with(backend, &[("REQUIRE_EMAIL_VERIFICATION", "false")]).await;
    assert_eq!(relaxed.signup("judy").await.status(), StatusCode::CREATED);
    relaxed.login("judy", PASSWORD).await;
}

async fn logout_revokes_the_session_server_side(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ken").await;
    let stolen = app.session_cookie().unwrap();

    let res = app.post("/logout", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cleared: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(cleared
        .iter()
        .any(|c| c.starts_with("session=;") && c.contains("Max-Age=0")));
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "Logout successful"})
    );
    let res = app.get("/check_auth_status").await;
    assert_eq!(json(res).await["success"], false);

    // A copy of the cookie taken before logout is worthless after it.
    let res = new_client()
        .get(app.url("/current_user_details"))
        .header("cookie", format!("session={stolen}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(res, StatusCode::UNAUTHORIZED).await,
        "Please log in to access this resource."
    );
    let res = app.get("/logout").await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    // GET /logout works too.
    app.login("ken", PASSWORD).await;
    assert_eq!(app.get("/logout").await.status(), StatusCode::OK);
}

async fn login_rotates_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("leo").await;
    // A cookie planted by an attacker before login is revoked by the login.
    let planted = new_client();
    let res = planted
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "leo", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = json(res).await;
    let first_csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(
        planted
            .get(app.url("/current_user_details"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let res = planted
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "leo", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let second_csrf = json(res).await["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(first_csrf, second_csrf);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL")
            .await,
        1
    );
}

async fn protected_routes_need_a_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (method, path) in [
        (Method::GET, "/current_user_details"),
        (Method::GET, "/csrf_token"),
        (Method::GET, "/logout"),
        (Method::POST, "/logout"),
        (Method::POST, "/update_profile"),
    ] {
        let res = app.request(method, path, Some(json!({}))).await;
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Please log in to access this resource.",
            "{path}"
        );
    }
    let res = app.get("/check_auth_status").await;
    assert_eq!(
        json(res).await,
        json!({"success": false, "message": "User is not logged in"})
    );
    // A forged cookie is no session.
    let res = new_client()
        .get(app.url("/current_user_details"))
        .header("cookie", "session=forged-value")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
}

fn profile(username: &str, extra: Value) -> Value {
    let mut body = json!({
        "first_name": "New",
        "last_name": "Name",
        "username": username,
        "email": format!("{username}@example.com"),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn update_profile_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("mia").await;
    let nick = app.signup("nick").await;
    assert_eq!(nick.status(), StatusCode::CREATED);
    let nick_id = app
        .scalar("SELECT id FROM users WHERE username = 'nick'")
        .await;

    let res = app.post("/update_profile", profile("mia", json!({}))).await;
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "Profile updated successfully."})
    );
    let me = json(app.get("/current_user_details").await).await;
    assert_eq!(me["user"]["first_name"], "New");

    let res = app
        .post(
            "/update_profile",
            profile("nick", json!({"email": "mia@example.com"})),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::CONFLICT).await,
        "Username already exists."
    );
    let res = app
        .post(
            "/update_profile",
            profile(
                "mia",
                json!({"email": "NICK@example.com", "current_password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::CONFLICT).await,
        "Email already in use."
    );
    let res = app
        .post(
            "/update_profile",
            profile("nick", json!({"user_id": nick_id})),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::FORBIDDEN).await,
        "Unauthorized access"
    );
    let res = app
        .post(
            "/update_profile",
            profile("mia", json!({"user_id": "seven"})),
        )
        .await;
    assert!(expect_error(res, StatusCode::BAD_REQUEST)
        .await
        .contains("user_id"));
    let res = app
        .post("/update_profile", json!({"first_name": "Only"}))
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;

    // CSRF: the session cookie alone cannot change anything.
    let token = app.csrf.lock().unwrap().take();
    let res = app.post("/update_profile", profile("mia", json!({}))).await;
    assert_eq!(
        expect_error(res, StatusCode::FORBIDDEN).await,
        "CSRF token validation failed"
    );
    *app.csrf.lock().unwrap() = Some("forged".to_owned());
    let res = app.post("/update_profile", profile("mia", json!({}))).await;
    assert_eq!(
        expect_error(res, StatusCode::FORBIDDEN).await,
        "CSRF token validation failed"
    );
    *app.csrf.lock().unwrap() = token;
}

async fn password_change_needs_proof_and_ends_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("olga").await;
    let laptop = new_client();
    let res = laptop
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "olga", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // The session is old: the current password is required.
    sqlx::query("UPDATE sessions SET created_at = created_at - 3600")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    let new_password = "Harbor-Quartz-77-Meadow";
    let res = app
        .post(
            "/update_profile",
            profile("olga", json!({"password": new_password})),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = app
        .post(
            "/update_profile",
            profile(
                "olga",
                json!({"password": new_password, "current_password": "Wrong-Password-1"}),
            ),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = app
        .post(
            "/update_profile",
            profile(
                "olga",
                json!({"password": "weak", "current_password": PASSWORD}),
            ),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = app
        .post(
            "/update_profile",
            profile(
                "olga",
                json!({"password": new_password, "current_password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // This session lives on; the laptop's does not.
    assert_eq!(
        app.get("/current_user_details").await.status(),
        StatusCode::OK
    );
    let res = laptop
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    let res = new_client()
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "olga", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    app.login("olga", new_password).await;
}
