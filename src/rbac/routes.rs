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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use super::service;
use super::store;
use super::Permission;
use crate::accounts::UserDetails;
use crate::app::AppState;
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::auth::CurrentUser;
use crate::error::{AppError, ErrorBody};
use crate::http::query::{before_id, page_param};
use crate::http::{Done, Json, Origin};

const MANAGE_USERS: Policy = Needs(Permission::ManageUsers);
const MANAGE_ADMIN: Policy = Needs(Permission::ManageAdmin);

pub fn routes() -> Routes {
    [
        (MANAGE_USERS, routes!(list_roles)),
        (MANAGE_ADMIN, routes!(create_role)),
        (MANAGE_ADMIN, routes!(delete_role)),
        (MANAGE_USERS, routes!(list_permissions)),
        (MANAGE_ADMIN, routes!(create_permission)),
        (MANAGE_ADMIN, routes!(delete_permission)),
        (MANAGE_ADMIN, routes!(assign_permission)),
        (MANAGE_ADMIN, routes!(revoke_permission)),
        (MANAGE_USERS, routes!(assign_role)),
        (MANAGE_USERS, routes!(remove_role)),
        (MANAGE_USERS, routes!(users_details)),
        (MANAGE_USERS, routes!(all_user_profiles)),
        (MANAGE_USERS, routes!(disable_user)),
        (MANAGE_USERS, routes!(enable_user)),
    ]
    .into_iter()
    .fold(Routes::new(), |table, (policy, route)| {
        let bare = without_admin_prefix(&route);
        table.api(policy, route).api(policy, bare)
    })
}

/// The same route at the bare path the Next.js client calls: each handler documents
/// its `/admin/...` path, and this is that description and handler again at the path
/// without `/admin`.
fn without_admin_prefix(route: &UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    let (schemas, paths, handler) = route;
    let mut bare = paths.clone();
    bare.paths = paths
        .paths
        .iter()
        .map(|(path, item)| {
            let path = path.strip_prefix("/admin").unwrap_or(path);
            (path.to_owned(), item.clone())
        })
        .collect();
    (schemas.clone(), bare, handler.clone())
}

/// A role with the names of the permissions it grants.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "id": 2, "name": "Admin", "permissions": ["access_logs", "edit", "manage_users", "view_dashboard", "view_reports"] }))]
struct RoleView {
    id: i64,
    name: String,
    /// Permission names, sorted. Super Admin lists the permissions linked to it (none
    /// when built), though it holds every one.
    permissions: Vec<String>,
}

/// Every role.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "roles": [
    { "id": 1, "name": "Super Admin", "permissions": [] },
    { "id": 2, "name": "Admin", "permissions": ["access_logs", "edit", "manage_users", "view_dashboard", "view_reports"] },
    { "id": 3, "name": "User", "permissions": ["view_dashboard"] }
] }))]
struct RoleList {
    roles: Vec<RoleView>,
}

/// Every role
#[utoipa::path(
    get,
    path = "/admin/roles",
    tag = "rbac",
    responses((status = 200, description = "Every role, oldest first, with its permissions", body = RoleList))
)]
async fn list_roles(State(state): State<AppState>) -> Result<axum::Json<RoleList>, AppError> {
    let roles = store::roles_with_permissions(&state.db)
        .await?
        .into_iter()
        .map(|(role, permissions)| RoleView {
            id: role.id,
            name: role.name,
            permissions,
        })
        .collect();
    Ok(axum::Json(RoleList { roles }))
}

/// A permission.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "id": 5, "name": "access_logs" }))]
struct PermissionView {
    id: i64,
    name: String,
}

/// Every permission.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "permissions": [{ "id": 1, "name": "view_dashboard" }, { "id": 2, "name": "manage_users" }] }))]
struct PermissionList {
    permissions: Vec<PermissionView>,
}

/// Every permission
#[utoipa::path(
    get,
    path = "/admin/permissions",
    tag = "rbac",
    responses((status = 200, description = "Every permission, oldest first", body = PermissionList))
)]
async fn list_permissions(
    State(state): State<AppState>,
) -> Result<axum::Json<PermissionList>, AppError> {
    let permissions = store::permissions(&state.db)
        .await?
        .into_iter()
        .map(|p| PermissionView {
            id: p.id,
            name: p.name,
        })
        .collect();
    Ok(axum::Json(PermissionList { permissions }))
}

/// A new role.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "name": "Auditor" }))]
struct RoleNameBody {
    /// 1 to 64 characters once surrounding spaces are trimmed; no control characters.
    #[schema(min_length = 1, max_length = 64, pattern = r"\S")]
    name: String,
}

/// A role's id and name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "id": 4, "name": "Auditor" }))]
struct RoleRef {
    id: i64,
    name: String,
}

