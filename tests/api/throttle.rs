//! Brute-force protection through the real server: the throttle kicks in and lifts,
//! keeps no owner out of their account, counts per address as well as per account,
//! is shared by every instance, logs each decision, and works the same on Redis; a
//! burst of concurrent guesses is counted before it is judged, and the answers never
//! tell which email and which username belong to one account.

use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;

use gatehouse::auth::session;
use gatehouse::db::batch::{self, Step, Value};
use gatehouse::http::Origin;
use gatehouse::throttle::{self, Reserved, Return, Throttle};

use crate::helpers::{expect_error, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    the_throttle_kicks_in_and_lifts,
    an_attacker_does_not_keep_the_owner_out,
    one_address_guessing_many_accounts_is_throttled,
    unknown_names_are_throttled_like_accounts,
    reset_requests_and_tokens_are_throttled,
    instances_share_the_count,
    concurrent_guesses_are_counted_before_they_are_judged,
    answers_do_not_tell_which_email_goes_with_a_name,
    reservations_block_double_and_cap_by_the_rule,
    reservations_of_two_subjects_are_judged_apart,
    counts_and_new_sessions_commit_without_waiting_for_the_disk,
    a_give_back_sent_with_a_session_waits_for_its_row,
);

async fn attempt(
    app: &TestApp,
    client: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/login"))
        .json(&json!({"username_or_email": user, "password": password}))
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Throttling events stored so far: they are stored before the answer that caused them.
async fn logged(app: &TestApp, pattern: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM activity_logs WHERE kind = 'auth' AND level = 'WARNING' AND message LIKE '{pattern}'"
    ))
    .await
}

/// Five wrong passwords, then the sixth attempt is refused, even with the right one.
async fn hammer(app: &TestApp, user: &str) {
    let attacker = new_client();
    for _ in 0..5 {
        let res = attempt(app, &attacker, user, "Wrong-Guess-123!").await;
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Invalid credentials"
        );
    }
    let res = attempt(app, &attacker, user, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&res) >= 1);
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}

async fn extend_blocks(app: &TestApp) {
    sqlx::query(
        "UPDATE throttle SET blocked_until_ms = blocked_until_ms + 600000 WHERE blocked_until_ms > 0",
    )
    .execute(app.state.db.writer())
    .await
    .unwrap();
}

