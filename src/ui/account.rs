//! The sign-in flow, without the shell: sign in (and its second step), sign up,
//! email verification, forgotten and reset passwords, sign out.

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use serde::Deserialize;

use super::page::{FormState, Shell};
use super::{cookie_header, safe_next, sign, unsign, Ctx, Form, NextQuery, PageResult};
use crate::accounts::recovery;
use crate::accounts::service::{self, Credentials, Login, NewAccount};
use crate::auth::policy::Policy::{LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::db;
use crate::error::AppError;

/// Signed `user_id-expiry` of a login whose password was proven and whose second
/// factor is awaited.
const PENDING_COOKIE: &str = "gh_login";
const PENDING_SECS: i64 = 300;

pub fn routes() -> Routes {
    Routes::pages()
        .get("/ui/login", Public, login_page)
        .post("/ui/login", Public, login_submit)
        .get("/ui/login/code", Public, code_page)
        .post("/ui/login/code", Public, code_submit)
        .post("/ui/login/email-code", Public, email_code)
        .get("/ui/signup", Public, signup_page)
        .post("/ui/signup", Public, signup_submit)
        .get("/ui/verify/{token}", Public, verify_page)
        .post("/ui/verify/{token}", Public, verify_submit)
        .post("/ui/verify-again", Public, verify_again)
        .get("/ui/forgot", Public, forgot_page)
        .post("/ui/forgot", Public, forgot_submit)
        .get("/ui/reset/{token}", Public, reset_page)
        .post("/ui/reset/{token}", Public, reset_submit)
        .post("/ui/logout", LoggedIn, logout)
}

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    shell: Shell,
    form: FormState,
    next: String,
}

async fn login_page(ctx: Ctx, Query(query): Query<NextQuery>) -> PageResult {
    let next = safe_next(query.next.as_deref()).to_owned();
    if ctx.auth.is_some() {
        return Ok(ctx.redirect(&next, None));
    }
    let page = LoginPage {
        shell: Shell::new(&ctx, "Sign in"),
        form: FormState::default(),
        next,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct LoginForm {
    username_or_email: String,
    password: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login_submit(ctx: Ctx, Form(form): Form<LoginForm>) -> PageResult {
    let next = safe_next(form.next.as_deref()).to_owned();
    let credentials = Credentials {
        username_or_email: &form.username_or_email,
        password: &form.password,
        token: None,
    };
    let outcome = service::login(
        &ctx.state,
        &ctx.origin,
        &ctx.headers,
        ctx.auth.as_deref(),
        &credentials,
    )
    .await;
    match outcome {
        Ok(Login::Done(done)) => {
            let mut response = ctx.redirect(&next, Some((true, "You are signed in.")));
            for cookie in done.cookies(&ctx.state) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok(response)
        }
        Ok(Login::SecondFactor(user)) => {
            let value = sign(
                &ctx.state,
                "login",
                &format!("{}-{}", user.id, db::now() + PENDING_SECS),
            );
            let query = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
            let mut response = ctx.redirect(&format!("/ui/login/code?{query}"), None);
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(
                    &ctx.state,
                    PENDING_COOKIE,
                    &value,
                    PENDING_SECS,
                    "/ui/login",
                ),
            );
            Ok(response)
        }
        Err(e) => {
            let status = e.status();
            let form_state = FormState::default()
                .with("username_or_email", &form.username_or_email)
                .refused(e, &[])?;
            let page = LoginPage {
                shell: Shell::new(&ctx, "Sign in"),
                form: form_state,
                next,
            };
            Ok(ctx.render(status, page.render()?))
        }
    }
}

/// The account whose second factor is awaited, if the pending cookie is genuine and
/// fresh.
fn pending_user(ctx: &Ctx) -> Option<i64> {
    let value = unsign(
        &ctx.state,
        "login",
        session::cookie(&ctx.headers, PENDING_COOKIE)?,
    )?;
    let (id, expires) = value.split_once('-')?;
    let expires: i64 = expires.parse().ok()?;
    (expires > db::now()).then_some(())?;
    id.parse().ok()
}

#[derive(Template)]
#[template(path = "ui/login_code.html")]
struct CodePage {
    shell: Shell,
    form: FormState,
    next: String,
}

fn code_page_render(ctx: &Ctx, status: StatusCode, form: FormState, next: String) -> PageResult {
    let page = CodePage {
        shell: Shell::new(ctx, "Two-factor check"),
        form,
        next,
    };
    Ok(ctx.render(status, page.render()?))
}

const SIGN_IN_AGAIN: &str = "Your sign-in took too long. Sign in again.";

async fn code_page(ctx: Ctx, Query(query): Query<NextQuery>) -> PageResult {
    if pending_user(&ctx).is_none() {
        return Ok(ctx.redirect("/ui/login", Some((false, SIGN_IN_AGAIN))));
    }
    let next = safe_next(query.next.as_deref()).to_owned();
    code_page_render(&ctx, StatusCode::OK, FormState::default(), next)
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
    #[serde(default)]
    next: Option<String>,
}

async fn code_submit(ctx: Ctx, Form(form): Form<CodeForm>) -> PageResult {
    let Some(user_id) = pending_user(&ctx) else {
        return Ok(ctx.redirect("/ui/login", Some((false, SIGN_IN_AGAIN))));
    };
    let next = safe_next(form.next.as_deref()).to_owned();
    if form.code.trim().is_empty() {
        let state = FormState::default().field_error("code", "Enter a code.");
        return code_page_render(&ctx, StatusCode::BAD_REQUEST, state, next);
    }
    let outcome = service::login_second_factor(
        &ctx.state,
        &ctx.origin,
        &ctx.headers,
        ctx.auth.as_deref(),
        user_id,
        &form.code,
    )
    .await;
    match outcome {
        Ok(done) => {
            let mut response = ctx.redirect(&next, Some((true, "You are signed in.")));
            for cookie in done.cookies(&ctx.state) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&ctx.state, PENDING_COOKIE, "", 0, "/ui/login"),
            );
            Ok(response)
        }
        Err(AppError::Unauthenticated("invalid_twofa_token", _)) => {
            let state = FormState::default().field_error(
                "code",
                "That code is not right, or has been used. Try the newest code.",
            );
            code_page_render(&ctx, StatusCode::UNAUTHORIZED, state, next)
        }
        Err(e) => {
            let status = e.status();
            let state = FormState::default().refused(e, &[])?;
            code_page_render(&ctx, status, state, next)
        }
    }
}

