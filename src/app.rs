//! The application: its state, its routes and their layers, and the server's life
//! from start to graceful shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::body::Limited;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::auth::cache::SessionCache;
use crate::auth::password::PasswordHasher;
use crate::auth::policy::Policy::Public;
use crate::auth::policy::Routes;
use crate::config::Config;
use crate::db::{self, Backend, Db};
use crate::error::{AppError, ErrorBody};
use crate::logs::ActivityLog;
use crate::mail::Mailer;
use crate::metrics::{self, Metrics};
use crate::throttle::Throttle;
use crate::{accounts, auth, billing, docs, http, kanban, logs, mail, openapi, rbac, twofa, ui};

/// Request bodies above this size are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach, behind one `Arc`. Every request clones the state
/// several times (each layer and extractor that takes it), so a clone is one reference
/// count rather than one per part: with a count per part, cloning and dropping the
/// state was a sixth of the CPU of a `GET /healthz`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub config: Arc<Config>,
    pub db: Db,
    pub hasher: PasswordHasher,
    pub mailer: Mailer,
    pub activity: ActivityLog,
    pub metrics: Arc<Metrics>,
    /// Brute-force counts, shared by every instance.
    pub throttle: Throttle,
    /// Resolved sessions, trusted only while kept fresh; see [`auth::cache`].
    pub sessions: SessionCache,
    /// Board changes for the live boards of the web UI; see [`kanban::events`].
    pub boards: kanban::events::BoardEvents,
    /// The Stripe client; `None` when billing is not configured.
    pub billing: Option<Arc<billing::Billing>>,
    /// Set by [`serve`]: one state has one activity log writer.
    served: AtomicBool,
}

impl AppState {
    pub fn new(config: Config, db: Db) -> anyhow::Result<Self> {
        let hasher = PasswordHasher::new(config.max_concurrent_hashes)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let activity = ActivityLog::new(logs::writer::QUEUE_CAPACITY);
        let throttle = Throttle::new(&db, &config)?;
        let sessions = SessionCache::new((db.backend() == Backend::Postgres).then(|| db.clone()));
        let billing = billing::from_config(&config);
        Ok(Self(Arc::new(Shared {
            config: Arc::new(config),
            db,
            hasher,
            mailer: Mailer::default(),
            activity,
            metrics: Arc::new(Metrics::default()),
            throttle,
            sessions,
            boards: kanban::events::BoardEvents::default(),
            billing,
            served: AtomicBool::new(false),
        })))
    }
}

/// Every route of the service with the policy that guards it.
pub fn routes() -> Routes {
    Routes::new()
        .api(Public, routes!(index))
        .api(Public, routes!(healthz))
        .api(Public, routes!(readyz))
        .api(Public, routes!(metrics::serve))
        .api(Public, routes!(openapi::serve))
        .merge(accounts::routes())
        .merge(twofa::routes())
        .merge(logs::routes())
        .merge(rbac::routes())
        .merge(kanban::routes())
        .merge(billing::routes())
        .merge(ui::routes())
        .merge(docs::routes())
}

/// The routes with the layers they all share.
///
/// Every layer goes on in one `Router::layer` call: each call wraps every route in a
/// box of its own, and a request clones the boxes below each layer it passes, so layers
/// added one call at a time cost allocations that grow with the square of their number
/// (126 of a `GET`'s 277 with eleven calls).
pub fn router(state: AppState) -> Router {
    let request_id_header = HeaderName::from_static(http::REQUEST_ID_HEADER);
    // Outermost first: a request passes them top to bottom, its answer bottom to top.
    let layers = ServiceBuilder::new()
        .map_request(http::drop_unsafe_request_id)
        .layer(SetRequestIdLayer::new(
            request_id_header.clone(),
            http::NewRequestId,
        ))
        .layer(PropagateRequestIdLayer::new(request_id_header))
        .map_request(http::identify_client(state.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(http::RequestSpan)
                .on_request(())
                .on_response(http::Served)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(http::observe(state.clone()))
        .map_response(http::security_headers(state.config.is_production()))
        .layer(http::json_errors())
        .layer(cors(&state.config))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        // The body limit wraps the request's body and the answer's in types of its own;
        // the layers around it take axum's.
        .map_response(IntoResponse::into_response)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .map_request(|req: axum::http::Request<Limited<Body>>| req.map(Body::new))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(http::admit())
        .layer(auth::authenticate(state.clone()));
    routes()
        .into_router(&state)
        .fallback(not_found)
        .layer(layers)
        .with_state(state)
}

fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static(auth::CSRF_HEADER),
        ])
        .expose_headers([HeaderName::from_static(http::REQUEST_ID_HEADER)])
        .max_age(Duration::from_secs(600))
}

