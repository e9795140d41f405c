//! Roles and permissions: the built-in set and what a user holds.
//!
//! Users have roles, roles have permissions. `Super Admin` holds every permission,
//! including ones created later, so it is checked by name rather than by links.

mod routes;
pub mod service;
pub mod store;

use std::collections::BTreeSet;
use std::sync::LazyLock;

use sqlx::Row;

use crate::db::Db;
use crate::error::AppError;

pub use routes::routes;

/// The store's failures in the contract's words: a taken name is a 409, a position
/// that cannot be one a 400, and a database failure what it always is (503 when the
/// database is unreachable).
impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Db(e) => AppError::from(e),
            store::StoreError::Conflict(message) => AppError::conflict(message),
            store::StoreError::Invalid(message) => AppError::invalid(message),
        }
    }
}

/// The built-in permissions; routes name the one they need with these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ViewDashboard,
    ManageUsers,
    ViewReports,
    ManageSettings,
    AccessLogs,
    ManageAdmin,
    Edit,
    ManageBilling,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Self::ViewDashboard,
        Self::ManageUsers,
        Self::ViewReports,
        Self::ManageSettings,
        Self::AccessLogs,
        Self::ManageAdmin,
        Self::Edit,
        Self::ManageBilling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ViewDashboard => "view_dashboard",
            Self::ManageUsers => "manage_users",
            Self::ViewReports => "view_reports",
            Self::ManageSettings => "manage_settings",
            Self::AccessLogs => "access_logs",
            Self::ManageAdmin => "manage_admin",
            Self::Edit => "edit",
            Self::ManageBilling => "manage_billing",
        }
    }
}

pub const SUPER_ADMIN: &str = "Super Admin";
pub const ADMIN: &str = "Admin";
/// Given to every account created by signup.
pub const USER: &str = "User";

/// The built-in roles and the permissions each starts with.
const BUILTIN_ROLES: [(&str, &[Permission]); 3] = [
    (SUPER_ADMIN, &[]),
    (
        ADMIN,
        &[
            Permission::ViewDashboard,
            Permission::ManageUsers,
            Permission::ViewReports,
            Permission::AccessLogs,
            Permission::Edit,
        ],
    ),
    (USER, &[Permission::ViewDashboard]),
];

/// Creates the built-in permissions and roles that do not exist yet. A role's
/// permissions are linked only when the role itself is created, so an administrator's
/// later changes to a built-in role survive restarts. Safe to run from several
/// instances at once.
pub async fn seed_builtin(db: &Db) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    for permission in Permission::ALL {
        sqlx::query(
            "INSERT INTO permissions (name, builtin) VALUES ($1, 1) ON CONFLICT DO NOTHING",
        )
        .bind(permission.name())
        .execute(&mut *tx)
        .await?;
    }
    for (role, permissions) in BUILTIN_ROLES {
        let created = sqlx::query(
            "INSERT INTO roles (name, builtin) VALUES ($1, 1) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(role)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = created else { continue };
        let role_id: i64 = row.try_get(0)?;
        for permission in permissions {
            sqlx::query(
                "INSERT INTO role_permissions (role_id, permission_id) \
                 SELECT $1, id FROM permissions WHERE name = $2 ON CONFLICT DO NOTHING",
            )
            .bind(role_id)
            .bind(permission.name())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

/// A query of users with their roles and permissions, a row per (role, permission):
/// `columns` (of `from`, which names the user `u`) where `filter` holds, then
/// `role_name` and `permission_name`, ordered by `order` (output names only), which
/// must keep a user's rows of one role together for [`Access::add`]. A Super Admin's
/// role is paired with every permission that exists, so the answer is complete in
/// one round trip.
pub fn with_access(columns: &str, from: &str, filter: &str, order: &str) -> String {
    format!(
        "SELECT {columns}, r.name AS role_name, p.name AS permission_name FROM {from} \
         LEFT JOIN user_roles ur ON ur.user_id = u.id \
         LEFT JOIN roles r ON r.id = ur.role_id \
         LEFT JOIN role_permissions rp ON rp.role_id = r.id \
         LEFT JOIN permissions p ON p.id = rp.permission_id \
         WHERE {filter} \
         UNION ALL \
         SELECT {columns}, r.name, p.name FROM {from} \
         JOIN user_roles ur ON ur.user_id = u.id \
         JOIN roles r ON r.id = ur.role_id AND r.name = '{SUPER_ADMIN}' \
         CROSS JOIN permissions p \
         WHERE {filter} \
         ORDER BY {order}"
    )
}

/// What one user may do, resolved with the session on every request (from the session
/// cache, which every change of roles empties, or the database) so that a change of
/// roles applies at once on every instance.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub roles: Vec<String>,
    pub permissions: BTreeSet<String>,
    pub super_admin: bool,
}

impl Access {
    pub fn has(&self, permission: Permission) -> bool {
        self.super_admin || self.permissions.contains(permission.name())
    }

    pub async fn load<'e, E>(executor: E, user_id: i64) -> Result<Self, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        static LOAD: LazyLock<String> =
            LazyLock::new(|| with_access("u.id", "users u", "u.id = $1", "role_name"));
        let rows = sqlx::query(&LOAD).bind(user_id).fetch_all(executor).await?;
        let mut access = Access::default();
        for row in &rows {
            access.add(row.try_get(1)?, row.try_get(2)?);
        }
        Ok(access)
    }

    /// Adds one (role, permission) row of a [`with_access`] query.
    pub fn add(&mut self, role: Option<String>, permission: Option<String>) {
        if let Some(role) = role {
            if self.roles.last() != Some(&role) {
                self.super_admin |= role == SUPER_ADMIN;
                self.roles.push(role);
            }
        }
        if let Some(permission) = permission {
            self.permissions.insert(permission);
        }
    }
}

/// Whether any user holds the Super Admin role.
pub async fn super_admin_exists(db: &Db) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = $1",
    )
    .bind(SUPER_ADMIN)
    .fetch_one(db.pool())
    .await?;
    Ok(count > 0)
}

/// Gives a role, by name, to a user; giving it twice changes nothing.
pub async fn grant_role<'e, E>(executor: E, user_id: i64, role: &str) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2 \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(role)
    .execute(executor)
    .await?;
    Ok(())
}