/// A role created.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "message": "New role created", "role": { "id": 4, "name": "Auditor" } }))]
struct RoleCreated {
    success: bool,
    message: &'static str,
    role: RoleRef,
}

/// Create a role
///
/// With no permissions; the name is stored trimmed.
#[utoipa::path(
    post,
    path = "/admin/create_role",
    tag = "rbac",
    request_body = RoleNameBody,
    responses(
        (status = 201, description = "Created", body = RoleCreated),
        (status = 400, description = "`name must be 1 to 64 characters` (empty or too long), control characters, or another invalid input", body = ErrorBody),
        (status = 409, description = "`Role already exists` (names compare case-insensitively)", body = ErrorBody),
    )
)]
async fn create_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RoleNameBody>,
) -> Result<(StatusCode, axum::Json<RoleCreated>), AppError> {
    let (id, name) = service::create_role(&state, &caller, &origin, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(RoleCreated {
            success: true,
            message: "New role created",
            role: RoleRef { id, name },
        }),
    ))
}

/// The role to delete.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "role_id": 4 }))]
struct RoleIdBody {
    role_id: i64,
}

/// Delete a role
///
/// Only a role nobody holds, not built in, carrying only permissions the caller holds.
#[utoipa::path(
    delete,
    path = "/admin/delete_role",
    tag = "rbac",
    request_body = RoleIdBody,
    responses(
        (status = 200, description = "Deleted", body = Done,
            example = json!({ "success": true, "message": "Role deleted successfully" })),
        (status = 403, description = "The role carries a permission the caller lacks, the caller lacks `manage_admin`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Role not found`", body = ErrorBody),
        (status = 409, description = "`Built-in roles cannot be deleted`, or the role is held by users", body = ErrorBody),
    )
)]
async fn delete_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RoleIdBody>,
) -> Result<Done, AppError> {
    service::delete_role(&state, &caller, &origin, body.role_id).await?;
    Ok(Done::new("Role deleted successfully"))
}

/// A new permission.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "name": "export_reports" }))]
struct PermissionNameBody {
    /// 1 to 64 of letters, digits, `_`, `.`, `:` and `-`; surrounding spaces are trimmed.
    #[schema(pattern = r"^\s*[A-Za-z0-9_.:-]{1,64}\s*$")]
    name: String,
}

/// A permission created.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "message": "Permission \"export_reports\" created successfully", "permission": { "id": 9, "name": "export_reports" } }))]
struct PermissionCreated {
    success: bool,
    message: String,
    permission: PermissionView,
}

/// Create a permission
///
/// Held at once by Super Admin only; give it to roles with
/// `POST /admin/assign_permission_to_role`.
#[utoipa::path(
    post,
    path = "/admin/create_permission",
    tag = "rbac",
    request_body = PermissionNameBody,
    responses(
        (status = 201, description = "Created", body = PermissionCreated),
        (status = 400, description = "`name must be 1 to 64 of letters, digits, '_', '.', ':' and '-'`, or another invalid input", body = ErrorBody),
        (status = 409, description = "`Permission already exists`", body = ErrorBody),
    )
)]
async fn create_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<PermissionNameBody>,
) -> Result<(StatusCode, axum::Json<PermissionCreated>), AppError> {
    let (id, name) = service::create_permission(&state, &caller, &origin, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PermissionCreated {
            success: true,
            message: format!("Permission \"{name}\" created successfully"),
            permission: PermissionView { id, name },
        }),
    ))
}

/// The permission to delete.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "permission_id": 9 }))]
struct PermissionIdBody {
    permission_id: i64,
}

/// Delete a permission
///
/// Only one that is not built in and that the caller holds; the roles carrying it
/// lose it.
#[utoipa::path(
    delete,
    path = "/admin/delete_permission",
    tag = "rbac",
    request_body = PermissionIdBody,
    responses(
        (status = 200, description = "Deleted", body = Done,
            example = json!({ "success": true, "message": "Permission deleted successfully" })),
        (status = 403, description = "The caller does not hold the permission or lacks `manage_admin`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Permission not found`", body = ErrorBody),
        (status = 409, description = "`Built-in permissions cannot be deleted`", body = ErrorBody),
    )
)]
async fn delete_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<PermissionIdBody>,
) -> Result<Done, AppError> {
    service::delete_permission(&state, &caller, &origin, body.permission_id).await?;
    Ok(Done::new("Permission deleted successfully"))
}

/// A permission and a role, by name (case-insensitive, surrounding spaces ignored).
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "permission_name": "access_logs", "role_name": "Auditor" }))]
struct RolePermissionBody {
    permission_name: String,
    role_name: String,
}

