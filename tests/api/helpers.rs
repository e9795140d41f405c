//! The harness: a real Gatehouse on a loopback port over a fresh, migrated database
//! (a SQLite file, or a schema of its own in the PostgreSQL of `TEST_DATABASE_URL`),
//! and a cookie-keeping HTTP client that behaves like the Next.js client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse::app::{self, AppState};
use gatehouse::config::{Config, Vars};
use gatehouse::db::Db;
use rand::Rng;
use reqwest::{Method, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares each named `async fn(Backend)` as two tests, `name::sqlite` and
/// `name::postgres`. Without a reachable PostgreSQL (`TEST_DATABASE_URL`) the second
/// fails under `CI=true` and is skipped with one line otherwise.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::helpers::postgres_available().await {
                    return;
                }
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    )*};
}

pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Whether the PostgreSQL of `TEST_DATABASE_URL` answers; see [`service_missing`].
pub async fn postgres_available() -> bool {
    static REACHABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let reachable = *REACHABLE
        .get_or_init(|| async {
            let Some(url) = postgres_url() else {
                return false;
            };
            matches!(
                tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url))
                    .await,
                Ok(Ok(_))
            )
        })
        .await;
    if !reachable {
        service_missing("PostgreSQL (TEST_DATABASE_URL)");
    }
    reachable
}

/// A test that needs an outside service it cannot reach fails under `CI=true`, so
/// that CI never passes by testing nothing; elsewhere the skip is said once per run
/// and service.
pub fn service_missing(service: &'static str) {
    static SAID: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{service} is not reachable, and CI=true requires it"
    );
    let mut said = SAID.lock().unwrap();
    if !said.contains(&service) {
        said.push(service);
        eprintln!("{service} not reachable: the tests that need it are skipped");
    }
}

/// A strong password that passes the policy.
pub const PASSWORD: &str = "Granite-Violin-42-Lantern";

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    pub csrf: Mutex<Option<String>>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pg_schema: Option<String>,
}

