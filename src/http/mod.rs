//! The HTTP plumbing every route shares: request ids and request logs, the client
//! address, JSON bodies, and turning every non-JSON failure into the contract's error.

pub mod answer;
mod extract;
pub mod query;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::future::{ready, BoxFuture, Either, Ready};
use ipnet::IpNet;
use rand::RngCore;
use tower::layer::layer_fn;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::app::AppState;
use crate::auth::Authenticated;
use crate::error::{error_body, AppError, ErrorBody, ErrorCode, ErrorReport};
use crate::logs::{Kind, Level, LogEntry};
pub use answer::Done;
use extract::has_control_characters;
pub use extract::{Json, LoginBody};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The caller's address, proxies accounted for (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Where a request came from: its client address and user agent, as kept with
/// sessions and in the activity log.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin {
            ip: parts
                .extensions
                .get::<ClientIp>()
                .map(|ip| ip.0.to_string()),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| truncate(ua, 512).to_owned()),
        })
    }
}

pub fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Whether the caller's `X-Request-Id` is short plain text, which a log line can carry
/// without a hostile value forging others.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let value = value.as_bytes();
    !value.is_empty()
        && value.len() <= 64
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Drops a caller's request id that is not [sane](is_sane_request_id), so that
/// [`NewRequestId`] gives the request one of ours.
pub fn drop_unsafe_request_id(mut req: Request) -> Request {
    if req
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_some_and(|v| !is_sane_request_id(v))
    {
        req.headers_mut().remove(REQUEST_ID_HEADER);
    }
    req
}

/// A new request id: 96 random bits in hex, from the thread's CSPRNG (seeded by the
/// operating system), so that a request costs no system call for it.
#[derive(Debug, Clone, Copy)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut bytes);
        let mut hex = [0u8; 24];
        hex::encode_to_slice(bytes, &mut hex).ok()?;
        HeaderValue::from_bytes(&hex).ok().map(RequestId::new)
    }
}

/// The request id set by [`NewRequestId`]'s layer (or the caller's sane one).
fn request_id(req: &Request) -> String {
    req.extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// The socket peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` hop that is not itself a trusted proxy. Hops left of that one are
/// written by the client and cannot be believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|hop| !is_trusted(hop))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// The probes: they never look up a session (so a database outage cannot fail them)
/// and are left out of the activity log, which they would drown in noise.
pub const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Gives the request its client address ([`ClientIp`]), for its log span and everything
/// after.
pub fn identify_client(state: AppState) -> impl FnMut(Request) -> Request + Clone {
    move |mut req: Request| {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let ip = client_ip(peer, req.headers(), &state.config.trusted_proxies);
        req.extensions_mut().insert(ClientIp(ip));
        req
    }
}

/// The route pattern of a request, not its raw path: paths can carry tokens.
fn route_of<B>(req: &axum::http::Request<B>) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str)
}

/// The span every log line of a request is in: its id, method, route and client.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> Span {
        let id = req
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        let span = tracing::info_span!(
            "request",
            id,
            method = %req.method(),
            route = route_of(req),
            client_ip = tracing::field::Empty,
        );
        if let Some(ClientIp(ip)) = req.extensions().get::<ClientIp>() {
            span.record("client_ip", tracing::field::display(ip));
        }
        span
    }
}

/// The one access line of a request, when its answer is ready.
#[derive(Debug, Clone, Copy)]
pub struct Served;

impl<B> OnResponse<B> for Served {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, span: &Span) {
        tracing::info!(
            parent: span,
            status = response.status().as_u16(),
            latency_ms = latency.as_secs_f64() * 1000.0,
            "served"
        );
    }
}

/// The answer to come of an [`Around`] layer.
type Answer = BoxFuture<'static, Result<Response, Infallible>>;

/// A layer that notes what it needs of a request, lets the layers under it answer, and
/// finishes their answer in one boxed future: the work of a `from_fn` middleware,
/// which would also box its `Next` and clone every layer under it for each request.
/// `start` is called with each request and gives what finishes its answer.
#[derive(Clone)]
struct Around<S, F> {
    inner: S,
    start: F,
}

fn around<S, F: Clone>(start: F) -> impl Layer<S, Service = Around<S, F>> + Clone {
    layer_fn(move |inner| Around {
        inner,
        start: start.clone(),
    })
}

impl<S, F, G> Service<Request> for Around<S, F>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    F: FnMut(&Request) -> G,
    G: FnOnce(S::Future) -> Answer,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Answer {
        let finish = (self.start)(&req);
        finish(self.inner.call(req))
    }
}

