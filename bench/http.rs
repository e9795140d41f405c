//! The HTTP benchmark: `cargo bench --bench http`.
//!
//! Starts Gatehouse in this process on a loopback port over a fresh SQLite file, signs
//! up the benchmark user and a few more (the login phase's), marks their emails
//! verified, makes the first an Admin (creating boards needs `edit`) and logs in over
//! HTTP. Then, phase by phase, a fixed number of clients each on its own keep-alive
//! connection call one route as fast as answers come back: a warm-up that is thrown
//! away, then a measured slice in which every latency goes into a histogram. In the same run, the server's
//! own `PasswordHasher` verifies the user's password with no HTTP around it, one caller
//! per hash permit: the rate of hashes a login cannot beat. Logins run with two callers
//! per permit, each as its own account, so that a permit is always wanted while
//! another login waits for its database (the rate set beside the hash's); and again
//! with one caller per permit, where those waits leave a core idle (the CPU per login
//! set beside the hash's, at the same concurrency). A phase calls the session lookup every authenticated
//! request makes, with no HTTP around it, to show what the database alone allows. The
//! last two are the old service's other measured workloads: the first page of the
//! activity log (`GET /logs?page=1`) and creating a board (`POST /boards` with the
//! CSRF header).
//!
//! The machine is shared (by the load generator, and by whatever else runs), so the
//! phases take turns in rounds: each phase gets one slice per round and the figures add
//! the slices up. A change in background load then weighs on every phase alike instead
//! of on whichever ran at the wrong moment; the spread across rounds is printed.
//!
//! It prints requests per second and p50/p99 latency per phase, where the CPU went, and
//! the two ratios issue 2 sets targets for.
//!
//! Settings, from the environment:
//! - `BENCH_SECONDS`: measured time per phase, over all rounds (default 5);
//! - `BENCH_ROUNDS`: how many slices that time is cut into (default 5);
//! - `BENCH_WARMUP_SECONDS`: the warm-up before each slice (default 1);
//! - `BENCH_CONNECTIONS`: concurrent clients for the GET routes (default 16); the raw
//!   hash uses the server's hash concurrency (one per CPU), login twice that and once
//!   more the same;
//! - `BENCH_CLIENT_THREADS`: threads of the load generator (default: one per CPU);
//! - `BENCH_DATABASE_URL`: a PostgreSQL URL to run over instead of SQLite, in a fresh
//!   schema that is dropped afterwards. On either, measuring starts once the session
//!   cache is trusted (its listener connected, its change log followed), as it is in a
//!   running service; `SESSION_CACHE=off` measures without it;
//! - `RUST_LOG`: the server's log filter. The default here is `warn`, so the per-request
//!   `info` line production writes is not included; `RUST_LOG=info cargo bench --bench
//!   http 2>/dev/null` includes its cost without measuring a terminal.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "schema.rs"]
mod schema;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use gatehouse::app::{self, AppState};
use gatehouse::auth::session;
use gatehouse::config::{Config, LogFormat, Vars};
use gatehouse::db::Db;
use gatehouse::telemetry;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use secrecy::ExposeSecret;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use schema::env_number;

const USERNAME: &str = "bench";
const PASSWORD: &str = "Granite-Violin-42-Lantern";
/// Thread names, by which the CPU accounting tells the parts of this process apart.
const SERVER_THREADS: &str = "gh-server";
const CLIENT_THREADS: &str = "bench-client";
/// sqlx's `sqlx-sqlite-worker-N`, as the kernel keeps it (15 bytes).
const SQLITE_THREADS: &str = "sqlx-sqlite-wor";

const HEALTHZ: &str = "GET /healthz";
const CHECK_AUTH: &str = "GET /check_auth_status";
const USER_DETAILS: &str = "GET /current_user_details";
const LOGIN: &str = "POST /login";
/// The same with one caller per hash permit: each login's database round trips leave
/// its core idle, so this shows a login's latency more than the rate a server sustains.
const LOGIN_PER_PERMIT: &str = "POST /login, 1 per permit";
const LOG_PAGE: &str = "GET /logs";
const BOARD: &str = "POST /boards";
/// The old service's authenticated GETs per second, their p99, and logins per second.
const OLD_AUTH_GET_RATE: f64 = 1_116.0;
const OLD_AUTH_GET_P99_MS: f64 = 112.0;
const OLD_LOGIN_RATE: f64 = 19.0;
/// The old service's log pages and board creations per second.
const OLD_LOG_PAGE_RATE: f64 = 730.0;
const OLD_BOARD_RATE: f64 = 368.0;
const HASH: &str = "Argon2id verify, no HTTP";
const LOOKUP: &str = "session lookup, no HTTP";

