//! The roles and permissions page (`manage_admin`): roles with their members' count,
//! the roles × permissions matrix, and creating, renaming and deleting roles and
//! permissions. Every change goes through `rbac::service`, the JSON routes' rules:
//! nobody grants or changes what they do not hold, built-in roles and permissions
//! stay as they are, Super Admin's permissions are all of them.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;

use super::page::Shell;
use super::users::{caller, outcome, Confirmed};
use super::{Ctx, Form, PageResult};
use crate::auth::policy::Policy::Permission as Needs;
use crate::auth::policy::{Policy, Routes};
use crate::error::AppError;
use crate::rbac::store::{self, Role};
use crate::rbac::{service, Permission, SUPER_ADMIN};

const MANAGE_ADMIN: Policy = Needs(Permission::ManageAdmin);
const ROLES: &str = "/ui/roles";

pub fn routes() -> Routes {
    Routes::pages()
        .get(ROLES, MANAGE_ADMIN, roles_page)
        .post(ROLES, MANAGE_ADMIN, create_role)
        .post(
            "/ui/roles/{role_id}/permissions/{permission_id}/{change}",
            MANAGE_ADMIN,
            change_permission,
        )
        .get("/ui/roles/{role_id}/delete", MANAGE_ADMIN, confirm_delete)
        .post("/ui/roles/{role_id}/delete", MANAGE_ADMIN, delete_role)
        .post("/ui/roles/{role_id}/rename", MANAGE_ADMIN, rename_role)
        .post("/ui/permissions", MANAGE_ADMIN, create_permission)
        .post(
            "/ui/permissions/{permission_id}/rename",
            MANAGE_ADMIN,
            rename_permission,
        )
        .get(
            "/ui/permissions/{permission_id}/delete",
            MANAGE_ADMIN,
            confirm_delete_permission,
        )
        .post(
            "/ui/permissions/{permission_id}/delete",
            MANAGE_ADMIN,
            delete_permission,
        )
}

struct RoleRow {
    role: Role,
    members: i64,
    /// One cell per permission, in the order of the page's columns.
    cells: Vec<Cell>,
}

struct Cell {
    permission_id: i64,
    permission: String,
    granted: bool,
}

/// A permission as a column of the matrix and a row of the permissions list.
struct Column {
    row: store::PermissionRow,
    /// The name with a break opportunity after each `_`, so headers wrap.
    heading: String,
    /// How many roles carry it (Super Admin always does).
    roles: usize,
}

#[derive(Template)]
#[template(path = "ui/roles.html")]
struct RolesPage {
    shell: Shell,
    permissions: Vec<Column>,
    rows: Vec<RoleRow>,
    super_admin: &'static str,
    /// Why a form with a bad name was refused; the page answers 400 with it.
    refused: Option<String>,
}

async fn roles_page(ctx: Ctx) -> PageResult {
    render(&ctx, StatusCode::OK, None).await
}

/// Answers a change of the roles page: a name that breaks the rules re-renders the
/// page as a 400 with the reason (what it is is in the form still on the page);
/// everything else is [`outcome`]'s 303 with a flash.
async fn answer(ctx: &Ctx, result: Result<String, AppError>) -> PageResult {
    match result {
        Ok(done) => outcome(ctx, ROLES, Ok(()), &done),
        Err(AppError::Invalid(reason)) => {
            render(
                ctx,
                StatusCode::BAD_REQUEST,
                Some(format!("Refused: {reason}")),
            )
            .await
        }
        Err(e) => outcome(ctx, ROLES, Err(e), ""),
    }
}

async fn render(ctx: &Ctx, status: StatusCode, refused: Option<String>) -> PageResult {
    let permissions = store::permissions(&ctx.state.db)
        .await
        .map_err(AppError::from)?;
    let members: HashMap<i64, i64> = store::member_counts(&ctx.state.db)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for (role, held) in store::roles_with_permissions(&ctx.state.db)
        .await
        .map_err(AppError::from)?
    {
        let held: BTreeSet<String> = held.into_iter().collect();
        let members = members.get(&role.id).copied().unwrap_or(0);
        let cells = permissions
            .iter()
            .map(|p| Cell {
                permission_id: p.id,
                permission: p.name.clone(),
                granted: role.name == SUPER_ADMIN || held.contains(&p.name),
            })
            .collect();
        rows.push(RoleRow {
            role,
            members,
            cells,
        });
    }
    let permissions = permissions
        .into_iter()
        .enumerate()
        .map(|(i, row)| Column {
            heading: row.name.replace('_', "_\u{200b}"),
            roles: rows
                .iter()
                .filter(|r| r.cells.get(i).is_some_and(|c| c.granted))
                .count(),
            row,
        })
        .collect();
    let page = RolesPage {
        shell: Shell::new(ctx, "Roles and permissions"),
        permissions,
        rows,
        super_admin: SUPER_ADMIN,
        refused,
    };
    Ok(ctx.render(status, page.render()?))
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn create_role(ctx: Ctx, Form(form): Form<NameForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let result = service::create_role(&ctx.state, auth, &ctx.origin, &form.name)
        .await
        .map(|_| "The role is created.".to_owned());
    answer(&ctx, result).await
}

fn id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::not_found(format!("No such {what}")))
}

