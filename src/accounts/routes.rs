//! The account routes of the contract.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::store::{self, NewUser, ProfileChange, TokenPurpose};
use super::{recovery, sessions, validate, User};
use crate::app::AppState;
use crate::auth::policy::Policy::{LoggedIn, Public};
use crate::auth::policy::Routes;
use crate::auth::session;
use crate::auth::{CurrentUser, MaybeUser};
use crate::error::AppError;
use crate::http::{truncate, Json, LoginBody, Origin};
use crate::logs::{Level, LogEntry};
use crate::rbac::{self, Access, Permission};
use crate::text::label;
use crate::throttle::{self, device, Attempt};
use crate::{db, mail, twofa};

const VERIFY_TOKEN_TTL_SECS: i64 = 3600;
/// How long after login a session may change its own email or password without
/// giving the current password again.
const RECENT_LOGIN_SECS: i64 = 600;

pub fn routes() -> Routes {
    Routes::new()
        .post("/signup", Public, signup)
        .get("/verify_email/{token}", Public, verify_email)
        .post("/login", Public, login)
        .get("/check_auth_status", Public, check_auth_status)
        .get("/logout", LoggedIn, logout)
        .post("/logout", LoggedIn, logout)
        .get("/current_user_details", LoggedIn, current_user_details)
        .post("/update_profile", LoggedIn, update_profile)
        .get("/csrf_token", LoggedIn, csrf_token)
        .post("/forgot_password", Public, recovery::forgot_password)
        .post("/reset_password/{token}", Public, recovery::reset_password)
        .get("/sessions", LoggedIn, sessions::list)
        .delete("/sessions/{id}", LoggedIn, sessions::revoke)
        .post("/sessions/revoke_others", LoggedIn, sessions::revoke_others)
}

#[derive(Deserialize)]
struct SignupBody {
    first_name: String,
    last_name: String,
    username: String,
    email: String,
    password: String,
}

async fn signup(
    State(state): State<AppState>,
    Json(body): Json<SignupBody>,
) -> Result<Response, AppError> {
    let first_name = label("first_name", &body.first_name, validate::NAME_MAX)?;
    let last_name = label("last_name", &body.last_name, validate::NAME_MAX)?;
    let username = validate::username(&body.username)?;
    let email = validate::email(&body.email)?;
    validate::password(
        &state.config.password_policy,
        &body.password,
        &username,
        &email,
    )
    .await?;
    let hash = state.hasher.hash(&body.password).await?;

    let mut tx = state.db.begin().await?;
    let user_id = store::insert_user(
        &mut tx,
        &NewUser {
            username: &username,
            email: &email,
            first_name: &first_name,
            last_name: &last_name,
            password_hash: &hash,
            email_verified: false,
        },
    )
    .await?;
    rbac::grant_role(&mut *tx, user_id, rbac::USER).await?;
    let token = store::issue_token(
        &mut tx,
        user_id,
        TokenPurpose::VerifyEmail,
        VERIFY_TOKEN_TTL_SECS,
    )
    .await?;
    let link = state.config.verify_url_template.replace("{token}", &token);
    let welcome = mail::welcome(&email, &first_name, &username).map_err(AppError::internal)?;
    let verify = mail::verify_email(&email, &first_name, &link).map_err(AppError::internal)?;
    for message in [&welcome, &verify] {
        state
            .mailer
            .enqueue(&mut tx, message)
            .await
            .map_err(AppError::internal)?;
    }
    tx.commit().await?;
    state.mailer.wake();
    tracing::info!(user_id, "account created");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "success": true,
            "message": "Please check your email to verify your account",
        })),
    )
        .into_response())
}

async fn verify_email(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let user_id = if token.len() > 128 {
        None
    } else {
        store::consume_token(state.db.pool(), TokenPurpose::VerifyEmail, &token).await?
    };
    let Some(user_id) = user_id else {
        return Err(AppError::invalid(
            "The verification link is invalid or has expired",
        ));
    };
    store::mark_verified(&state.db, user_id).await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(user_id));
    tracing::info!(user_id, "email verified");
    Ok(
        axum::Json(json!({ "success": true, "message": "Your account has been verified" }))
            .into_response(),
    )
}

const INVALID_CREDENTIALS: &str = "Invalid credentials";