struct Settings {
    warmup: Duration,
    rounds: u32,
    slice: Duration,
    connections: usize,
    cpus: usize,
    client_threads: usize,
    log_filter: String,
}

impl Settings {
    fn from_env() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let measured = env_number("BENCH_SECONDS", 5).max(1);
        let rounds = env_number("BENCH_ROUNDS", 5).clamp(1, 1000) as u32;
        Self {
            warmup: Duration::from_secs(env_number("BENCH_WARMUP_SECONDS", 1)),
            rounds,
            slice: Duration::from_secs(measured) / rounds,
            connections: env_number("BENCH_CONNECTIONS", 16).max(1) as usize,
            cpus,
            client_threads: env_number("BENCH_CLIENT_THREADS", cpus as u64).max(1) as usize,
            log_filter: std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "warn".to_owned()),
        }
    }

    fn measured(&self) -> Duration {
        self.slice * self.rounds
    }
}

/// The server's runtime and the load generator's: separate, so that their threads
/// have names the CPU accounting can tell apart.
struct Runtimes {
    server: Runtime,
    client: Runtime,
}

fn main() {
    let settings = Settings::from_env();
    // Before any thread exists, so that setting the variable races with no reader.
    std::env::set_var("RUST_LOG", &settings.log_filter);
    telemetry::init(LogFormat::Json);

    let rt = Runtimes {
        // As many workers as `Runtime::new()` gives the real server.
        server: runtime(SERVER_THREADS, settings.cpus),
        client: runtime(CLIENT_THREADS, settings.client_threads),
    };
    let server = rt.server.block_on(Server::start());
    let addr = server.addr;

    let hashers = server.state.config.max_concurrent_hashes;
    // The login phase's callers are two per hash permit, each its own account, so that
    // a hash permit is always wanted while another login waits for its database, and
    // no account is throttled by its own concurrent logins.
    let login_users: Vec<String> = (0..2 * hashers)
        .map(|i| match i {
            0 => USERNAME.to_owned(),
            _ => format!("{USERNAME}{i}"),
        })
        .collect();
    for user in &login_users {
        rt.client.block_on(sign_up(addr, user));
        // The database is reached from the server's runtime, where its pool lives.
        rt.server.block_on(mark_verified(&server.state, user));
    }
    rt.server.block_on(make_admin(&server.state));
    let (token, csrf) = rt.client.block_on(log_in(addr));
    let stored_hash: String = rt
        .server
        .block_on(
            sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1")
                .bind(USERNAME)
                .fetch_one(server.state.db.pool()),
        )
        .expect("the benchmark user's password hash");

    let get = |path: &'static str, token: Option<&str>| {
        Work::Http(Call {
            method: Method::GET,
            path,
            cookie: token.map(|t| format!("session={t}")),
            csrf: None,
            body: None,
            expect: StatusCode::OK,
        })
    };
    let conns = settings.connections;
    let mut phases = vec![
        Phase::new(HEALTHZ, conns, get("/healthz", None)),
        Phase::new(CHECK_AUTH, conns, get("/check_auth_status", Some(&token))),
        Phase::new(
            USER_DETAILS,
            conns,
            get("/current_user_details", Some(&token)),
        ),
        // Next to login, so that both see the same background load.
        Phase::new(HASH, hashers, Work::Hash(stored_hash)),
        Phase::new(
            LOGIN,
            login_users.len(),
            Work::HttpEach(login_users.iter().map(|u| login_call(u)).collect()),
        ),
        Phase::new(LOGIN_PER_PERMIT, hashers, Work::Http(login_call(USERNAME))),
        Phase::new(LOOKUP, conns, Work::Lookup(token.clone())),
        Phase::new(LOG_PAGE, conns, get("/logs?page=1", Some(&token))),
        Phase::new(
            BOARD,
            conns,
            Work::Http(Call {
                method: Method::POST,
                path: "/boards",
                cookie: Some(format!("session={token}")),
                csrf: Some(csrf),
                body: Some(Bytes::from_static(br#"{"name": "Benchmark board"}"#)),
                expect: StatusCode::CREATED,
            }),
        ),
    ];

    print_preamble(&settings, hashers, &server.state);
    for round in 1..=settings.rounds {
        eprintln!("round {round} of {}", settings.rounds);
        // Every other round runs backwards, so that no phase always follows the same
        // one, and hash and login take turns going first.
        let order: Vec<usize> = if round % 2 == 1 {
            (0..phases.len()).collect()
        } else {
            (0..phases.len()).rev().collect()
        };
        for i in order {
            run_slice(&rt, &settings, &server.state, addr, &mut phases[i]);
        }
    }
    rt.client.block_on(still_logged_in(addr, &token));

    print_results(&settings, &phases);
    let activity = server.state.activity.clone();
    rt.server.block_on(server.stop());
    // Every request with a session writes an access line; past what the writer keeps
    // up with, the oldest lines are dropped (and counted) rather than slow requests.
    println!(
        "activity log: {} entries dropped over the run (queue full; requests are never held up by access lines)",
        activity.dropped()
    );
}

fn runtime(name: &str, threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Gatehouse on a loopback port, configured as in production except for the
/// environment name, the mail backend and a database of its own.
struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for the database");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port to listen on");
        let addr = listener.local_addr().expect("the listening address");
        let database_url = match std::env::var("BENCH_DATABASE_URL") {
            Ok(url) if !url.is_empty() => schema::fresh(&url, "gh_bench").await.0,
            _ => format!("sqlite://{}", dir.path().join("gatehouse.db").display()),
        };
        let vars = Vars::from_pairs([
            ("APP_ENV", "testing".to_owned()),
            ("BIND_ADDR", addr.to_string()),
            ("PUBLIC_URL", format!("http://{addr}")),
            ("DATA_DIR", dir.path().display().to_string()),
            ("DATABASE_URL", database_url),
            (
                "SECRET_KEY",
                "gatehouse-bench-secret-key-0123456789abc".to_owned(),
            ),
            ("MAIL_BACKEND", "log".to_owned()),
            (
                "SESSION_CACHE",
                std::env::var("SESSION_CACHE").unwrap_or_else(|_| "on".to_owned()),
            ),
        ]);
        let config = Config::from_vars(&vars).expect("the benchmark's configuration");
        let db = Db::connect(config.database_url.expose_secret())
            .await
            .expect("a migrated database");
        let state = AppState::new(config, db).expect("the application state");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        if state.config.session_cache {
            state.sessions.until_trusted().await;
        }
        Self {
            addr,
            state,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(20), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("the server stopped with an error: {e:#}"),
            Ok(Err(e)) => eprintln!("the server panicked: {e}"),
            Err(_) => eprintln!("the server did not stop within 20 s"),
        }
        schema::drop(self.state.config.database_url.expose_secret()).await;
    }
}