#[derive(Deserialize)]
struct NextForm {
    #[serde(default)]
    next: Option<String>,
}

async fn email_code(ctx: Ctx, Form(form): Form<NextForm>) -> PageResult {
    let Some(user_id) = pending_user(&ctx) else {
        return Ok(ctx.redirect("/ui/login", Some((false, SIGN_IN_AGAIN))));
    };
    let sent = service::email_login_code(&ctx.state, user_id).await?;
    let message = if sent {
        (true, "A code is on its way to your email address.")
    } else {
        (
            false,
            "A code was sent less than a minute ago; check your email.",
        )
    };
    let next = safe_next(form.next.as_deref());
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Ok(ctx.redirect(&format!("/ui/login/code?{query}"), Some(message)))
}

#[derive(Template)]
#[template(path = "ui/signup.html")]
struct SignupPage {
    shell: Shell,
    form: FormState,
    min_length: usize,
    max_length: usize,
}

fn signup_render(ctx: &Ctx, status: StatusCode, form: FormState) -> PageResult {
    let policy = &ctx.state.config.password_policy;
    let page = SignupPage {
        shell: Shell::new(ctx, "Create an account"),
        form,
        min_length: policy.min_length,
        max_length: policy.max_length,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn signup_page(ctx: Ctx) -> PageResult {
    if ctx.auth.is_some() {
        return Ok(ctx.redirect("/ui/", None));
    }
    signup_render(&ctx, StatusCode::OK, FormState::default())
}

#[derive(Deserialize)]
struct SignupForm {
    first_name: String,
    last_name: String,
    username: String,
    email: String,
    password: String,
}

async fn signup_submit(ctx: Ctx, Form(form): Form<SignupForm>) -> PageResult {
    let account = NewAccount {
        first_name: &form.first_name,
        last_name: &form.last_name,
        username: &form.username,
        email: &form.email,
        password: &form.password,
    };
    match service::signup(&ctx.state, &account).await {
        Ok(_) => Ok(ctx.redirect(
            "/ui/login",
            Some((
                true,
                "Your account is created. We have emailed you a link to verify your address.",
            )),
        )),
        Err(e) => {
            let status = e.status();
            let state = FormState::default()
                .with("first_name", &form.first_name)
                .with("last_name", &form.last_name)
                .with("username", &form.username)
                .with("email", &form.email)
                .refused(
                    e,
                    &["first_name", "last_name", "username", "email", "password"],
                )?;
            signup_render(&ctx, status, state)
        }
    }
}

#[derive(Template)]
#[template(path = "ui/verify.html")]
struct VerifyPage {
    shell: Shell,
    token: String,
    /// The link was tried and is no good.
    failed: bool,
    form: FormState,
}

async fn verify_page(ctx: Ctx, Path(token): Path<String>) -> PageResult {
    let page = VerifyPage {
        shell: Shell::new(&ctx, "Verify your email"),
        token,
        failed: false,
        form: FormState::default(),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

/// Verifying takes a press of a button: mail scanners that open links must not use
/// them up.
async fn verify_submit(ctx: Ctx, Path(token): Path<String>, Form(_): Form<NextForm>) -> PageResult {
    match service::verify_email(&ctx.state, &token).await {
        Ok(_) => Ok(ctx.redirect(
            "/ui/login",
            Some((true, "Your email address is verified. You can sign in now.")),
        )),
        Err(AppError::Invalid(_)) => {
            let page = VerifyPage {
                shell: Shell::new(&ctx, "Verify your email"),
                token,
                failed: true,
                form: FormState::default(),
            };
            Ok(ctx.render(StatusCode::BAD_REQUEST, page.render()?))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct EmailForm {
    email: String,
}

async fn verify_again(ctx: Ctx, Form(form): Form<EmailForm>) -> PageResult {
    match service::resend_verification(&ctx.state, &ctx.origin, &form.email).await {
        Ok(()) => Ok(ctx.redirect("/ui/login", Some((true, service::VERIFY_SENT)))),
        Err(e) => {
            let status = e.status();
            let page = VerifyPage {
                shell: Shell::new(&ctx, "Verify your email"),
                token: String::new(),
                failed: true,
                form: FormState::default()
                    .with("email", &form.email)
                    .refused(e, &["email"])?,
            };
            Ok(ctx.render(status, page.render()?))
        }
    }
}

#[derive(Template)]
#[template(path = "ui/forgot.html")]
struct ForgotPage {
    shell: Shell,
    form: FormState,
}

async fn forgot_page(ctx: Ctx) -> PageResult {
    let page = ForgotPage {
        shell: Shell::new(&ctx, "Forgot your password?"),
        form: FormState::default(),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn forgot_submit(ctx: Ctx, Form(form): Form<EmailForm>) -> PageResult {
    match recovery::request_reset(&ctx.state, &ctx.origin, &form.email).await {
        Ok(()) => Ok(ctx.redirect("/ui/login", Some((true, recovery::RESET_SENT)))),
        Err(e) => {
            let status = e.status();
            let page = ForgotPage {
                shell: Shell::new(&ctx, "Forgot your password?"),
                form: FormState::default()
                    .with("email", &form.email)
                    .refused(e, &["email"])?,
            };
            Ok(ctx.render(status, page.render()?))
        }
    }
}

#[derive(Template)]
#[template(path = "ui/reset.html")]
struct ResetPage {
    shell: Shell,
    token: String,
    form: FormState,
    min_length: usize,
    max_length: usize,
}

fn reset_render(ctx: &Ctx, status: StatusCode, token: String, form: FormState) -> PageResult {
    let policy = &ctx.state.config.password_policy;
    let page = ResetPage {
        shell: Shell::new(ctx, "Choose a new password"),
        token,
        form,
        min_length: policy.min_length,
        max_length: policy.max_length,
    };
    Ok(ctx.render(status, page.render()?))
}

async fn reset_page(ctx: Ctx, Path(token): Path<String>) -> PageResult {
    reset_render(&ctx, StatusCode::OK, token, FormState::default())
}

#[derive(Deserialize)]
struct ResetForm {
    password: String,
    confirm: String,
}

async fn reset_submit(
    ctx: Ctx,
    Path(token): Path<String>,
    Form(form): Form<ResetForm>,
) -> PageResult {
    if form.password != form.confirm {
        let state = FormState::default().field_error("confirm", "The two passwords differ.");
        return reset_render(&ctx, StatusCode::BAD_REQUEST, token, state);
    }
    match recovery::reset(&ctx.state, &ctx.origin, &token, &form.password).await {
        Ok(()) => Ok(ctx.redirect(
            "/ui/login",
            Some((
                true,
                "Your password has been changed. Sign in with the new one.",
            )),
        )),
        Err(e) => {
            let status = e.status();
            let state = FormState::default().refused(e, &["password"])?;
            reset_render(&ctx, status, token, state)
        }
    }
}

async fn logout(ctx: Ctx, Form(_): Form<NextForm>) -> PageResult {
    if let Some(auth) = &ctx.auth {
        service::logout(&ctx.state, auth, &ctx.origin).await?;
    }
    let mut response = ctx.redirect("/ui/login", Some((true, "You are signed out.")));
    for cookie in session::clear_cookies(&ctx.state.config) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
