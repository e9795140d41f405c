//! The user administration pages (`manage_users`): the searchable list and one
//! user's page, whose actions go through `rbac::service`, the same rules as the JSON
//! routes. Destructive actions first show a confirmation page, which a browser
//! without JavaScript reaches by a plain link.

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;

use super::me::{device_name, when};
use super::page::Shell;
use super::{Ctx, Form, PageResult};
use crate::accounts::store::{find_by_id, live_sessions};
use crate::accounts::{recovery, User};
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::{session, Authenticated};
use crate::db::count::Total;
use crate::error::AppError;
use crate::rbac::store::{self, UserCursor, UserOrder};
use crate::rbac::{service, Access, Permission};

const MANAGE_USERS: Policy = Needs(Permission::ManageUsers);
const PER_PAGE: i64 = 25;

pub fn routes() -> Routes {
    Routes::pages()
        .get("/ui/users", MANAGE_USERS, list_page)
        .get("/ui/users/{id}", MANAGE_USERS, user_page)
        .post(
            "/ui/users/{id}/roles/{role_id}/add",
            MANAGE_USERS,
            assign_role,
        )
        .post(
            "/ui/users/{id}/roles/{role_id}/remove",
            MANAGE_USERS,
            remove_role,
        )
        .get(
            "/ui/users/{id}/confirm/{action}",
            MANAGE_USERS,
            confirm_page,
        )
        .post("/ui/users/{id}/disable", MANAGE_USERS, disable)
        .post("/ui/users/{id}/enable", MANAGE_USERS, enable)
        .post("/ui/users/{id}/sign-out", MANAGE_USERS, sign_out)
        .post(
            "/ui/users/{id}/sessions/{session_id}/end",
            MANAGE_USERS,
            end_session,
        )
        .post(
            "/ui/users/{id}/password-reset",
            MANAGE_USERS,
            password_reset,
        )
}

/// Pages behind a permission always have a session; the policy answered otherwise.
pub(super) fn caller(ctx: &Ctx) -> Result<&Authenticated, AppError> {
    ctx.auth.as_deref().ok_or_else(AppError::login_required)
}

fn user_id(raw: &str) -> Result<i64, AppError> {
    raw.parse().map_err(|_| AppError::not_found("No such user"))
}

async fn load_user(ctx: &Ctx, id: i64) -> Result<User, AppError> {
    let mut conn = ctx.state.db.pool().acquire().await?;
    find_by_id(&mut *conn, id)
        .await?
        .ok_or_else(|| AppError::not_found("No such user"))
}

fn user_url(id: i64) -> String {
    format!("/ui/users/{id}")
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

/// The orders offered, by their name in the address.
const SORTS: [(&str, &str, UserOrder); 3] = [
    ("joined", "Joined", UserOrder::Joined),
    ("username", "Username", UserOrder::Username),
    ("email", "Email", UserOrder::Email),
];

struct SortLink {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "ui/users.html")]
struct ListPage {
    shell: Shell,
    q: String,
    sorts: Vec<SortLink>,
    current_sort: String,
    users: Vec<User>,
    total: Total,
    prev: Option<String>,
    next: Option<String>,
}

