//! Who is calling: sessions, CSRF, password hashing and the extractors that guard
//! routes.
//!
//! [`authenticate`] runs before every route: it resolves the session cookie once. Who
//! may call a route, and whether an unsafe request riding on the session must carry
//! the CSRF header, is declared with the route, in the table of [`policy`]; handlers
//! take [`CurrentUser`] for the caller's identity.

pub mod cache;
pub mod password;
pub mod policy;
pub mod session;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::AppError;
pub use session::Authenticated;

pub use policy::{CSRF_FAILED, CSRF_HEADER};

/// Resolves the session cookie; see the module documentation.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Monitoring answers whoever asks and must not depend on the session store: a
    // cookie sent to them during an outage would otherwise turn them into 503s.
    if crate::http::PROBES.contains(&req.uri().path()) {
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
        req.extensions_mut().insert(Arc::clone(&auth));
        let mut response = next.run(req).await;
        // The request log names the caller.
        response.extensions_mut().insert(auth);
        return response;
    }
    next.run(req).await
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
