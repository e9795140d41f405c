//! The roles and permissions page (`manage_admin`): roles with their members' count,
//! the roles × permissions matrix, and creating and deleting roles. Every change goes
//! through `rbac::service`, the JSON routes' rules: nobody grants what they do not
//! hold, built-in roles stay, Super Admin's permissions are all of them.

use std::collections::BTreeSet;

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

#[derive(Template)]
#[template(path = "ui/roles.html")]
struct RolesPage {
    shell: Shell,
    permissions: Vec<store::PermissionRow>,
    rows: Vec<RoleRow>,
    super_admin: &'static str,
}

async fn roles_page(ctx: Ctx) -> PageResult {
    let permissions = store::permissions(&ctx.state.db).await?;
    let mut conn = ctx
        .state
        .db
        .pool()
        .acquire()
        .await
        .map_err(AppError::from)?;
    let mut rows = Vec::new();
    for (role, held) in store::roles_with_permissions(&ctx.state.db).await? {
        let held: BTreeSet<String> = held.into_iter().collect();
        let members = store::role_holders(&mut conn, role.id).await?;
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
    let page = RolesPage {
        shell: Shell::new(&ctx, "Roles and permissions"),
        permissions,
        rows,
        super_admin: SUPER_ADMIN,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn create_role(ctx: Ctx, Form(form): Form<NameForm>) -> PageResult {
    let auth = caller(&ctx)?;
    let result = service::create_role(&ctx.state, auth, &ctx.origin, &form.name)
        .await
        .map(|_| ());
    outcome(&ctx, ROLES, result, "The role is created.")
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
        .await?
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