/// One request, as every client of a phase sends it.
#[derive(Clone)]
struct Call {
    method: Method,
    path: &'static str,
    cookie: Option<String>,
    /// The session's CSRF token, for unsafe methods.
    csrf: Option<String>,
    body: Option<Bytes>,
    expect: StatusCode,
}

impl Call {
    fn request(&self, addr: SocketAddr) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(header::HOST, addr.to_string())
            .header(header::USER_AGENT, "gatehouse-bench");
        if let Some(cookie) = &self.cookie {
            req = req.header(header::COOKIE, cookie);
        }
        if let Some(csrf) = &self.csrf {
            req = req.header("x-csrftoken", csrf);
        }
        if self.body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        req.body(Full::new(self.body.clone().unwrap_or_default()))
            .expect("a well-formed request")
    }
}

/// One HTTP/1.1 keep-alive connection, with no pool, cookie jar or redirect logic in
/// the way: what the load generator spends is CPU the server does not get.
struct Connection {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("a connection to the server");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 handshake");
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes the connection.
            let _ = conn.await;
        });
        Self { addr, sender }
    }

    /// Sends the call and reads the whole answer, so the connection can be reused.
    async fn send(&mut self, call: &Call) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let res = self
            .sender
            .send_request(call.request(self.addr))
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

