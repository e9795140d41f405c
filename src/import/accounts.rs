//! Users, roles, permissions and who holds which role.

use std::collections::{HashMap, HashSet};

use super::old::{OldDb, Row};
use super::report::{Outcome, Report, Table};
use super::{clean_label, next_id, record, Ctx, ImportError, BATCH};
use crate::accounts::store::{self as account_store, ImportedUser};
use crate::accounts::validate;
use crate::auth::password::legacy;
use crate::rbac::{self, store as rbac_store};
use crate::twofa::{sealed, store as twofa_store};

/// Stored instead of a hash that cannot be verified: it matches no password, so the
/// account signs in only after a password reset.
const NO_PASSWORD: &str = "!";
/// The longest role name Gatehouse accepts.
const ROLE_NAME_MAX: usize = 64;

/// What later tables need to know about the old users.
pub struct Carried {
    /// Each old user's email exactly as stored, and the old user id.
    pub emails: HashMap<String, i64>,
    /// Each old user's Stripe customer id.
    pub customers: Vec<(i64, String)>,
}

const USER_COLUMNS: [&str; 11] = [
    "id",
    "first_name",
    "last_name",
    "username",
    "email",
    "password_hash",
    "twofa_secret",
    "twofa_enabled",
    "stripe_customer_id",
    "verified",
    "created_at",
];