async fn the_throttle_kicks_in_and_lifts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("gail").await;
    let client = new_client();
    for _ in 0..5 {
        expect_error(
            attempt(&app, &client, "gail", "Wrong-Guess-123!").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    let res = attempt(&app, &client, "gail", PASSWORD).await;
    assert_eq!(retry_after(&res), 1, "the first delay is one second");
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;

    // It lifts when the delay is over...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // ...and the next failure doubles it.
    expect_error(
        attempt(&app, &client, "gail", "Wrong-Guess-123!").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = attempt(&app, &client, "gail", PASSWORD).await;
    assert_eq!(retry_after(&res), 2);
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = attempt(&app, &client, "gail", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A success forgets the account's failures: one more mistake is just a mistake.
    let fresh = new_client();
    expect_error(
        attempt(&app, &fresh, "gail", "Wrong-Guess-123!").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        attempt(&app, &fresh, "gail", PASSWORD).await.status(),
        StatusCode::OK
    );

    // Every decision is an audit event.
    assert!(logged(&app, "throttle engaged: login_account").await >= 2);
    assert!(logged(&app, "throttled: login_account").await >= 2);
    let user_email: String = sqlx::query_scalar(
        "SELECT user_email FROM activity_logs WHERE message = 'throttled: login_account'",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(user_email, "gail@example.com");
}

async fn an_attacker_does_not_keep_the_owner_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // The owner's browser has logged in before, and has logged out since.
    app.verified_user("hugo").await;
    assert_eq!(
        app.post("/logout", json!({})).await.status(),
        StatusCode::OK
    );

    hammer(&app, "hugo").await;
    // As if the attacker had kept at it for a while: a block that outlasts this test
    // however slowly the machine hashes the passwords below.
    extend_blocks(&app).await;
    // The owner's browser is not held back by it...
    let res = attempt(&app, &app.client, "hugo", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    // ...while a browser that never logged in is, and a forged device cookie is no help.
    let res = attempt(&app, &new_client(), "hugo", PASSWORD).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    let hugo_id = app
        .scalar("SELECT id FROM users WHERE username = 'hugo'")
        .await;
    for forged in [
        format!("gh_device={hugo_id}.1700000000.{}", "ab".repeat(32)),
        format!("gh_device={hugo_id}"),
        "gh_device=garbage".to_owned(),
    ] {
        let res = new_client()
            .post(app.url("/login"))
            .header("cookie", forged)
            .json(&json!({"username_or_email": "hugo", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    }
    // The known device also does not unlock another account.
    app.verified_user("ines").await;
    assert_eq!(
        app.post("/logout", json!({})).await.status(),
        StatusCode::OK
    );
    hammer(&app, "ines").await;
    extend_blocks(&app).await;
    let res = attempt(&app, &app.client, "ines", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK, "ines's device now");
    let res = attempt(&app, &app.client, "hugo", PASSWORD).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}

async fn one_address_guessing_many_accounts_is_throttled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("jill").await;
    let client = new_client();
    for i in 0..30 {
        let res = attempt(&app, &client, &format!("ghost{i}"), "Wrong-Guess-123!").await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
    // A name never tried before is refused too: the address is blocked.
    let res = attempt(&app, &client, "ghost-new", "Wrong-Guess-123!").await;
    assert!(retry_after(&res) >= 1);
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(logged(&app, "throttled: login_ip").await >= 1);
}

async fn unknown_names_are_throttled_like_accounts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("kurt").await;
    // The answers do not tell an existing account from a made-up name.
    for name in ["kurt", "no-such-user"] {
        let client = new_client();
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(
                attempt(&app, &client, name, "Wrong-Guess-123!")
                    .await
                    .status(),
            );
        }
        assert_eq!(
            statuses,
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::UNAUTHORIZED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::TOO_MANY_REQUESTS,
            ],
            "{name}"
        );
    }
    // Letter case does not make a new name; the account's email is a name of its own
    // (see `answers_do_not_tell_which_email_goes_with_a_name`).
    let app = TestApp::spawn(backend).await;
    app.verified_user("lena").await;
    let client = new_client();
    for who in ["lena", "LENA", "Lena", "lena", "lEnA"] {
        expect_error(
            attempt(&app, &client, who, "Wrong-Guess-123!").await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    expect_error(
        attempt(&app, &client, "lena", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    let res = attempt(&app, &client, "lena@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn reset_requests_and_tokens_are_throttled(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            new_client()
                .post(app.url("/forgot_password"))
                .json(&json!({ "email": email }))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(forgot("mona@example.com").await.status(), StatusCode::OK);
    }
    let res = forgot("mona@example.com").await;
    assert!(retry_after(&res) >= 59, "a minute");
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    // Other addresses from the same client, up to the per-address allowance.
    for email in [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
        "f@example.com",
        "g@example.com",
    ] {
        let res = new_client()
            .post(app.url("/forgot_password"))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{email}");
    }
    expect_error(forgot("h@example.com").await, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(logged(&app, "throttled: reset_ip").await >= 1);
    assert!(logged(&app, "throttled: reset_email").await >= 1);

    // Guessing reset tokens.
    for i in 0..10 {
        let res = new_client()
            .post(app.url(&format!("/reset_password/guess{i}")))
            .json(&json!({"password": "Harbor-Quartz-77-Meadow"}))
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::BAD_REQUEST).await;
    }
    let res = new_client()
        .post(app.url("/reset_password/guess-more"))
        .json(&json!({"password": "Harbor-Quartz-77-Meadow"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}

async fn instances_share_the_count(backend: Backend) {
    let first = TestApp::spawn(backend).await;
    first.verified_user("nina").await;
    let second = TestApp::spawn_with(
        backend,
        &[(
            "DATABASE_URL",
            first.state.config.database_url.expose_secret(),
        )],
    )
    .await;
    hammer(&first, "nina").await;
    let res = attempt(&second, &new_client(), "nina", PASSWORD).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
}

/// The throttle's counts go through the relaxed pool: on PostgreSQL its commits do not
/// wait for the disk while every other write's do, and what it commits is seen at once
/// through the other pool. SQLite has one pool. A login's session, its event and its
/// give-back are written in one round trip before the answer.
async fn counts_and_new_sessions_commit_without_waiting_for_the_disk(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = &app.state.db;
    match backend {
        // 1: NORMAL, a WAL commit without a sync, on every connection.
        Backend::Sqlite => {
            for pool in [db.pool(), db.relaxed_pool()] {
                let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                assert_eq!(synchronous, 1);
            }
        }
        Backend::Postgres => {
            for (pool, expected) in [(db.pool(), "on"), (db.relaxed_pool(), "off")] {
                let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                assert_eq!(setting, expected);
            }
        }
    }

    app.verified_user("rita").await;
    let client = new_client();
    let res = attempt(&app, &client, "rita", "wrong password").await;
    expect_error(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        app.scalar(
            "SELECT failures FROM throttle WHERE scope = 'login_account' AND subject = 'name:rita'"
        )
        .await,
        1
    );
    let live_sessions = "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
                         WHERE u.username = 'rita' AND s.revoked_at IS NULL";
    let before = app.scalar(live_sessions).await;
    let logins = "SELECT COUNT(*) FROM activity_logs WHERE message = 'login ok' \
                  AND user_email = 'rita@example.com'";
    let logged_before = app.scalar(logins).await;
    let res = attempt(&app, &client, "rita", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.scalar(logins).await,
        logged_before + 1,
        "the event is stored before the answer"
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM throttle WHERE scope = 'login_account' AND subject = 'name:rita'"
        )
        .await,
        0,
        "a login forgets the name's failures"
    );
    assert_eq!(
        app.scalar(
            "SELECT failures FROM throttle WHERE scope = 'login_ip' AND subject = '127.0.0.1'"
        )
        .await,
        1,
        "the login gave the address's slot back: only the wrong password counts"
    );
    assert_eq!(app.scalar(live_sessions).await, before + 1);
    let me = client
        .get(app.url("/current_user_details"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
}

/// A login sends its throttle give-back in the round trip that writes its session,
/// after the session's row: when the row cannot be written, nothing is given back (the
/// login fails and releases its reservation as any failed login does). PostgreSQL
/// writes such a round trip all or nothing; SQLite stops at the first write that fails
/// and keeps those before it.
async fn a_give_back_sent_with_a_session_waits_for_its_row(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let db = &app.state.db;
    let user = app.verified_user("sven").await;
    let user_id = user["user"]["id"].as_i64().unwrap();
    let rule = &throttle::LOGIN_IP;
    let subject = random_subject("ip");
    let Reserved::Counted {
        set_until_ms,
        previous_until_ms,
        ..
    } = reserve_one(&app.state.throttle, rule, &subject, throttle::now_ms()).await
    else {
        panic!("a first attempt refused");
    };
    let give_back = [Return::Release {
        rule,
        subject: &subject,
        set_until_ms,
        previous_until_ms,
    }];
    let count = format!(
        "SELECT failures FROM throttle WHERE scope = '{}' AND subject = '{subject}'",
        rule.scope
    );

    // A session of an account that does not exist: its row breaks a foreign key.
    let origin = Origin::default();
    let pending = session::Pending::new(&app.state.config, i64::MAX, &origin);
    let steps = pending.then(app.state.throttle.give_back_steps(&give_back).unwrap());
    let written = batch::run(db.writer(), db.backend(), &steps).await;
    assert!(written.is_err(), "no such user");
    assert_eq!(
        app.scalar(&count).await,
        1,
        "nothing given back without the row"
    );

    // A write that fails after another: PostgreSQL keeps neither.
    let insert = "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, \
                  last_seen_at, expires_at) VALUES ($1, $2, 'csrf', 0, 0, 0)";
    let row = |hash: &'static str| Step::new(insert, vec![Value::Text(hash), Value::Int(user_id)]);
    let rows = |hash: &str| format!("SELECT COUNT(*) FROM sessions WHERE token_hash = '{hash}'");
    batch::run(db.relaxed_pool(), db.backend(), &[row("gh-batch-taken")])
        .await
        .unwrap();
    let failing_after = [row("gh-batch-new"), row("gh-batch-taken")];
    batch::run(db.relaxed_pool(), db.backend(), &failing_after)
        .await
        .expect_err("the second token hash is taken");
    let kept = app.scalar(&rows("gh-batch-new")).await;
    match backend {
        Backend::Postgres => assert_eq!(kept, 0, "all or nothing"),
        Backend::Sqlite => assert_eq!(kept, 1, "the writes before the failing one stay"),
    }

    let pending = session::Pending::new(&app.state.config, user_id, &origin);
    let steps = pending.then(app.state.throttle.give_back_steps(&give_back).unwrap());
    let live = "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL";
    let before = app.scalar(live).await;
    batch::run(db.writer(), db.backend(), &steps).await.unwrap();
    assert_eq!(app.scalar(live).await, before + 1);
    assert_eq!(app.scalar(&count).await, 0, "given back with the row");
}

/// A Redis at 127.0.0.1:6379, or `None` where there is none (a failure under CI).
async fn local_redis() -> Option<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open("redis://127.0.0.1:6379").ok()?;
    match tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => Some(conn),
        _ => {
            crate::helpers::service_missing("Redis at 127.0.0.1:6379");
            None
        }
    }
}

async fn redis_keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap()
}

/// The same behaviour with the counts in Redis, shared by two instances, under a
/// key prefix of this test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_backend_throttles_and_is_shared() {
    let Some(mut conn) = local_redis().await else {
        return;
    };
    let prefix = format!("gh_test_{:016x}:", rand::thread_rng().gen::<u64>());
    let vars = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let first = TestApp::spawn_with(Backend::Sqlite, &vars).await;
    first.verified_user("olav").await;
    let database_url = first.state.config.database_url.expose_secret().to_owned();
    let mut second_vars = vars.to_vec();
    second_vars.push(("DATABASE_URL", database_url.as_str()));
    let second = TestApp::spawn_with(Backend::Sqlite, &second_vars).await;

    hammer(&first, "olav").await;
    assert_eq!(
        first.scalar("SELECT COUNT(*) FROM throttle").await,
        0,
        "the counts are in Redis, not the database"
    );
    let keys = redis_keys(&mut conn, &prefix).await;
    assert!(keys.iter().any(|k| k.contains("login_account")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("login_ip")), "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 3_600_000 + 1000, "{key} expires: {ttl}");
    }
    // The other instance sees the block; the owner's device is exempt on both.
    let res = attempt(&second, &new_client(), "olav", PASSWORD).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS).await;
    let res = attempt(&second, &first.client, "olav", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    // It lifts, and a success clears the account's count.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = attempt(&second, &new_client(), "olav", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let keys = redis_keys(&mut conn, &prefix).await;
    assert!(
        !keys.iter().any(|k| k.contains("login_account")),
        "{keys:?}"
    );
    assert!(logged(&first, "throttled: login_account").await >= 1);

    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// With Redis configured but unreachable, login is an outage (503), not unthrottled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_closed() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::spawn_with(Backend::Sqlite, &[("REDIS_URL", url.as_str())]).await;
    assert_eq!(app.signup("pia").await.status(), StatusCode::CREATED);
    let res = attempt(&app, &new_client(), "pia", PASSWORD).await;
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE).await;
}

/// Fifty wrong guesses at one account, all at once: each is counted before its hash
/// is computed, so no more are judged (401) than the free allowance; the rest are
/// refused (429) without being judged.
async fn concurrent_guesses_are_counted_before_they_are_judged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("burst").await;
    let attacker = new_client();
    let guesses = (0..50).map(|i| {
        let (app, attacker) = (&app, &attacker);
        async move {
            attempt(app, attacker, "burst", &format!("Wrong-Guess-{i}!"))
                .await
                .status()
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let judged = answers
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(judged + refused, 50, "{answers:?}");
    let allowed = usize::try_from(gatehouse::throttle::LOGIN_ACCOUNT.free).unwrap();
    assert!(
        judged <= allowed,
        "{judged} guesses were judged: {answers:?}"
    );
    assert!(judged >= 1, "{answers:?}");
    // The metric of judged logins agrees: nothing else was verified.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "gatehouse_logins_total{{outcome=\"invalid_credentials\"}} {judged}"
        )),
        "{metrics}"
    );
}

/// After a name is blocked, its account's email answers exactly like another
/// account's email: a 401 for a wrong password, not a 429.
async fn answers_do_not_tell_which_email_goes_with_a_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("ivy").await;
    app.verified_user("jude").await;
    app.verified_user("kit").await;
    hammer(&app, "ivy").await;
    let attacker = new_client();
    for email in ["ivy@example.com", "jude@example.com"] {
        let res = attempt(&app, &attacker, email, "Wrong-Guess-123!").await;
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Invalid credentials",
            "{email}"
        );
    }
    // And the other way round: a blocked email says nothing about the username.
    hammer(&app, "kit@example.com").await;
    for name in ["kit", "jude"] {
        let res = attempt(&app, &attacker, name, "Wrong-Guess-123!").await;
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }
}

async fn reserve_one(
    throttle: &Throttle,
    rule: &'static throttle::Rule,
    subject: &str,
    now: i64,
) -> Reserved {
    let mut answers = throttle.reserve_at(&[(rule, subject)], now).await.unwrap();
    assert_eq!(answers.len(), 1);
    answers.remove(0)
}

fn random_subject(kind: &str) -> String {
    format!("{kind}:{:016x}", rand::thread_rng().gen::<u64>())
}

/// A login's two subjects reserved in one call (one statement on PostgreSQL): each is
/// counted or refused on its own, in the order asked, and a blocked one leaves the
/// other's count to be given back; one call gives back a slot and forgets the other
/// subject, and the counts then read as if neither attempt had been made.
async fn subjects_reserved_together_are_judged_each_on_its_own(throttle: &Throttle) {
    let (ip_rule, name_rule) = (&throttle::LOGIN_IP, &throttle::LOGIN_ACCOUNT);
    let ip = random_subject("ip");
    let name = random_subject("name");
    let now = 1_800_000_000_000;
    for failures in 1..=name_rule.free {
        let answers = throttle
            .reserve_at(&[(ip_rule, &ip), (name_rule, &name)], now)
            .await
            .unwrap();
        for answer in &answers {
            let Reserved::Counted { recorded, .. } = answer else {
                panic!("failure {failures} refused: {answers:?}");
            };
            assert_eq!(recorded.failures, failures, "{answers:?}");
        }
    }
    // The name is blocked now; the address is not, and is counted.
    let blocked_until = now + throttle::delay_ms(name_rule, name_rule.free);
    let answers = throttle
        .reserve_at(&[(ip_rule, &ip), (name_rule, &name)], now + 1)
        .await
        .unwrap();
    let [Reserved::Counted {
        recorded,
        set_until_ms,
        previous_until_ms,
    }, Reserved::Blocked { until_ms }] = answers[..]
    else {
        panic!("{answers:?}");
    };
    assert_eq!(recorded.failures, name_rule.free + 1);
    assert_eq!(until_ms, blocked_until);
    throttle
        .give_back(&[Return::Release {
            rule: ip_rule,
            subject: &ip,
            set_until_ms,
            previous_until_ms,
        }])
        .await
        .unwrap();

    // After the block: a success gives the address's slot back and forgets the name.
    let answers = throttle
        .reserve_at(&[(name_rule, &name), (ip_rule, &ip)], blocked_until)
        .await
        .unwrap();
    let [Reserved::Counted { .. }, Reserved::Counted {
        recorded,
        set_until_ms,
        previous_until_ms,
    }] = answers[..]
    else {
        panic!("{answers:?}");
    };
    assert_eq!(recorded.failures, name_rule.free + 1, "the given-back slot");
    throttle
        .give_back(&[
            Return::Clear {
                rule: name_rule,
                subject: &name,
            },
            Return::Release {
                rule: ip_rule,
                subject: &ip,
                set_until_ms,
                previous_until_ms,
            },
        ])
        .await
        .unwrap();
    let answers = throttle
        .reserve_at(&[(ip_rule, &ip), (name_rule, &name)], blocked_until)
        .await
        .unwrap();
    let counts: Vec<i64> = answers
        .iter()
        .map(|answer| match answer {
            Reserved::Counted { recorded, .. } => recorded.failures,
            Reserved::Blocked { .. } => panic!("{answers:?}"),
        })
        .collect();
    assert_eq!(counts, [name_rule.free + 1, 1]);
    throttle.clear(ip_rule, &ip).await.unwrap();
    throttle.clear(name_rule, &name).await.unwrap();
}

async fn reservations_of_two_subjects_are_judged_apart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    subjects_reserved_together_are_judged_each_on_its_own(&app.state.throttle).await;
}

/// One subject reserved over and over at chosen times: every reservation counts one
/// failure; past the free allowance each starts a block that doubles up to the cap;
/// while blocked nothing is counted; a lapsed window starts the count again (where the
/// store keeps time itself: Redis lets the key expire instead); a released slot is
/// given back with the block it started.
async fn walk_the_rule(throttle: &Throttle, lapses: bool) {
    let rule = &throttle::LOGIN_ACCOUNT;
    let subject = random_subject("name");
    let mut now = 1_800_000_000_000;
    let mut capped = 0;
    for failures in 1..=rule.free + 14 {
        let Reserved::Counted {
            recorded,
            set_until_ms,
            ..
        } = reserve_one(throttle, rule, &subject, now).await
        else {
            panic!("failure {failures} refused at {now}");
        };
        let delay = throttle::delay_ms(rule, failures);
        assert_eq!((recorded.failures, recorded.blocked_ms), (failures, delay));
        if delay == 0 {
            continue;
        }
        assert_eq!(set_until_ms, now + delay, "failure {failures}");
        capped += i64::from(delay == rule.cap_ms);
        match reserve_one(throttle, rule, &subject, now + delay - 1).await {
            Reserved::Blocked { until_ms } => assert_eq!(until_ms, now + delay),
            other => panic!("counted while blocked: {other:?}"),
        }
        now += delay;
    }
    assert!(capped >= 3, "the cap was reached and held");

    // A slot given back takes its block with it.
    let Reserved::Counted {
        set_until_ms,
        previous_until_ms,
        recorded,
    } = reserve_one(throttle, rule, &subject, now).await
    else {
        panic!("refused after the block ended");
    };
    throttle
        .give_back(&[Return::Release {
            rule,
            subject: &subject,
            set_until_ms,
            previous_until_ms,
        }])
        .await
        .unwrap();
    match reserve_one(throttle, rule, &subject, now).await {
        Reserved::Counted {
            recorded: again, ..
        } => {
            assert_eq!(again.failures, recorded.failures)
        }
        other => panic!("the released block still holds: {other:?}"),
    }

    if lapses {
        let later = now + rule.cap_ms + rule.window_ms + 1;
        match reserve_one(throttle, rule, &subject, later).await {
            Reserved::Counted { recorded, .. } => {
                assert_eq!((recorded.failures, recorded.blocked_ms), (1, 0))
            }
            other => panic!("refused after the window: {other:?}"),
        }
    }
    throttle.clear(rule, &subject).await.unwrap();
}

async fn reservations_block_double_and_cap_by_the_rule(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    walk_the_rule(&app.state.throttle, true).await;
}

/// The same walk through Redis's scripts, so that both stores keep one rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reservations_block_double_and_cap_by_the_rule() {
    if local_redis().await.is_none() {
        return;
    }
    let prefix = format!("gh_test_{:016x}:", rand::thread_rng().gen::<u64>());
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
        ],
    )
    .await;
    walk_the_rule(&app.state.throttle, false).await;
    subjects_reserved_together_are_judged_each_on_its_own(&app.state.throttle).await;
}