async fn call_once(addr: SocketAddr, call: &Call) -> (StatusCode, HeaderMap, Bytes) {
    let mut conn = Connection::open(addr).await;
    conn.send(call)
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", call.method, call.path))
}

/// Signs a benchmark user up over HTTP, as a real user would.
async fn sign_up(addr: SocketAddr, username: &str) {
    let body = serde_json::json!({
        "first_name": "Bench",
        "last_name": "User",
        "username": username,
        "email": format!("{username}@example.com"),
        "password": PASSWORD,
    });
    let signup = Call {
        method: Method::POST,
        path: "/signup",
        cookie: None,
        csrf: None,
        body: Some(Bytes::from(body.to_string())),
        expect: StatusCode::CREATED,
    };
    let (status, _, body) = call_once(addr, &signup).await;
    assert_eq!(
        status,
        signup.expect,
        "signup failed: {}",
        String::from_utf8_lossy(&body)
    );
}

/// Marks a user's email verified, as following the emailed link would.
async fn mark_verified(state: &AppState, username: &str) {
    let verified = sqlx::query("UPDATE users SET email_verified = 1 WHERE username = $1")
        .bind(username)
        .execute(state.db.writer())
        .await
        .expect("marking the benchmark user verified");
    assert_eq!(verified.rows_affected(), 1, "the benchmark user exists");
}

/// Makes the benchmark user an Admin, whose `edit` permission creating boards needs.
async fn make_admin(state: &AppState) {
    let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(USERNAME)
        .fetch_one(state.db.pool())
        .await
        .expect("the benchmark user's id");
    gatehouse::rbac::grant_role(state.db.writer(), id, "Admin")
        .await
        .expect("the benchmark user made an Admin");
}

/// A benchmark user's login, with a JSON body.
fn login_call(username: &str) -> Call {
    Call {
        method: Method::POST,
        path: "/login",
        cookie: None,
        csrf: None,
        body: Some(Bytes::from(
            serde_json::json!({ "username_or_email": username, "password": PASSWORD }).to_string(),
        )),
        expect: StatusCode::OK,
    }
}

/// Logs in over HTTP and returns the `session` cookie's value and the CSRF token.
async fn log_in(addr: SocketAddr) -> (String, String) {
    let (status, headers, body) = call_once(addr, &login_call(USERNAME)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "login failed: {}",
        String::from_utf8_lossy(&body)
    );
    let cookie = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie in the login answer")
        .to_owned();
    still_logged_in(addr, &cookie).await;
    let answer: serde_json::Value =
        serde_json::from_slice(&body).expect("the login answer is JSON");
    let csrf = answer["csrf_token"]
        .as_str()
        .expect("a CSRF token in the login answer")
        .to_owned();
    (cookie, csrf)
}

/// `GET /check_auth_status` answers 200 whether or not the session is live, so the
/// phases check only the status; this checks that the session really is live.
async fn still_logged_in(addr: SocketAddr, cookie: &str) {
    let check = Call {
        method: Method::GET,
        path: "/check_auth_status",
        cookie: Some(format!("session={cookie}")),
        csrf: None,
        body: None,
        expect: StatusCode::OK,
    };
    let (status, _, body) = call_once(addr, &check).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert!(
        status == StatusCode::OK && answer["success"] == true,
        "the benchmark session is not live: {status} {}",
        String::from_utf8_lossy(&body)
    );
}