/// Counts the request, records its access line in the activity log, and logs the
/// cause of any 5xx once, with the request id that the 500 body shows the caller. Runs
/// inside the request's span ([`RequestSpan`]).
pub fn observe<S>(
    state: AppState,
) -> impl Layer<
    S,
    Service = impl Service<Request, Response = Response, Error = Infallible, Future = Answer> + Clone,
> + Clone
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
    S::Future: Send + 'static,
{
    around(move |req: &Request| {
        let seen = Seen {
            request_id: request_id(req),
            ip: req
                .extensions()
                .get::<ClientIp>()
                .map_or(IpAddr::from([127, 0, 0, 1]), |ip| ip.0),
            route: route_of(req).to_owned(),
            method: req.method().clone(),
            page: is_page(req.uri().path()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| truncate(ua, 512).to_owned()),
            started: Instant::now(),
        };
        let state = state.clone();
        move |answer: S::Future| -> Answer { Box::pin(observed(state, seen, answer)) }
    })
}

/// What [`observe`] keeps of a request for its access line.
struct Seen {
    request_id: String,
    ip: IpAddr,
    route: String,
    method: Method,
    /// Whether it asked for an HTML page, whose 500 is a page too.
    page: bool,
    user_agent: Option<String>,
    started: Instant,
}

async fn observed(
    state: AppState,
    seen: Seen,
    answer: impl Future<Output = Result<Response, Infallible>>,
) -> Result<Response, Infallible> {
    let Seen {
        request_id,
        ip,
        route,
        method,
        page,
        user_agent,
        started,
    } = seen;
    let handled = state
        .activity
        .scope(state.config.request_timeout, answer)
        .await
        .map(|Ok(response)| response);
    // An answer whose events or changes could not be recorded is not given: the
    // database went away between the change and its record.
    let mut response = handled.unwrap_or_else(|| {
        AppError::Unavailable(anyhow::anyhow!(
            "the activity log could not store this request's entries in time"
        ))
        .into_response()
    });
    let status = response.status();
    if let Some(ErrorReport(cause)) = response.extensions().get::<ErrorReport>() {
        tracing::error!(error = format!("{cause:#}"), %status, "request failed");
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR && page {
        let headers = std::mem::take(response.headers_mut());
        response = crate::ui::server_error_page(status, &request_id);
        for (name, value) in headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                response.headers_mut().insert(name, value.clone());
            }
        }
    } else if status == StatusCode::INTERNAL_SERVER_ERROR {
        let body = ErrorBody {
            request_id: Some(request_id.clone()),
            ..error_body("An internal error occurred", "internal_error")
        };
        let headers = std::mem::take(response.headers_mut());
        response = (status, axum::Json(body)).into_response();
        for (name, value) in headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                response.headers_mut().insert(name, value.clone());
            }
        }
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(&route, method.as_str(), status.as_u16(), elapsed);
    if route == "/login" && method == axum::http::Method::POST {
        let outcome = response
            .extensions()
            .get::<ErrorCode>()
            .map_or(if status.is_success() { "ok" } else { "error" }, |c| c.0);
        state.metrics.observe_login(outcome);
    }
    if !PROBES.contains(&route.as_str()) {
        let level = match status.as_u16() {
            500.. => Level::Error,
            400.. => Level::Warning,
            _ => Level::Info,
        };
        let mut entry = LogEntry::new(
            Kind::Access,
            level,
            format!("{method} {route} {}", status.as_u16()),
        );
        if let Some(auth) = response.extensions().get::<Arc<Authenticated>>() {
            entry = entry.user(&auth.user);
        }
        entry.client_ip = Some(ip.to_string());
        entry.user_agent = user_agent;
        entry.method = Some(method.to_string());
        entry.path = Some(route);
        entry.status = Some(i64::from(status.as_u16()));
        entry.duration_ms = Some(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
        state.activity.record(entry);
    }
    Ok(response)
}

/// Whether a path is an HTML page (the web UI, the API reference), whose failures are
/// answered with an HTML page.
pub fn is_page(path: &str) -> bool {
    crate::ui::is_page(path) || crate::docs::is_page(path)
}

/// Gives every error that did not come from our own handlers (unknown route, wrong
/// method, body limit, timeout) the contract's JSON body, or on the web UI an HTML
/// page.
pub fn json_errors<S>() -> impl Layer<
    S,
    Service = impl Service<Request, Response = Response, Error = Infallible, Future = Answer> + Clone,
> + Clone
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
    S::Future: Send + 'static,
{
    around(|req: &Request| {
        let page = is_page(req.uri().path());
        move |answer: S::Future| -> Answer {
            Box::pin(async move {
                let Ok(response) = answer.await;
                Ok(contract_error(page, response))
            })
        }
    })
}

