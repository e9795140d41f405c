//! Who may call each route, declared where the route is defined and enforced there.
//!
//! Capabilities do not build axum routers directly: they hand their routes to a
//! [`Routes`] table, each with a [`Policy`]. The table both builds the router, wrapping
//! every handler in its policy's check, and lists what it built, so a test can walk
//! every route and prove its policy holds. A route without a policy cannot be written.
//! A JSON route cannot be written without its description either: it enters through
//! [`Routes::api`], with its handler's `#[utoipa::path]`, from which `/openapi.json`
//! is generated; `get` and `post` are for the web UI's pages.
//!
//! How a refusal is answered is an attribute of the entry too ([`Refusal`]): the JSON
//! routes answer the contract's 401/403, the web UI's pages send a browser to sign in
//! or show an HTML 403 page. So are the two other things a route may ask of a request
//! ([`Access`]): whether an unsafe method riding on the session cookie must carry the
//! `X-CSRFToken` header (every JSON route, unless declared
//! [`without_csrf`](Policy::without_csrf)), and whether it needs billing configured
//! ([`needs_billing`](Policy::needs_billing): 503 `billing_not_configured` without it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use subtle::ConstantTimeEq;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa_axum::router::UtoipaMethodRouter;

use super::Authenticated;
use crate::app::AppState;
use crate::error::AppError;
use crate::rbac::Permission;
use crate::{billing, http, ui};

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

    /// For routes that create the session or act on a secret carried in the request
    /// itself (a signed webhook, an emailed token): no `X-CSRFToken` header needed.
    pub const fn without_csrf(self) -> Access {
        Access::from_policy(self).without_csrf()
    }

    /// For routes that need billing configured.
    pub const fn needs_billing(self) -> Access {
        Access::from_policy(self).needs_billing()
    }
}

/// A route's policy with what else it asks of a request; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub policy: Policy,
    pub csrf_header: bool,
    pub needs_billing: bool,
}

impl Access {
    const fn from_policy(policy: Policy) -> Self {
        Self {
            policy,
            csrf_header: true,
            needs_billing: false,
        }
    }

    pub const fn without_csrf(self) -> Self {
        Self {
            csrf_header: false,
            ..self
        }
    }

    pub const fn needs_billing(self) -> Self {
        Self {
            needs_billing: true,
            ..self
        }
    }
}

impl From<Policy> for Access {
    fn from(policy: Policy) -> Self {
        Self::from_policy(policy)
    }
}

pub const CSRF_FAILED: &str = "CSRF token validation failed";
pub const CSRF_HEADER: &str = "x-csrftoken";

fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .map(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
        .unwrap_or(false)
}

/// How a route answers a caller its policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The contract's JSON error; the route is part of `/openapi.json`.
    Json,
    /// A page: a redirect to the sign-in page, or an HTML 403 page.
    Page,
}

/// What the route table knows of the running service when it builds the router.
#[derive(Debug, Clone, Copy)]
struct Service {
    billing: bool,
}

/// The checks of one entry, before its handler: CSRF (the web UI's forms carry their
/// token in a field that `ui::Form` checks), then the policy, then billing.
fn check(spec: &RouteSpec, service: Service, req: &Request) -> Result<(), AppError> {
    let auth = req.extensions().get::<Arc<Authenticated>>();
    let unsafe_method = !matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if let Some(auth) = auth {
        if unsafe_method
            && spec.csrf_header
            && spec.refusal == Refusal::Json
            && !csrf_matches(req.headers(), &auth.session.csrf_token)
        {
            return Err(AppError::Forbidden("csrf_failed", CSRF_FAILED));
        }
    }
    spec.policy.check(auth.map(AsRef::as_ref))?;
    if spec.needs_billing && !service.billing {
        return Err(billing::not_configured());
    }
    Ok(())
}

/// The answer to a request its entry's checks refuse, if they do.
fn refusal(spec: &RouteSpec, service: Service, req: &Request) -> Option<Response> {
    let e = check(spec, service, req).err()?;
    Some(match spec.refusal {
        Refusal::Json => e.into_response(),
        Refusal::Page => ui::refuse(e, req.uri()),
    })
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub policy: Policy,
    pub refusal: Refusal,
    /// An unsafe method with a session needs the `X-CSRFToken` header.
    pub csrf_header: bool,
    /// Answered 503 `billing_not_configured` when billing is off.
    pub needs_billing: bool,
    /// A JSON route's description from its handler's `#[utoipa::path]`; pages have none.
    pub operation: Option<Operation>,
}