/// The old service's greeting.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "message": "Hello Friend!" }))]
struct Greeting {
    message: &'static str,
}

/// The greeting
///
/// The greeting the old service's clients expect; a browser asking for HTML is sent to
/// the web UI instead.
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    responses(
        (status = 200, description = "The greeting", body = Greeting),
        (status = 303, description = "`Accept` names `text/html`: to the web UI"),
    )
)]
async fn index(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let mut response = if wants_html {
        Redirect::to(ui::PREFIX).into_response()
    } else {
        axum::Json(Greeting {
            message: "Hello Friend!",
        })
        .into_response()
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "status": "ok" }))]
struct Health {
    status: &'static str,
}

/// Liveness
///
/// Answers whenever the process serves requests; never looks at the database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "Serving", body = Health))
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// What the activity log is holding and has had to drop.
#[derive(Serialize, ToSchema)]
struct ReadyDetails {
    activity_log_queue_depth: usize,
    activity_log_dropped_total: u64,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "status": "ready",
    "details": { "activity_log_queue_depth": 0, "activity_log_dropped_total": 0 }
}))]
struct Ready {
    status: &'static str,
    details: ReadyDetails,
}

/// The contract's error, with the activity log's figures.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "success": false,
    "message": "The database is unreachable",
    "error": "The database is unreachable",
    "code": "service_unavailable",
    "details": { "activity_log_queue_depth": 12, "activity_log_dropped_total": 0 }
}))]
struct NotReady {
    #[serde(flatten)]
    error: ErrorBody,
    details: ReadyDetails,
}

/// Readiness
///
/// Ready when the database answers; the details show what the activity log is holding
/// and has had to drop, either way.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "The database is unreachable (with `Retry-After`)", body = NotReady),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let details = ReadyDetails {
        activity_log_queue_depth: state.activity.depth(),
        activity_log_dropped_total: state.activity.dropped(),
    };
    if state.db.ping().await {
        return axum::Json(Ready {
            status: "ready",
            details,
        })
        .into_response();
    }
    let refusal = AppError::Unavailable(anyhow::anyhow!("readiness: database unreachable"));
    let (mut parts, _) = refusal.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = NotReady {
        error: crate::error::error_body("The database is unreachable", "service_unavailable"),
        details,
    };
    (parts, axum::Json(body)).into_response()
}

async fn not_found(uri: Uri) -> Response {
    if http::is_page(uri.path()) {
        return ui::error_page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is no page at this address. Check the link, or start again from the start page.",
        );
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(crate::error::error_body(
            "The requested URL was not found on the server.",
            "not_found",
        )),
    )
        .into_response()
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests
/// (for at most `SHUTDOWN_GRACE`), flushes the queues and returns.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if state.served.swap(true, Ordering::SeqCst) {
        anyhow::bail!("this state is already being served");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mail_task = tokio::spawn(mail::sender::run(
        state.db.clone(),
        state.config.mail.clone(),
        state.mailer.clone(),
        stop_rx.clone(),
    ));
    // With the cache turned off, nothing makes it trusted, so it is never used.
    let (cache_task, changes) = match state.db.backend() {
        _ if !state.config.session_cache => (None, None),
        Backend::Sqlite => {
            let changes =
                auth::cache::follow(&state.sessions, state.config.database_url.expose_secret())
                    .await;
            (None, changes)
        }
        Backend::Postgres => {
            let task = tokio::spawn(auth::cache::listen(
                state.sessions.clone(),
                state.config.database_url.expose_secret().to_owned(),
                stop_rx.clone(),
            ));
            (Some(task), None)
        }
    };
    let log_task = tokio::spawn(logs::writer::run(
        state.db.clone(),
        state.activity.clone(),
        changes,
        stop_rx.clone(),
    ));
    // On SQLite one instance's announcements are all there is; on PostgreSQL every
    // instance hears every change through the board trigger's NOTIFY.
    let board_task = (state.db.backend() == Backend::Postgres).then(|| {
        tokio::spawn(kanban::events::listen(
            state.boards.clone(),
            state.config.database_url.expose_secret().to_owned(),
            stop_rx.clone(),
        ))
    });
    let maintenance_task = tokio::spawn(maintenance(state.clone(), stop_rx));

    accept_until(&state, listener, shutdown).await;

    tracing::info!("server stopped; flushing queues");
    // The receivers live as long as the tasks; a send error only means they are done.
    let _ = stop_tx.send(true);
    match mail_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "mail sender stopped with an error"),
        Err(e) => tracing::error!(error = %e, "mail sender panicked"),
    }
    if let Err(e) = log_task.await {
        tracing::error!(error = %e, "activity log writer panicked");
    }
    if let Some(task) = cache_task {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "session cache listener panicked");
        }
    }
    if let Some(task) = board_task {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "board listener panicked");
        }
    }
    if let Err(e) = maintenance_task.await {
        tracing::error!(error = %e, "maintenance task panicked");
    }
    state.db.close().await;
    Ok(())
}