/// When a slice's measurements count: completions inside `[start, end]`.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one caller saw in the measured slice, or what all saw in all slices.
struct Tally {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // Microseconds, from 1 µs to 60 s, to three significant figures.
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            errors: 0,
            first_error: None,
        }
    }

    /// Counts an operation that began at `started` and has just finished, if it
    /// finished inside the window.
    fn record(&mut self, window: &Window, started: Instant, outcome: Result<(), String>) {
        let finished = Instant::now();
        if finished < window.start || finished > window.end {
            return;
        }
        match outcome {
            Ok(()) => {
                let micros = (finished - started).as_micros().max(1);
                self.latencies.saturating_record(micros as u64);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies
            .add(&other.latencies)
            .expect("histograms with the same bounds");
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// What the callers of a phase do, over and over.
enum Work {
    /// Send this request over HTTP.
    Http(Call),
    /// Each caller sends its own request over HTTP: the n-th caller the n-th.
    HttpEach(Vec<Call>),
    /// Verify the benchmark password against this stored hash with the server's hasher.
    Hash(String),
    /// Resolve this session token as the server does for every request carrying it.
    Lookup(String),
}

/// One phase: what it does, with how many concurrent callers, and what it measured.
struct Phase {
    label: &'static str,
    concurrency: usize,
    work: Work,
    tally: Tally,
    slice_rates: Vec<f64>,
    cpu: Option<CpuUse>,
}

impl Phase {
    fn new(label: &'static str, concurrency: usize, work: Work) -> Self {
        Self {
            label,
            concurrency,
            work,
            tally: Tally::new(),
            slice_rates: Vec::new(),
            cpu: Some(CpuUse::default()),
        }
    }

    /// Successful operations per second over all slices.
    fn rate(&self, settings: &Settings) -> f64 {
        self.tally.latencies.len() as f64 / settings.measured().as_secs_f64()
    }

    /// CPU seconds the server side (everything in this process but the load
    /// generator) spent per successful operation.
    fn server_cpu_per_op(&self) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        let ticks = cpu.server + cpu.sqlite + cpu.rest_of_process;
        let ops = self.tally.latencies.len();
        (ops > 0).then(|| ticks as f64 / TICKS_PER_SECOND / ops as f64)
    }
}

/// Runs one slice of `phase`: starts its callers, takes CPU readings at the edges of
/// the measured window and adds what the callers saw to the phase.
fn run_slice(
    rt: &Runtimes,
    settings: &Settings,
    state: &AppState,
    addr: SocketAddr,
    phase: &mut Phase,
) {
    let start = Instant::now() + settings.warmup;
    let window = Window {
        start,
        end: start + settings.slice,
    };
    let callers: Vec<JoinHandle<Tally>> = (0..phase.concurrency)
        .map(|n| match &phase.work {
            Work::Http(call) => rt.client.spawn(http_caller(addr, call.clone(), window)),
            Work::HttpEach(calls) => {
                rt.client
                    .spawn(http_caller(addr, calls[n % calls.len()].clone(), window))
            }
            // The hasher and the session lookup run where the server runs them: on its
            // runtime, its blocking pool and its database pool.
            Work::Hash(stored) => {
                rt.server
                    .spawn(hash_caller(state.clone(), stored.clone(), window))
            }
            Work::Lookup(token) => {
                rt.server
                    .spawn(lookup_caller(state.clone(), token.clone(), window))
            }
        })
        .collect();
    let (tally, cpu) = rt.client.block_on(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let before = CpuReading::take();
        tokio::time::sleep_until(window.end.into()).await;
        let after = CpuReading::take();
        let mut tally = Tally::new();
        for caller in callers {
            tally.merge(caller.await.expect("a load caller panicked"));
        }
        (tally, before.zip(after).map(|(b, a)| a.since(&b)))
    });
    phase
        .slice_rates
        .push(tally.latencies.len() as f64 / settings.slice.as_secs_f64());
    phase.tally.merge(tally);
    phase.cpu = phase.cpu.take().zip(cpu).map(|(sum, cpu)| sum.plus(&cpu));
}

async fn http_caller(addr: SocketAddr, call: Call, window: Window) -> Tally {
    let mut conn = Connection::open(addr).await;
    let mut tally = Tally::new();
    while Instant::now() < window.end {
        let started = Instant::now();
        let outcome = match conn.send(&call).await {
            Ok((status, _, _)) if status == call.expect => Ok(()),
            Ok((status, _, body)) => Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
            Err(e) => {
                conn = Connection::open(addr).await;
                Err(e)
            }
        };
        tally.record(&window, started, outcome);
    }
    tally
}

/// The server's own hasher, with its OWASP parameters and its concurrency bound; no
/// HTTP and no SQL.
async fn hash_caller(state: AppState, stored: String, window: Window) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < window.end {
        let started = Instant::now();
        let outcome = match state.hasher.verify(PASSWORD, Some(&stored)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the password did not verify".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        tally.record(&window, started, outcome);
    }
    tally
}

/// The SQL that the authentication middleware runs for every request with a session
/// cookie, without the HTTP around it.
async fn lookup_caller(state: AppState, token: String, window: Window) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < window.end {
        let started = Instant::now();
        let outcome =
            match session::resolve(&state.db, &state.config, &state.sessions, &token).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("the session is not live".to_owned()),
                Err(e) => Err(e.to_string()),
            };
        tally.record(&window, started, outcome);
        // A lookup served from the cache never waits, so without this the callers
        // would hold the server's workers for the whole slice and its other tasks
        // (the log writer, the cache's listener, the pool's upkeep) would not run.
        tokio::task::consume_budget().await;
    }
    tally
}

