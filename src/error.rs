//! The one error type of the HTTP layer and its mapping to the contract's JSON.
//!
//! Every failure a handler can meet becomes an [`AppError`]; [`AppError::into_response`]
//! is the only place a failure turns into a status code and a body. Internal errors
//! carry their cause in a response extension ([`ErrorReport`]) so that the request
//! middleware logs it once, next to the request id, and the body never shows it.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The sentence the contract prescribes for a missing or dead session.
pub const LOGIN_REQUIRED: &str = "Please log in to access this resource.";
/// The sentence the contract prescribes for a missing permission.
pub const UNAUTHORIZED_ACCESS: &str = "Unauthorized access";

/// What a 503 tells the caller to wait before retrying: outages the service recovers
/// from by itself (a database restart, a failover) take seconds.
pub const RETRY_OUTAGE_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A field is missing, of the wrong type or breaks a rule; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// 401 with a `code` and a message.
    #[error("{1}")]
    Unauthenticated(&'static str, &'static str),
    /// 403 with a `code` and a message.
    #[error("{1}")]
    Forbidden(&'static str, &'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Request body is too large (the limit is 1 MiB)")]
    PayloadTooLarge,
    #[error("Content-Type must be {0}")]
    UnsupportedMediaType(&'static str),
    #[error("Too many attempts; try again later")]
    Throttled { retry_after_secs: u64 },
    /// The second factor is on and none was given: the login answer of the contract.
    #[error("2FA token required")]
    TwofaRequired,
    /// A dependency (the database) is down: an outage, not a client mistake.
    #[error("The service is temporarily unavailable; try again shortly")]
    Unavailable(#[source] anyhow::Error),
    #[error("An internal error occurred")]
    Internal(#[source] anyhow::Error),
    /// An answer whose status and code a capability chooses itself (billing: a
    /// payment provider's refusal, billing not configured). Logged only when it
    /// carries a cause.
    #[error("{message}")]
    Other {
        status: StatusCode,
        code: &'static str,
        message: String,
        cause: Option<anyhow::Error>,
    },
}

/// The `code` of an error answer, for the middleware that counts outcomes.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// The cause of a 5xx answer, handed to the logging middleware through the response.
#[derive(Debug, Clone)]
pub struct ErrorReport(pub Arc<anyhow::Error>);

impl AppError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    pub fn login_required() -> Self {
        Self::Unauthenticated("login_required", LOGIN_REQUIRED)
    }

    pub fn unauthorized_access() -> Self {
        Self::Forbidden("unauthorized_access", UNAUTHORIZED_ACCESS)
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::TwofaRequired => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(..) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Other { status, .. } => *status,
        }
    }

    /// The machine-readable `code` of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::Unauthenticated(code, _) | Self::Forbidden(code, _) => code,
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Throttled { .. } => "too_many_requests",
            Self::TwofaRequired => "twofa_required",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
            Self::Other { code, .. } => code,
        }
    }
}

/// The contract's error body: `message` and `error` carry the same sentence.
/// The contract's error answer, the same for every route and status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "success": false,
    "message": "Please log in to access this resource.",
    "error": "Please log in to access this resource.",
    "code": "login_required"
}))]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// What went wrong, in words for a person; names the field when input is at fault.
    pub message: String,
    /// The same text as `message` (the old service's clients read either).
    pub error: String,
    /// What went wrong, for a program: `invalid_request`, `login_required`,
    /// `unauthorized_access`, `csrf_failed`, `not_found`, `conflict`,
    /// `too_many_requests`, `service_unavailable`, …
    pub code: String,
    /// Present (and `true`) when a login needs the second factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twofa_required: Option<bool>,
    /// On a 500: the request's id, to quote when reporting it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

pub fn error_body(message: &str, code: &str) -> ErrorBody {
    ErrorBody {
        success: false,
        message: message.to_owned(),
        error: message.to_owned(),
        code: code.to_owned(),
        twofa_required: None,
        request_id: None,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = error_body(&self.to_string(), self.code());
        if matches!(self, Self::TwofaRequired) {
            body.twofa_required = Some(true);
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        match self {
            Self::Throttled { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::Unavailable(cause) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_OUTAGE_SECS));
                response
                    .extensions_mut()
                    .insert(ErrorReport(Arc::new(cause)));
            }
            Self::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(ErrorReport(Arc::new(cause)));
            }
            Self::Other {
                cause: Some(cause), ..
            } => {
                response
                    .extensions_mut()
                    .insert(ErrorReport(Arc::new(cause)));
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        // Every request's database failure passes here: one on a broken connection
        // makes the pools check the others before handing them out.
        crate::db::note_failure(&e);
        if is_outage(&e) {
            Self::Unavailable(e.into())
        } else {
            Self::Internal(e.into())
        }
    }
}

/// Whether the error means the database cannot be reached or is going away, as
/// opposed to a mistake in a query: no connection, a broken one
/// ([`crate::db::is_broken`]), or PostgreSQL refusing sessions (53300 too many
/// connections, 55000 for a database that does not allow connections).
pub fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "53300" || c == "55000") => {
            true
        }
        _ => crate::db::is_broken(e),
    }
}
