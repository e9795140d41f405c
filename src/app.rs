//! The application: its state, its routes and their layers, and the server's life
//! from start to graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router, ServiceExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::cache::SessionCache;
use crate::auth::password::PasswordHasher;
use crate::auth::policy::Policy::Public;
use crate::auth::policy::Routes;
use crate::config::Config;
use crate::db::{Backend, Db};
use crate::logs::{ActivityLog, LogEntry};
use crate::mail::Mailer;
use crate::metrics::{self, Metrics};
use crate::throttle::Throttle;
use crate::{accounts, auth, billing, http, kanban, logs, mail, openapi, rbac, twofa};

/// Request bodies above this size are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
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
    /// The Stripe client; `None` when billing is not configured.
    pub billing: Option<Arc<billing::Billing>>,
    /// The activity log's queue, taken by [`serve`] for its writer task.
    activity_queue: Arc<std::sync::Mutex<Option<mpsc::Receiver<LogEntry>>>>,
}

impl AppState {
    pub fn new(config: Config, db: Db) -> anyhow::Result<Self> {
        let hasher = PasswordHasher::new(config.max_concurrent_hashes)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let (activity, queue) = ActivityLog::new(logs::writer::QUEUE_CAPACITY);
        let throttle = Throttle::new(&db, &config)?;
        let billing = billing::from_config(&config);
        Ok(Self {
            config: Arc::new(config),
            db,
            hasher,
            mailer: Mailer::default(),
            activity,
            metrics: Arc::new(Metrics::default()),
            throttle,
            sessions: SessionCache::default(),
            billing,
            activity_queue: Arc::new(std::sync::Mutex::new(Some(queue))),
        })
    }
}

/// Every route of the service with the policy that guards it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/", Public, index)
        .get("/healthz", Public, healthz)
        .get("/readyz", Public, readyz)
        .get("/metrics", Public, metrics::serve)
        .get("/openapi.json", Public, openapi::serve)
        .merge(accounts::routes())
        .merge(twofa::routes())
        .merge(logs::routes())
        .merge(rbac::routes())
        .merge(kanban::routes())
        .merge(billing::routes())
}

/// The routes with the layers they all share.
pub fn router(state: AppState) -> Router {
    // Listed innermost first: a request passes them bottom to top.
    routes()
        .into_router()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .layer(cors(&state.config))
        .layer(middleware::from_fn(http::json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            http::security_headers,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), http::observe))
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

/// The greeting the old service's clients expect. (The server-rendered UI, which a
/// browser asking for HTML will be sent to, is not built yet.)
async fn index() -> Response {
    axum::Json(json!({ "message": "Hello Friend!" })).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.db.ping().await {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(crate::error::error_body(
                "The database is unreachable",
                "service_unavailable",
            )),
        )
            .into_response()
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(crate::error::error_body(
            "The requested URL was not found on the server.",
            "not_found",
        )),
    )
        .into_response()
}

/// Serves on `listener` until `shutdown` completes, then finishes in-flight requests,
/// flushes the mail queue and returns.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mail_task = tokio::spawn(mail::sender::run(
        state.db.clone(),
        state.config.mail.clone(),
        state.mailer.clone(),
        stop_rx.clone(),
    ));
    let queue = state
        .activity_queue
        .lock()
        .map_err(|_| anyhow::anyhow!("activity log queue lock poisoned"))?
        .take()
        .ok_or_else(|| anyhow::anyhow!("this state is already being served"))?;
    let log_task = tokio::spawn(logs::writer::run(state.db.clone(), queue, stop_rx.clone()));
    // On SQLite the listener never runs, so the session cache is never trusted.
    let cache_task = (state.db.backend() == Backend::Postgres).then(|| {
        tokio::spawn(auth::cache::listen(
            state.sessions.clone(),
            state.config.database_url.clone(),
            stop_rx.clone(),
        ))
    });
    let maintenance_task = tokio::spawn(maintenance(state.clone(), stop_rx));

    let app = ServiceBuilder::new()
        .map_request(http::merge_slashes)
        .service(router(state.clone()));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;

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
    if let Err(e) = maintenance_task.await {
        tracing::error!(error = %e, "maintenance task panicked");
    }
    state.db.close().await;
    Ok(())
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
