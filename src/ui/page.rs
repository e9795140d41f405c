//! What every page shares: the shell (header, navigation, theme, flash), form state
//! with per-field errors, and the error pages.

use std::collections::BTreeMap;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{assets, Ctx, Flash};
use crate::error::AppError;
use crate::rbac::Permission;

/// One entry of the navigation; shown only to holders of `needs`.
struct Nav {
    label: &'static str,
    href: &'static str,
    icon: &'static str,
    needs: Option<Permission>,
}

/// The navigation, in order. Later areas add their pages here with the permission
/// their route declares.
const NAV: &[Nav] = &[
    Nav {
        label: "Dashboard",
        href: "/ui/",
        icon: ICON_HOME,
        needs: None,
    },
    Nav {
        label: "Profile",
        href: "/ui/profile",
        icon: ICON_USER,
        needs: None,
    },
    Nav {
        label: "Security",
        href: "/ui/security",
        icon: ICON_LOCK,
        needs: None,
    },
    Nav {
        label: "Boards",
        href: "/ui/boards",
        icon: ICON_BOARD,
        needs: Some(Permission::ViewDashboard),
    },
    Nav {
        label: "Users",
        href: "/ui/users",
        icon: ICON_USERS,
        needs: Some(Permission::ManageUsers),
    },
    Nav {
        label: "Roles",
        href: "/ui/roles",
        icon: ICON_SHIELD,
        needs: Some(Permission::ManageAdmin),
    },
    Nav {
        label: "Activity log",
        href: "/ui/logs",
        icon: ICON_LIST,
        needs: None,
    },
];

/// Billing's entry, shown only when billing is configured.
const BILLING_NAV: &[Nav] = &[Nav {
    label: "Billing",
    href: "/ui/billing",
    icon: ICON_CARD,
    needs: None,
}];

const ICON_CARD: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><rect x="2.5" y="5" width="19" height="14" rx="2"/><path d="M2.5 10h19M6 15h4"/></svg>"#;
const ICON_HOME: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M3 11l9-7 9 7v9a1 1 0 0 1-1 1h-5v-6H9v6H4a1 1 0 0 1-1-1z"/></svg>"#;
const ICON_USER: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="8" r="4"/><path d="M4 21c0-4 4-6 8-6s8 2 8 6"/></svg>"#;
const ICON_USERS: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><circle cx="9" cy="8" r="3.5"/><path d="M2 20c0-3.5 3-5.5 7-5.5s7 2 7 5.5"/><path d="M16 4.5a3.5 3.5 0 0 1 0 7M18 14.5c2.5.5 4 2.5 4 5.5"/></svg>"#;
const ICON_SHIELD: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M12 3l8 3v6c0 4.5-3.4 8-8 9-4.6-1-8-4.5-8-9V6z"/><path d="M9 12l2 2 4-4"/></svg>"#;
const ICON_LIST: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M9 6h11M9 12h11M9 18h11"/><circle cx="4.5" cy="6" r="1"/><circle cx="4.5" cy="12" r="1"/><circle cx="4.5" cy="18" r="1"/></svg>"#;
const ICON_BOARD: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="4" width="18" height="16" rx="2"/><path d="M9 4v16M15 4v16"/></svg>"#;
const ICON_LOCK: &str = r#"<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/></svg>"#;

pub struct NavItem {
    pub label: &'static str,
    pub href: &'static str,
    pub icon: &'static str,
    pub current: bool,
}

pub struct ShellUser {
    pub name: String,
    /// The avatar's letter.
    pub initial: String,
    pub username: String,
}

/// The frame of every page.
pub struct Shell {
    pub title: String,
    pub theme: &'static str,
    pub next_theme: &'static str,
    /// This page, for the theme switch to come back to.
    pub here: String,
    pub css: &'static str,
    pub js: &'static str,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub user: Option<ShellUser>,
    pub nav: Vec<NavItem>,
}

