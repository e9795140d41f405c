//! The web UI: server-rendered pages under `/ui/`, for people.
//!
//! Views gather what a page needs through the same service functions the JSON routes
//! call, then render one askama template. Pages live in the same route table as the
//! JSON routes, with the same policies; their table is made with [`Routes::pages`], so
//! a refusal is an HTML answer (a redirect to sign in, a 403 page) and the routes stay
//! out of `/openapi.json`.
//!
//! Forms are plain HTML: POST, then a 303 redirect, then GET, with a flash message in
//! a short-lived signed cookie. Every form carries a `csrf_token` field that [`Form`]
//! checks before a handler sees the body: the session's CSRF token when there is a
//! session, otherwise a token bound by HMAC to a random pre-session cookie, so that the
//! sign-in and sign-up forms cannot be posted from another site either.

mod account;
mod assets;
mod billing;
mod boards;
mod chart;
mod dashboard;
mod logs;
mod me;
mod page;
mod roles;
mod users;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::auth::policy::Policy::{LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::http::Origin;
use crate::twofa::keys;

pub use page::{error_page, server_error_page};

/// Where pages live; paths below it check CSRF in their form field, not a header.
pub const PREFIX: &str = "/ui/";
/// The random value the sign-in and sign-up forms' tokens are bound to.
const FORM_COOKIE: &str = "gh_form";
const FLASH_COOKIE: &str = "gh_flash";
const THEME_COOKIE: &str = "gh_theme";
/// Signs the web UI's own cookies and pre-session form tokens.
const UI_KEY: &str = "gatehouse/v1/web-ui-cookies";

pub fn routes() -> Routes {
    Routes::pages()
        .get("/ui/", LoggedIn, dashboard::dashboard)
        .get("/ui/static/{file}", Public, assets::serve)
        .get("/ui/theme/{mode}", Public, theme)
        .merge(account::routes())
        .merge(me::routes())
        .merge(users::routes())
        .merge(roles::routes())
        .merge(logs::routes())
        .merge(billing::routes())
        .merge(boards::routes())
}

/// Where the stylesheet is served, under its content-hashed name.
pub fn stylesheet_url() -> &'static str {
    &assets::get().css_url
}

/// How the policy check answers on a page: sign in first, or a 403 page.
pub fn refuse(error: AppError, uri: &Uri) -> Response {
    match error {
        AppError::Unauthenticated(..) => {
            let next = uri.path_and_query().map_or("/ui/", |pq| pq.as_str());
            let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            Redirect::to(&format!("/ui/login?{query}")).into_response()
        }
        other => PageError::App(other).into_response(),
    }
}

/// Whether a path is a page, whose failures are answered in HTML.
pub fn is_page(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/ui"
}

/// A failure while serving a page, answered with an HTML error page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error("The form was not sent with its security token")]
    Csrf,
    #[error("The page could not be drawn")]
    Render(#[from] askama::Error),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was sent without its security token, or with one from another \
                 page. Go back, reload the page and send it again.",
            ),
            Self::Render(e) => AppError::internal(e).into_response(),
            Self::App(e) => match e {
                AppError::Internal(_) | AppError::Unavailable(_) => e.into_response(),
                e => {
                    let status = e.status();
                    let title = match status {
                        StatusCode::NOT_FOUND => "Page not found",
                        StatusCode::FORBIDDEN => "Not allowed",
                        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
                        _ => "Something is not right",
                    };
                    let mut response = error_page(status, title, &e.to_string());
                    if let AppError::Throttled { retry_after_secs } = e {
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                    }
                    response
                }
            },
        }
    }
}

pub type PageResult = Result<Response, PageError>;

fn ui_key(state: &AppState) -> [u8; 32] {
    keys::derive(state.config.secret_key.expose_secret(), UI_KEY)
}

/// `value.mac`, the MAC over the purpose and the value.
fn sign(state: &AppState, purpose: &str, value: &str) -> String {
    let mac = keys::hmac_sha256_hex(&ui_key(state), format!("{purpose}:{value}").as_bytes());
    format!("{value}.{mac}")
}

/// The value of a [`sign`]ed text, if its MAC holds.
fn unsign(state: &AppState, purpose: &str, signed: &str) -> Option<String> {
    let (value, mac) = signed.rsplit_once('.')?;
    let expected = keys::hmac_sha256_hex(&ui_key(state), format!("{purpose}:{value}").as_bytes());
    bool::from(mac.as_bytes().ct_eq(expected.as_bytes())).then(|| value.to_owned())
}

/// One of the web UI's own cookies: for the server only, sent on top-level navigation.
fn cookie_header(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: i64,
    path: &str,
) -> HeaderValue {
    let cookie = Cookie::build((name, value))
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age))
        .same_site(SameSite::Lax)
        .http_only(true);
    session::set_cookie(&state.config, cookie)
}

/// The light/dark choice; `System` follows `prefers-color-scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    System,
    Light,
    Dark,
}

