//! Prometheus metrics: requests and their latency by route and status, logins by
//! outcome, and the depth of the background queues. Served as text at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::AppError;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// What is counted for one route and method.
#[derive(Default)]
struct Endpoint {
    /// status → requests.
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
}

#[derive(Default)]
struct Counters {
    /// route → method → counts. Nested so that a request looks its entry up by
    /// borrowed names and allocates only the first time a route is seen.
    endpoints: BTreeMap<String, BTreeMap<String, Endpoint>>,
    /// outcome → logins.
    logins: BTreeMap<String, u64>,
}

impl Counters {
    fn iter_endpoints(&self) -> impl Iterator<Item = (&String, &String, &Endpoint)> {
        self.endpoints.iter().flat_map(|(route, methods)| {
            methods
                .iter()
                .map(move |(method, endpoint)| (route, method, endpoint))
        })
    }
}

/// The process's counters; one lock, held for a few map operations per request.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let Ok(mut c) = self.counters.lock() else {
            return;
        };
        if !c.endpoints.contains_key(route) {
            c.endpoints.insert(route.to_owned(), BTreeMap::new());
        }
        let Some(methods) = c.endpoints.get_mut(route) else {
            return;
        };
        if !methods.contains_key(method) {
            methods.insert(method.to_owned(), Endpoint::default());
        }
        let Some(endpoint) = methods.get_mut(method) else {
            return;
        };
        *endpoint.statuses.entry(status).or_default() += 1;
        let h = &mut endpoint.latency;
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts a login attempt by its outcome (`ok` or the error code it was refused with).
    pub fn observe_login(&self, outcome: &str) {
        if let Ok(mut c) = self.counters.lock() {
            *c.logins.entry(outcome.to_owned()).or_default() += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let Ok(c) = self.counters.lock() else {
            return;
        };
        out.push_str("# HELP gatehouse_http_requests_total HTTP requests served.\n");
        out.push_str("# TYPE gatehouse_http_requests_total counter\n");
        for (route, method, endpoint) in c.iter_endpoints() {
            for (status, n) in &endpoint.statuses {
                let _ = writeln!(
                    out,
                    "gatehouse_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP gatehouse_http_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE gatehouse_http_request_duration_seconds histogram\n");
        for (route, method, endpoint) in c.iter_endpoints() {
            let h = &endpoint.latency;
            let labels = format!("route=\"{}\",method=\"{method}\"", escape(route));
            for (bound, n) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "gatehouse_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "gatehouse_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "gatehouse_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "gatehouse_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP gatehouse_logins_total Login attempts by outcome.\n");
        out.push_str("# TYPE gatehouse_logins_total counter\n");
        for (outcome, n) in &c.logins {
            let _ = writeln!(
                out,
                "gatehouse_logins_total{{outcome=\"{}\"}} {n}",
                escape(outcome)
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn serve(State(state): State<AppState>) -> Result<Response, AppError> {
    let mut out = String::with_capacity(4096);
    state.metrics.render(&mut out);
    // Monitoring must see an outage: without the database the gauge that needs it is
    // left out and the rest is served.
    let outbox = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        crate::mail::sender::queue_depth(&state.db),
    )
    .await;
    if let Ok(Ok(outbox)) = outbox {
        let _ = write!(
            out,
            "# HELP gatehouse_mail_outbox_depth Emails waiting for delivery.\n\
             # TYPE gatehouse_mail_outbox_depth gauge\n\
             gatehouse_mail_outbox_depth {outbox}\n"
        );
    }
    let _ = write!(
        out,
        "# HELP gatehouse_activity_log_queue_depth Log entries waiting to be written.\n\
         # TYPE gatehouse_activity_log_queue_depth gauge\n\
         gatehouse_activity_log_queue_depth {}\n\
         # HELP gatehouse_activity_log_dropped_total Log entries dropped: the queue was full, or shutdown could not store them.\n\
         # TYPE gatehouse_activity_log_dropped_total counter\n\
         gatehouse_activity_log_dropped_total {}\n",
        state.activity.depth(),
        state.activity.dropped()
    );
    let mut response = out.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
