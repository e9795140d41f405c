//! The rules for changing a user's roles and status, shared by the JSON routes and
//! the web UI's pages so both refuse the same things for the same reasons.

use serde_json::json;

use super::store::{self, Role};
use super::{Access, SUPER_ADMIN};
use crate::accounts::store::{find_by_id, revoke_own_session};
use crate::accounts::User;
use crate::app::AppState;
use crate::auth::cache::Scope;
use crate::auth::session;
use crate::auth::Authenticated;
use crate::error::AppError;
use crate::http::Origin;
use crate::logs::{record_change_in, Kind, LogEntry};
use crate::text::label;

/// Whether `caller` may hand out or take away something carrying `permissions`.
pub fn within_powers(caller: &Access, permissions: &[String], is_super_admin_role: bool) -> bool {
    caller.super_admin
        || (!is_super_admin_role
            && permissions
                .iter()
                .all(|p| caller.permissions.contains(p.as_str())))
}

/// The user and role named, once the caller is known to hold every permission the
/// role carries (only a Super Admin may give or take Super Admin).
async fn user_and_role(
    conn: &mut sqlx::AnyConnection,
    caller: &Authenticated,
    user_id: i64,
    role_id: i64,
) -> Result<(User, Role), AppError> {
    let user = find_by_id(&mut *conn, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    let role = store::role_by_id(&mut *conn, role_id)
        .await?
        .ok_or_else(|| AppError::not_found("Role not found"))?;
    let permissions = store::role_permissions(conn, &role).await?;
    if !within_powers(&caller.access, &permissions, role.name == SUPER_ADMIN) {
        return Err(AppError::unauthorized_access());
    }
    Ok((user, role))
}

/// Gives a role to a user, recording the change if the user did not have it.
pub async fn assign_role(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    user_id: i64,
    role_id: i64,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let (user, role) = user_and_role(&mut tx, caller, user_id, role_id).await?;
    let added = store::add_user_role(&mut tx, user.id, role.id).await?;
    if added {
        record_role_change(&mut tx, caller, origin, &user, &role, true).await?;
    }
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(user.id)).await;
    Ok(())
}

/// The log entry of a role given (`now_held`) or taken, in the change's transaction.
async fn record_role_change(
    conn: &mut sqlx::AnyConnection,
    caller: &Authenticated,
    origin: &Origin,
    user: &User,
    role: &Role,
    now_held: bool,
) -> Result<(), AppError> {
    let (message, action) = if now_held {
        (
            format!("role {:?} given to user {}", role.name, user.id),
            "assign_role_to_user",
        )
    } else {
        (
            format!("role {:?} taken from user {}", role.name, user.id),
            "remove_role_from_user",
        )
    };
    record_change_in(
        conn,
        Kind::Admin,
        &caller.user,
        origin,
        message,
        json!({ "action": action, "target": { "user_id": user.id, "username": user.username, "role": role.name }, "before": { "has_role": !now_held }, "after": { "has_role": now_held } }),
    )
    .await?;
    Ok(())
}

/// Takes a role from a user; the last enabled Super Admin keeps theirs.
pub async fn remove_role(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    user_id: i64,
    role_id: i64,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    store::lock_super_admins(&mut tx).await?;
    let (user, role) = user_and_role(&mut tx, caller, user_id, role_id).await?;
    let removed = store::remove_user_role(&mut tx, user.id, role.id).await?;
    if role.name == SUPER_ADMIN && store::active_super_admins(&mut tx).await? == 0 {
        return Err(AppError::conflict(
            "The last Super Admin cannot lose that role",
        ));
    }
    if removed {
        record_role_change(&mut tx, caller, origin, &user, &role, false).await?;
    }
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(user.id)).await;
    Ok(())
}

/// Disables (ending every session) or enables another user's account, within the
/// caller's powers; the last enabled Super Admin cannot be disabled.
pub async fn set_disabled(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    id: i64,
    disable: bool,
) -> Result<(), AppError> {
    if id == caller.user.id {
        return Err(AppError::conflict(
            "You cannot change your own account status",
        ));
    }
    let mut tx = state.db.begin().await?;
    store::lock_super_admins(&mut tx).await?;
    let user = find_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    let target = Access::load(state.db.pool(), user.id).await?;
    let target_permissions: Vec<String> = target.permissions.iter().cloned().collect();
    if !within_powers(&caller.access, &target_permissions, target.super_admin) {
        return Err(AppError::unauthorized_access());
    }
    store::set_disabled(&mut tx, user.id, disable).await?;
    if disable {
        if target.super_admin && store::active_super_admins(&mut tx).await? == 0 {
            return Err(AppError::conflict(
                "The last Super Admin cannot be disabled",
            ));
        }
        session::revoke_all_for_user(&mut *tx, user.id, None).await?;
    }
    let verb = if disable {
        "disable_user"
    } else {
        "enable_user"
    };
    if user.disabled != disable {
        record_change_in(
            &mut tx,
            Kind::Admin,
            &caller.user,
            origin,
            format!(
                "user {} {}",
                user.id,
                if disable { "disabled" } else { "enabled" }
            ),
            json!({ "action": verb, "target": { "user_id": user.id, "username": user.username }, "before": { "disabled": user.disabled }, "after": { "disabled": disable } }),
        )
        .await?;
    }
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(user.id)).await;
    Ok(())
}

