//! Who may call each route, declared where the route is defined and enforced there.
//!
//! Capabilities do not build axum routers directly: they hand their routes to a
//! [`Routes`] table, each with a [`Policy`]. The table both builds the router, wrapping
//! every handler in its policy's check, and lists what it built, so a test can walk
//! every route and prove its policy holds. A route without a policy cannot be written.
//!
//! How a refusal is answered is an attribute of the entry too ([`Refusal`]): the JSON
//! routes answer the contract's 401/403, the web UI's pages send a browser to sign in
//! or show an HTML 403 page.

use std::collections::BTreeMap;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;

use super::Authenticated;
use crate::app::AppState;
use crate::error::AppError;
use crate::rbac::Permission;

/// What a caller needs to reach a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone, logged in or not (signup, login, health, signed webhooks).
    Public,
    /// Any logged-in user.
    LoggedIn,
    /// A logged-in user holding the permission.
    Permission(Permission),
}

impl Policy {
    /// 401 without a live session, 403 without the permission.
    pub fn check(self, auth: Option<&Authenticated>) -> Result<(), AppError> {
        match (self, auth) {
            (Self::Public, _) => Ok(()),
            (_, None) => Err(AppError::login_required()),
            (Self::LoggedIn, Some(_)) => Ok(()),
            (Self::Permission(p), Some(auth)) if auth.access.has(p) => Ok(()),
            (Self::Permission(_), Some(_)) => Err(AppError::unauthorized_access()),
        }
    }
}

/// How a route answers a caller its policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The contract's JSON error; the route is part of `/openapi.json`.
    Json,
    /// A page: a redirect to the sign-in page, or an HTML 403 page.
    Page,
}

async fn enforce(policy: Policy, refusal: Refusal, req: Request, next: Next) -> Response {
    let auth = req.extensions().get::<std::sync::Arc<Authenticated>>();
    match (policy.check(auth.map(AsRef::as_ref)), refusal) {
        (Ok(()), _) => next.run(req).await,
        (Err(e), Refusal::Json) => e.into_response(),
        (Err(e), Refusal::Page) => crate::ui::refuse(e, req.uri()),
    }
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub policy: Policy,
    pub refusal: Refusal,
}

/// The route table; see the module documentation.
pub struct Routes {
    paths: BTreeMap<String, MethodRouter<AppState>>,
    specs: Vec<RouteSpec>,
    /// How the routes added to this table refuse.
    refusal: Refusal,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// A table of JSON routes.
    pub fn new() -> Self {
        Self {
            paths: BTreeMap::new(),
            specs: Vec::new(),
            refusal: Refusal::Json,
        }
    }

    /// A table of web UI pages.
    pub fn pages() -> Self {
        Self {
            refusal: Refusal::Page,
            ..Self::new()
        }
    }

    fn add<H, T>(
        mut self,
        method: Method,
        filter: MethodFilter,
        path: impl Into<String>,
        policy: Policy,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let refusal = self.refusal;
        let guarded = axum::routing::on(filter, handler).route_layer(middleware::from_fn(
            move |req: Request, next: Next| enforce(policy, refusal, req, next),
        ));
        let path = path.into();
        let entry = self.paths.remove(&path).unwrap_or_default();
        self.paths.insert(path.clone(), entry.merge(guarded));
        self.specs.push(RouteSpec {
            method,
            path,
            policy,
            refusal,
        });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        policy: Policy,
        handler: H,
    ) -> Self {
        self.add(Method::GET, MethodFilter::GET, path, policy, handler)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        policy: Policy,
        handler: H,
    ) -> Self {
        self.add(Method::POST, MethodFilter::POST, path, policy, handler)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        policy: Policy,
        handler: H,
    ) -> Self {
        self.add(Method::PUT, MethodFilter::PUT, path, policy, handler)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        policy: Policy,
        handler: H,
    ) -> Self {
        self.add(Method::DELETE, MethodFilter::DELETE, path, policy, handler)
    }

    /// Joins another capability's table to this one.
    pub fn merge(mut self, other: Routes) -> Self {
        for (path, router) in other.paths {
            let entry = self.paths.remove(&path).unwrap_or_default();
            self.paths.insert(path, entry.merge(router));
        }
        self.specs.extend(other.specs);
        self
    }

    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    pub fn into_router(self) -> Router<AppState> {
        self.paths
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(&path, methods)
            })
    }
}
