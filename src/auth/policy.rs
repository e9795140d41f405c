//! Who may call each route, declared where the route is defined and enforced there.
//!
//! Capabilities do not build axum routers directly: they hand their routes to a
//! [`Routes`] table, each with a [`Policy`]. The table both builds the router, wrapping
//! every handler in its policy's check, and lists what it built, so a test can walk
//! every route and prove its policy holds. A route without a policy cannot be written.

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

async fn enforce(policy: Policy, req: Request, next: Next) -> Response {
    let auth = req.extensions().get::<std::sync::Arc<Authenticated>>();
    match policy.check(auth.map(AsRef::as_ref)) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub policy: Policy,
}

/// The route table; see the module documentation.
#[derive(Default)]
pub struct Routes {
    paths: BTreeMap<String, MethodRouter<AppState>>,
    specs: Vec<RouteSpec>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
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
        let guarded = axum::routing::on(filter, handler).route_layer(middleware::from_fn(
            move |req: Request, next: Next| enforce(policy, req, next),
        ));
        let path = path.into();
        let entry = self.paths.remove(&path).unwrap_or_default();
        self.paths.insert(path.clone(), entry.merge(guarded));
        self.specs.push(RouteSpec {
            method,
            path,
            policy,
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
