//! Who is calling: sessions, CSRF, password hashing and the extractors that guard
//! routes.
//!
//! [`authenticate`] runs before every route: it resolves the session cookie once and
//! enforces CSRF for state-changing requests that ride on it. Who may call a route is
//! declared with the route, in the table of [`policy`]; handlers take [`CurrentUser`]
//! for the caller's identity.

pub mod cache;
pub mod password;
pub mod policy;
pub mod session;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::error::AppError;
pub use session::Authenticated;

pub const CSRF_FAILED: &str = "CSRF token validation failed";
pub const CSRF_HEADER: &str = "x-csrftoken";

/// Routes that a session cookie may reach with an unsafe method and no CSRF header:
/// they either create the session or act on a secret carried in the request itself.
fn csrf_exempt(path: &str) -> bool {
    matches!(
        path,
        "/signup" | "/login" | "/logout" | "/forgot_password" | "/stripe/webhook"
    ) || path.starts_with("/reset_password/")
        || path.starts_with("/verify_email/")
}

/// Resolves the session cookie and checks CSRF; see the module documentation.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Monitoring answers whoever asks and must not depend on the session store: a
    // cookie sent to them during an outage would otherwise turn them into 503s.
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    let Some(token) = session::cookie(req.headers(), session::SESSION_COOKIE) else {
        return next.run(req).await;
    };
    let auth = match session::resolve(&state.db, &state.config, &state.sessions, token).await {
        Ok(auth) => auth,
        Err(e) => return AppError::from(e).into_response(),
    };
    if let Some(auth) = auth {
        let unsafe_method = !matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        // The web UI's forms carry the token in a field, which `ui::Form` checks
        // before any handler reads the form.
        if unsafe_method
            && !csrf_exempt(req.uri().path())
            && !crate::ui::is_page(req.uri().path())
            && !csrf_matches(req.headers(), &auth.session.csrf_token)
        {
            return AppError::Forbidden("csrf_failed", CSRF_FAILED).into_response();
        }
        req.extensions_mut().insert(Arc::clone(&auth));
        let mut response = next.run(req).await;
        // The request log names the caller.
        response.extensions_mut().insert(auth);
        return response;
    }
    next.run(req).await
}

fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .map(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
        .unwrap_or(false)
}

/// A logged-in user; a route taking it answers 401 to anyone else.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Arc<Authenticated>);

impl std::ops::Deref for CurrentUser {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<Arc<Authenticated>>()
            .cloned()
            .map(CurrentUser)
            .ok_or_else(AppError::login_required)
    }
}

/// The session of the request, if it has a live one; for routes open to everyone that
/// answer differently to a logged-in caller.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<Arc<Authenticated>>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(
            parts.extensions.get::<Arc<Authenticated>>().cloned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_exemptions_are_exactly_the_contracts() {
        for path in [
            "/signup",
            "/login",
            "/logout",
            "/forgot_password",
            "/reset_password/abc",
            "/verify_email/abc",
            "/stripe/webhook",
        ] {
            assert!(csrf_exempt(path), "{path}");
        }
        for path in ["/update_profile", "/signup/x", "/loginx", "/boards"] {
            assert!(!csrf_exempt(path), "{path}");
        }
    }
}