/// CPU time so far, per thread of this process and for the whole machine, from
/// `/proc` (Linux only; elsewhere the CPU table is left out).
struct CpuReading {
    /// Thread id → (thread name, CPU ticks).
    threads: HashMap<String, (String, u64)>,
    process_ticks: u64,
    machine_busy_ticks: u64,
}

/// CPU ticks spent in a window, by each part of the machine.
#[derive(Default)]
struct CpuUse {
    server: u64,
    sqlite: u64,
    client: u64,
    rest_of_process: u64,
    other_processes: u64,
}

impl CpuUse {
    fn plus(&self, other: &CpuUse) -> CpuUse {
        CpuUse {
            server: self.server + other.server,
            sqlite: self.sqlite + other.sqlite,
            client: self.client + other.client,
            rest_of_process: self.rest_of_process + other.rest_of_process,
            other_processes: self.other_processes + other.other_processes,
        }
    }
}

/// `/proc` counts in USER_HZ, which Linux fixes at 100 for user space.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuReading {
    fn take() -> Option<Self> {
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let dir = entry.path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            if let Some(ticks) = stat_ticks(&stat) {
                let id = entry.file_name().to_string_lossy().into_owned();
                threads.insert(id, (name.trim().to_owned(), ticks));
            }
        }
        let process_ticks = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = machine
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …: busy is all but idle and
        // iowait.
        let machine_busy_ticks = fields
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| v)
            .sum();
        Some(Self {
            threads,
            process_ticks,
            machine_busy_ticks,
        })
    }

    /// What was spent between `earlier` and this reading. Threads that ended in
    /// between count under the rest of the process.
    fn since(&self, earlier: &CpuReading) -> CpuUse {
        let mut by_part = [0u64; 3];
        for (id, (name, ticks)) in &self.threads {
            let before = earlier.threads.get(id).map_or(0, |(_, t)| *t);
            let spent = ticks.saturating_sub(before);
            let part = if name.starts_with(SERVER_THREADS) {
                0
            } else if name.starts_with(SQLITE_THREADS) {
                1
            } else if name.starts_with(CLIENT_THREADS) {
                2
            } else {
                continue;
            };
            by_part[part] += spent;
        }
        let process = self.process_ticks.saturating_sub(earlier.process_ticks);
        let machine = self
            .machine_busy_ticks
            .saturating_sub(earlier.machine_busy_ticks);
        let named: u64 = by_part.iter().sum();
        CpuUse {
            server: by_part[0],
            sqlite: by_part[1],
            client: by_part[2],
            rest_of_process: process.saturating_sub(named),
            other_processes: machine.saturating_sub(process),
        }
    }
}