/// Ends every session of another user, within the caller's powers.
pub async fn end_sessions(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    id: i64,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let user = find_by_id(&mut *tx, id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    let target = Access::load(state.db.pool(), user.id).await?;
    let target_permissions: Vec<String> = target.permissions.iter().cloned().collect();
    if !within_powers(&caller.access, &target_permissions, target.super_admin) {
        return Err(AppError::unauthorized_access());
    }
    session::revoke_all_for_user(&mut *tx, user.id, None).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("sessions of user {} ended", user.id),
        json!({ "action": "end_sessions", "target": { "user_id": user.id, "username": user.username } }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::User(user.id)).await;
    Ok(())
}

/// Creates a role; returns its id and its name as stored.
pub async fn create_role(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    name: &str,
) -> Result<(i64, String), AppError> {
    let name = label("name", name, 64)?;
    let mut tx = state.db.begin().await?;
    let id = store::create_role(&mut tx, &name).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("role {name:?} created"),
        json!({ "action": "create_role", "target": { "role_id": id, "name": name }, "before": null, "after": { "name": name } }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok((id, name))
}

/// Deletes a role nobody holds, unless it is built in or carries a permission the
/// caller lacks.
pub async fn delete_role(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    role_id: i64,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let role = store::role_by_id(&mut tx, role_id)
        .await?
        .ok_or_else(|| AppError::not_found("Role not found"))?;
    if role.builtin {
        return Err(AppError::conflict("Built-in roles cannot be deleted"));
    }
    let permissions = store::role_permissions(&mut tx, &role).await?;
    if !within_powers(&caller.access, &permissions, false) {
        return Err(AppError::unauthorized_access());
    }
    let holders = store::role_holders(&mut tx, role.id).await?;
    if holders > 0 {
        // Deleting a role in use would silently strip its holders' access; that
        // should be a deliberate act, one user at a time.
        return Err(AppError::conflict(format!(
            "The role is held by {holders} user(s); remove it from them first"
        )));
    }
    store::delete_role(&mut tx, role.id).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("role {:?} deleted", role.name),
        json!({ "action": "delete_role", "target": { "role_id": role.id, "name": role.name }, "before": { "permissions": permissions }, "after": null }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok(())
}

/// The role and permission named, after the escalation check.
async fn role_and_permission(
    state: &AppState,
    caller: &Authenticated,
    role_name: &str,
    permission_name: &str,
) -> Result<(Role, store::PermissionRow), AppError> {
    let permission = store::permission_by_name(&state.db, permission_name.trim())
        .await?
        .ok_or_else(|| AppError::not_found("Permission does not exist"))?;
    let mut conn = state.db.pool().acquire().await?;
    let role = store::role_by_name(&mut conn, role_name.trim())
        .await?
        .ok_or_else(|| AppError::not_found("Role does not exist"))?;
    if !within_powers(
        &caller.access,
        std::slice::from_ref(&permission.name),
        false,
    ) {
        return Err(AppError::unauthorized_access());
    }
    if role.name == SUPER_ADMIN {
        return Err(AppError::conflict(
            "Super Admin holds every permission; its permissions cannot be changed",
        ));
    }
    Ok((role, permission))
}

/// Grants a permission to a role, or withdraws it, recording a change if there was one.
pub async fn set_role_permission(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    role_name: &str,
    permission_name: &str,
    grant: bool,
) -> Result<(), AppError> {
    let (role, permission) = role_and_permission(state, caller, role_name, permission_name).await?;
    let mut tx = state.db.begin().await?;
    let changed = if grant {
        store::link(&mut tx, role.id, permission.id).await?
    } else {
        store::unlink(&mut tx, role.id, permission.id).await?
    };
    if changed {
        let (message, action) = if grant {
            (
                format!(
                    "permission {:?} assigned to role {:?}",
                    permission.name, role.name
                ),
                "assign_permission_to_role",
            )
        } else {
            (
                format!(
                    "permission {:?} revoked from role {:?}",
                    permission.name, role.name
                ),
                "revoke_permission_from_role",
            )
        };
        record_change_in(
            &mut tx,
            Kind::Admin,
            &caller.user,
            origin,
            message,
            json!({ "action": action, "target": { "role": role.name, "permission": permission.name }, "before": { "assigned": !grant }, "after": { "assigned": grant } }),
        )
        .await?;
    }
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok(())
}

/// Renames a role that is not built in and carries only permissions the caller holds.
pub async fn rename_role(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    role_id: i64,
    name: &str,
) -> Result<String, AppError> {
    let name = label("name", name, 64)?;
    let mut tx = state.db.begin().await?;
    let role = store::role_by_id(&mut tx, role_id)
        .await?
        .ok_or_else(|| AppError::not_found("Role not found"))?;
    if role.builtin {
        return Err(AppError::conflict("Built-in roles cannot be renamed"));
    }
    let permissions = store::role_permissions(&mut tx, &role).await?;
    if !within_powers(&caller.access, &permissions, false) {
        return Err(AppError::unauthorized_access());
    }
    if role.name == name {
        return Ok(name);
    }
    store::rename_role(&mut tx, role.id, &name).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("role {:?} renamed to {name:?}", role.name),
        json!({ "action": "rename_role", "target": { "role_id": role.id }, "before": { "name": role.name }, "after": { "name": name } }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok(name)
}

/// Permission names are identifiers: letters, digits and `_ . : -`.
pub fn valid_permission_name(value: &str) -> Result<String, AppError> {
    let value = value.trim();
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if !ok {
        return Err(AppError::invalid(
            "name must be 1 to 64 of letters, digits, '_', '.', ':' and '-'",
        ));
    }
    Ok(value.to_owned())
}

/// Creates a permission (held at once by Super Admin only); returns its id and name.
pub async fn create_permission(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    name: &str,
) -> Result<(i64, String), AppError> {
    let name = valid_permission_name(name)?;
    let mut tx = state.db.begin().await?;
    let id = store::create_permission(&mut tx, &name).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("permission {name:?} created"),
        json!({ "action": "create_permission", "target": { "permission_id": id, "name": name }, "before": null, "after": { "name": name } }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok((id, name))
}

/// The permission, once it is known not to be built in and to be held by the caller:
/// routes name built-in permissions in code, and nobody changes what they lack.
async fn own_custom_permission(
    state: &AppState,
    caller: &Authenticated,
    permission_id: i64,
    verb: &str,
) -> Result<store::PermissionRow, AppError> {
    let permission = store::permission_by_id(&state.db, permission_id)
        .await?
        .ok_or_else(|| AppError::not_found("Permission not found"))?;
    if permission.builtin {
        return Err(AppError::conflict(format!(
            "Built-in permissions cannot be {verb}"
        )));
    }
    if !within_powers(
        &caller.access,
        std::slice::from_ref(&permission.name),
        false,
    ) {
        return Err(AppError::unauthorized_access());
    }
    Ok(permission)
}

/// Renames a permission that is not built in and that the caller holds.
pub async fn rename_permission(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    permission_id: i64,
    name: &str,
) -> Result<String, AppError> {
    let name = valid_permission_name(name)?;
    let permission = own_custom_permission(state, caller, permission_id, "renamed").await?;
    if permission.name == name {
        return Ok(name);
    }
    let mut tx = state.db.begin().await?;
    store::rename_permission(&mut tx, permission.id, &name).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("permission {:?} renamed to {name:?}", permission.name),
        json!({ "action": "rename_permission", "target": { "permission_id": permission.id }, "before": { "name": permission.name }, "after": { "name": name } }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok(name)
}

/// Deletes a permission that is not built in and that the caller holds; the roles
/// carrying it lose it.
pub async fn delete_permission(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    permission_id: i64,
) -> Result<(), AppError> {
    let permission = own_custom_permission(state, caller, permission_id, "deleted").await?;
    let mut tx = state.db.begin().await?;
    store::delete_permission(&mut tx, permission.id).await?;
    record_change_in(
        &mut tx,
        Kind::Admin,
        &caller.user,
        origin,
        format!("permission {:?} deleted", permission.name),
        json!({ "action": "delete_permission", "target": { "permission_id": permission.id, "name": permission.name }, "before": { "name": permission.name }, "after": null }),
    )
    .await?;
    tx.commit().await?;
    state.sessions.invalidate(Scope::All).await;
    Ok(())
}

/// Ends one live session of another user, within the caller's powers, as the
/// owner's own revoke does (the same store query), and empties the session cache
/// for that user on every instance.
pub async fn revoke_user_session(
    state: &AppState,
    caller: &Authenticated,
    origin: &Origin,
    user_id: i64,
    session_id: i64,
) -> Result<(), AppError> {
    let mut conn = state.db.pool().acquire().await?;
    let user = find_by_id(&mut *conn, user_id)
        .await?
        .ok_or_else(|| AppError::not_found("User not found"))?;
    drop(conn);
    let target = Access::load(state.db.pool(), user.id).await?;
    let target_permissions: Vec<String> = target.permissions.iter().cloned().collect();
    if !within_powers(&caller.access, &target_permissions, target.super_admin) {
        return Err(AppError::unauthorized_access());
    }
    if !revoke_own_session(&state.db, user.id, session_id).await? {
        return Err(AppError::not_found("Session not found"));
    }
    state.sessions.invalidate(Scope::User(user.id)).await;
    state.activity.record(
        LogEntry::admin(
            format!("session {session_id} of user {} ended", user.id),
            json!({ "action": "end_session", "target": { "user_id": user.id, "username": user.username, "session_id": session_id }, "before": { "live": true }, "after": { "live": false } }),
        )
        .user(&caller.user)
        .origin(origin),
    );
    Ok(())
}
