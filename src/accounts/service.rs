//! What the account routes do, apart from reading requests and shaping answers: the
//! JSON handlers and the web UI's views both call these functions, so a rule (a
//! throttle, a check, a log line) lives once.

use axum::http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::store::{self, NewUser, ProfileChange, TokenPurpose};
use super::{login_extras, recovery, validate, User};
use crate::app::AppState;
use crate::auth::cache::Scope;
use crate::auth::password::Verdict;
use crate::auth::session::{self, Authenticated, NewSession};
use crate::db::batch::{self, Step};
use crate::error::AppError;
use crate::http::{truncate, Origin};
use crate::logs::writer::Direct;
use crate::logs::{Level, LogEntry};
use crate::rbac::{self, Access, Permission};
use crate::text::label;
use crate::throttle::{self, device, Attempt};
use crate::{db, mail, twofa};

/// Lifetime of a verification link.
const VERIFY_TOKEN_TTL_SECS: i64 = 3600;

/// How long after login a session may change its own email or password without
/// giving the current password again.
const RECENT_LOGIN_SECS: i64 = 600;

/// A signup form's fields.
pub struct NewAccount<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub password: &'a str,
}

/// Creates an unverified account with the User role and queues the welcome and
/// verification emails. Returns the new account's id.
pub async fn signup(state: &AppState, body: &NewAccount<'_>) -> Result<i64, AppError> {
    let first_name = label("first_name", body.first_name, validate::NAME_MAX)?;
    let last_name = label("last_name", body.last_name, validate::NAME_MAX)?;
    let username = validate::username(body.username)?;
    let email = validate::email(body.email)?;
    validate::password(
        &state.config.password_policy,
        body.password,
        &username,
        &email,
    )
    .await?;
    let hash = state.hasher.hash(body.password).await?;

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
    let welcome = mail::welcome(&email, &first_name, &username).map_err(AppError::internal)?;
    state
        .mailer
        .enqueue(&mut tx, &welcome)
        .await
        .map_err(AppError::internal)?;
    queue_verification(state, &mut tx, user_id, &email, &first_name).await?;
    tx.commit().await?;
    state.mailer.wake();
    tracing::info!(user_id, "account created");
    // What the dashboard's count of new accounts links to.
    let mut entry = LogEntry::auth(Level::Info, "account created");
    entry.user_id = Some(user_id);
    entry.user_email = Some(email.clone());
    state.activity.record(entry);
    Ok(user_id)
}

pub const VERIFY_INVALID: &str = "The verification link is invalid or has expired";

/// Uses up a verification link and marks its account verified.
pub async fn verify_email(state: &AppState, token: &str) -> Result<i64, AppError> {
    let user_id = if token.len() > 128 {
        None
    } else {
        store::consume_token(state.db.writer(), TokenPurpose::VerifyEmail, token).await?
    };
    let Some(user_id) = user_id else {
        return Err(AppError::invalid(VERIFY_INVALID));
    };
    store::mark_verified(&state.db, user_id).await?;
    state.sessions.invalidate(Scope::User(user_id)).await;
    tracing::info!(user_id, "email verified");
    Ok(user_id)
}

const INVALID_CREDENTIALS: &str = "Invalid credentials";

/// A login's credentials as sent.
pub struct Credentials<'a> {
    pub username_or_email: &'a str,
    pub password: &'a str,
    pub token: Option<&'a str>,
}

/// How a login ended when it did not fail.
pub enum Login {
    /// A new session.
    Done(Box<LoggedIn>),
    /// The password was right and 2FA is on, but no second factor was given (a code
    /// has been emailed, as the contract says).
    SecondFactor(User),
}

/// A started session and what its answer tells the browser.
pub struct LoggedIn {
    pub user: User,
    pub access: Access,
    pub session: NewSession,
}

