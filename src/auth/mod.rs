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

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, Either};
use tower::layer::layer_fn;
use tower::{Layer, Service};

use crate::app::AppState;
use crate::error::AppError;
pub use session::Authenticated;

pub use policy::{CSRF_FAILED, CSRF_HEADER};

/// Resolves the session cookie; see the module documentation. The caller's session
/// goes into the request's extensions for the handler, and into the answer's for the
/// access line.
pub fn authenticate<S>(state: AppState) -> impl Layer<S, Service = Authenticate<S>> + Clone {
    layer_fn(move |inner| Authenticate {
        state: state.clone(),
        inner,
    })
}

/// The service of [`authenticate`]. A plain service rather than a `from_fn`
/// middleware: a session the cache holds is resolved without a box or a clone of the
/// layers under it; only a request that must ask the database pays for them.
#[derive(Clone)]
pub struct Authenticate<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Authenticate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Answered<S::Future>, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // Monitoring answers whoever asks and must not depend on the session store: a
        // cookie sent to them during an outage would otherwise turn them into 503s.
        let token = match session::cookie(req.headers(), session::SESSION_COOKIE) {
            Some(token) if !crate::http::PROBES.contains(&req.uri().path()) => token,
            _ => return Either::Left(self.answer(req, None)),
        };
        if let Some(auth) = session::cached(&self.state.config, &self.state.sessions, token) {
            req.extensions_mut().insert(Arc::clone(&auth));
            return Either::Left(self.answer(req, Some(auth)));
        }
        let token = token.to_owned();
        let state = self.state.clone();
        // The clone that was made ready answers; a fresh one waits for the next call.
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        Either::Right(Box::pin(async move {
            let auth =
                match session::resolve(&state.db, &state.config, &state.sessions, &token).await {
                    Ok(auth) => auth,
                    Err(e) => return Ok(AppError::from(e).into_response()),
                };
            if let Some(auth) = &auth {
                req.extensions_mut().insert(Arc::clone(auth));
            }
            Answered {
                answer: inner.call(req),
                auth,
            }
            .await
        }))
    }
}

impl<S: Service<Request>> Authenticate<S> {
    fn answer(&mut self, req: Request, auth: Option<Arc<Authenticated>>) -> Answered<S::Future> {
        Answered {
            answer: self.inner.call(req),
            auth,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of the layers under [`authenticate`], with the caller's session
    /// added to its extensions: the request log names the caller.
    pub struct Answered<F> {
        #[pin]
        answer: F,
        auth: Option<Arc<Authenticated>>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Answered<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = ready!(this.answer.poll(cx));
        if let Some(auth) = this.auth.take() {
            response.extensions_mut().insert(auth);
        }
        Poll::Ready(Ok(response))
    }
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