/// The list's address: the search, the order and where the page starts, so that a
/// page can be kept, shared and reloaded.
fn list_url(q: &str, sort: &str, from: Option<(&str, &str)>) -> String {
    let mut params = Vec::new();
    if !q.is_empty() {
        params.push(("q", q));
    }
    params.push(("sort", sort));
    if let Some(from) = from {
        params.push(from);
    }
    format!(
        "/ui/users?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// The page's position in the address: a sort key, at most as long as the longest
/// username or email.
fn cursor(query: &ListQuery) -> Result<UserCursor, AppError> {
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let cursor = match (nonempty(&query.after), nonempty(&query.before)) {
        (None, None) => return Ok(UserCursor::First),
        (Some(key), None) => UserCursor::After(key),
        (None, Some(key)) => UserCursor::Before(key),
        (Some(_), Some(_)) => return Err(AppError::invalid("Give after or before, not both")),
    };
    match &cursor {
        UserCursor::After(key) | UserCursor::Before(key) if key.chars().count() > 254 => Err(
            AppError::invalid("The page's position must be at most 254 characters"),
        ),
        _ => Ok(cursor),
    }
}

/// The list pages by key (`after`/`before` a sort key), not by number, so the
/// millionth user costs what the first does; the total is counted up to 10,000 and
/// estimated past that (`db::count`).
async fn list_page(ctx: Ctx, Query(query): Query<ListQuery>) -> PageResult {
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.chars().count() > 100 {
        return Err(AppError::invalid("The search must be at most 100 characters").into());
    }
    let sort = query.sort.as_deref().unwrap_or("joined");
    let (_, _, order) = SORTS
        .iter()
        .find(|(name, _, _)| *name == sort)
        .ok_or_else(|| AppError::invalid("sort must be joined, username or email"))?;
    let cursor = cursor(&query)?;
    let filter = Some(q).filter(|q| !q.is_empty());
    let total = store::count_users(&ctx.state.db, filter)
        .await
        .map_err(AppError::from)?;
    let dense = !total.exact;
    let page = store::list_users_keyset(&ctx.state.db, filter, dense, *order, &cursor, PER_PAGE)
        .await
        .map_err(AppError::from)?;
    let prev = page
        .users
        .first()
        .filter(|_| page.more_before)
        .map(|u| list_url(q, sort, Some(("before", &u.key))));
    let next = page
        .users
        .last()
        .filter(|_| page.more_after)
        .map(|u| list_url(q, sort, Some(("after", &u.key))));
    let list = ListPage {
        shell: Shell::new(&ctx, "Users"),
        q: q.to_owned(),
        sorts: SORTS
            .iter()
            .map(|(name, label, _)| SortLink {
                label,
                href: list_url(q, name, None),
                current: *name == sort,
            })
            .collect(),
        current_sort: sort.to_owned(),
        users: page.users.into_iter().map(|u| u.user).collect(),
        total,
        prev,
        next,
    };
    Ok(ctx.render(StatusCode::OK, list.render()?))
}

/// A session as the user's page lists it.
struct SessionRow {
    id: i64,
    device: String,
    address: String,
    last_used: String,
}

struct RoleRow {
    id: i64,
    name: String,
    held: bool,
}

#[derive(Template)]
#[template(path = "ui/user.html")]
struct UserPage {
    shell: Shell,
    target: User,
    created: String,
    roles: Vec<RoleRow>,
    sessions: Vec<SessionRow>,
    is_self: bool,
}

async fn user_page(ctx: Ctx, Path(id): Path<String>) -> PageResult {
    let auth = caller(&ctx)?;
    let user = load_user(&ctx, user_id(&id)?).await?;
    let access = Access::load(ctx.state.db.pool(), user.id)
        .await
        .map_err(AppError::from)?;
    let roles = store::roles_with_permissions(&ctx.state.db)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .map(|(role, _)| RoleRow {
            held: access.roles.contains(&role.name),
            id: role.id,
            name: role.name,
        })
        .collect();
    let idle = session::secs(ctx.state.config.session_idle_timeout);
    let sessions = live_sessions(&ctx.state.db, user.id, idle)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            device: device_name(s.user_agent.as_deref()),
            address: s.ip.unwrap_or_else(|| "unknown".to_owned()),
            last_used: when(s.last_seen_at),
        })
        .collect();
    let page = UserPage {
        shell: Shell::new(&ctx, format!("User {}", user.username)),
        created: when(user.created_at),
        is_self: user.id == auth.user.id,
        target: user,
        roles,
        sessions,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

/// Answers an action with the page at `to` and a flash: the service's reason when it
/// refused, so the administrator sees why. Failures of ours stay 500 pages.
pub(super) fn outcome(ctx: &Ctx, to: &str, result: Result<(), AppError>, done: &str) -> PageResult {
    match result {
        Ok(()) => Ok(ctx.redirect(to, Some((true, done)))),
        Err(e @ (AppError::Internal(_) | AppError::Unavailable(_))) => Err(e.into()),
        Err(AppError::Forbidden(..)) => Ok(ctx.redirect(
            to,
            Some((
                false,
                "Refused: you can only change users and roles whose permissions you hold \
                 yourself, and only a Super Admin can give or take Super Admin.",
            )),
        )),
        Err(e) => Ok(ctx.redirect(to, Some((false, &format!("Refused: {e}"))))),
    }
}

#[derive(Deserialize)]
pub(super) struct Confirmed {}

fn role_id(raw: &str) -> Result<i64, AppError> {
    raw.parse().map_err(|_| AppError::not_found("No such role"))
}

async fn assign_role(
    ctx: Ctx,
    Path((id, role)): Path<(String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let result = service::assign_role(&ctx.state, auth, &ctx.origin, id, role_id(&role)?).await;
    outcome(&ctx, &user_url(id), result, "The role is given.")
}

async fn remove_role(
    ctx: Ctx,
    Path((id, role)): Path<(String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let result = service::remove_role(&ctx.state, auth, &ctx.origin, id, role_id(&role)?).await;
    outcome(&ctx, &user_url(id), result, "The role is taken away.")
}

/// What a confirmation page asks before the action.
struct Action {
    path: &'static str,
    question: &'static str,
    explain: &'static str,
    button: &'static str,
}

fn action(name: &str) -> Option<Action> {
    match name {
        "disable" => Some(Action {
            path: "disable",
            question: "Disable this account?",
            explain: "They are signed out everywhere at once and cannot sign in until the \
                      account is enabled again.",
            button: "Disable the account",
        }),
        "sign-out" => Some(Action {
            path: "sign-out",
            question: "Sign this user out everywhere?",
            explain: "Every session of theirs ends; they can sign in again.",
            button: "Sign out everywhere",
        }),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct ConfirmPage {
    shell: Shell,
    target: User,
    action: Action,
}

async fn confirm_page(ctx: Ctx, Path((id, name)): Path<(String, String)>) -> PageResult {
    let action = action(&name).ok_or_else(|| AppError::not_found("No such action"))?;
    let user = load_user(&ctx, user_id(&id)?).await?;
    let page = ConfirmPage {
        shell: Shell::new(&ctx, action.question),
        target: user,
        action,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn disable(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let result = service::set_disabled(&ctx.state, auth, &ctx.origin, id, true).await;
    outcome(&ctx, &user_url(id), result, "The account is disabled.")
}

async fn enable(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let result = service::set_disabled(&ctx.state, auth, &ctx.origin, id, false).await;
    outcome(&ctx, &user_url(id), result, "The account is enabled.")
}

async fn sign_out(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let result = service::end_sessions(&ctx.state, auth, &ctx.origin, id).await;
    outcome(
        &ctx,
        &user_url(id),
        result,
        "They are signed out everywhere.",
    )
}

async fn password_reset(ctx: Ctx, Path(id): Path<String>, Form(_): Form<Confirmed>) -> PageResult {
    let user = load_user(&ctx, user_id(&id)?).await?;
    let result = recovery::request_reset(&ctx.state, &ctx.origin, &user.email).await;
    outcome(
        &ctx,
        &user_url(user.id),
        result,
        "A password reset link is on its way to them.",
    )
}

/// Ends one session of the user, through the rule and the store query the owner's own
/// revoke uses; their next request with it is refused on every instance.
async fn end_session(
    ctx: Ctx,
    Path((id, session_id)): Path<(String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let id = user_id(&id)?;
    let session_id: i64 = session_id
        .parse()
        .map_err(|_| AppError::not_found("No such session"))?;
    let result = service::revoke_user_session(&ctx.state, auth, &ctx.origin, id, session_id).await;
    outcome(&ctx, &user_url(id), result, "That session is signed out.")
}