pub async fn users(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
) -> Result<Carried, ImportError> {
    let rows = old.rows("user", &USER_COLUMNS, "id").await?;
    let mut table = Table::new("user", rows.len());
    let mut carried = Carried {
        emails: HashMap::new(),
        customers: Vec::new(),
    };
    let mut usernames = HashSet::new();
    // Gatehouse's accounts by lower-case email; those imported before are told apart.
    let mut emails: HashMap<String, i64> = HashMap::new();
    for (id, username, email) in account_store::taken_names(ctx.db).await? {
        usernames.insert(username);
        emails.insert(email, id);
    }
    let imported_before: HashSet<i64> = ctx
        .before
        .get("user")
        .map(|m| m.values().copied().collect())
        .unwrap_or_default();

    // Of old accounts whose emails differ only by case, the verified one (the oldest
    // of several) is imported and the others fold into it.
    let mut keeper: HashMap<String, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let Some(email) = row.text(4) else { continue };
        let key = email.trim().to_lowercase();
        match keeper.get(&key) {
            Some(&k) if row.flag(9) && !rows[k].flag(9) => {
                keeper.insert(key, i);
            }
            Some(_) => {}
            None => {
                keeper.insert(key, i);
            }
        }
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| {
        let key = rows[i].text(4).map(|e| e.trim().to_lowercase());
        let keeps = key.is_some_and(|k| keeper.get(&k) == Some(&i));
        (!keeps, i)
    });

    let first_new = next_id(ctx.db, "users").await?;
    let mut next = first_new;
    let mut new_users = Vec::new();
    let mut secrets = Vec::new();
    let mut merges = Vec::new();
    for i in order {
        let row = &rows[i];
        let Some(old_id) = row.int(0) else { continue };
        if let Some(email) = row.text(4) {
            carried.emails.insert(email.to_owned(), old_id);
        }
        if let Some(customer) = row.text(8).map(str::trim).filter(|c| !c.is_empty()) {
            carried.customers.push((old_id, customer.to_owned()));
        }
        if ctx.already("user", old_id) {
            table.already += 1;
            continue;
        }
        let label = format!("user {old_id} ({})", row.text(3).unwrap_or(""));
        let Some(email) = row.text(4).and_then(|e| validate::email(e).ok()) else {
            table.note(
                Outcome::Skipped,
                label,
                format!(
                    "email {:?} is not a valid address",
                    row.text(4).unwrap_or("")
                ),
            );
            continue;
        };
        let key = email.to_lowercase();
        if let Some(&existing) = emails.get(&key) {
            let whose = if imported_before.contains(&existing) || existing >= first_new {
                "an imported account"
            } else {
                "an account that existed in Gatehouse"
            };
            if row.flag(9) {
                table.note(
                    Outcome::Merged,
                    label,
                    format!("its email {email} belongs (ignoring case) to {whose}, id {existing}: roles, subscriptions and orders go to it; this account's password does not"),
                );
                ctx.plan("user", old_id, existing);
                merges.push((old_id, existing));
            } else {
                table.note(
                    Outcome::Skipped,
                    label,
                    format!("unverified, and its email {email} belongs (ignoring case) to {whose}, id {existing}"),
                );
            }
            continue;
        }
        let id = next;
        next += 1;
        let username = pick_username(row.text(3).unwrap_or(""), &mut usernames);
        if Some(username.as_str()) != row.text(3) {
            table.note(
                Outcome::Renamed,
                label.clone(),
                format!(
                    "username {:?} breaks Gatehouse's rules or is taken (ignoring case): now {username:?}",
                    row.text(3).unwrap_or("")
                ),
            );
        }
        let mut name = |at: usize, field: &str| {
            let (value, changed) = clean_label(row.text(at).unwrap_or(""), validate::NAME_MAX);
            if changed {
                table.note(
                    Outcome::Changed,
                    label.clone(),
                    format!(
                        "{field} trimmed to {} characters without control characters",
                        validate::NAME_MAX
                    ),
                );
            }
            value
        };
        let first_name = name(1, "first_name");
        let last_name = name(2, "last_name");
        let password_hash = carried_hash(row, &label, &mut table);
        let twofa = carried_twofa(ctx, row, id, &label, &mut table)?;
        let twofa_enabled = twofa.is_some();
        if let Some(sealed) = twofa {
            secrets.push((id, sealed));
        }
        let created_at = row.time(10, time::UtcOffset::UTC).unwrap_or_else(|| {
            table.note(
                Outcome::Changed,
                label.clone(),
                "no readable created_at: set to the time of the import",
            );
            crate::db::now()
        });
        emails.insert(key, id);
        ctx.plan("user", old_id, id);
        new_users.push((
            old_id,
            ImportedUser {
                id,
                username,
                email,
                first_name,
                last_name,
                password_hash,
                email_verified: row.flag(9),
                twofa_enabled,
                created_at,
            },
        ));
    }
    table.imported = new_users.len();

    if !ctx.options.dry_run {
        let bar = ctx.bar("user", new_users.len());
        let mut conn = ctx.db.pool().acquire().await?;
        let user_role = rbac_store::role_by_name(&mut conn, rbac::USER)
            .await
            .map_err(crate::error::AppError::from)?
            .map(|r| r.id);
        drop(conn);
        // The secrets are few: each batch takes the ones of its own users.
        let secrets: HashMap<i64, String> = secrets.into_iter().collect();
        for chunk in new_users.chunks(BATCH) {
            let users: Vec<ImportedUser> = chunk.iter().map(|(_, u)| u.clone()).collect();
            let sealed: Vec<(i64, String)> = users
                .iter()
                .filter_map(|u| secrets.get(&u.id).map(|s| (u.id, s.clone())))
                .collect();
            // Every account signup creates holds the User role; imported ones too.
            let grants: Vec<(i64, i64)> = match user_role {
                Some(role) => users.iter().map(|u| (u.id, role)).collect(),
                None => Vec::new(),
            };
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|(old, u)| (*old, u.id)).collect();
            let mut tx = ctx.db.begin().await?;
            account_store::insert_imported(&mut tx, ctx.backend, &users).await?;
            twofa_store::insert_imported(&mut tx, ctx.backend, &sealed).await?;
            rbac_store::grant_many(&mut tx, ctx.backend, &grants).await?;
            record(&mut tx, ctx.backend, "user", &pairs).await?;
            crate::db::sync_id_sequence(&mut tx, ctx.backend, "users").await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        let mut tx = ctx.db.begin().await?;
        record(&mut tx, ctx.backend, "user", &merges).await?;
        tx.commit().await?;
        bar.finish();
    }
    report.tables.push(table);
    Ok(carried)
}

/// The old username if Gatehouse accepts it and nobody has it (ignoring case);
/// otherwise the nearest one that works: other characters replaced by `_`, cut to 32,
/// and `-2`, `-3`, … added until it is free.
fn pick_username(old: &str, taken: &mut HashSet<String>) -> String {
    let base = match validate::username(old) {
        Ok(name) if name == old => name,
        _ => {
            let mut name: String = old
                .trim()
                .chars()
                .map(
                    |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        true => c,
                        false => '_',
                    },
                )
                .take(32)
                .collect();
            if name.is_empty() {
                name = "user".to_owned();
            }
            while name.len() < 3 {
                name.push('_');
            }
            name
        }
    };
    let mut candidate = base.clone();
    let mut n = 2;
    while taken.contains(&candidate.to_lowercase()) {
        let suffix = format!("-{n}");
        let keep = 32 - suffix.len();
        candidate = format!("{}{suffix}", &base[..base.len().min(keep)]);
        n += 1;
    }
    taken.insert(candidate.to_lowercase());
    candidate
}