/// Give a permission to a role
///
/// Idempotent. Only a permission the caller holds; Super Admin's permissions cannot
/// be changed (it holds every one).
#[utoipa::path(
    post,
    path = "/admin/assign_permission_to_role",
    tag = "rbac",
    request_body = RolePermissionBody,
    responses(
        (status = 200, description = "The role carries the permission", body = Done,
            example = json!({ "success": true, "message": "Permission assigned to role" })),
        (status = 403, description = "The caller does not hold the permission or lacks `manage_admin`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Permission does not exist` or `Role does not exist`", body = ErrorBody),
        (status = 409, description = "The role is Super Admin", body = ErrorBody),
    )
)]
async fn assign_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RolePermissionBody>,
) -> Result<Done, AppError> {
    service::set_role_permission(
        &state,
        &caller,
        &origin,
        &body.role_name,
        &body.permission_name,
        true,
    )
    .await?;
    Ok(Done::new("Permission assigned to role"))
}

/// Take a permission from a role
///
/// Idempotent. Only a permission the caller holds; Super Admin's permissions cannot
/// be changed (it holds every one).
#[utoipa::path(
    post,
    path = "/admin/revoke_permission_from_role",
    tag = "rbac",
    request_body = RolePermissionBody,
    responses(
        (status = 200, description = "The role no longer carries the permission", body = Done,
            example = json!({ "success": true, "message": "Permission revoked from role" })),
        (status = 403, description = "The caller does not hold the permission or lacks `manage_admin`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`Permission does not exist` or `Role does not exist`", body = ErrorBody),
        (status = 409, description = "The role is Super Admin", body = ErrorBody),
    )
)]
async fn revoke_permission(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<RolePermissionBody>,
) -> Result<Done, AppError> {
    service::set_role_permission(
        &state,
        &caller,
        &origin,
        &body.role_name,
        &body.permission_name,
        false,
    )
    .await?;
    Ok(Done::new("Permission revoked from role"))
}

/// A user and a role, by id.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({ "user_id": 7, "role_id": 2 }))]
struct UserRoleBody {
    user_id: i64,
    role_id: i64,
}

/// Give a role to a user
///
/// Idempotent. Only a role carrying no permission the caller lacks; only a Super Admin
/// gives Super Admin.
#[utoipa::path(
    post,
    path = "/admin/assign_role_to_user",
    tag = "rbac",
    request_body = UserRoleBody,
    responses(
        (status = 200, description = "The user holds the role", body = Done,
            example = json!({ "success": true, "message": "Role assigned to user" })),
        (status = 403, description = "The role grants a permission the caller lacks (or is Super Admin), the caller lacks `manage_users`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found` or `Role not found`", body = ErrorBody),
    )
)]
async fn assign_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UserRoleBody>,
) -> Result<Done, AppError> {
    service::assign_role(&state, &caller, &origin, body.user_id, body.role_id).await?;
    Ok(Done::new("Role assigned to user"))
}

/// Take a role from a user
///
/// Idempotent. Only a role carrying no permission the caller lacks; the last enabled
/// Super Admin keeps the role.
#[utoipa::path(
    post,
    path = "/admin/remove_role_from_user",
    tag = "rbac",
    request_body = UserRoleBody,
    responses(
        (status = 200, description = "The user does not hold the role", body = Done,
            example = json!({ "success": true, "message": "Role removed from user" })),
        (status = 403, description = "The role grants a permission the caller lacks (or is Super Admin), the caller lacks `manage_users`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found` or `Role not found`", body = ErrorBody),
        (status = 409, description = "`The last Super Admin cannot lose that role`", body = ErrorBody),
    )
)]
async fn remove_role(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Json(body): Json<UserRoleBody>,
) -> Result<Done, AppError> {
    service::remove_role(&state, &caller, &origin, body.user_id, body.role_id).await?;
    Ok(Done::new("Role removed from user"))
}

/// The user listing's paging and search; an empty parameter is as good as a missing one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The page, from 1 (by offset); past 1000000 it reads as 1000000.
    #[param(value_type = Option<i64>, minimum = 1, example = 1)]
    page: Option<String>,
    /// Users per page, 1 to 100 (default 20); more reads as 100.
    #[param(value_type = Option<i64>, minimum = 1, example = 20)]
    per_page: Option<String>,
    /// A case-insensitive prefix of the username, email, first or last name, at most
    /// 100 characters.
    #[param(value_type = Option<String>, max_length = 100, example = "ada")]
    q: Option<String>,
    /// Keyset paging: only users with a larger id (an answer's `next_after`); `page` is
    /// then only checked.
    #[param(value_type = Option<i64>, minimum = 1)]
    after: Option<String>,
}

/// A user as the listing shows them.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada", "email": "ada@example.com" }))]
struct UserSummary {
    id: i64,
    first_name: String,
    last_name: String,
    username: String,
    email: String,
}

