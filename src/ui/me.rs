//! The signed-in person's own pages: the profile and security (2FA,
//! recovery codes, sessions).

use askama::Template;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use serde::Deserialize;

use super::page::{FormState, Shell};
use super::{Ctx, Form, PageResult};
use crate::accounts::service::{self, ProfileInput};
use crate::auth::policy::Policy::LoggedIn;
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::twofa::{self, Update};

pub fn routes() -> Routes {
    Routes::pages()
        .get("/ui/profile", LoggedIn, profile_page)
        .post("/ui/profile", LoggedIn, profile_submit)
        .get("/ui/security", LoggedIn, security_page)
        .get("/ui/security/2fa", LoggedIn, twofa_page)
        .post("/ui/security/2fa/enable", LoggedIn, twofa_enable)
        .post("/ui/security/2fa/disable", LoggedIn, twofa_disable)
        .post("/ui/security/sessions/{id}/end", LoggedIn, end_session)
        .post(
            "/ui/security/sessions/end-others",
            LoggedIn,
            end_other_sessions,
        )
}

/// Pages behind `LoggedIn` always have a session; the policy answered otherwise.
fn caller(ctx: &Ctx) -> Result<&Authenticated, AppError> {
    ctx.auth.as_deref().ok_or_else(AppError::login_required)
}

#[derive(Template)]
#[template(path = "ui/profile.html")]
struct ProfilePage {
    shell: Shell,
    form: FormState,
}

const PROFILE_FIELDS: [&str; 6] = [
    "current_password",
    "first_name",
    "last_name",
    "username",
    "email",
    "password",
];

async fn profile_page(ctx: Ctx) -> PageResult {
    let auth = caller(&ctx)?;
    let form = FormState::default()
        .with("first_name", &auth.user.first_name)
        .with("last_name", &auth.user.last_name)
        .with("username", &auth.user.username)
        .with("email", &auth.user.email);
    let page = ProfilePage {
        shell: Shell::new(&ctx, "Profile"),
        form,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct ProfileForm {
    first_name: String,
    last_name: String,
    username: String,
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    current_password: String,
}

async fn profile_submit(ctx: Ctx, Form(form): Form<ProfileForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let input = ProfileInput {
        user_id: None,
        first_name: &form.first_name,
        last_name: &form.last_name,
        email: &form.email,
        username: &form.username,
        password: Some(form.password.as_str()),
        current_password: Some(form.current_password.as_str()),
    };
    match service::update_profile(&ctx.state, auth, &ctx.origin, &input).await {
        Ok(()) => Ok(ctx.redirect("/ui/profile", Some((true, "Your profile is saved.")))),
        Err(e) => {
            let status = e.status();
            let state = FormState::default()
                .with("first_name", &form.first_name)
                .with("last_name", &form.last_name)
                .with("username", &form.username)
                .with("email", &form.email)
                .refused(e, &PROFILE_FIELDS)?;
            let page = ProfilePage {
                shell: Shell::new(&ctx, "Profile"),
                form: state,
            };
            Ok(ctx.render(status, page.render()?))
        }
    }
}

/// A session as the security page lists it.
struct SessionRow {
    id: i64,
    device: String,
    address: String,
    last_used: String,
    started: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "ui/security.html")]
struct SecurityPage {
    shell: Shell,
    twofa_enabled: bool,
    sessions: Vec<SessionRow>,
    form: FormState,
}

async fn security_render(ctx: &Ctx, status: StatusCode, form: FormState) -> PageResult {
    let auth = caller(ctx)?;
    let sessions = service::sessions(&ctx.state, auth)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            device: device_name(s.user_agent.as_deref()),
            address: s.ip.unwrap_or_else(|| "unknown".to_owned()),
            last_used: when(s.last_seen_at),
            started: when(s.created_at),
            current: s.id == auth.session.id,
        })
        .collect();
    let page = SecurityPage {
        shell: Shell::new(ctx, "Security"),
        twofa_enabled: auth.user.twofa_enabled,
        sessions,
        form,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn security_page(ctx: Ctx) -> PageResult {
    security_render(&ctx, StatusCode::OK, FormState::default()).await
}

/// `2026-11-30 14:05 UTC`.
pub(super) fn when(at: i64) -> String {
    let iso = crate::db::iso8601(at);
    match (iso.get(..10), iso.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => iso,
    }
}

/// A readable name for a user agent: the browser and the system it runs on.
pub(super) fn device_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => crate::http::truncate(ua, 40).to_owned(),
    }
}

