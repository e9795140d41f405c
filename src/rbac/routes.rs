//! The administration routes: roles, permissions, and users' roles and status.
//!
//! Every route is served at its `/admin/...` path and at the bare path the Next.js
//! client calls. Beyond the permission each route demands, three rules stop an
//! administrator from growing their own powers: a role or permission can only be
//! handed out (or taken away) by someone who holds every permission it carries,
//! built-in roles and permissions cannot be deleted, and the last enabled Super Admin
//! can neither lose the role nor be disabled.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::service;
use super::store;
use super::Permission;
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::http::query::{before_id, page_param};
use crate::http::{Json, Origin};

const MANAGE_USERS: Policy = Needs(Permission::ManageUsers);
const MANAGE_ADMIN: Policy = Needs(Permission::ManageAdmin);

pub fn routes() -> Routes {
    let mut routes = Routes::new();
    for prefix in ["/admin", ""] {
        routes = routes.merge(
            Routes::new()
                .get(at(prefix, "/roles"), MANAGE_USERS, list_roles)
                .post(at(prefix, "/create_role"), MANAGE_ADMIN, create_role)
                .delete(at(prefix, "/delete_role"), MANAGE_ADMIN, delete_role)
                .get(at(prefix, "/permissions"), MANAGE_USERS, list_permissions)
                .post(
                    at(prefix, "/create_permission"),
                    MANAGE_ADMIN,
                    create_permission,
                )
                .delete(
                    at(prefix, "/delete_permission"),
                    MANAGE_ADMIN,
                    delete_permission,
                )
                .post(
                    at(prefix, "/assign_permission_to_role"),
                    MANAGE_ADMIN,
                    assign_permission,
                )
                .post(
                    at(prefix, "/revoke_permission_from_role"),
                    MANAGE_ADMIN,
                    revoke_permission,
                )
                .post(
                    at(prefix, "/assign_role_to_user"),
                    MANAGE_USERS,
                    assign_role,
                )
                .post(
                    at(prefix, "/remove_role_from_user"),
                    MANAGE_USERS,
                    remove_role,
                )
                .get(at(prefix, "/users/details"), MANAGE_USERS, users_details)
                .get(
                    at(prefix, "/all_user_profiles"),
                    MANAGE_USERS,
                    all_user_profiles,
                )
                .post(
                    at(prefix, "/users/{id}/disable"),
                    MANAGE_USERS,
                    disable_user,
                )
                .post(at(prefix, "/users/{id}/enable"), MANAGE_USERS, enable_user),
        );
    }
    routes
}

fn at(prefix: &str, path: &str) -> String {
    format!("{prefix}{path}")
}

fn ok(message: impl Into<String>) -> Response {
    axum::Json(json!({ "success": true, "message": message.into() })).into_response()
}

async fn list_roles(State(state): State<AppState>) -> Result<Response, AppError> {
    let roles: Vec<Value> = store::roles_with_permissions(&state.db)
        .await?
        .into_iter()
        .map(|(role, permissions)| {
            json!({ "id": role.id, "name": role.name, "permissions": permissions })
        })
        .collect();
    Ok(axum::Json(json!({ "roles": roles })).into_response())
}

async fn list_permissions(State(state): State<AppState>) -> Result<Response, AppError> {
    let permissions: Vec<Value> = store::permissions(&state.db)
        .await?
        .into_iter()
        .map(|p| json!({ "id": p.id, "name": p.name }))
        .collect();
    Ok(axum::Json(json!({ "permissions": permissions })).into_response())
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

async fn create_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<NameBody>,
) -> Result<Response, AppError> {
    let (id, name) = service::create_role(&state, &caller, &origin, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "success": true, "message": "New role created", "role": { "id": id, "name": name } })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RoleIdBody {
    role_id: i64,
}

async fn delete_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RoleIdBody>,
) -> Result<Response, AppError> {
    service::delete_role(&state, &caller, &origin, body.role_id).await?;
    Ok(ok("Role deleted successfully"))
}

