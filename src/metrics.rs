//! Prometheus metrics: requests and their latency by route and status, logins by
//! outcome, and the depth of the background queues. Served at `/metrics` in the
//! OpenMetrics text format, through the Prometheus project's own client crate.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::AppState;
use crate::error::AppError;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    route: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    outcome: String,
}

type LatencyFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The process's counters, registered once; each request updates a few atomics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    logins: Family<LoginLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        let logins = Family::<LoginLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "gatehouse_http_requests",
            "HTTP requests served",
            requests.clone(),
        );
        registry.register(
            "gatehouse_http_request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        registry.register(
            "gatehouse_logins",
            "Login attempts by outcome",
            logins.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            logins,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let endpoint = EndpointLabels {
            route: route.to_owned(),
            method: method.to_owned(),
        };
        self.latency
            .get_or_create(&endpoint)
            .observe(elapsed.as_secs_f64());
        let request = RequestLabels {
            route: endpoint.route,
            method: endpoint.method,
            status,
        };
        self.requests.get_or_create(&request).inc();
    }

    /// Counts a login attempt by its outcome (`ok` or the error code it was refused with).
    pub fn observe_login(&self, outcome: &str) {
        let labels = LoginLabels {
            outcome: outcome.to_owned(),
        };
        self.logins.get_or_create(&labels).inc();
    }
}

/// The gauges read when scraped. The outbox's needs the database: during an outage it
/// is left out and the rest is served, so monitoring sees the outage.
fn queue_gauges(state: &AppState, outbox: Option<i64>) -> Registry {
    let mut registry = Registry::default();
    if let Some(outbox) = outbox {
        let gauge = Gauge::<i64>::default();
        gauge.set(outbox);
        registry.register(
            "gatehouse_mail_outbox_depth",
            "Emails waiting for delivery",
            gauge,
        );
    }
    let depth = Gauge::<i64>::default();
    depth.set(i64::try_from(state.activity.depth()).unwrap_or(i64::MAX));
    registry.register(
        "gatehouse_activity_log_queue_depth",
        "Log entries waiting to be written",
        depth,
    );
    let dropped = Counter::<u64>::default();
    dropped.inc_by(state.activity.dropped());
    registry.register(
        "gatehouse_activity_log_dropped",
        "Log entries dropped: the queue was full, or shutdown could not store them",
        dropped,
    );
    registry
}

/// Metrics
///
/// The OpenMetrics text format, for Prometheus to scrape. Never looks up a session;
/// without the database it leaves out the mail outbox's gauge.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Every metric, ending with `# EOF`",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String,
        example = "# TYPE gatehouse_http_requests counter\n# EOF\n"))
)]
pub async fn serve(State(state): State<AppState>) -> Result<Response, AppError> {
    let outbox = tokio::time::timeout(
        Duration::from_secs(1),
        crate::mail::sender::queue_depth(&state.db),
    )
    .await
    .ok()
    .and_then(Result::ok);
    let mut out = String::with_capacity(4096);
    encode_registry(&mut out, &state.metrics.registry)
        .and_then(|()| encode_registry(&mut out, &queue_gauges(&state, outbox)))
        .and_then(|()| encode_eof(&mut out))
        .map_err(|e| AppError::internal(anyhow::anyhow!("cannot encode the metrics: {e}")))?;
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}
