//! Two-factor authentication through the real server: enrollment with a pending
//! secret, every kind of second factor at login, replays refused, concurrent use of
//! one recovery code, and the emailed code over real SMTP. TOTP codes are computed
//! here independently of the server's implementation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;
use crate::smtp::SmtpServer;

on_both_databases!(
    twofa_uri_hands_out_a_pending_secret,
    enabling_and_disabling_follow_the_contract,
    login_takes_each_kind_of_second_factor_once,
    a_recovery_code_raced_from_two_connections_wins_once,
    a_pending_secret_does_not_replace_the_active_one,
    guessing_codes_is_throttled,
);

/// RFC 6238 with SHA-1 and six digits, written from the RFC rather than taken from
/// the server.
pub fn totp(secret_b32: &str, step: i64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .unwrap();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[o]) & 0x7f) << 24
        | u32::from(h[o + 1]) << 16
        | u32::from(h[o + 2]) << 8
        | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}

pub fn step_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 30
}

pub fn secret_in(uri: &str) -> String {
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap()
        .to_owned()
}

/// Turns 2FA on for the logged-in user of `app`; returns the secret, the recovery
/// codes and the time step whose code was used.
pub async fn enable_twofa(app: &TestApp) -> (String, Vec<String>, i64) {
    let body = json(app.get("/twofa_uri").await).await;
    let secret = secret_in(body["uri"].as_str().unwrap());
    let step = step_now();
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": true, "token": totp(&secret, step)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes, step)
}

pub async fn login_with(
    app: &TestApp,
    client: &reqwest::Client,
    user: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({"username_or_email": user, "password": PASSWORD});
    if let Some(token) = token {
        body["token"] = token.into();
    }
    client
        .post(app.url("/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn twofa_uri_hands_out_a_pending_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    expect_error(app.get("/twofa_uri").await, StatusCode::UNAUTHORIZED).await;
    let user = app.verified_user("tina").await;
    let res = app.get("/twofa_uri").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "2FA confirmation");
    let uri = body["uri"].as_str().unwrap();
    let secret = secret_in(uri);
    assert_eq!(
        uri,
        format!("otpauth://totp/Gatehouse:tina@example.com?secret={secret}&issuer=Gatehouse")
    );
    assert_eq!(secret.len(), 32, "160 bits of base32");
    assert!(data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .is_ok());
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{svg}");

    // Pending, not active; stored encrypted.
    let details = json(app.get("/current_user_details").await).await;
    assert_eq!(details["user"]["twofa_enabled"], false);
    let stored: String = sqlx::query_scalar("SELECT pending_enc FROM twofa WHERE user_id = $1")
        .bind(user["user"]["id"].as_i64().unwrap())
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(!stored.contains(&secret));
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    assert!(!stored.contains(&hex::encode(&raw)));

    // Asking again replaces the pending secret: the first no longer confirms.
    let second = secret_in(
        json(app.get("/twofa_uri").await).await["uri"]
            .as_str()
            .unwrap(),
    );
    assert_ne!(second, secret);
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": true, "token": totp(&secret, step_now())}),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;

    // The issuer is configurable and encoded in the URI.
    let app = TestApp::spawn_with(backend, &[("TOTP_ISSUER", "Acme Corp")]).await;
    app.verified_user("ursula").await;
    let body = json(app.get("/twofa_uri").await).await;
    assert!(body["uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Acme%20Corp:ursula@example.com?secret="));
}

async fn enabling_and_disabling_follow_the_contract(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let res = app
        .post("/update_twofa", json!({"enabled": true, "token": "123456"}))
        .await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    let user = app.verified_user("vince").await;
    let user_id = user["user"]["id"].as_i64().unwrap();

    // No pending secret yet: nothing to confirm.
    let res = app
        .post("/update_twofa", json!({"enabled": true, "token": "123456"}))
        .await;
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        message,
        "Failed to update 2FA. Invalid token or not provided."
    );

    let body = json(app.get("/twofa_uri").await).await;
    let secret = secret_in(body["uri"].as_str().unwrap());
    let step = step_now();
    let good = totp(&secret, step);
    let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    for bad in [
        json!({"enabled": true}),
        json!({"enabled": true, "token": ""}),
        json!({"enabled": true, "token": wrong}),
        json!({"enabled": true, "token": totp(&secret, step - 3)}),
        json!({"enabled": true, "token": "x".repeat(10_000)}),
        json!({"enabled": true, "token": ["123456"]}),
    ] {
        let res = app.post("/update_twofa", bad.clone()).await;
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(
            message, "Failed to update 2FA. Invalid token or not provided.",
            "{bad}"
        );
    }
    for bad in [
        json!({"token": good}),
        json!({"enabled": "yes", "token": good}),
    ] {
        let message = expect_error(
            app.post("/update_twofa", bad).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(message.contains("enabled"), "{message}");
    }
    assert_eq!(
        app.scalar("SELECT twofa_enabled FROM users WHERE username = 'vince'")
            .await,
        0,
        "nothing changed by the failures"
    );
    // CSRF applies.
    let res = app
        .client
        .post(app.url("/update_twofa"))
        .json(&json!({"enabled": true, "token": good}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN).await;

    // The code as a number is accepted too (leading zeros are restored).
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": true, "token": good.parse::<u64>().unwrap()}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "2FA updated successfully");
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10);
    for code in &codes {
        assert_eq!(code.len(), 11, "{code}");
        assert_eq!(&code[5..6], "-");
    }
    let details = json(app.get("/current_user_details").await).await;
    assert_eq!(details["user"]["twofa_enabled"], true);
    // Stored only as hashes, the secret only encrypted.
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT code_hash FROM twofa_recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(hashes.len(), 10);
    for code in &codes {
        let bare = code.replace('-', "");
        assert!(hashes
            .iter()
            .all(|h| !h.contains(&bare) && !h.contains(code)));
    }
    let sealed: String = sqlx::query_scalar("SELECT secret_enc FROM twofa WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(!sealed.contains(&secret));

    // The confirming code cannot be used again, to disable or anywhere else.
    let res = app
        .post("/update_twofa", json!({"enabled": false, "token": good}))
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    // Disabling with a code of the active secret.
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": false, "token": totp(&secret, step + 1)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        json(res).await,
        json!({"success": true, "message": "2FA updated successfully"})
    );
    assert_eq!(
        app.scalar("SELECT twofa_enabled FROM users WHERE username = 'vince'")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM twofa_recovery_codes")
            .await,
        0,
        "recovery codes go with it"
    );
    // Off already: nothing to disable.
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": false, "token": "123456"}),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;

    // On again; disabled this time with a recovery code, which works once.
    let (_, codes, _) = enable_twofa(&app).await;
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": false, "token": codes[3].to_uppercase()}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.scalar("SELECT twofa_enabled FROM users WHERE username = 'vince'")
            .await,
        0
    );
    let logs = app
        .scalar(
            "SELECT COUNT(*) FROM activity_logs WHERE message IN ('2FA enabled', '2FA disabled')",
        )
        .await;
    let mut logged = logs;
    for _ in 0..40 {
        if logged >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        logged = app
            .scalar("SELECT COUNT(*) FROM activity_logs WHERE message IN ('2FA enabled', '2FA disabled')")
            .await;
    }
    assert_eq!(logged, 4, "each change is an auth event");
}

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