impl LoggedIn {
    /// The session's cookies and the known-device cookie.
    pub fn cookies(&self, state: &AppState) -> Vec<HeaderValue> {
        let mut cookies = session::set_cookies(&state.config, &self.session).to_vec();
        cookies.push(device::issue(&state.config, &self.user));
        cookies
    }
}

pub async fn login(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    current: Option<&Authenticated>,
    body: &Credentials<'_>,
) -> Result<Login, AppError> {
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
    let known_device = found.as_ref().is_some_and(|a| {
        device::is_known(&state.config, headers, &a.user)
            || current.as_ref().is_some_and(|c| c.user.id == a.user.id)
    });
    let account: Option<User> = found.as_ref().map(|a| a.user.clone());
    let mut attempt = Attempt::new(state, origin)
        .user(account.as_ref())
        .by_ip(&throttle::LOGIN_IP);
    if !known_device {
        attempt = attempt.by(
            &throttle::LOGIN_ACCOUNT,
            throttle::login_subject(identifier),
        );
    }
    let reservation = attempt.reserve().await?;
    let verdict = if body.password.len() <= 1024 {
        state
            .hasher
            .check(
                body.password,
                found.as_ref().map(|a| a.password_hash.as_str()),
            )
            .await?
    } else {
        Verdict::Mismatch
    };
    let account = match found {
        Some(account) if verdict.matches() => account,
        other => {
            let mut entry = LogEntry::auth(Level::Warning, "login failed")
                .origin(origin)
                .details(json!({ "username_or_email": truncate(identifier, 64) }));
            if let Some(account) = other {
                entry = entry.user(&account.user);
            }
            state.activity.record(entry);
            return Err(AppError::Unauthenticated(
                "invalid_credentials",
                INVALID_CREDENTIALS,
            ));
        }
    };
    // The password is proven, so the attempt gives its slots back whatever comes next.
    // A login that is done also forgets the name's failures, in the round trip that
    // writes its session where the throttle is in the database.
    let steps = attempt.release_clearing_steps(&reservation, &throttle::LOGIN_ACCOUNT);
    let given_back_with_session = steps.is_some();
    let proven = Proven {
        account,
        verdict,
        known_device,
        release: steps.unwrap_or_default(),
    };
    let login = password_proven(state, origin, headers, body, proven).await;
    match &login {
        Ok(Login::Done(_)) if given_back_with_session => reservation.given_back(),
        Ok(Login::Done(_)) => {
            attempt
                .release_clearing(reservation, &throttle::LOGIN_ACCOUNT)
                .await?
        }
        _ => attempt.release(reservation).await?,
    }
    login
}

/// A login whose password matched.
struct Proven<'a> {
    account: store::LoginAccount,
    verdict: Verdict,
    known_device: bool,
    /// The throttle's give-back, written with the session if there is one.
    release: Vec<Step<'a>>,
}

/// The rest of a login whose password matched: the account's state, the second
/// factor and the session.
async fn password_proven(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    body: &Credentials<'_>,
    proven: Proven<'_>,
) -> Result<Login, AppError> {
    let Proven {
        account: store::LoginAccount { user, access, .. },
        verdict,
        known_device,
        release,
    } = proven;
    if user.disabled {
        return Err(AppError::Forbidden(
            "account_disabled",
            "This account has been disabled",
        ));
    }
    if state.config.require_email_verification && !user.email_verified {
        login_extras::resend_verification(state, &user).await;
        return Err(AppError::Unauthenticated(
            "email_not_verified",
            "Please verify your email address before logging in",
        ));
    }
    // The password is proven: an old service's hash is replaced now, whether or not
    // the second factor follows on another page.
    login_extras::upgrade_legacy_hash(state, user.id, body.password, verdict).await;
    let second_factor =
        match twofa::check_login(state, &user, body.token, origin, known_device).await {
            Err(AppError::TwofaRequired) => return Ok(Login::SecondFactor(user)),
            other => other?,
        };
    start_session(state, origin, headers, user, access, second_factor, release).await
}