/// The answer itself, or the contract's error in its place if it is an error of
/// axum's or a layer's.
fn contract_error(page: bool, response: Response) -> Response {
    let status = response.status();
    let is_ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || (page && v.starts_with("text/html")));
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let (message, code) = match status {
        StatusCode::NOT_FOUND => (
            "The requested URL was not found on the server.",
            "not_found",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "The method is not allowed for the requested URL.",
            "method_not_allowed",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "Request body is too large (the limit is 1 MiB)",
            "payload_too_large",
        ),
        StatusCode::REQUEST_TIMEOUT => ("The request took too long to process.", "request_timeout"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "The request's Content-Type is not supported here.",
            "unsupported_media_type",
        ),
        StatusCode::URI_TOO_LONG => (URI_TOO_LONG, "uri_too_long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            (HEADERS_TOO_LARGE, "request_header_fields_too_large")
        }
        s if s.is_server_error() => ("An internal error occurred", "internal_error"),
        _ => ("The request could not be understood.", "bad_request"),
    };
    let (mut parts, _) = response.into_parts();
    if page {
        let mut html = crate::ui::error_page(status, "Something is not right", message);
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                html.headers_mut().insert(name, value.clone());
            }
        }
        return html;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&error_body(message, code)).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// The longest request target accepted; longer ones answer 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header fields, and their total size, accepted; more answer 431.
pub const MAX_HEADERS: usize = 90;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
const URI_TOO_LONG: &str = "The request URI is too long.";
const HEADERS_TOO_LARGE: &str = "The request's header fields are too large.";

/// Answers the requests [`refused`] refuses before anything else sees them, and passes
/// on the rest.
pub fn admit<S>() -> impl Layer<S, Service = Refusing<S, fn(&Request) -> Option<Response>>> + Clone
{
    refusing(refused as fn(&Request) -> Option<Response>)
}

/// A layer that answers at once the requests `refuse` has an answer for, and calls the
/// layers under it with the rest. A plain service rather than a `from_fn` middleware,
/// which would box its future and clone every layer under it for each request.
pub fn refusing<S, F>(refuse: F) -> impl Layer<S, Service = Refusing<S, F>> + Clone
where
    F: Fn(&Request) -> Option<Response> + Clone,
{
    layer_fn(move |inner| Refusing {
        inner,
        refuse: refuse.clone(),
    })
}

/// The service of [`refusing`].
#[derive(Clone)]
pub struct Refusing<S, F> {
    inner: S,
    refuse: F,
}

impl<S, F> Service<Request> for Refusing<S, F>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    F: Fn(&Request) -> Option<Response>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match (self.refuse)(&req) {
            Some(refusal) => Either::Left(ready(Ok(refusal))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// The refusal of a request that breaks a rule no route may bend: its size, then
/// control characters.
fn refused(req: &Request) -> Option<Response> {
    over_limits(req).or_else(|| control_characters(req))
}

/// Refuses an over-long URI (414) or oversized headers (431) with the contract's body.
/// These limits sit below the HTTP parser's own (64 KiB of URI, 100 fields, about
/// 400 KiB of header), whose refusals it sends by itself with an empty body, so that
/// a client a little over them meets these instead.
fn over_limits(req: &Request) -> Option<Response> {
    let uri_bytes = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(refusal(
            req,
            StatusCode::URI_TOO_LONG,
            URI_TOO_LONG,
            "uri_too_long",
        ));
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (req.headers().len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES).then(|| {
        refusal(
            req,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HEADERS_TOO_LARGE,
            "request_header_fields_too_large",
        )
    })
}

/// A refusal made before routing: the contract's JSON body, or on the web UI an HTML
/// page saying the same.
fn refusal(req: &Request, status: StatusCode, message: &str, code: &'static str) -> Response {
    if is_page(req.uri().path()) {
        crate::ui::error_page(status, "Something is not right", message)
    } else {
        (status, axum::Json(error_body(message, code))).into_response()
    }
}

/// Refuses (400, naming it) a query parameter or a path holding a control character,
/// before any handler or database sees it: PostgreSQL refuses NUL in text where SQLite
/// stores it, and no parameter has a use for any of them. JSON bodies get the same rule
/// in [`Json`].
fn control_characters(req: &Request) -> Option<Response> {
    if has_control_characters(&percent_decoded(req.uri().path())) {
        return Some(refusal(
            req,
            StatusCode::BAD_REQUEST,
            "The path must not contain control characters",
            "invalid_request",
        ));
    }
    // A query that does not parse is left to the route's own extractor to refuse.
    let query = req.uri().query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let (name, _) = pairs
        .iter()
        .find(|(name, value)| has_control_characters(name) || has_control_characters(value))?;
    let message = format!(
        "Query parameter `{}` must not contain control characters",
        truncate(name.trim_matches(char::is_control), 64)
    );
    Some(refusal(
        req,
        StatusCode::BAD_REQUEST,
        &message,
        "invalid_request",
    ))
}

/// The path with its `%XX` escapes decoded (lossily: it is only looked at); most paths
/// have none and are given back as they are.
fn percent_decoded(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// What a web UI page may load: only our own styles, scripts and images (and the
/// `data:` images of the QR code and icon), requests (the live boards' fetch and
/// EventSource) and forms only to us, never framed.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// What every other answer may load: nothing.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Headers every answer carries unless its route set its own: nothing here is meant
/// to be framed, sniffed, cached or to leak a referrer.
const FIXED_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(API_CSP),
    ),
];

/// Gives every answer the [fixed headers](FIXED_HEADERS) it lacks (a route that needs
/// otherwise, like the web UI's static files, cached for a year, sets its own, which is
/// kept); HTML pages get the web UI's policy whatever they set, and with `hsts` (in
/// production) browsers are told to use HTTPS only.
pub fn security_headers(hsts: bool) -> impl Fn(Response) -> Response + Clone + Send + Sync {
    move |mut response: Response| {
        let is_html = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let headers = response.headers_mut();
        headers.reserve(FIXED_HEADERS.len() + 1);
        if is_html {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            );
        }
        for (name, value) in FIXED_HEADERS {
            headers.entry(name).or_insert(value);
        }
        if hsts {
            headers
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert(HeaderValue::from_static(
                    "max-age=63072000; includeSubDomains",
                ));
        }
        response
    }
}

