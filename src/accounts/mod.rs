//! Accounts: signup, email verification, login and logout, the profile, password
//! recovery and the user's own sessions.

mod emails;
mod login_extras;
pub mod recovery;
mod routes;
pub mod service;
mod sessions;
pub mod store;
pub mod validate;

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

pub use routes::routes;

use crate::auth::password::PasswordHasher;
use crate::config::PasswordPolicy;
use crate::db::Db;
use crate::error::AppError;
use crate::rbac::{self, Access};

/// An account as stored, without its password hash.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub email_verified: bool,
    pub disabled: bool,
    pub twofa_enabled: bool,
    pub created_at: i64,
    pub password_changed_at: i64,
}

impl User {
    /// The contract's `<user>` object, borrowing the account and its access: an answer
    /// is written from them without copying them.
    pub fn details<'a>(&'a self, access: &'a Access) -> UserDetails<'a> {
        UserDetails {
            id: self.id,
            first_name: &self.first_name,
            last_name: &self.last_name,
            username: &self.username,
            email: &self.email,
            twofa_enabled: self.twofa_enabled,
            roles: &access.roles,
            permissions: &access.permissions,
        }
    }
}

/// The contract's `<user>` object: an account with what it may do.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 7,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "email": "ada@example.com",
    "twofa_enabled": false,
    "roles": ["User"],
    "permissions": ["view_logs"]
}))]
pub struct UserDetails<'a> {
    pub id: i64,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub twofa_enabled: bool,
    /// The names of the roles the account holds.
    #[schema(value_type = Vec<String>)]
    pub roles: &'a [String],
    /// Every permission the roles grant, sorted.
    #[schema(value_type = Vec<String>)]
    pub permissions: &'a BTreeSet<String>,
}

impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Db(e) => AppError::from(e),
            store::StoreError::Taken(message) => AppError::conflict(message),
        }
    }
}

/// What `gatehouse create-admin` made.
pub struct CreatedAdmin {
    pub id: i64,
    /// The password, when it was generated rather than given.
    pub generated_password: Option<String>,
}

/// Creates a verified account holding the Super Admin role.
pub async fn create_admin(
    db: &Db,
    hasher: &PasswordHasher,
    policy: &PasswordPolicy,
    username: &str,
    email: &str,
    password: Option<&str>,
) -> Result<CreatedAdmin, AppError> {
    let username = validate::username(username)?;
    let email = validate::email(email)?;
    let (password, generated) = match password {
        Some(p) => (p.to_owned(), false),
        None => (generate_password(), true),
    };
    validate::password(policy, &password, &username, &email).await?;
    let hash = hasher.hash(&password).await?;
    let mut tx = db.begin().await?;
    let id = store::insert_user(
        &mut tx,
        &store::NewUser {
            username: &username,
            email: &email,
            first_name: "Super",
            last_name: "Admin",
            password_hash: &hash,
            email_verified: true,
        },
    )
    .await?;
    rbac::grant_role(&mut *tx, id, rbac::SUPER_ADMIN).await?;
    tx.commit().await?;
    Ok(CreatedAdmin {
        id,
        generated_password: generated.then_some(password),
    })
}

/// 24 characters from all four classes the policy asks for: about 140 bits.
fn generate_password() -> String {
    use rand::seq::SliceRandom;
    use rand::Rng;
    const CLASSES: [&[u8]; 4] = [
        b"abcdefghijkmnopqrstuvwxyz",
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"23456789",
        b"-_.!@#%+=",
    ];
    let mut rng = rand::rngs::OsRng;
    let mut chars: Vec<u8> = CLASSES
        .iter()
        .map(|class| class[rng.gen_range(0..class.len())])
        .collect();
    let all: Vec<u8> = CLASSES.concat();
    while chars.len() < 24 {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    String::from_utf8_lossy(&chars).into_owned()
}