impl Theme {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "light" => Some(Self::Light),
            "dark" => Some(Self::Dark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    /// The choice the switch offers next.
    pub fn next(self) -> Self {
        match self {
            Self::System => Self::Dark,
            Self::Dark => Self::Light,
            Self::Light => Self::System,
        }
    }
}

/// A one-time message shown on the next page.
#[derive(Debug, Clone)]
pub struct Flash {
    pub success: bool,
    pub message: String,
}

/// Everything a page handler knows about its request besides its body.
pub struct Ctx {
    pub state: AppState,
    pub auth: Option<Arc<Authenticated>>,
    pub origin: Origin,
    pub headers: HeaderMap,
    pub uri: Uri,
    theme: Theme,
    flash: Option<Flash>,
    /// The pre-session form nonce, and whether it is new and must be set.
    nonce: (String, bool),
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(origin) = Origin::from_request_parts(parts, state).await;
        let headers = parts.headers.clone();
        let theme = session::cookie(&headers, THEME_COOKIE)
            .and_then(Theme::parse)
            .unwrap_or(Theme::System);
        let flash = session::cookie(&headers, FLASH_COOKIE)
            .and_then(|c| unsign(state, "flash", c))
            .and_then(|v| {
                use base64::Engine as _;
                let (kind, text) = v.split_once('-')?;
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .ok()?;
                Some(Flash {
                    success: kind == "ok",
                    message: String::from_utf8(bytes).ok()?,
                })
            });
        let nonce = match session::cookie(&headers, FORM_COOKIE) {
            Some(n) if n.len() <= 64 => (n.to_owned(), false),
            _ => (session::random_token(), true),
        };
        Ok(Ctx {
            state: state.clone(),
            auth: parts.extensions.get::<Arc<Authenticated>>().cloned(),
            origin,
            headers,
            uri: parts.uri.clone(),
            theme,
            flash,
            nonce,
        })
    }
}

impl Ctx {
    /// The token every form of this page carries.
    pub fn csrf_token(&self) -> String {
        match &self.auth {
            Some(auth) => auth.session.csrf_token.clone(),
            None => form_token(&self.state, &self.nonce.0),
        }
    }

    /// Renders a page with its status, setting the cookies the page needs.
    pub fn render(&self, status: StatusCode, html: String) -> Response {
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response();
        let headers = response.headers_mut();
        if self.nonce.1 && self.auth.is_none() {
            let cookie = cookie_header(&self.state, FORM_COOKIE, &self.nonce.0, 86400, "/ui/");
            headers.append(header::SET_COOKIE, cookie);
        }
        if self.flash.is_some() {
            headers.append(
                header::SET_COOKIE,
                cookie_header(&self.state, FLASH_COOKIE, "", 0, "/ui/"),
            );
        }
        response
    }

    pub fn theme(&self) -> Theme {
        self.theme
    }

    pub fn flash(&self) -> Option<&Flash> {
        self.flash.as_ref()
    }

    /// A 303 to `to` with a flash message for the page it lands on.
    pub fn redirect(&self, to: &str, flash: Option<(bool, &str)>) -> Response {
        let mut response = Redirect::to(to).into_response();
        if let Some((success, message)) = flash {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message);
            let kind = if success { "ok" } else { "error" };
            let value = sign(&self.state, "flash", &format!("{kind}-{text}"));
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&self.state, FLASH_COOKIE, &value, 60, "/ui/"),
            );
        }
        response
    }
}

fn form_token(state: &AppState, nonce: &str) -> String {
    keys::hmac_sha256_hex(&ui_key(state), format!("form:{nonce}").as_bytes())
}

/// Only our own pages are places to go back to: a path under `/ui/`, never another
/// host, and only printable ASCII, which is all a `Location` header may hold.
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with(PREFIX)
                && !n.contains("//")
                && !n.contains('\\')
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/ui/",
    }
}

/// A posted form of type `T`, read only after its `csrf_token` field has been checked
/// against the session (or the pre-session cookie); see the module documentation.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let expected = match req.extensions().get::<Arc<Authenticated>>() {
            Some(auth) => Some(auth.session.csrf_token.clone()),
            None => session::cookie(req.headers(), FORM_COOKIE).map(|n| form_token(state, n)),
        };
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::invalid("The form could not be read")
            }
        })?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| AppError::invalid("The form could not be read"))?;
        let sent = fields
            .iter()
            .find(|(name, _)| name == "csrf_token")
            .map(|(_, value)| value.as_str());
        let ok = match (expected, sent) {
            (Some(expected), Some(sent)) => bool::from(sent.as_bytes().ct_eq(expected.as_bytes())),
            _ => false,
        };
        if !ok {
            return Err(PageError::Csrf);
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|_| PageError::App(AppError::invalid("The form is missing a field")))
    }
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// The theme switch: a link that works without JavaScript, remembered for a year.
async fn theme(
    ctx: Ctx,
    axum::extract::Path(mode): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> PageResult {
    let theme = Theme::parse(&mode).ok_or_else(|| AppError::not_found("No such theme"))?;
    let mut response = ctx.redirect(safe_next(query.next.as_deref()), None);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&ctx.state, THEME_COOKIE, theme.as_str(), 31_536_000, "/"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_pages_are_places_to_go_back_to() {
        for good in ["/ui/", "/ui/profile", "/ui/security?x=1"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/ui/\\evil.example",
            "/ui/\nSet-Cookie: x=1",
            "/ui/ü",
            "/api",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn a_page_refuses_with_sign_in_or_an_html_403() {
        let uri: Uri = "/ui/users?page=2".parse().unwrap();
        let response = refuse(AppError::login_required(), &uri);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "/ui/login?next=%2Fui%2Fusers%3Fpage%3D2"
        );
        let response = refuse(AppError::unauthorized_access(), &uri);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}