async fn login(
    State(state): State<AppState>,
    origin: Origin,
    headers: HeaderMap,
    MaybeUser(current): MaybeUser,
    body: LoginBody,
) -> Result<Response, AppError> {
    let identifier = body.username_or_email.trim();
    // An over-long identifier cannot name an account; it still pays for a hash so
    // that its answer takes as long as any other failure.
    let found = if identifier.is_empty() || identifier.len() > 254 {
        None
    } else {
        store::find_for_login(&state.db, identifier).await?
    };
    // A browser that has logged in to this account before (or holds a live session of
    // it) is not held back by failures others cause on the account; see `throttle`.
    let known_device = found.as_ref().is_some_and(|(user, _)| {
        device::is_known(&state.config, &headers, user)
            || current.as_ref().is_some_and(|c| c.user.id == user.id)
    });
    let account: Option<User> = found.as_ref().map(|(user, _)| user.clone());
    let mut attempt = Attempt::new(&state, &origin)
        .user(account.as_ref())
        .by_ip(&throttle::LOGIN_IP);
    if !known_device {
        let subject = match &found {
            Some((user, _)) => throttle::account_subject(user.id),
            None => format!("name:{}", identifier.to_lowercase()),
        };
        attempt = attempt.by(&throttle::LOGIN_ACCOUNT, subject);
    }
    attempt.check().await?;
    let password_ok = body.password.len() <= 1024
        && state
            .hasher
            .verify(&body.password, found.as_ref().map(|(_, h)| h.as_str()))
            .await?;
    let user = match found {
        Some((user, _)) if password_ok => user,
        other => {
            attempt.failed().await?;
            let mut entry = LogEntry::auth(Level::Warning, "login failed")
                .origin(&origin)
                .details(json!({ "username_or_email": truncate(identifier, 64) }));
            if let Some((user, _)) = other {
                entry = entry.user(&user);
            }
            state.activity.record(entry);
            return Err(AppError::Unauthenticated(
                "invalid_credentials",
                INVALID_CREDENTIALS,
            ));
        }
    };
    if user.disabled {
        return Err(AppError::Forbidden(
            "account_disabled",
            "This account has been disabled",
        ));
    }
    if state.config.require_email_verification && !user.email_verified {
        return Err(AppError::Unauthenticated(
            "email_not_verified",
            "Please verify your email address before logging in",
        ));
    }
    let second_factor =
        twofa::check_login(&state, &user, body.token.as_deref(), &origin, known_device).await?;
    attempt.clear(&throttle::LOGIN_ACCOUNT).await?;

    // A new session at every login: a value planted before login is worthless after.
    if let Some(old) = session::cookie(&headers, session::SESSION_COOKIE) {
        session::revoke_token(&state.db, old).await?;
        state.sessions.forget(&session::token_hash(old));
    }
    let new = session::create(&state.db, &state.config, user.id, &origin).await?;
    let access = Access::load(state.db.pool(), user.id).await?;
    let mut entry = LogEntry::auth(Level::Info, "login ok")
        .user(&user)
        .origin(&origin);
    if let Some(proof) = second_factor {
        entry = entry.details(json!({ "second_factor": proof.as_str() }));
    }
    state.activity.record(entry);
    let mut response = axum::Json(json!({
        "success": true,
        "message": "Login successful",
        "user": user.to_json(&access),
        "csrf_token": new.csrf_token,
    }))
    .into_response();
    for cookie in session::set_cookies(&state.config, &new) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
        .headers_mut()
        .append(header::SET_COOKIE, device::issue(&state.config, &user));
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Response, AppError> {
    session::revoke(&state.db, user.session.id).await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(user.user.id));
    state.activity.record(
        LogEntry::auth(Level::Info, "logout")
            .user(&user.user)
            .origin(&origin),
    );
    let mut response =
        axum::Json(json!({ "success": true, "message": "Logout successful" })).into_response();
    for cookie in session::clear_cookies(&state.config) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn check_auth_status(MaybeUser(user): MaybeUser) -> Response {
    let body = match user {
        Some(_) => json!({ "success": true, "message": "User is currently logged in" }),
        None => json!({ "success": false, "message": "User is not logged in" }),
    };
    axum::Json(body).into_response()
}

async fn current_user_details(user: CurrentUser) -> Response {
    let details = user.user.to_json(&user.access);
    axum::Json(json!({ "success": true, "message": details, "user": details })).into_response()
}

async fn csrf_token(user: CurrentUser) -> Response {
    axum::Json(json!({ "csrf_token": user.session.csrf_token })).into_response()
}

#[derive(Deserialize)]
struct UpdateProfileBody {
    #[serde(default)]
    user_id: Option<i64>,
    first_name: String,
    last_name: String,
    email: String,
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    current_password: Option<String>,
}

async fn update_profile(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UpdateProfileBody>,
) -> Result<Response, AppError> {
    let own = body.user_id.is_none_or(|id| id == caller.user.id);
    if !own && !caller.access.has(Permission::ManageUsers) {
        return Err(AppError::unauthorized_access());
    }
    let target = if own {
        caller.user.clone()
    } else {
        let id = body.user_id.unwrap_or(caller.user.id);
        let target = store::find_by_id(state.db.pool(), id)
            .await?
            .ok_or_else(|| AppError::not_found("User not found"))?;
        // Editing an account is taking it over: only an account whose powers the
        // caller holds already may be edited.
        let target_access = Access::load(state.db.pool(), target.id).await?;
        let within = caller.access.super_admin
            || (!target_access.super_admin
                && target_access
                    .permissions
                    .iter()
                    .all(|p| caller.access.permissions.contains(p)));
        if !within {
            return Err(AppError::unauthorized_access());
        }
        target
    };

    let first_name = label("first_name", &body.first_name, validate::NAME_MAX)?;
    let last_name = label("last_name", &body.last_name, validate::NAME_MAX)?;
    let username = validate::username(&body.username)?;
    let email = validate::email(&body.email)?;
    let new_password = body.password.as_deref().filter(|p| !p.is_empty());
    let email_changes = !email.eq_ignore_ascii_case(&target.email);

    if own && (new_password.is_some() || email_changes) {
        match body.current_password.as_deref().filter(|p| !p.is_empty()) {
            Some(current) => {
                let stored = store::password_hash(&state.db, target.id).await?;
                if !state.hasher.verify(current, stored.as_deref()).await? {
                    return Err(AppError::Forbidden(
                        "wrong_current_password",
                        "Current password is incorrect",
                    ));
                }
            }
            None if db::now() - caller.session.created_at > RECENT_LOGIN_SECS => {
                return Err(AppError::Forbidden(
                    "reauthentication_required",
                    "Changing your email or password needs current_password (or a login in the last 10 minutes)",
                ));
            }
            None => {}
        }
    }
    let password_hash = match new_password {
        Some(password) => {
            validate::password(&state.config.password_policy, password, &username, &email).await?;
            Some(state.hasher.hash(password).await?)
        }
        None => None,
    };

    let mut tx = state.db.begin().await?;
    store::update_profile(
        &mut tx,
        target.id,
        &ProfileChange {
            first_name: &first_name,
            last_name: &last_name,
            username: &username,
            email: &email,
            password_hash: password_hash.as_deref(),
        },
    )
    .await?;
    if password_hash.is_some() {
        // `target` is the account as it was: the notice goes to its previous address.
        let keep = own.then_some(caller.session.id);
        recovery::after_password_change(&state, &mut tx, &target, keep, &origin).await?;
    }
    tx.commit().await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(target.id));
    if password_hash.is_some() {
        state.mailer.wake();
    }
    let profile = |first: &str, last: &str, user: &str, email: &str| json!({ "first_name": first, "last_name": last, "username": user, "email": email });
    let details = json!({
        "action": "update_profile",
        "target": { "user_id": target.id, "username": target.username },
        "before": profile(&target.first_name, &target.last_name, &target.username, &target.email),
        "after": profile(&first_name, &last_name, &username, &email),
        "password_changed": password_hash.is_some(),
    });
    let entry = if own {
        LogEntry::auth(Level::Info, "profile updated").details(details)
    } else {
        LogEntry::admin(format!("profile of user {} updated", target.id), details)
    };
    state
        .activity
        .record(entry.user(&caller.user).origin(&origin));
    Ok(
        axum::Json(json!({ "success": true, "message": "Profile updated successfully." }))
            .into_response(),
    )
}