async fn create_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<NameBody>,
) -> Result<Response, AppError> {
    let (id, name) = service::create_permission(&state, &caller, &origin, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "success": true,
            "message": format!("Permission \"{name}\" created successfully"),
            "permission": { "id": id, "name": name },
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct PermissionIdBody {
    permission_id: i64,
}

async fn delete_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<PermissionIdBody>,
) -> Result<Response, AppError> {
    service::delete_permission(&state, &caller, &origin, body.permission_id).await?;
    Ok(ok("Permission deleted successfully"))
}

#[derive(Deserialize)]
struct RolePermissionBody {
    permission_name: String,
    role_name: String,
}

async fn assign_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RolePermissionBody>,
) -> Result<Response, AppError> {
    service::set_role_permission(
        &state,
        &caller,
        &origin,
        &body.role_name,
        &body.permission_name,
        true,
    )
    .await?;
    Ok(ok("Permission assigned to role"))
}

async fn revoke_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RolePermissionBody>,
) -> Result<Response, AppError> {
    service::set_role_permission(
        &state,
        &caller,
        &origin,
        &body.role_name,
        &body.permission_name,
        false,
    )
    .await?;
    Ok(ok("Permission revoked from role"))
}

#[derive(Deserialize)]
struct UserRoleBody {
    user_id: i64,
    role_id: i64,
}

async fn assign_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UserRoleBody>,
) -> Result<Response, AppError> {
    service::assign_role(&state, &caller, &origin, body.user_id, body.role_id).await?;
    Ok(ok("Role assigned to user"))
}

async fn remove_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UserRoleBody>,
) -> Result<Response, AppError> {
    service::remove_role(&state, &caller, &origin, body.user_id, body.role_id).await?;
    Ok(ok("Role removed from user"))
}

#[derive(Deserialize)]
struct ListQuery {
    page: Option<String>,
    per_page: Option<String>,
    q: Option<String>,
    after: Option<String>,
}

async fn users_details(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let page = page_param("page", query.page.as_deref(), 1, 1_000_000)?;
    let per_page = page_param("per_page", query.per_page.as_deref(), 20, 100)?;
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    if q.is_some_and(|q| q.chars().count() > 100) {
        return Err(AppError::invalid("q must be at most 100 characters"));
    }
    // `after` (a user id, from `next_after`) pages by key: as cheap at the millionth
    // user as at the first, where `page` walks the offset. With `after`, `page` is
    // only checked.
    let after = before_id(query.after.as_deref())
        .map_err(|_| AppError::invalid("after must be a positive integer"))?;
    let total = store::count_users(&state.db, q).await?;
    let users = match after {
        Some(id) => {
            let cursor = store::UserCursor::After(id.to_string());
            let order = store::UserOrder::Joined;
            store::list_users_keyset(&state.db, q, !total.exact, order, &cursor, per_page)
                .await?
                .users
                .into_iter()
                .map(|listed| listed.user)
                .collect()
        }
        None => store::list_users(&state.db, q, !total.exact, page, per_page).await?,
    };
    let next_after = (users.len() as i64 == per_page)
        .then(|| users.last().map(|u| u.id))
        .flatten();
    let users: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({
                "id": u.id,
                "first_name": u.first_name,
                "last_name": u.last_name,
                "username": u.username,
                "email": u.email,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "users": users,
        "total": total.value,
        "total_estimated": !total.exact,
        "page": if after.is_some() { Value::Null } else { json!(page) },
        "per_page": per_page,
        "next_after": next_after,
    }))
    .into_response())
}

/// The most profiles one answer carries; the paginated listing serves larger sets.
const ALL_PROFILES_LIMIT: i64 = 10_000;

async fn all_user_profiles(State(state): State<AppState>) -> Result<Response, AppError> {
    let profiles: Vec<_> = store::all_profiles(&state.db, ALL_PROFILES_LIMIT)
        .await?
        .iter()
        .map(|(user, access)| user.details(access))
        .collect();
    Ok(axum::Json(json!({ "success": true, "message": profiles })).into_response())
}

async fn disable_user(
    state: State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    set_status(state, caller, origin, id, true).await
}

async fn enable_user(
    state: State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    set_status(state, caller, origin, id, false).await
}

async fn set_status(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    id: String,
    disable: bool,
) -> Result<Response, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::invalid("The user id must be an integer"))?;
    service::set_disabled(&state, &caller, &origin, id, disable).await?;
    Ok(ok(if disable {
        "User disabled"
    } else {
        "User enabled"
    }))
}