/// A page of users, by id.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "users": [{ "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada", "email": "ada@example.com" }],
    "total": 1,
    "total_estimated": false,
    "page": 1,
    "per_page": 20,
    "next_after": null
}))]
struct UserList {
    users: Vec<UserSummary>,
    /// Matching users: exact up to 10,000, an estimate past that.
    total: i64,
    /// Whether `total` is an estimate.
    total_estimated: bool,
    /// The `page` served; `null` when paging by `after`.
    page: Option<i64>,
    per_page: i64,
    /// The `after` of the next page, when this one is full.
    next_after: Option<i64>,
}

/// Users, a page at a time
#[utoipa::path(
    get,
    path = "/admin/users/details",
    tag = "rbac",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of users, by id", body = UserList),
        (status = 400, description = "A paging parameter that is not a positive integer, or `q` longer than 100 characters", body = ErrorBody),
    )
)]
async fn users_details(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<UserList>, AppError> {
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
    Ok(axum::Json(UserList {
        users: users
            .into_iter()
            .map(|u| UserSummary {
                id: u.id,
                first_name: u.first_name,
                last_name: u.last_name,
                username: u.username,
                email: u.email,
            })
            .collect(),
        total: total.value,
        total_estimated: !total.exact,
        page: after.is_none().then_some(page),
        per_page,
        next_after,
    }))
}

/// The most profiles one answer carries; the paginated listing serves larger sets.
const ALL_PROFILES_LIMIT: i64 = 10_000;

/// Every account with its roles and permissions, in `message` as old clients read it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({ "success": true, "message": [{ "id": 7, "first_name": "Ada", "last_name": "Lovelace", "username": "ada",
    "email": "ada@example.com", "twofa_enabled": false, "roles": ["User"], "permissions": ["view_dashboard"] }] }))]
struct AllProfiles<'a> {
    success: bool,
    /// The first 10,000 accounts by id; `GET /admin/users/details` pages through more.
    message: Vec<UserDetails<'a>>,
}

/// Every account's profile
#[utoipa::path(
    get,
    path = "/admin/all_user_profiles",
    tag = "rbac",
    responses((status = 200, description = "The accounts, oldest first, at most 10,000", body = AllProfiles))
)]
async fn all_user_profiles(State(state): State<AppState>) -> Result<Response, AppError> {
    let profiles = store::all_profiles(&state.db, ALL_PROFILES_LIMIT).await?;
    Ok(axum::Json(AllProfiles {
        success: true,
        message: profiles
            .iter()
            .map(|(user, access)| user.details(access))
            .collect(),
    })
    .into_response())
}

/// Disable an account
///
/// Ends every session of the account. Not one's own, not an account holding a
/// permission the caller lacks, not the last enabled Super Admin.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/disable",
    tag = "rbac",
    params(("id" = i64, Path, description = "The user's id; anything else is 400 `The user id must be an integer`")),
    responses(
        (status = 200, description = "Disabled (or already was)", body = Done,
            example = json!({ "success": true, "message": "User disabled" })),
        (status = 400, description = "`The user id must be an integer`", body = ErrorBody),
        (status = 403, description = "The account holds a permission the caller lacks (or Super Admin), the caller lacks `manage_users`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found`", body = ErrorBody),
        (status = 409, description = "`You cannot change your own account status` or `The last Super Admin cannot be disabled`", body = ErrorBody),
    )
)]
async fn disable_user(
    state: State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Done, AppError> {
    set_status(state, caller, origin, id, true).await
}

/// Enable an account
///
/// Not one's own, not an account holding a permission the caller lacks.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/enable",
    tag = "rbac",
    params(("id" = i64, Path, description = "The user's id; anything else is 400 `The user id must be an integer`")),
    responses(
        (status = 200, description = "Enabled (or already was)", body = Done,
            example = json!({ "success": true, "message": "User enabled" })),
        (status = 400, description = "`The user id must be an integer`", body = ErrorBody),
        (status = 403, description = "The account holds a permission the caller lacks (or Super Admin), the caller lacks `manage_users`, or the X-CSRFToken header is missing or wrong", body = ErrorBody),
        (status = 404, description = "`User not found`", body = ErrorBody),
        (status = 409, description = "`You cannot change your own account status`", body = ErrorBody),
    )
)]
async fn enable_user(
    state: State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    Path(id): Path<String>,
) -> Result<Done, AppError> {
    set_status(state, caller, origin, id, false).await
}

async fn set_status(
    State(state): State<AppState>,
    caller: CurrentUser,
    origin: Origin,
    id: String,
    disable: bool,
) -> Result<Done, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::invalid("The user id must be an integer"))?;
    service::set_disabled(&state, &caller, &origin, id, disable).await?;
    Ok(Done::new(if disable {
        "User disabled"
    } else {
        "User enabled"
    }))
}