/// The end of every successful login: the session's row, the event "login ok" and
/// `also` (the throttle's give-back) in one round trip. The event is durable, as the
/// activity log stores every authentication event, so the round trip goes through
/// [`db::Db::writer`]: the answer waits for one commit to reach the disk, as it waited
/// for the log's before.
async fn start_session(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    user: User,
    access: Access,
    second_factor: Option<twofa::Proof>,
    also: Vec<Step<'_>>,
) -> Result<Login, AppError> {
    // A new session at every login: a value planted before login is worthless after.
    if let Some(old) = session::cookie(headers, session::SESSION_COOKIE) {
        session::revoke_token(&state.db, old).await?;
        state.sessions.forget(&session::token_hash(old));
    }
    let pending = session::Pending::new(&state.config, user.id, origin);
    let mut entry = LogEntry::auth(Level::Info, "login ok")
        .user(&user)
        .origin(origin);
    if let Some(proof) = second_factor {
        entry = entry.details(json!({ "second_factor": proof.as_str() }));
    }
    let event = Direct::new(entry);
    let mut after = vec![event.step()];
    after.extend(also);
    batch::run(state.db.writer(), state.db.backend(), &pending.then(after)).await?;
    Ok(Login::Done(Box::new(LoggedIn {
        user,
        access,
        session: pending.session,
    })))
}

/// The second step of a login whose password was proven by [`login`] a moment ago
/// (the web UI asks for the code on a page of its own): the same 2FA check, with its
/// throttles, and the same session.
pub async fn login_second_factor(
    state: &AppState,
    origin: &Origin,
    headers: &HeaderMap,
    current: Option<&Authenticated>,
    user_id: i64,
    token: &str,
) -> Result<Box<LoggedIn>, AppError> {
    let user =
        store::find_by_id(state.db.pool(), user_id)
            .await?
            .ok_or(AppError::Unauthenticated(
                "invalid_credentials",
                INVALID_CREDENTIALS,
            ))?;
    if user.disabled {
        return Err(AppError::Forbidden(
            "account_disabled",
            "This account has been disabled",
        ));
    }
    let known_device = device::is_known(&state.config, headers, &user)
        || current.is_some_and(|c| c.user.id == user.id);
    let second_factor = twofa::check_login(state, &user, Some(token), origin, known_device).await?;
    Attempt::new(state, origin)
        .user(Some(&user))
        .by(&throttle::LOGIN_ACCOUNT, throttle::account_subject(user.id))
        .clear(&throttle::LOGIN_ACCOUNT)
        .await?;
    let access = Access::load(state.db.pool(), user.id).await?;
    match start_session(
        state,
        origin,
        headers,
        user,
        access,
        second_factor,
        Vec::new(),
    )
    .await?
    {
        Login::Done(done) => Ok(done),
        Login::SecondFactor(_) => Err(AppError::TwofaRequired),
    }
}

/// Emails a login code to an account awaiting its second factor; `false` when one
/// went out in the last minute.
pub async fn email_login_code(state: &AppState, user_id: i64) -> Result<bool, AppError> {
    match store::find_by_id(state.db.pool(), user_id).await? {
        Some(user) if user.twofa_enabled && !user.disabled => {
            twofa::send_login_code(state, &user).await
        }
        _ => Ok(false),
    }
}

pub const VERIFY_SENT: &str =
    "If an unverified account uses that email address, a new verification link has been sent";

