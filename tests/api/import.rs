//! `gatehouse import-flask`: an old-format database built from the schema document
//! (shared/spec/seed-schema.md), with Werkzeug hashes made here by the same scrypt
//! parameters, imported on both databases; old users then sign in through the server.

use std::path::{Path, PathBuf};

use gatehouse::import::{self, Options};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::helpers::{Backend, TestApp};
use crate::on_both_databases;

const OLD_PASSWORD: &str = "SecureP@ssw0rd";
/// Werkzeug 3.0.3's pbkdf2 test vector of `SecureP@ssw0rd` from the schema document.
const PBKDF2_HASH: &str = "pbkdf2:sha256:600000$7j1NQyc5DlBstNeo$58e4dbb876c8f13553f589cc0cb5cc0290eeae2192bec7164388327d0153751a";
const TOTP_SECRET: &str = "E2L4ZTBSU4337MHMEOKGA3XD4BYPPQIM";

/// `generate_password_hash(password)` of Werkzeug 3.0.3: scrypt N=2^15, r=8, p=1,
/// 64 bytes, the 16-character salt used as its own text.
fn werkzeug_scrypt(password: &str, salt: &str) -> String {
    let params = scrypt::Params::new(15, 8, 1, 64).unwrap();
    let mut out = [0u8; 64];
    scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out).unwrap();
    format!("scrypt:32768:8:1${salt}${}", hex::encode(out))
}

/// The DDL of §2, as Alembic generated it for SQLite.
const OLD_SCHEMA: &str = r#"
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
CREATE TABLE board (id INTEGER NOT NULL, name VARCHAR(100) NOT NULL, PRIMARY KEY (id));
CREATE TABLE log_entry (id INTEGER NOT NULL, timestamp DATETIME, log_level VARCHAR(10), message TEXT, client_ip VARCHAR(15), user_agent TEXT, user_email VARCHAR(60), PRIMARY KEY (id));
CREATE TABLE roles (id INTEGER NOT NULL, name VARCHAR(50), PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE stripe_products (id INTEGER NOT NULL, product_id VARCHAR(255) NOT NULL, name VARCHAR(255) NOT NULL, description TEXT, active BOOLEAN, attributes JSON, caption VARCHAR(255), images JSON, livemode BOOLEAN, product_metadata JSON, package_dimensions JSON, shippable BOOLEAN, statement_descriptor VARCHAR(22), type VARCHAR(50) NOT NULL, unit_label VARCHAR(12), created_at DATETIME, updated_at DATETIME, url VARCHAR(255), PRIMARY KEY (id), UNIQUE (product_id));
CREATE TABLE user (id INTEGER NOT NULL, first_name VARCHAR(60), last_name VARCHAR(60), username VARCHAR(80) NOT NULL, email VARCHAR(120) NOT NULL, password_hash VARCHAR(128), twofa_secret VARCHAR(60), twofa_enabled BOOLEAN NOT NULL, stripe_customer_id VARCHAR(60), verified BOOLEAN NOT NULL, created_at DATETIME, PRIMARY KEY (id), UNIQUE (email), UNIQUE (twofa_secret), UNIQUE (username));
CREATE TABLE "column" (id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, position INTEGER NOT NULL, board_id INTEGER NOT NULL, PRIMARY KEY (id), FOREIGN KEY(board_id) REFERENCES board (id));
CREATE TABLE "order" (id INTEGER NOT NULL, user_id INTEGER NOT NULL, product_id VARCHAR(120) NOT NULL, quantity INTEGER NOT NULL, price FLOAT NOT NULL, timestamp DATETIME, PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES user (id));
CREATE TABLE permissions (id INTEGER NOT NULL, name VARCHAR(50), role_id INTEGER, PRIMARY KEY (id), CONSTRAINT fk_permissions_role FOREIGN KEY(role_id) REFERENCES roles (id));
CREATE TABLE stripe_prices (id INTEGER NOT NULL, price_id VARCHAR(255) NOT NULL, product_id VARCHAR(255) NOT NULL, unit_amount FLOAT NOT NULL, currency VARCHAR(10) NOT NULL, recurring JSON, active BOOLEAN, billing_scheme VARCHAR(50), created_at DATETIME, updated_at DATETIME, tiers JSON, tiers_mode VARCHAR(50), transform_quantity JSON, lookup_key VARCHAR(255), price_metadata JSON, nickname VARCHAR(255), type VARCHAR(50), PRIMARY KEY (id), FOREIGN KEY(product_id) REFERENCES stripe_products (product_id), UNIQUE (price_id));
CREATE TABLE user_roles (user_id INTEGER NOT NULL, role_id INTEGER NOT NULL, PRIMARY KEY (user_id, role_id), CONSTRAINT fk_user_roles_role FOREIGN KEY(role_id) REFERENCES roles (id), CONSTRAINT fk_user_roles_user FOREIGN KEY(user_id) REFERENCES user (id));
CREATE TABLE stripe_subscriptions (id INTEGER NOT NULL, subscription_id VARCHAR(255) NOT NULL, user_id INTEGER NOT NULL, price_id VARCHAR(255) NOT NULL, status VARCHAR(50) NOT NULL, previous_status VARCHAR(50), current_period_end DATETIME NOT NULL, trial_end DATETIME, created_at DATETIME, PRIMARY KEY (id), FOREIGN KEY(price_id) REFERENCES stripe_prices (price_id), FOREIGN KEY(user_id) REFERENCES user (id), UNIQUE (subscription_id));
CREATE TABLE ticket (id INTEGER NOT NULL, title VARCHAR(200) NOT NULL, description TEXT, position INTEGER NOT NULL, column_id INTEGER NOT NULL, created_at DATETIME, PRIMARY KEY (id), FOREIGN KEY(column_id) REFERENCES "column" (id));
"#;

/// id, username, email, password hash, 2FA secret, 2FA on, verified, Stripe customer.
type OldUser<'a> = (
    i64,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    i64,
    i64,
    Option<&'a str>,
);