async fn role(ctx: &Ctx, raw: &str) -> Result<Role, AppError> {
    let mut conn = ctx.state.db.pool().acquire().await?;
    store::role_by_id(&mut conn, id(raw, "role")?)
        .await?
        .ok_or_else(|| AppError::not_found("No such role"))
}

async fn change_permission(
    ctx: Ctx,
    Path((role_id, permission_id, change)): Path<(String, String, String)>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let grant = match change.as_str() {
        "grant" => true,
        "withdraw" => false,
        _ => return Err(AppError::not_found("No such change").into()),
    };
    let role = role(&ctx, &role_id).await?;
    let permission = store::permission_by_id(&ctx.state.db, id(&permission_id, "permission")?)
        .await
        .map_err(AppError::from)?
        .ok_or_else(|| AppError::not_found("No such permission"))?;
    let result = service::set_role_permission(
        &ctx.state,
        auth,
        &ctx.origin,
        &role.name,
        &permission.name,
        grant,
    )
    .await;
    let done = if grant {
        format!("{} now has {}.", role.name, permission.name)
    } else {
        format!("{} no longer has {}.", role.name, permission.name)
    };
    outcome(&ctx, ROLES, result, &done)
}

#[derive(Template)]
#[template(path = "ui/role_delete.html")]
struct ConfirmPage {
    shell: Shell,
    role: Role,
}

async fn confirm_delete(ctx: Ctx, Path(role_id): Path<String>) -> PageResult {
    let role = role(&ctx, &role_id).await?;
    let page = ConfirmPage {
        shell: Shell::new(&ctx, "Delete this role?"),
        role,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn delete_role(
    ctx: Ctx,
    Path(role_id): Path<String>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let role_id = id(&role_id, "role")?;
    let result = service::delete_role(&ctx.state, auth, &ctx.origin, role_id).await;
    outcome(&ctx, ROLES, result, "The role is deleted.")
}

async fn rename_role(
    ctx: Ctx,
    Path(role_id): Path<String>,
    Form(form): Form<NameForm>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let role_id = id(&role_id, "role")?;
    let result = service::rename_role(&ctx.state, auth, &ctx.origin, role_id, &form.name)
        .await
        .map(|name| format!("The role is now {name}."));
    answer(&ctx, result).await
}

async fn create_permission(ctx: Ctx, Form(form): Form<NameForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let result = service::create_permission(&ctx.state, auth, &ctx.origin, &form.name)
        .await
        .map(|_| "The permission is created.".to_owned());
    answer(&ctx, result).await
}

async fn rename_permission(
    ctx: Ctx,
    Path(permission_id): Path<String>,
    Form(form): Form<NameForm>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let permission_id = id(&permission_id, "permission")?;
    let result =
        service::rename_permission(&ctx.state, auth, &ctx.origin, permission_id, &form.name)
            .await
            .map(|name| format!("The permission is now {name}."));
    answer(&ctx, result).await
}

#[derive(Template)]
#[template(path = "ui/permission_delete.html")]
struct ConfirmPermissionPage {
    shell: Shell,
    permission: store::PermissionRow,
}

async fn confirm_delete_permission(ctx: Ctx, Path(permission_id): Path<String>) -> PageResult {
    let permission = store::permission_by_id(&ctx.state.db, id(&permission_id, "permission")?)
        .await
        .map_err(AppError::from)?
        .ok_or_else(|| AppError::not_found("No such permission"))?;
    let page = ConfirmPermissionPage {
        shell: Shell::new(&ctx, "Delete this permission?"),
        permission,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn delete_permission(
    ctx: Ctx,
    Path(permission_id): Path<String>,
    Form(_): Form<Confirmed>,
) -> PageResult {
    let auth = caller(&ctx)?;
    let permission_id = id(&permission_id, "permission")?;
    let result = service::delete_permission(&ctx.state, auth, &ctx.origin, permission_id).await;
    outcome(&ctx, ROLES, result, "The permission is deleted.")
}