/// Signs up over SMTP, verifies and logs in.
pub async fn smtp_user(app: &TestApp, smtp: &SmtpServer, name: &str) -> Value {
    assert_eq!(app.signup(name).await.status(), StatusCode::CREATED);
    let to = format!("{name}@example.com");
    let mut link = None;
    for _ in 0..200 {
        if let Some(m) = smtp
            .received()
            .into_iter()
            .find(|m| m.to == to && m.subject.contains("Verify"))
        {
            link = Some(crate::helpers::link_in(&m));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = app.client.get(link.unwrap()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.login(name, PASSWORD).await
}

fn code_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.len() == 6 && w.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

async fn wait_for_subject(smtp: &SmtpServer, subject: &str, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let found: Vec<String> = smtp
            .received()
            .into_iter()
            .filter(|m| m.subject.contains(subject))
            .map(|m| m.text)
            .collect();
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {count} emails about {subject:?} within 10 s");
}

async fn login_takes_each_kind_of_second_factor_once(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = smtp_app(backend, smtp.port).await;
    let user = smtp_user(&app, &smtp, "wanda").await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let (secret, codes, step) = enable_twofa(&app).await;
    let client = new_client();

    // No token: the contract's 400, and a code by email.
    let res = login_with(&app, &client, "wanda", None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json(res).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "2FA token required");
    assert_eq!(body["twofa_required"], true);
    let mail = wait_for_subject(&smtp, "sign-in code", 1).await;
    let emailed = code_in(&mail[0]);
    // Asking again within the minute answers the same but sends nothing more.
    let res = login_with(&app, &client, "wanda", Some("")).await;
    assert_eq!(json(res).await["twofa_required"], true);
    app.state.mailer.drain().await;
    assert_eq!(
        smtp.received()
            .iter()
            .filter(|m| m.subject.contains("sign-in code"))
            .count(),
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM twofa_email_codes").await,
        1,
        "stored once"
    );
    let stored: String = sqlx::query_scalar("SELECT code_hash FROM twofa_email_codes")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert!(!stored.contains(&emailed), "only a hash is kept");

    // A wrong password with a right code is still a wrong password.
    let res = client
        .post(app.url("/login"))
        .json(&json!({"username_or_email": "wanda", "password": "Not-The-Password-9", "token": emailed}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_error(res, StatusCode::UNAUTHORIZED).await,
        "Invalid credentials"
    );
    // Wrong tokens.
    for wrong in ["000000", "abcde-fghij", "not a code", &"9".repeat(500)] {
        let code =
            if wrong == "000000" && (emailed == "000000" || totp(&secret, step + 1) == "000000") {
                "000001"
            } else {
                wrong
            };
        let res = login_with(&app, &client, "wanda", Some(code)).await;
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Invalid 2FA token"
        );
    }

    // The emailed code, once.
    let res = login_with(&app, &client, "wanda", Some(&emailed)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = login_with(&app, &client, "wanda", Some(&emailed)).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    // The TOTP code that enabled 2FA was used: a replay is refused.
    let res = login_with(&app, &client, "wanda", Some(&totp(&secret, step))).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    // The next step's code works, once.
    let next = totp(&secret, step + 1);
    let res = login_with(&app, &client, "wanda", Some(&next)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["user"]["twofa_enabled"], true);
    let res = login_with(&app, &client, "wanda", Some(&next)).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    // A recovery code, as typed by a person, once.
    let typed = format!(" {} ", codes[0].to_uppercase());
    let res = login_with(&app, &client, "wanda", Some(&typed)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = login_with(&app, &client, "wanda", Some(&codes[0])).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    let res = login_with(&app, &client, "wanda", Some(&codes[1])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM twofa_recovery_codes WHERE used_at IS NULL")
            .await,
        8
    );

    // An emailed code expires after ten minutes (moved into the past here).
    sqlx::query("UPDATE twofa SET email_code_sent_at = email_code_sent_at - 61")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let res = login_with(&app, &client, "wanda", None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let mail = wait_for_subject(&smtp, "sign-in code", 2).await;
    let second = code_in(&mail[1]);
    sqlx::query("UPDATE twofa_email_codes SET expires_at = expires_at - 601 WHERE user_id = $1")
        .bind(user_id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    let res = login_with(&app, &client, "wanda", Some(&second)).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;

    // A newer code retires the one before it.
    sqlx::query("UPDATE twofa SET email_code_sent_at = email_code_sent_at - 61")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    login_with(&app, &client, "wanda", None).await;
    let third = code_in(&wait_for_subject(&smtp, "sign-in code", 3).await[2]);
    sqlx::query("UPDATE twofa SET email_code_sent_at = email_code_sent_at - 61")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    login_with(&app, &client, "wanda", None).await;
    let fourth = code_in(&wait_for_subject(&smtp, "sign-in code", 4).await[3]);
    if third != fourth {
        let res = login_with(&app, &client, "wanda", Some(&third)).await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    let res = login_with(&app, &client, "wanda", Some(&fourth)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Every email went to the user, none carries the code in a link.
    for m in smtp.received() {
        assert_eq!(m.to, "wanda@example.com");
    }
}

async fn a_recovery_code_raced_from_two_connections_wins_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("xavi").await;
    let (_, codes, _) = enable_twofa(&app).await;
    for code in &codes[..3] {
        let (a, b) = (new_client(), new_client());
        let (ra, rb) = tokio::join!(
            login_with(&app, &a, "xavi", Some(code)),
            login_with(&app, &b, "xavi", Some(code)),
        );
        let mut statuses = [ra.status(), rb.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::UNAUTHORIZED],
            "exactly one of two concurrent uses wins"
        );
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM twofa_recovery_codes WHERE used_at IS NOT NULL")
            .await,
        3
    );
}

async fn a_pending_secret_does_not_replace_the_active_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("yara").await;
    let (active, _, step) = enable_twofa(&app).await;
    // A new secret is asked for (by the user, or by someone with their session)...
    let pending = secret_in(
        json(app.get("/twofa_uri").await).await["uri"]
            .as_str()
            .unwrap(),
    );
    assert_ne!(pending, active);
    // ...and until it is confirmed, the active one is the one that logs in.
    let client = new_client();
    let res = login_with(&app, &client, "yara", Some(&totp(&pending, step + 1))).await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    let res = login_with(&app, &client, "yara", Some(&totp(&active, step + 1))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn guessing_codes_is_throttled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("zeno").await;
    let (secret, _, step) = enable_twofa(&app).await;
    let attacker = new_client();
    let valid = [
        totp(&secret, step - 1),
        totp(&secret, step),
        totp(&secret, step + 1),
        totp(&secret, step + 2),
    ];
    let mut guesses = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .filter(|g| !valid.contains(g));
    for _ in 0..5 {
        let res = login_with(&app, &attacker, "zeno", guesses.next().as_deref()).await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    let res = login_with(&app, &attacker, "zeno", guesses.next().as_deref()).await;
    assert!(res.headers().contains_key("retry-after"));
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    // Even the right code waits: the answer does not depend on it.
    let res = login_with(&app, &attacker, "zeno", Some(&totp(&secret, step + 1))).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    // Guessing codes to turn 2FA off from a session is throttled too.
    for _ in 0..5 {
        let res = app
            .post(
                "/update_twofa",
                json!({"enabled": false, "token": guesses.next()}),
            )
            .await;
        let status = res.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    let res = app
        .post(
            "/update_twofa",
            json!({"enabled": false, "token": guesses.next()}),
        )
        .await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}