impl Shell {
    pub fn new(ctx: &Ctx, title: impl Into<String>) -> Self {
        let path = ctx.uri.path();
        let here = ctx.uri.path_and_query().map_or("/ui/", |pq| pq.as_str());
        let user = ctx.auth.as_ref().map(|auth| {
            let name = format!("{} {}", auth.user.first_name, auth.user.last_name);
            let name = if name.trim().is_empty() {
                auth.user.username.clone()
            } else {
                name.trim().to_owned()
            };
            ShellUser {
                initial: name.chars().next().map(String::from).unwrap_or_default(),
                name,
                username: auth.user.username.clone(),
            }
        });
        let billing: &[Nav] = if ctx.state.billing.is_some() {
            BILLING_NAV
        } else {
            &[]
        };
        let nav = match &ctx.auth {
            Some(auth) => NAV
                .iter()
                .chain(billing)
                .filter(|n| n.needs.is_none_or(|p| auth.access.has(p)))
                .map(|n| NavItem {
                    label: n.label,
                    href: n.href,
                    icon: n.icon,
                    // A page below an entry (the 2FA set-up below Security) counts as it.
                    current: path == n.href || (n.href != "/ui/" && path.starts_with(n.href)),
                })
                .collect(),
            None => Vec::new(),
        };
        let assets = assets::get();
        Shell {
            title: title.into(),
            theme: ctx.theme().as_str(),
            next_theme: ctx.theme().next().as_str(),
            here: serde_urlencoded::to_string([("next", here)]).unwrap_or_default(),
            css: &assets.css_url,
            js: &assets.js_url,
            csrf: ctx.csrf_token(),
            flash: ctx.flash().cloned(),
            user,
            nav,
        }
    }
}

/// A form's values to show again and its errors, by field name.
#[derive(Default)]
pub struct FormState {
    values: BTreeMap<&'static str, String>,
    errors: BTreeMap<&'static str, String>,
    /// An error that belongs to no single field.
    pub general: Option<String>,
}

impl FormState {
    pub fn value(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    pub fn error(&self, field: &str) -> &str {
        self.errors.get(field).map_or("", String::as_str)
    }

    pub fn with(mut self, field: &'static str, value: &str) -> Self {
        self.values.insert(field, value.to_owned());
        self
    }

    pub fn field_error(mut self, field: &'static str, message: impl Into<String>) -> Self {
        self.errors.insert(field, message.into());
        self
    }

    /// Puts a service's refusal next to the field its message names, or above the
    /// form. Internal failures are not the form's business: they become the 500 page.
    pub fn refused(mut self, error: AppError, fields: &[&'static str]) -> Result<Self, AppError> {
        match error {
            AppError::Internal(_) | AppError::Unavailable(_) => return Err(error),
            error => {
                let message = error.to_string();
                let lowered = message.to_lowercase().replace(' ', "_");
                match fields.iter().find(|f| lowered.contains(*f)) {
                    Some(field) => {
                        self.errors.insert(field, sentence(&message));
                    }
                    None => self.general = Some(sentence(&message)),
                }
            }
        }
        Ok(self)
    }
}

/// Service messages name fields the way the JSON contract does (`first_name is
/// required`); on a page they read as a sentence.
fn sentence(message: &str) -> String {
    let text = message.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    css: &'a str,
    status: u16,
    title: &'a str,
    message: &'a str,
    request_id: Option<&'a str>,
}

fn render_error(
    status: StatusCode,
    title: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response {
    let page = ErrorPage {
        css: &assets::get().css_url,
        status: status.as_u16(),
        title,
        message,
        request_id,
    };
    let html = page.render().unwrap_or_else(|_| message.to_owned());
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// An HTML error page for any status.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render_error(status, title, message, None)
}

/// The 500 page, naming the request id that the log line of the failure carries.
pub fn server_error_page(status: StatusCode, request_id: &str) -> Response {
    render_error(
        status,
        "Something went wrong on our side",
        "The error has been logged. Try again in a moment; if it keeps happening, \
         give this request id to whoever runs this service.",
        Some(request_id),
    )
}