/// Sends a new verification link to an unverified account's address. Throttled and
/// answered like a password reset request: the caller learns nothing about accounts.
pub async fn resend_verification(
    state: &AppState,
    origin: &Origin,
    email: &str,
) -> Result<(), AppError> {
    let email = validate::email(email)?;
    let attempt = Attempt::new(state, origin)
        .by_ip(&throttle::RESET_IP)
        .by(&throttle::RESET_EMAIL, email.to_lowercase());
    attempt.check().await?;
    attempt.failed().await?;
    let Some(user) = store::find_by_email(&state.db, &email).await? else {
        return Ok(());
    };
    if user.email_verified || user.disabled {
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    queue_verification(state, &mut tx, user.id, &user.email, &user.first_name).await?;
    tx.commit().await?;
    state.mailer.wake();
    Ok(())
}

/// Issues a verification link for the account and queues the mail carrying it, in the
/// caller's transaction: signup, the "send a new link" page and a sign-in by an
/// unverified account all send it this one way.
pub(super) async fn queue_verification(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    email: &str,
    first_name: &str,
) -> Result<(), AppError> {
    let token = store::issue_token(
        conn,
        user_id,
        TokenPurpose::VerifyEmail,
        VERIFY_TOKEN_TTL_SECS,
    )
    .await?;
    let link = state.config.verify_url_template.replace("{token}", &token);
    let message = mail::verify_email(email, first_name, &link).map_err(AppError::internal)?;
    state
        .mailer
        .enqueue(conn, &message)
        .await
        .map_err(AppError::internal)
}

/// Ends the caller's session.
pub async fn logout(
    state: &AppState,
    user: &Authenticated,
    origin: &Origin,
) -> Result<(), AppError> {
    session::revoke(&state.db, user.session.id).await?;
    state.sessions.invalidate(Scope::User(user.user.id)).await;
    state.activity.record(
        LogEntry::auth(Level::Info, "logout")
            .user(&user.user)
            .origin(origin),
    );
    Ok(())
}

/// A profile form's fields; `user_id` names another account (an admin's edit).
pub struct ProfileInput<'a> {
    pub user_id: Option<i64>,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub username: &'a str,
    pub password: Option<&'a str>,
    pub current_password: Option<&'a str>,
}

pub async fn update_profile(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    body: &ProfileInput<'_>,
) -> Result<(), AppError> {
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

    let first_name = label("first_name", body.first_name, validate::NAME_MAX)?;
    let last_name = label("last_name", body.last_name, validate::NAME_MAX)?;
    let username = validate::username(body.username)?;
    let email = validate::email(body.email)?;
    let new_password = body.password.filter(|p| !p.is_empty());
    let email_changes = !email.eq_ignore_ascii_case(&target.email);

    if own && (new_password.is_some() || email_changes) {
        match body.current_password.filter(|p| !p.is_empty()) {
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
        recovery::after_password_change(state, &mut tx, &target, keep, origin).await?;
    }
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(target.id)).await;
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
        .record(entry.user(&caller.user).origin(origin));
    Ok(())
}

/// The caller's live sessions, newest first.
pub async fn sessions(
    state: &AppState,
    caller: &Authenticated,
) -> Result<Vec<store::SessionInfo>, AppError> {
    let idle = session::secs(state.config.session_idle_timeout);
    Ok(store::live_sessions(&state.db, caller.user.id, idle).await?)
}

/// Ends one of the caller's sessions; ending the current one is logging out.
pub async fn revoke_session(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    id: i64,
) -> Result<(), AppError> {
    if !store::revoke_own_session(&state.db, caller.user.id, id).await? {
        return Err(AppError::not_found("Session not found"));
    }
    state.sessions.invalidate(Scope::User(caller.user.id)).await;
    state.activity.record(
        LogEntry::auth(Level::Info, "session revoked")
            .user(&caller.user)
            .origin(origin)
            .details(json!({ "session_id": id, "current": id == caller.session.id })),
    );
    Ok(())
}

/// Ends every session of the caller but this one; returns how many.
pub async fn revoke_other_sessions(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
) -> Result<u64, AppError> {
    let revoked =
        store::revoke_other_sessions(&state.db, caller.user.id, caller.session.id).await?;
    state.sessions.invalidate(Scope::User(caller.user.id)).await;
    state.activity.record(
        LogEntry::auth(Level::Info, "other sessions revoked")
            .user(&caller.user)
            .origin(origin)
            .details(json!({ "revoked": revoked })),
    );
    Ok(revoked)
}
