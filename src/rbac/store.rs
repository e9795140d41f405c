//! The SQL behind role, permission and user administration.

use sqlx::Row;

use super::SUPER_ADMIN;
use crate::accounts::User;
use crate::auth::session::{self, USER_COLUMNS};
use crate::db::{self, Backend, Db};

/// What the role and permission store can fail with; the routes map it to the
/// contract's answer once, at the edge (`impl From<StoreError> for AppError`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A name already taken; the message says which kind.
    #[error("{0}")]
    Conflict(&'static str),
    /// A listing's position that cannot be one.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A violation of the unique index `index` as `Conflict(message)`, any other failure
/// as itself.
fn on_unique<T>(
    result: Result<T, sqlx::Error>,
    index: &str,
    message: &'static str,
) -> Result<T, StoreError> {
    result.map_err(|e| match db::unique_conflict(&e, &[(index, message)]) {
        Some(message) => StoreError::Conflict(message),
        None => StoreError::Db(e),
    })
}

#[derive(Debug, Clone)]
pub struct Role {
    pub id: i64,
    pub name: String,
    pub builtin: bool,
}

#[derive(Debug, Clone)]
pub struct PermissionRow {
    pub id: i64,
    pub name: String,
    pub builtin: bool,
}

type Conn = sqlx::AnyConnection;

/// Every role with the names of its permissions, in two queries.
pub async fn roles_with_permissions(db: &Db) -> Result<Vec<(Role, Vec<String>)>, StoreError> {
    let roles = sqlx::query("SELECT id, name, builtin FROM roles ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    let links = sqlx::query(
        "SELECT rp.role_id, p.name FROM role_permissions rp \
         JOIN permissions p ON p.id = rp.permission_id ORDER BY p.name",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(roles.len());
    for row in roles {
        let role = role_from_row(&row)?;
        let mut names = Vec::new();
        for link in &links {
            if link.try_get::<i64, _>(0)? == role.id {
                names.push(link.try_get(1)?);
            }
        }
        out.push((role, names));
    }
    Ok(out)
}

pub async fn permissions(db: &Db) -> Result<Vec<PermissionRow>, StoreError> {
    let rows = sqlx::query(&format!("{PERMISSION_COLUMNS} ORDER BY id"))
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(permission_from_row)
        .collect::<Result<_, _>>()?)
}

pub async fn create_role(conn: &mut Conn, name: &str) -> Result<i64, StoreError> {
    on_unique(
        sqlx::query_scalar("INSERT INTO roles (name, builtin) VALUES ($1, 0) RETURNING id")
            .bind(name)
            .fetch_one(conn)
            .await,
        "roles_name_key",
        "Role already exists",
    )
}

pub async fn create_permission(conn: &mut Conn, name: &str) -> Result<i64, StoreError> {
    on_unique(
        sqlx::query_scalar("INSERT INTO permissions (name, builtin) VALUES ($1, 0) RETURNING id")
            .bind(name)
            .fetch_one(conn)
            .await,
        "permissions_name_key",
        "Permission already exists",
    )
}

fn role_from_row(r: &sqlx::any::AnyRow) -> Result<Role, sqlx::Error> {
    Ok(Role {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        builtin: r.try_get::<i64, _>(2)? != 0,
    })
}

pub async fn role_by_id(conn: &mut Conn, id: i64) -> Result<Option<Role>, StoreError> {
    let row = sqlx::query("SELECT id, name, builtin FROM roles WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(role_from_row).transpose()?)
}

pub async fn role_by_name(conn: &mut Conn, name: &str) -> Result<Option<Role>, StoreError> {
    let row = sqlx::query("SELECT id, name, builtin FROM roles WHERE lower(name) = lower($1)")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(role_from_row).transpose()?)
}

const PERMISSION_COLUMNS: &str = "SELECT id, name, builtin FROM permissions";

fn permission_from_row(r: &sqlx::any::AnyRow) -> Result<PermissionRow, sqlx::Error> {
    Ok(PermissionRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        builtin: r.try_get::<i64, _>(2)? != 0,
    })
}