/// The route table; see the module documentation. Handlers are kept unguarded until
/// [`Routes::into_router`], which knows the running service.
pub struct Routes {
    entries: Vec<(RouteSpec, MethodRouter<AppState>)>,
    specs: Vec<RouteSpec>,
    /// The schemas the documented handlers' bodies refer to.
    schemas: Vec<(String, RefOr<Schema>)>,
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
            entries: Vec::new(),
            specs: Vec::new(),
            schemas: Vec::new(),
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
        access: impl Into<Access>,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // A JSON route is documented: it comes in through `api`.
        assert_eq!(
            self.refusal,
            Refusal::Page,
            "JSON routes are declared with Routes::api and #[utoipa::path]"
        );
        let access = access.into();
        let spec = RouteSpec {
            method,
            path: path.into(),
            policy: access.policy,
            refusal: self.refusal,
            csrf_header: access.csrf_header,
            needs_billing: access.needs_billing,
            operation: None,
        };
        self.specs.push(spec.clone());
        self.entries
            .push((spec, axum::routing::on(filter, handler)));
        self
    }

    /// A web UI page answering GET (tables made with [`Routes::pages`]).
    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        access: impl Into<Access>,
        handler: H,
    ) -> Self {
        self.add(Method::GET, MethodFilter::GET, path, access, handler)
    }

    /// A web UI form answering POST (tables made with [`Routes::pages`]).
    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: impl Into<String>,
        access: impl Into<Access>,
        handler: H,
    ) -> Self {
        self.add(Method::POST, MethodFilter::POST, path, access, handler)
    }

    /// A JSON route whose handler carries `#[utoipa::path]`, given as
    /// `utoipa_axum::routes!(handler)`: its path, methods, bodies and answers come from
    /// that description, who may call it from here. `/openapi.json` adds what the
    /// access implies (401, 403, 503, the security schemes).
    pub fn api(
        mut self,
        access: impl Into<Access>,
        (schemas, paths, handler): UtoipaMethodRouter<AppState>,
    ) -> Self {
        let access = access.into();
        let mut first = None;
        for (path, item) in paths.paths {
            let operations = [
                (Method::GET, item.get),
                (Method::POST, item.post),
                (Method::PUT, item.put),
                (Method::DELETE, item.delete),
                (Method::PATCH, item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let spec = RouteSpec {
                    method,
                    path: path.clone(),
                    policy: access.policy,
                    refusal: self.refusal,
                    csrf_header: access.csrf_header,
                    needs_billing: access.needs_billing,
                    operation: Some(operation),
                };
                first.get_or_insert_with(|| spec.clone());
                self.specs.push(spec);
            }
        }
        // `routes!` registered every method of the handler on one method router; the
        // entry's checks read the request's own method, so one entry guards them all.
        if let Some(spec) = first {
            self.entries.push((spec, handler));
        }
        self.schemas.extend(schemas);
        self
    }

    /// Joins another capability's table to this one.
    pub fn merge(mut self, other: Routes) -> Self {
        self.entries.extend(other.entries);
        self.specs.extend(other.specs);
        self.schemas.extend(other.schemas);
        self
    }

    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    pub fn schemas(&self) -> &[(String, RefOr<Schema>)] {
        &self.schemas
    }

    /// The router, each handler behind its entry's checks.
    pub fn into_router(self, state: &AppState) -> Router<AppState> {
        let service = Service {
            billing: state.billing.is_some(),
        };
        let mut paths: BTreeMap<String, MethodRouter<AppState>> = BTreeMap::new();
        for (spec, handler) in self.entries {
            let path = spec.path.clone();
            let spec = Arc::new(spec);
            let guarded = handler.route_layer(http::refusing(move |req: &Request| {
                refusal(&spec, service, req)
            }));
            let entry = paths.remove(&path).unwrap_or_default();
            paths.insert(path, entry.merge(guarded));
        }
        paths
            .into_iter()
            .fold(Router::new(), |router, (path, methods)| {
                router.route(&path, methods)
            })
    }
}