/// An old deployment with the quirks of §7: case-variant emails, a username that is
/// an email, an unverified account, an unknown hash format, orphans, loose positions,
/// a token in the log, truncated float money.
async fn old_database(dir: &Path) -> PathBuf {
    let path = dir.join("default.db");
    // Foreign keys were never enforced by the old service (§1), and orphans exist.
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(false)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(OLD_SCHEMA).execute(&mut conn).await.unwrap();
    let admin = werkzeug_scrypt(OLD_PASSWORD, "ZtkX0d91git46Lmu");
    let carol = werkzeug_scrypt("weak", "lVxi7lCoUtjs4QBx");
    let users: [OldUser; 6] = [
        (
            1,
            "admin",
            "admin@example.com",
            Some(&admin),
            None,
            0,
            1,
            None,
        ),
        (
            2,
            "bob@example.com",
            "Bob@Example.com ",
            Some(PBKDF2_HASH),
            None,
            0,
            1,
            Some("cus_Bob"),
        ),
        (
            3,
            "alice",
            "Alice@Example.com",
            Some(&admin),
            Some(TOTP_SECRET),
            1,
            1,
            None,
        ),
        (
            4,
            "alice2",
            "alice@example.com",
            Some(&admin),
            None,
            0,
            0,
            None,
        ),
        (
            5,
            "carol",
            "carol@example.com",
            Some(&carol),
            None,
            0,
            0,
            None,
        ),
        (
            6,
            "dave",
            "dave@example.com",
            Some("sha256$salt$abc"),
            None,
            0,
            1,
            None,
        ),
    ];
    for (id, username, email, hash, secret, twofa, verified, customer) in users {
        sqlx::query("INSERT INTO user VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, '2026-11-30 13:22:25.511350')")
            .bind(id)
            .bind(username.split('@').next().unwrap())
            .bind(username)
            .bind(email)
            .bind(hash)
            .bind(secret)
            .bind(twofa)
            .bind(customer)
            .bind(verified)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(
        r#"
        INSERT INTO roles VALUES (1, 'Super Admin'), (2, 'Admin'), (3, 'Editors'), (4, NULL);
        INSERT INTO permissions VALUES (1, 'view_dashboard', 1), (2, 'publish', 3), (3, 'edit', 3), (4, 'stray', 99), (5, 'view_dashboard', 2);
        INSERT INTO user_roles VALUES (1, 1), (2, 2), (2, 3), (99, 1), (4, 3);
        INSERT INTO board VALUES (297, 'Sprint 1');
        INSERT INTO "column" VALUES (1, 'To Do''s', 1, 297), (2, 'In progress', 2, 297), (3, 'Empty pos', '', 297), (4, 'Half', 2.5, 297), (5, 'Lost', 1, 999);
        INSERT INTO ticket VALUES (1, 'Write spec', NULL, 2, 2, '2026-11-30 13:26:07.401034'), (2, 'No desc', NULL, 0, 0, NULL), (3, 'Second', 'body', 2, 2, NULL);
        INSERT INTO log_entry VALUES (11, '2026-11-30 13:26:07.017413', 'INFO', 'Before Request: GET http://localhost/reset_password/"a@b.c".aw15bg.0STu - Client IP: 2001:db8:85a3::8a2e:370:7334 - User Agent: probe/1.0', '2001:db8:85a3::8a2e:370:7334', 'probe/1.0', 'Bob@Example.com ');
        INSERT INTO stripe_products (id, product_id, name, active, type, created_at) VALUES (1, 'prod_1', 'Pro plan', 1, 'service', '2026-11-30 13:26:07.991573');
        INSERT INTO stripe_prices (id, price_id, product_id, unit_amount, currency, recurring, active) VALUES (1, 'price_2', 'prod_1', 19.98, 'usd', '{"interval": "month", "interval_count": 1}', 1);
        INSERT INTO stripe_subscriptions VALUES (1, 'sub_1', 2, 'price_1', 'canceled_at_period_end', NULL, '2025-12-31 19:00:00.000000', NULL, '2026-11-30 13:26:08.029282');
        INSERT INTO "order" VALUES (1, 2, 'price_2', 2, 39.96, '2026-11-30 13:26:08.065108'), (2, 2, 'price_2', 2, 39.96, '2026-11-30 13:27:08'), (3, 42, 'price_2', 1, 19.98, NULL);
        "#,
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    path
}

fn options(from: &Path, dry_run: bool) -> Options {
    Options {
        from: from.to_owned(),
        dry_run,
        server_utc_offset: time::UtcOffset::from_hms(-5, 0, 0).unwrap(),
        progress: false,
    }
}

async fn login(app: &TestApp, who: &str, password: &str) -> (StatusCode, Value) {
    let res = app
        .post(
            "/login",
            json!({ "username_or_email": who, "password": password }),
        )
        .await;
    (res.status(), res.json().await.unwrap())
}

async fn import_takes_over_an_old_deployment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let old = old_database(app.dir.path()).await;
    let before = std::fs::read(&old).unwrap();
    let db = &app.state.db;
    let key = app.state.config.secret_key.expose_secret();

    let dry = import::run(db, key, &options(&old, true)).await.unwrap();
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM users").await,
        0,
        "a dry run writes nothing"
    );
    let real = import::run(db, key, &options(&old, false)).await.unwrap();
    assert_eq!(
        dry.render(None)
            .replace("would import", "imported")
            .lines()
            .skip(2)
            .collect::<Vec<_>>(),
        real.render(None).lines().skip(2).collect::<Vec<_>>(),
        "the dry run plans what the real run does"
    );

    let users = real.table("user").unwrap();
    assert_eq!(
        (users.read, users.imported, users.skipped, users.renamed),
        (6, 5, 1, 1)
    );
    let text = real.render(None);
    for expected in [
        "renamed  user 2 (bob@example.com): username \"bob@example.com\"",
        "skipped  user 4 (alice2): unverified, and its email alice@example.com belongs",
        "user 6 (dave): password hash of an unknown format (\"sha256\")",
        "skipped  role 4 (): the role has no name",
        "skipped  user 99 → role 1: the user does not exist",
        "skipped  column 5: its board 999 does not exist",
        "skipped  ticket 2: its column 0 does not exist",
        "skipped  order 3: its user 42 does not exist",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(!text.contains("ZtkX0d91"), "no hash in the report");

    // Columns and tickets dense in the old id order; money exact; the token gone.
    let positions: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, position FROM board_columns ORDER BY position")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        positions
            .iter()
            .map(|(n, p)| (n.as_str(), *p))
            .collect::<Vec<_>>(),
        [
            ("To Do's", 0),
            ("In progress", 1),
            ("Empty pos", 2),
            ("Half", 3)
        ]
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM tickets WHERE sort_order IN (0, 1)")
            .await,
        2
    );
    assert_eq!(
        app.scalar("SELECT unit_amount FROM billing_prices").await,
        1998
    );
    assert_eq!(
        app.scalar("SELECT CAST(SUM(amount_total) AS BIGINT) FROM billing_orders")
            .await,
        7992
    );
    assert_eq!(
        app.scalar(
            "SELECT current_period_end FROM billing_subscriptions WHERE cancel_at_period_end = 1"
        )
        .await,
        1_767_225_600
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM activity_logs WHERE message LIKE '%aw15bg%'")
            .await,
        0
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM activity_logs WHERE path = '/reset_password/[redacted]' AND user_id IS NOT NULL").await, 1);

    // The 2FA secret is sealed for its new account.
    let alice: i64 = app
        .scalar("SELECT id FROM users WHERE username = 'alice'")
        .await;
    let sealed: String = sqlx::query_scalar("SELECT secret_enc FROM twofa WHERE user_id = $1")
        .bind(alice)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(
        gatehouse::twofa::sealed::open(key, alice, &sealed).unwrap(),
        data_encoding::BASE32_NOPAD
            .decode(TOTP_SECRET.as_bytes())
            .unwrap()
    );

    // A second run adds nothing.
    let counts = "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM roles) + (SELECT COUNT(*) FROM user_roles) \
        + (SELECT COUNT(*) FROM role_permissions) + (SELECT COUNT(*) FROM tickets) + (SELECT COUNT(*) FROM activity_logs WHERE kind = 'access' AND details LIKE '%flask%') \
        + (SELECT COUNT(*) FROM billing_orders) + (SELECT COUNT(*) FROM billing_subscriptions)";
    let once = app.scalar(counts).await;
    let again = import::run(db, key, &options(&old, false)).await.unwrap();
    assert_eq!(app.scalar(counts).await, once);
    assert!(
        again
            .tables
            .iter()
            .all(|t| t.imported == 0 || t.name == "user_roles"),
        "{}",
        again.render(None)
    );
    assert_eq!(again.table("user").unwrap().already, 5);
    assert_eq!(
        std::fs::read(&old).unwrap(),
        before,
        "the old database is never changed"
    );

    // Old passwords work, scrypt and pbkdf2, and are rehashed at the first sign-in.
    let (status, body) = login(&app, "admin", OLD_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["user"]["roles"]
        .as_array()
        .unwrap()
        .contains(&json!("Super Admin")));
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'admin'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let (status, _) = login(&app, "admin", OLD_PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the new hash holds the same password"
    );
    let (status, body) = login(&app, "bob@example.com", OLD_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["username"], "bob_example.com");
    let (status, _) = login(&app, "dave", "anything").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn an_unverified_account_with_the_right_password_gets_a_fresh_link(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let old = old_database(app.dir.path()).await;
    import::run(
        &app.state.db,
        app.state.config.secret_key.expose_secret(),
        &options(&old, false),
    )
    .await
    .unwrap();
    let (status, body) = login(&app, "carol", "weak").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "email_not_verified", "{body}");
    let link = app.email_link("carol@example.com", "Verify").await;
    // Another try within the interval: the same answer, and no second link.
    let (status, again) = login(&app, "carol", "weak").await;
    assert_eq!((status, &again), (StatusCode::UNAUTHORIZED, &body));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM email_tokens").await, 1);
    // A wrong password sends nothing.
    let (status, _) = login(&app, "carol", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM email_tokens").await, 1);
    assert_eq!(
        app.client.get(link).send().await.unwrap().status(),
        StatusCode::OK
    );
    let (status, body) = login(&app, "carol", "weak").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a weak carried-over password still signs in: {body}"
    );
}

async fn a_missing_file_is_an_error_not_a_new_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let missing = app.dir.path().join("nothing-here.db");
    let err = import::run(
        &app.state.db,
        app.state.config.secret_key.expose_secret(),
        &options(&missing, true),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nothing-here.db"), "{err}");
    assert!(!missing.exists());
}

on_both_databases!(
    import_takes_over_an_old_deployment,
    an_unverified_account_with_the_right_password_gets_a_fresh_link,
    a_missing_file_is_an_error_not_a_new_database,
);

/// The command as an operator runs it: the dry run prints the report and writes
/// nothing; the real run prints it and writes it whole to the report file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_the_report_and_writes_it_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_database(dir.path()).await;
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("gh.db").display()),
            )
            .env("SECRET_KEY", "cli-secret-key-that-is-long-enough-0123")
            .arg("import-flask")
            .arg("--from")
            .arg(&old)
            .args(args)
            .output()
            .unwrap()
    };
    let dry = run(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(text.contains("dry run: nothing written"), "{text}");
    assert!(text.contains("renamed  user 2"), "{text}");
    assert!(!dir.path().join("import-flask-report.txt").exists());

    let real = run(&["--report", "moved.txt"]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let file = std::fs::read_to_string(dir.path().join("moved.txt")).unwrap();
    assert!(file.contains("skipped  order 3"), "{file}");
    assert!(String::from_utf8_lossy(&real.stdout).contains("full report: moved.txt"));

    let bad = run(&["--server-utc-offset", "somewhere"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses a bad offset");
}