/// utime + stime of a `/proc/…/stat` line. The name field may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn print_preamble(settings: &Settings, hashers: usize, state: &AppState) {
    let cache = if state.config.session_cache {
        "on"
    } else {
        "off"
    };
    println!(
        "Gatehouse HTTP benchmark: {:?}, session cache {cache}, server and load generator \
         in one process",
        state.db.backend()
    );
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; run `cargo bench --bench http` for release figures");
    }
    println!(
        "machine: {} CPUs; server runtime {} threads; load generator {} threads",
        settings.cpus, settings.cpus, settings.client_threads
    );
    println!(
        "each phase: {} rounds of {:.1} s warm-up + {:.1} s measured ({:.1} s measured in all)",
        settings.rounds,
        settings.warmup.as_secs_f64(),
        settings.slice.as_secs_f64(),
        settings.measured().as_secs_f64(),
    );
    println!(
        "callers: GET routes and session lookup {} keep-alive connections or tasks; raw hash \
         {} (the server's hash concurrency); login {} (two per hash permit, each its own \
         account) and, in its own phase, {}",
        settings.connections,
        hashers,
        2 * hashers,
        hashers
    );
    let logging = if settings.log_filter == "warn" {
        " (the per-request info line is off)"
    } else {
        ""
    };
    println!(
        "server log filter: RUST_LOG={}{logging}; user: an ordinary account (role User)",
        settings.log_filter
    );
    println!();
}