/// A database for one test, and the URL that reaches it.
pub async fn fresh_database(backend: Backend, dir: &Path) -> (String, Option<String>) {
    match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.join("gatehouse.db").display()),
            None,
        ),
        Backend::Postgres => {
            let base = postgres_url().expect("TEST_DATABASE_URL");
            let schema = format!("gh_test_{:016x}", rand::thread_rng().gen::<u64>());
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            (
                format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                Some(schema),
            )
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts Gatehouse with the test defaults overridden by `vars`.
    pub async fn spawn_with(backend: Backend, vars: &[(&str, &str)]) -> Self {
        // TEST_LOG=1 shows the servers' logs (with --nocapture).
        if std::env::var_os("TEST_LOG").is_some() {
            gatehouse::telemetry::init(gatehouse::config::LogFormat::Pretty);
        }
        let dir = tempfile::tempdir().unwrap();
        let (database_url, pg_schema) = fresh_database(backend, dir.path()).await;
        let data_dir = dir.path().display().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public_url = format!("http://{addr}");
        let mut pairs: Vec<(String, String)> = [
            ("APP_ENV", "testing"),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("DATA_DIR", data_dir.as_str()),
            ("DATABASE_URL", database_url.as_str()),
            ("SECRET_KEY", "test-secret-key-that-is-long-enough-0123"),
            ("MAIL_BACKEND", "file"),
            ("MAIL_RETRY_BASE", "1s"),
            ("CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
            ("PUBLIC_URL", public_url.as_str()),
            // The API tests follow email links as JSON clients; the web UI's tests
            // put the default `/ui/` pages back.
            ("VERIFY_URL_TEMPLATE", "{PUBLIC_URL}/verify_email/{token}"),
            ("RESET_URL_TEMPLATE", "{PUBLIC_URL}/reset_password/{token}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        pairs.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_vars(&Vars::from_pairs(pairs)).unwrap();
        let db = Db::connect(config.database_url.expose_secret())
            .await
            .unwrap();
        let state = AppState::new(config, db).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Self {
            addr,
            state,
            client: client_with(Arc::clone(&jar)),
            jar,
            csrf: Mutex::new(None),
            dir,
            stop: Some(stop),
            server: Some(server),
            pg_schema,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The value of the `session` cookie the client holds.
    pub fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = self.url("/").parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("session="))
            .map(str::to_owned)
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Stops the server the way SIGTERM does and waits for it to finish. The database
    /// stays, for the test to inspect through a new connection.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), server)
                .await
                .expect("graceful shutdown within 20 s")
                .unwrap()
                .unwrap();
        }
    }

    /// Sends a request as the logged-in browser would: cookies, and the CSRF header
    /// on unsafe methods once a token is known.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.client.request(method.clone(), self.url(path));
        if method != Method::GET {
            if let Some(token) = self.csrf.lock().unwrap().clone() {
                req = req.header("X-CSRFToken", token);
            }
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn signup(&self, username: &str) -> Response {
        self.post(
            "/signup",
            json!({
                "first_name": "Test",
                "last_name": "User",
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            }),
        )
        .await
    }

    /// Signs up, follows the emailed verification link and logs in.
    pub async fn verified_user(&self, username: &str) -> Value {
        assert_eq!(self.signup(username).await.status(), StatusCode::CREATED);
        let link = self
            .email_link(&format!("{username}@example.com"), "Verify")
            .await;
        let res = self.client.get(link).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        self.login(username, PASSWORD).await
    }

    /// Logs in with a JSON body and remembers the CSRF token; returns the body.
    pub async fn login(&self, username_or_email: &str, password: &str) -> Value {
        let res = self
            .post(
                "/login",
                json!({ "username_or_email": username_or_email, "password": password }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "login of {username_or_email}");
        let body: Value = res.json().await.unwrap();
        *self.csrf.lock().unwrap() = Some(body["csrf_token"].as_str().unwrap().to_owned());
        body
    }

    /// Waits for the file backend to write a message to `to` whose subject contains
    /// `subject`, and returns the link in its text part.
    pub async fn email_link(&self, to: &str, subject: &str) -> String {
        let message = wait_for_file_email(&self.outbox_dir(), to, subject).await;
        link_in(&message)
    }

    /// Gives the user `role` directly in the database, as an operator would, and waits
    /// until this instance's session cache has seen the change (see
    /// `SessionCache::caught_up`).
    pub async fn grant(&self, user_id: i64, role: &str) {
        gatehouse::rbac::grant_role(self.state.db.writer(), user_id, role)
            .await
            .unwrap();
        self.state.sessions.caught_up().await;
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.db.pool())
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(schema) = self.pg_schema.take() {
            // Drop runs inside the test's runtime, so the clean-up gets its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) =
                        sqlx::PgConnection::connect(&postgres_url().unwrap_or_default()).await
                    {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

pub fn new_client() -> reqwest::Client {
    client_with(Arc::new(reqwest::cookie::Jar::default()))
}

fn client_with(jar: Arc<reqwest::cookie::Jar>) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub struct ParsedEmail {
    pub message_id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn parse_email(raw: &[u8]) -> ParsedEmail {
    let message = mail_parser::MessageParser::default().parse(raw).unwrap();
    let to = message
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_owned();
    ParsedEmail {
        message_id: message.message_id().unwrap_or_default().to_owned(),
        to,
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).unwrap_or_default().into_owned(),
        html: message.body_html(0).unwrap_or_default().into_owned(),
    }
}

pub fn link_in(email: &ParsedEmail) -> String {
    email
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no link in {:?}", email.text))
        .to_owned()
}

pub async fn wait_for_file_email(dir: &Path, to: &str, subject: &str) -> ParsedEmail {
    for _ in 0..200 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let raw = std::fs::read(entry.path()).unwrap();
                let email = parse_email(&raw);
                if email.to.eq_ignore_ascii_case(to) && email.subject.contains(subject) {
                    return email;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email to {to} about {subject:?} within 10 s");
}

pub async fn json(res: Response) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
}

/// The status and body of the answer to a request whose declared body is over the
/// limit. The limit is checked on `Content-Length` before anything else, so no body is
/// sent: a client writing one races the server closing the connection (and loses on a
/// busy machine, with a broken pipe instead of the answer).
pub async fn declared_oversized(base: &str, method: &Method, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        app::BODY_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: {answer}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// Asserts the contract's error shape and returns the message.
pub async fn expect_error(res: Response, status: StatusCode) -> String {
    assert_eq!(res.status(), status);
    assert!(res.headers().contains_key("x-request-id"));
    let body = json(res).await;
    assert_eq!(body["success"], false, "{body}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(body["error"], body["message"], "{body}");
    assert!(
        body["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    message.to_owned()
}