pub async fn permission_by_id(db: &Db, id: i64) -> Result<Option<PermissionRow>, StoreError> {
    let row = sqlx::query(&format!("{PERMISSION_COLUMNS} WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(permission_from_row).transpose()?)
}

pub async fn permission_by_name(db: &Db, name: &str) -> Result<Option<PermissionRow>, StoreError> {
    let row = sqlx::query(&format!(
        "{PERMISSION_COLUMNS} WHERE lower(name) = lower($1)"
    ))
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(permission_from_row).transpose()?)
}

/// The permission names a role grants (all of them for Super Admin).
pub async fn role_permissions(conn: &mut Conn, role: &Role) -> Result<Vec<String>, StoreError> {
    let names = if role.name == SUPER_ADMIN {
        sqlx::query_scalar("SELECT name FROM permissions ORDER BY name")
            .fetch_all(conn)
            .await?
    } else {
        sqlx::query_scalar(
            "SELECT p.name FROM role_permissions rp JOIN permissions p ON p.id = rp.permission_id \
             WHERE rp.role_id = $1 ORDER BY p.name",
        )
        .bind(role.id)
        .fetch_all(conn)
        .await?
    };
    Ok(names)
}

pub async fn role_holders(conn: &mut Conn, role_id: i64) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM user_roles WHERE role_id = $1")
            .bind(role_id)
            .fetch_one(conn)
            .await?,
    )
}