fn print_results(settings: &Settings, phases: &[Phase]) {
    println!(
        "{:<27} {:>4} {:>8} {:>9} {:>17} {:>7} {:>7} {:>6}",
        "phase", "conc", "count", "per s", "slices min-max", "p50 ms", "p99 ms", "errors"
    );
    for phase in phases {
        let lat = &phase.tally.latencies;
        let ms = |q: f64| lat.value_at_quantile(q) as f64 / 1000.0;
        let min = phase
            .slice_rates
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = phase.slice_rates.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<27} {:>4} {:>8} {:>9.1} {:>8.1}-{:<8.1} {:>7.2} {:>7.2} {:>6}",
            phase.label,
            phase.concurrency,
            lat.len(),
            phase.rate(settings),
            min,
            max,
            ms(0.50),
            ms(0.99),
            phase.tally.errors
        );
    }
    for phase in phases {
        if let Some(e) = &phase.tally.first_error {
            println!("  first error in {}: {e}", phase.label);
        }
    }

    println!();
    println!(
        "CPU: cores busy on average while measuring (of {}); CPU µs per operation",
        settings.cpus
    );
    println!(
        "{:<27} {:>6} {:>6} {:>6} {:>6} {:>6}   {:>7} {:>7} {:>7}",
        "phase", "server", "sqlite", "client", "other", "others", "server", "sqlite", "client"
    );
    let seconds = settings.measured().as_secs_f64();
    for phase in phases {
        let Some(cpu) = &phase.cpu else {
            println!("{:<27} (no /proc here)", phase.label);
            continue;
        };
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
        let ops = phase.tally.latencies.len().max(1) as f64;
        let per_op = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / ops * 1e6;
        println!(
            "{:<27} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}   {:>7.0} {:>7.0} {:>7.0}",
            phase.label,
            cores(cpu.server),
            cores(cpu.sqlite),
            cores(cpu.client),
            cores(cpu.rest_of_process),
            cores(cpu.other_processes),
            per_op(cpu.server),
            per_op(cpu.sqlite),
            per_op(cpu.client),
        );
    }
    println!(
        "  server: its Tokio workers and blocking pool (handlers, Argon2); sqlite: sqlx's \
         SQLite\n  connection threads; client: the load generator; other: the rest of this \
         process;\n  others: every other process on the machine"
    );

    let others: u64 = phases
        .iter()
        .filter_map(|p| p.cpu.as_ref())
        .map(|c| c.other_processes)
        .sum();
    let others_cores = others as f64 / TICKS_PER_SECOND / seconds / phases.len() as f64;
    if others_cores > 0.1 * settings.cpus as f64 {
        println!(
            "  NOTE: other processes kept {others_cores:.2} cores busy on average. How much CPU \
             each phase got\n  then depended on them and on the scheduler, so the rates and \
             their ratios say as much about\n  that as about Gatehouse; CPU per operation \
             depends on it much less."
        );
    }

    let find = |label: &str| phases.iter().find(|p| p.label == label);
    let rate = |label: &str| find(label).map_or(0.0, |p| p.rate(settings));
    let cpu = |label: &str| find(label).and_then(Phase::server_cpu_per_op);
    let verdict = |met: bool| if met { "met" } else { "NOT MET" };

    println!();
    println!("targets, by rate (as issue 2 states them):");
    for label in [CHECK_AUTH, USER_DETAILS] {
        let ratio = rate(label) / rate(HEALTHZ);
        println!(
            "  {label} / {HEALTHZ} = {ratio:.3}  (at least 0.5: {})",
            verdict(ratio >= 0.5)
        );
    }
    let overhead = rate(HASH) / rate(LOGIN) - 1.0;
    println!(
        "  {LOGIN} / {HASH} = {:.3}: a login costs {:+.1} % over its hash  (under 10 %: {})",
        rate(LOGIN) / rate(HASH),
        overhead * 100.0,
        verdict(overhead < 0.10)
    );
    println!(
        "  {LOGIN_PER_PERMIT} / {HASH} = {:.3}: {:+.1} % (one caller per permit: its database \
         waits leave the core idle)",
        rate(LOGIN_PER_PERMIT) / rate(HASH),
        (rate(HASH) / rate(LOGIN_PER_PERMIT) - 1.0) * 100.0
    );
    if overhead < 0.0 {
        println!(
            "  (a login includes a hash, so a login rate above the hash rate only means the two \
             phases\n  got different shares of the machine: see the CPU table)"
        );
    }

    // The old Flask service (gunicorn, 2 workers), measured by issue 15 on a 2-core
    // machine with wrk at 32 connections.
    let p99_ms = |label: &str| {
        find(label).map_or(0.0, |p| {
            p.tally.latencies.value_at_quantile(0.99) as f64 / 1000.0
        })
    };
    println!("beside the old service (its figures from issue 15: wrk, 32 connections, 2 cores):");
    for (label, old_rate, old_p99, target) in [
        (
            USER_DETAILS,
            OLD_AUTH_GET_RATE,
            Some(OLD_AUTH_GET_P99_MS),
            Some(15.0),
        ),
        (LOGIN, OLD_LOGIN_RATE, None, None),
        (LOG_PAGE, OLD_LOG_PAGE_RATE, None, None),
        (BOARD, OLD_BOARD_RATE, None, None),
    ] {
        let times = rate(label) / old_rate;
        let goal = target.map_or(String::new(), |t: f64| {
            format!("  (at least {t:.0}×: {})", verdict(times >= t))
        });
        println!(
            "  {label}: {:.0}/s against {old_rate:.0}/s = {times:.1}×{goal}",
            rate(label)
        );
        if let Some(old_p99) = old_p99 {
            println!(
                "  {label} p99: {:.2} ms against {old_p99:.0} ms at {} connections  \
                 (under 5 ms at 32 connections: {})",
                p99_ms(label),
                settings.connections,
                verdict(p99_ms(label) < 5.0 && settings.connections >= 32)
            );
        }
    }

    // Rates depend on how much CPU the server got, which other processes (and the
    // load generator) decide; CPU per operation hardly does.
    println!("the same by the server's CPU time per operation (load generator excluded):");
    let Some(healthz) = cpu(HEALTHZ) else {
        println!("  (no CPU figures here)");
        return;
    };
    for label in [CHECK_AUTH, USER_DETAILS] {
        if let Some(this) = cpu(label) {
            let ratio = healthz / this;
            println!(
                "  {label}: {:.0} µs against {:.0} µs = {ratio:.3}  (at least 0.5: {})",
                this * 1e6,
                healthz * 1e6,
                verdict(ratio >= 0.5)
            );
        }
    }
    // By CPU a login is judged beside the hash at the same concurrency, one caller per
    // permit: with two per permit the cores are oversubscribed, which the hash phase
    // never is, and the switching and the caches it costs land on every login.
    if let (Some(login), Some(hash)) = (cpu(LOGIN_PER_PERMIT), cpu(HASH)) {
        let overhead = login / hash - 1.0;
        println!(
            "  {LOGIN_PER_PERMIT}: {:.1} ms against {:.1} ms per hash: {:+.1} %  (under 10 %: {})",
            login * 1e3,
            hash * 1e3,
            overhead * 100.0,
            verdict(overhead < 0.10)
        );
    }
    if let (Some(login), Some(hash)) = (cpu(LOGIN), cpu(HASH)) {
        println!(
            "  {LOGIN}: {:.1} ms against {:.1} ms per hash: {:+.1} % (two callers per permit)",
            login * 1e3,
            hash * 1e3,
            (login / hash - 1.0) * 100.0
        );
    }
}