/// Merges runs of slashes in the path (`//boards//1` is `/boards/1`), as the old client
/// sends them; runs before routing.
pub fn merge_slashes(mut req: Request) -> Request {
    let uri = req.uri();
    if !uri.path().contains("//") {
        return req;
    }
    let mut path = String::with_capacity(uri.path().len());
    for c in uri.path().chars() {
        if !(c == '/' && path.ends_with('/')) {
            path.push(c);
        }
    }
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(merged) = Uri::from_parts(parts) {
            *req.uri_mut() = merged;
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_gets_the_security_headers_it_lacks() {
        let secure = security_headers(true);
        let api = secure(axum::Json(serde_json::json!({ "ok": true })).into_response());
        let h = api.headers();
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], API_CSP);
        assert_eq!(
            h[header::STRICT_TRANSPORT_SECURITY],
            "max-age=63072000; includeSubDomains"
        );
        // A route's own header is kept, but an HTML page always gets the UI's policy.
        let page = secure(
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=60"),
                    (header::CONTENT_SECURITY_POLICY, "default-src *"),
                ],
                "<p>hi</p>",
            )
                .into_response(),
        );
        let h = page.headers();
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=60");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], PAGE_CSP);
        assert_eq!(h.get_all(header::CONTENT_SECURITY_POLICY).iter().count(), 1);
        let development = security_headers(false)(StatusCode::NO_CONTENT.into_response());
        assert!(development
            .headers()
            .get(header::STRICT_TRANSPORT_SECURITY)
            .is_none());
        assert_eq!(development.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "1.1.1.1, 203.0.113.9, 10.0.0.2".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn request_ids_from_callers_must_be_plain() {
        let kept = |sent: &str| {
            let req = Request::builder()
                .header(REQUEST_ID_HEADER, sent)
                .body(Body::empty())
                .unwrap();
            drop_unsafe_request_id(req)
                .headers()
                .get(REQUEST_ID_HEADER)
                .is_some()
        };
        assert!(kept("abc-123"));
        assert!(!kept("a b\"c"));
        assert!(!kept(&"x".repeat(65)));
    }

    #[test]
    fn escaped_control_characters_in_paths_are_seen() {
        assert!(has_control_characters(&percent_decoded("/users/a%00b")));
        assert!(has_control_characters(&percent_decoded("/x/%C2%85")));
        assert!(!has_control_characters(&percent_decoded(
            "/users/caf%C3%A9%2"
        )));
    }

    #[test]
    fn slashes_merge_and_queries_survive() {
        let req = Request::builder()
            .uri("//boards///1/columns?x=a//b")
            .body(Body::empty())
            .unwrap();
        assert_eq!(merge_slashes(req).uri(), "/boards/1/columns?x=a//b");
    }
}