/// The old hash when Gatehouse can verify it, else [`NO_PASSWORD`] with a note. The
/// hash itself never appears in the report.
fn carried_hash(row: &Row, label: &str, table: &mut Table) -> String {
    match row.text(5) {
        Some(hash) if legacy::Hash::parse(hash).is_some() || hash.starts_with("$argon2id$") => {
            hash.to_owned()
        }
        Some(hash) => {
            let method: String = hash
                .split('$')
                .next()
                .unwrap_or("")
                .chars()
                .take(24)
                .collect();
            table.note(
                Outcome::Changed,
                label,
                format!("password hash of an unknown format ({method:?}) or cut short: the account must reset its password"),
            );
            NO_PASSWORD.to_owned()
        }
        None => {
            table.note(
                Outcome::Changed,
                label,
                "no password hash: the account must reset its password",
            );
            NO_PASSWORD.to_owned()
        }
    }
}

/// The TOTP secret sealed for the new account, when 2FA was on and the secret reads.
fn carried_twofa(
    ctx: &Ctx<'_>,
    row: &Row,
    new_id: i64,
    label: &str,
    table: &mut Table,
) -> Result<Option<String>, ImportError> {
    let secret = row.text(6).map(|s| s.trim().to_ascii_uppercase());
    match (row.flag(7), secret) {
        (true, Some(secret)) => {
            match data_encoding::BASE32_NOPAD.decode(secret.trim_end_matches('=').as_bytes()) {
                Ok(bytes) if bytes.len() >= 10 => {
                    Ok(Some(sealed::seal(ctx.secret_key, new_id, &bytes)?))
                }
                _ => {
                    table.note(
                        Outcome::Changed,
                        label,
                        "two-factor secret is not readable base32: two-factor authentication is off",
                    );
                    Ok(None)
                }
            }
        }
        (true, None) => {
            table.note(
                Outcome::Changed,
                label,
                "two-factor authentication on without a secret: it is off",
            );
            Ok(None)
        }
        (false, Some(_)) => {
            table.note(
                Outcome::Changed,
                label,
                "two-factor enrolment was never confirmed: the pending secret is dropped",
            );
            Ok(None)
        }
        (false, None) => Ok(None),
    }
}

/// Roles (merged by name, ignoring case, the old built-ins onto Gatehouse's),
/// permissions (one per name, linked to every role that owned a row of it) and user
/// roles.
pub async fn roles(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
) -> Result<(), ImportError> {
    let rows = old.rows("roles", &["id", "name"], "id").await?;
    let mut table = Table::new("roles", rows.len());
    let mut by_name: HashMap<String, (i64, String, bool)> =
        rbac_store::roles_with_permissions(ctx.db)
            .await
            .map_err(crate::error::AppError::from)?
            .into_iter()
            .map(|(r, _)| (r.name.to_lowercase(), (r.id, r.name, r.builtin)))
            .collect();
    let mut fake = 0;
    let mut builtin_roles = HashSet::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        if ctx.already("role", old_id) {
            table.already += 1;
            if let Some(id) = ctx.id("role", old_id) {
                if by_name.values().any(|(i, _, b)| *i == id && *b) {
                    builtin_roles.insert(id);
                }
            }
            continue;
        }
        let label = format!("role {old_id} ({})", row.text(1).unwrap_or(""));
        let (name, changed) = clean_label(row.text(1).unwrap_or(""), ROLE_NAME_MAX);
        if name.is_empty() {
            table.note(
                Outcome::Skipped,
                label,
                "the role has no name; its holders lose it",
            );
            continue;
        }
        if changed {
            table.note(
                Outcome::Changed,
                label.clone(),
                format!("name shortened or cleaned to {name:?}"),
            );
        }
        if let Some((id, existing, builtin)) = by_name.get(&name.to_lowercase()).cloned() {
            let why = if builtin {
                builtin_roles.insert(id);
                format!("mapped onto Gatehouse's built-in role {existing:?}, which keeps its own permissions")
            } else {
                format!("same name (ignoring case) as the role {existing:?}")
            };
            table.note(Outcome::Merged, label, why);
            ctx.plan("role", old_id, id);
            if !ctx.options.dry_run {
                let mut tx = ctx.db.begin().await?;
                record(&mut tx, ctx.backend, "role", &[(old_id, id)]).await?;
                tx.commit().await?;
            }
            continue;
        }
        let id = if ctx.options.dry_run {
            fake -= 1;
            fake
        } else {
            // The role and its mapping commit together, so a rerun never makes it twice.
            let mut tx = ctx.db.begin().await?;
            let id = rbac_store::create_role(&mut tx, &name)
                .await
                .map_err(crate::error::AppError::from)?;
            record(&mut tx, ctx.backend, "role", &[(old_id, id)]).await?;
            tx.commit().await?;
            id
        };
        table.imported += 1;
        by_name.insert(name.to_lowercase(), (id, name, false));
        ctx.plan("role", old_id, id);
    }
    report.tables.push(table);
    permissions(ctx, old, report, &builtin_roles).await?;
    user_roles(ctx, old, report).await
}