/// The accept loop: one task per connection, at most `MAX_CONNECTIONS` of them (the
/// rest wait in the listen backlog), each dropped when its client takes longer than
/// `HEADER_READ_TIMEOUT` to send a request header. When `shutdown` completes it stops
/// accepting, lets in-flight requests finish and closes idle connections, and after
/// `SHUTDOWN_GRACE` closes whatever is left: no client can hold the process up.
async fn accept_until(
    state: &AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = ServiceBuilder::new()
        .map_request(|req: axum::http::Request<hyper::body::Incoming>| req.map(Body::new))
        .map_request(http::merge_slashes)
        .service(router(state.clone()));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        // hyper's own limit of header fields is left at its default, 100: then it
        // parses into room on the stack, where any other limit costs every request two
        // allocations of 4 KiB (and glibc a consolidation of its free lists). It is
        // above `http::MAX_HEADERS`, so that a request with a few too many fields
        // reaches `http::admit` and gets the contract's 431 body.
        .header_read_timeout(state.config.header_read_timeout);
    let slots = Arc::new(Semaphore::new(state.config.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: pause rather than spin, and go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        ));
        let connection = http1
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut closing = closing.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                done = connection.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    // Live board streams never finish on their own: end them, or every one of them
    // would hold the shutdown for the whole grace period.
    state.boards.close();
    let _ = closing_tx.send(true);
    let grace = state.config.shutdown_grace;
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_secs = grace.as_secs_f64(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.shutdown().await;
    }
}

/// Periodic housekeeping: forgets dead sessions, lapsed throttle counts and activity
/// older than the retention period.
async fn maintenance(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        match auth::session::prune(&state.db, &state.config).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "expired sessions removed"),
            Err(e) => tracing::warn!(error = %e, "pruning sessions failed"),
        }
        if let Err(e) = state.throttle.prune().await {
            tracing::warn!(error = %e, "pruning throttle counts failed");
        }
        if state.db.backend() == Backend::Sqlite {
            if let Err(e) = db::changes::prune(state.db.writer()).await {
                tracing::warn!(error = %e, "pruning the session cache's change log failed");
            }
        }
        if let Some(days) = state.config.log_retention_days {
            match logs::store::prune(&state.db, days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, days, "old activity log entries removed"),
                Err(e) => tracing::warn!(error = %e, "pruning the activity log failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Refusal;

    #[test]
    fn csrf_exemptions_are_exactly_the_contracts() {
        let mut exempt: Vec<String> = routes()
            .specs()
            .iter()
            .filter(|s| s.refusal == Refusal::Json && !s.csrf_header && s.method != Method::GET)
            .map(|s| format!("{} {}", s.method, s.path))
            .collect();
        exempt.sort();
        assert_eq!(
            exempt,
            [
                "POST /forgot_password",
                "POST /login",
                "POST /logout",
                "POST /reset_password/{token}",
                "POST /signup",
                "POST /stripe/webhook",
            ]
        );
    }

    #[test]
    fn every_billing_route_and_no_other_api_route_needs_billing() {
        for spec in routes()
            .specs()
            .iter()
            .filter(|s| s.refusal == Refusal::Json)
        {
            let billing = billing::routes()
                .specs()
                .iter()
                .any(|b| b.method == spec.method && b.path == spec.path);
            assert_eq!(spec.needs_billing, billing, "{} {}", spec.method, spec.path);
        }
    }
}