/// How many users hold each role, in one grouped query (of the `user_roles_role`
/// index); roles nobody holds are missing.
pub async fn member_counts(db: &Db) -> Result<Vec<(i64, i64)>, StoreError> {
    let rows = sqlx::query("SELECT role_id, COUNT(*) FROM user_roles GROUP BY role_id")
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

pub async fn rename_role(conn: &mut Conn, role_id: i64, name: &str) -> Result<(), StoreError> {
    on_unique(
        sqlx::query("UPDATE roles SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(role_id)
            .execute(conn)
            .await,
        "roles_name_key",
        "Role already exists",
    )?;
    Ok(())
}

pub async fn rename_permission(
    conn: &mut Conn,
    permission_id: i64,
    name: &str,
) -> Result<(), StoreError> {
    on_unique(
        sqlx::query("UPDATE permissions SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(permission_id)
            .execute(conn)
            .await,
        "permissions_name_key",
        "Permission already exists",
    )?;
    Ok(())
}

pub async fn delete_role(conn: &mut Conn, role_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM roles WHERE id = $1")
        .bind(role_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_permission(conn: &mut Conn, permission_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM permissions WHERE id = $1")
        .bind(permission_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Links a permission to a role; returns whether the link is new.
pub async fn link(conn: &mut Conn, role_id: i64, permission_id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO role_permissions (role_id, permission_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(role_id)
    .bind(permission_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Unlinks a permission from a role; returns whether there was a link.
pub async fn unlink(conn: &mut Conn, role_id: i64, permission_id: i64) -> Result<bool, StoreError> {
    let done =
        sqlx::query("DELETE FROM role_permissions WHERE role_id = $1 AND permission_id = $2")
            .bind(role_id)
            .bind(permission_id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Gives a role to a user; returns whether it is new.
pub async fn add_user_role(
    conn: &mut Conn,
    user_id: i64,
    role_id: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(role_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Takes a role from a user; returns whether the user had it.
pub async fn remove_user_role(
    conn: &mut Conn,
    user_id: i64,
    role_id: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2")
        .bind(user_id)
        .bind(role_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Serialises every change that could remove the last Super Admin. Rewriting the
/// role's row takes its row lock on PostgreSQL and the write lock on SQLite, so the
/// count that follows cannot be raced by another such change.
pub async fn lock_super_admins(conn: &mut Conn) -> Result<(), StoreError> {
    sqlx::query("UPDATE roles SET name = name WHERE name = $1")
        .bind(SUPER_ADMIN)
        .execute(conn)
        .await?;
    Ok(())
}

/// Enabled accounts holding Super Admin.
pub async fn active_super_admins(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
         JOIN users u ON u.id = ur.user_id WHERE r.name = $1 AND u.disabled = 0",
    )
    .bind(SUPER_ADMIN)
    .fetch_one(conn)
    .await?)
}

pub async fn set_disabled(conn: &mut Conn, user_id: i64, disabled: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
        .bind(i64::from(disabled))
        .bind(db::now())
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The names searched by `q`: prefix matches on these columns use their lower()
/// indexes, so a search stays an index range scan however many users there are.
const SEARCHED: [&str; 4] = ["username", "email", "first_name", "last_name"];

/// The orders a user listing can be read in; each walks an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    /// By id: the order accounts were created in.
    Joined,
    Username,
    Email,
}

impl UserOrder {
    /// The sort key: unique in every order (usernames and emails are unique
    /// case-insensitively), so a key alone says where a page starts.
    fn key(self) -> &'static str {
        match self {
            Self::Joined => "id",
            Self::Username => "lower(username)",
            Self::Email => "lower(email)",
        }
    }
}

/// A listed user with the sort key the next or previous page starts from, as the
/// database wrote it (its `lower()` is the one the order and the index use).
pub struct Listed {
    pub user: User,
    pub key: String,
}

/// Where a keyset page starts: after or before a sort key, as the address carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCursor {
    First,
    After(String),
    Before(String),
}

/// One keyset page of users and whether there is more on each side.
pub struct UserPage {
    pub users: Vec<Listed>,
    pub more_before: bool,
    pub more_after: bool,
}

/// The condition of a case-insensitive prefix search, its two arguments taking `$1`
/// and `$2`; empty without a search.
fn search(db: &Db, q: Option<&str>) -> (String, Option<(String, String)>) {
    let Some(q) = q else {
        return (String::new(), None);
    };
    let low = q.to_lowercase();
    // Every string starting with `low` sorts between it and `low` followed by the
    // highest code point.
    let high = format!("{low}\u{10FFFF}");
    let conditions: Vec<String> = SEARCHED
        .iter()
        .map(|c| {
            let key = match db.backend() {
                Backend::Sqlite => format!("lower({c})"),
                Backend::Postgres => format!("(lower({c}) COLLATE \"C\")"),
            };
            format!("({key} >= $1 AND {key} < $2)")
        })
        .collect();
    (format!("({})", conditions.join(" OR ")), Some((low, high)))
}

/// The users table as a listing in `order` reads it. A search matching many users
/// (`dense`: more than the exact count's 10,000) is read by walking the order's own
/// index and testing each row, which finds a page's rows in the first few thousand.
/// SQLite's planner does not see that by itself: it gathers every match through the
/// four search indexes and sorts them, 2.4 s for a search matching a million users,
/// so it is told. PostgreSQL's planner makes that choice from its statistics.
fn users_source(db: &Db, order: UserOrder, dense: bool) -> &'static str {
    match (db.backend(), dense, order) {
        (Backend::Sqlite, true, UserOrder::Joined) => "users NOT INDEXED",
        (Backend::Sqlite, true, UserOrder::Username) => "users INDEXED BY users_username_key",
        (Backend::Sqlite, true, UserOrder::Email) => "users INDEXED BY users_email_key",
        _ => "users",
    }
}

fn where_clause(condition: &str) -> String {
    if condition.is_empty() {
        String::new()
    } else {
        format!("WHERE {condition}")
    }
}

/// How many users match `q`: exact up to 10,000, estimated past it (`db::count`).
/// The listings take `!total.exact` as their `dense`.
pub async fn count_users(db: &Db, q: Option<&str>) -> Result<db::count::Total, StoreError> {
    let (filter, bounds) = search(db, q);
    let sample_from = users_source(db, UserOrder::Joined, true);
    let bind: db::count::Bind<'_> = &|query| match &bounds {
        Some((low, high)) => query.bind(low.clone()).bind(high.clone()),
        None => query,
    };
    // 5,000 ids: a search is tested on each (four lower()s), 20,000 took 23 ms on
    // PostgreSQL; more than 10,000 matches among a million users is a share of 1 %.
    Ok(db::count::total(db, "users", sample_from, 5_000, &filter, bind).await?)
}

/// One page of users by offset (the JSON contract's `page`), optionally filtered by a
/// case-insensitive prefix of their username, email, first or last name. A deep
/// offset walks the id index up to it; the web UI pages by key instead.
pub async fn list_users(
    db: &Db,
    q: Option<&str>,
    dense: bool,
    page: i64,
    per_page: i64,
) -> Result<Vec<User>, StoreError> {
    let (filter, bounds) = search(db, q);
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM {} {} ORDER BY id LIMIT {per_page} OFFSET {}",
        users_source(db, UserOrder::Joined, dense),
        where_clause(&filter),
        (page - 1).saturating_mul(per_page)
    );
    let mut rows = sqlx::query(&sql);
    if let Some((low, high)) = bounds {
        rows = rows.bind(low).bind(high);
    }
    Ok(rows
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| session::user_from_row(r, 0))
        .collect::<Result<Vec<_>, _>>()?)
}

/// One page of users in `order` from `cursor` (keyset: an index range scan from the
/// key, as cheap at the millionth user as at the first), optionally filtered as
/// [`list_users`] is. A cursor for the joined order that is not an id is a 400.
pub async fn list_users_keyset(
    db: &Db,
    q: Option<&str>,
    dense: bool,
    order: UserOrder,
    cursor: &UserCursor,
    per_page: i64,
) -> Result<UserPage, StoreError> {
    let (filter, bounds) = search(db, q);
    let key = order.key();
    let (from, direction) = match cursor {
        UserCursor::First => (None, "ASC"),
        UserCursor::After(k) => (Some((">", k)), "ASC"),
        UserCursor::Before(k) => (Some(("<", k)), "DESC"),
    };
    let mut conditions = filter;
    let next = if bounds.is_some() { 3 } else { 1 };
    if let Some((op, _)) = from {
        let joiner = if conditions.is_empty() { "" } else { " AND " };
        conditions.push_str(&format!("{joiner}{key} {op} ${next}"));
    }
    let sql = format!(
        "SELECT {USER_COLUMNS}, {key} FROM {} {} ORDER BY {key} {direction} LIMIT {}",
        users_source(db, order, dense),
        where_clause(&conditions),
        per_page + 1
    );
    let mut query = sqlx::query(&sql);
    if let Some((low, high)) = bounds {
        query = query.bind(low).bind(high);
    }
    if let Some((_, k)) = from {
        query = match order {
            UserOrder::Joined => query.bind(
                k.parse::<i64>()
                    .map_err(|_| StoreError::Invalid("The page's position must be a user id"))?,
            ),
            UserOrder::Username | UserOrder::Email => query.bind(k.clone()),
        };
    }
    let mut users = query
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| {
            let key = match order {
                UserOrder::Joined => r.try_get::<i64, _>(10)?.to_string(),
                UserOrder::Username | UserOrder::Email => r.try_get(10)?,
            };
            Ok(Listed {
                user: session::user_from_row(r, 0)?,
                key,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let more = users.len() as i64 > per_page;
    users.truncate(usize::try_from(per_page).unwrap_or(0));
    let backwards = matches!(cursor, UserCursor::Before(_));
    if backwards {
        users.reverse();
    }
    Ok(UserPage {
        users,
        more_before: if backwards { more } else { from.is_some() },
        more_after: if backwards { true } else { more },
    })
}

/// Every user with role and permission names, in three queries whatever the count.
pub async fn all_profiles(db: &Db, limit: i64) -> Result<Vec<(User, super::Access)>, StoreError> {
    let users = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT {limit}"
    ))
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| session::user_from_row(r, 0))
    .collect::<Result<Vec<_>, _>>()?;
    let roles = sqlx::query(
        "SELECT ur.user_id, r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
         ORDER BY r.name",
    )
    .fetch_all(db.pool())
    .await?;
    let perms = sqlx::query(
        "SELECT DISTINCT ur.user_id, p.name FROM user_roles ur \
         JOIN role_permissions rp ON rp.role_id = ur.role_id \
         JOIN permissions p ON p.id = rp.permission_id",
    )
    .fetch_all(db.pool())
    .await?;
    let all_permissions: Vec<String> = sqlx::query_scalar("SELECT name FROM permissions")
        .fetch_all(db.pool())
        .await?;
    let mut by_user: std::collections::HashMap<i64, super::Access> = Default::default();
    for row in &roles {
        by_user
            .entry(row.try_get(0)?)
            .or_default()
            .add(row.try_get(1)?, None);
    }
    for row in &perms {
        by_user
            .entry(row.try_get(0)?)
            .or_default()
            .add(None, row.try_get(1)?);
    }
    Ok(users
        .into_iter()
        .map(|user| {
            let mut access = by_user.remove(&user.id).unwrap_or_default();
            if access.super_admin {
                access.permissions.extend(all_permissions.iter().cloned());
            }
            (user, access)
        })
        .collect())
}

/// Gives roles to users, many (user id, role id) pairs in one statement; pairs held
/// already are left alone.
pub async fn grant_many(
    conn: &mut Conn,
    backend: Backend,
    pairs: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    use db::JsonCol::Int;
    let rows: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(user, role)| serde_json::json!([user, role]))
        .collect();
    let select = db::json_rows(backend, &[Int, Int]);
    sqlx::query(&format!(
        "INSERT INTO user_roles (user_id, role_id) {select} ON CONFLICT DO NOTHING"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}