async fn permissions(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
    builtin_roles: &HashSet<i64>,
) -> Result<(), ImportError> {
    let rows = old
        .rows("permissions", &["id", "name", "role_id"], "id")
        .await?;
    let mut table = Table::new("permissions", rows.len());
    let mut by_name: HashMap<String, (i64, String)> = rbac_store::permissions(ctx.db)
        .await
        .map_err(crate::error::AppError::from)?
        .into_iter()
        .map(|p| (p.name.to_lowercase(), (p.id, p.name)))
        .collect();
    let mut fake = 0;
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        if ctx.already("permission", old_id) {
            table.already += 1;
            continue;
        }
        let label = format!("permission {old_id} ({})", row.text(1).unwrap_or(""));
        let (name, _) = clean_label(row.text(1).unwrap_or(""), ROLE_NAME_MAX);
        if name.is_empty() {
            table.note(Outcome::Skipped, label, "the permission has no name");
            continue;
        }
        // The permission, its link and its mapping commit together.
        let mut tx = ctx.db.begin().await?;
        let id = match by_name.get(&name.to_lowercase()).cloned() {
            Some((id, existing)) => {
                table.note(
                    Outcome::Merged,
                    label.clone(),
                    format!("one permission per name in Gatehouse: merged into {existing:?}"),
                );
                id
            }
            None => {
                let id = if ctx.options.dry_run {
                    fake -= 1;
                    fake
                } else {
                    rbac_store::create_permission(&mut tx, &name)
                        .await
                        .map_err(crate::error::AppError::from)?
                };
                table.imported += 1;
                by_name.insert(name.to_lowercase(), (id, name.clone()));
                id
            }
        };
        match row.int(2) {
            None => {}
            Some(old_role) => match ctx.id("role", old_role) {
                None => table.note(
                    Outcome::Changed,
                    label.clone(),
                    format!("its role {old_role} does not exist or was skipped: linked to no role"),
                ),
                Some(role) if builtin_roles.contains(&role) => {}
                Some(role) => {
                    if !ctx.options.dry_run {
                        rbac_store::link(&mut tx, role, id)
                            .await
                            .map_err(crate::error::AppError::from)?;
                    }
                }
            },
        }
        ctx.plan("permission", old_id, id);
        if !ctx.options.dry_run {
            record(&mut tx, ctx.backend, "permission", &[(old_id, id)]).await?;
            tx.commit().await?;
        }
    }
    report.tables.push(table);
    Ok(())
}

async fn user_roles(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
) -> Result<(), ImportError> {
    let rows = old
        .rows("user_roles", &["user_id", "role_id"], "user_id, role_id")
        .await?;
    let mut table = Table::new("user_roles", rows.len());
    let mut pairs = Vec::new();
    for row in &rows {
        let (Some(old_user), Some(old_role)) = (row.int(0), row.int(1)) else {
            continue;
        };
        let label = format!("user {old_user} → role {old_role}");
        let Some(user) = ctx.id("user", old_user) else {
            table.note(
                Outcome::Skipped,
                label,
                "the user does not exist or was skipped",
            );
            continue;
        };
        let Some(role) = ctx.id("role", old_role) else {
            table.note(
                Outcome::Skipped,
                label,
                "the role does not exist or was skipped",
            );
            continue;
        };
        if ctx.already("user", old_user) && ctx.already("role", old_role) {
            table.already += 1;
        } else {
            table.imported += 1;
        }
        pairs.push((user, role));
    }
    if !ctx.options.dry_run {
        let bar = ctx.bar("user_roles", pairs.len());
        for chunk in pairs.chunks(BATCH * 5) {
            let mut tx = ctx.db.begin().await?;
            rbac_store::grant_many(&mut tx, ctx.backend, chunk).await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    report.tables.push(table);
    Ok(())
}