#[derive(Template)]
#[template(path = "ui/twofa.html")]
struct TwofaPage {
    shell: Shell,
    qr_svg: String,
    secret: String,
    form: FormState,
}

async fn twofa_render(ctx: &Ctx, status: StatusCode, form: FormState) -> PageResult {
    let auth = caller(ctx)?;
    let enrollment = twofa::pending_or_new_enrollment(&ctx.state, &auth.user).await?;
    let secret = enrollment
        .uri
        .split_once("secret=")
        .and_then(|(_, rest)| rest.split('&').next())
        .unwrap_or_default()
        .to_owned();
    let page = TwofaPage {
        shell: Shell::new(ctx, "Set up two-factor authentication"),
        qr_svg: enrollment.qr_svg,
        secret,
        form,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn twofa_page(ctx: Ctx) -> PageResult {
    twofa_render(&ctx, StatusCode::OK, FormState::default()).await
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

#[derive(Template)]
#[template(path = "ui/recovery_codes.html")]
struct RecoveryCodesPage {
    shell: Shell,
    codes: Vec<String>,
    download: String,
}

const WRONG_CODE: &str = "That code is not right. Enter the code your app shows now.";

async fn twofa_enable(ctx: Ctx, Form(form): Form<CodeForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let outcome = if form.code.trim().is_empty() || form.code.len() > 64 {
        Update::Refused
    } else {
        twofa::update(&ctx.state, &auth.user, &ctx.origin, true, &form.code).await?
    };
    match outcome {
        // Shown once, in the answer to the form: they exist nowhere else in clear.
        Update::Enabled(codes) => {
            let text = format!(
                "Gatehouse recovery codes for {}\nEach code works once.\n\n{}\n",
                auth.user.username,
                codes.join("\n")
            );
            let page = RecoveryCodesPage {
                shell: Shell::new(&ctx, "Your recovery codes"),
                codes,
                download: format!("data:text/plain;charset=utf-8,{}", percent_encode(&text)),
            };
            Ok(ctx.render(StatusCode::OK, page.render()?))
        }
        _ => {
            let state = FormState::default().field_error("code", WRONG_CODE);
            twofa_render(&ctx, StatusCode::BAD_REQUEST, state).await
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn twofa_disable(ctx: Ctx, Form(form): Form<CodeForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let outcome = if form.code.trim().is_empty() || form.code.len() > 64 {
        Update::Refused
    } else {
        twofa::update(&ctx.state, &auth.user, &ctx.origin, false, &form.code).await?
    };
    match outcome {
        Update::Disabled => Ok(ctx.redirect(
            "/ui/security",
            Some((true, "Two-factor authentication is off.")),
        )),
        _ => {
            let state = FormState::default().field_error(
                "code",
                "That code is not right. Enter a code from your app or a recovery code.",
            );
            security_render(&ctx, StatusCode::BAD_REQUEST, state).await
        }
    }
}

#[derive(Deserialize)]
struct Empty {}

async fn end_session(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Empty>) -> PageResult {
    let auth = caller(&ctx)?;
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::not_found("Session not found"))?;
    service::revoke_session(&ctx.state, auth, &ctx.origin, id).await?;
    if id == auth.session.id {
        let mut response = ctx.redirect("/ui/login", Some((true, "You are signed out.")));
        for cookie in session::clear_cookies(&ctx.state.config) {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return Ok(response);
    }
    Ok(ctx.redirect("/ui/security", Some((true, "That session is signed out."))))
}

async fn end_other_sessions(ctx: Ctx, Form(_): Form<Empty>) -> PageResult {
    let auth = caller(&ctx)?;
    let revoked = service::revoke_other_sessions(&ctx.state, auth, &ctx.origin).await?;
    let message = match revoked {
        0 => "There were no other sessions.".to_owned(),
        1 => "1 other session is signed out.".to_owned(),
        n => format!("{n} other sessions are signed out."),
    };
    Ok(ctx.redirect("/ui/security", Some((true, &message))))
}
