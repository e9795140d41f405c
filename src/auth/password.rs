//! Password hashing with Argon2id at OWASP's recommended parameters.
//!
//! Hashing is deliberately slow and memory-hungry (19 MiB per hash), so it runs on the
//! blocking thread pool, never on the async workers, and a semaphore bounds how many
//! hashes run at once: a flood of logins queues instead of exhausting memory.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Span;

use crate::error::AppError;

/// OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    permits: Semaphore,
    /// Verified against when the account does not exist, so that an unknown user
    /// costs the same time as a wrong password.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Result<Self, argon2::password_hash::Error> {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon
            .hash_password(b"no such account", &SaltString::generate(&mut OsRng))?
            .to_string();
        Ok(Self {
            inner: Arc::new(Inner {
                argon,
                permits: Semaphore::new(max_concurrent.max(1)),
                dummy_hash,
            }),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for the password.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.run(move |inner| {
            inner
                .argon
                .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(anyhow::anyhow!("argon2 hash: {e}")))
        })
        .await
    }

    /// Whether the password matches the stored hash. With no stored hash (unknown
    /// account) a dummy hash is checked instead and the answer is always `false`.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, AppError> {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(move |inner| {
            let known = stored.is_some();
            let phc = stored.as_deref().unwrap_or(&inner.dummy_hash);
            let matches = match PasswordHash::new(phc) {
                Ok(parsed) => inner
                    .argon
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            };
            Ok(known && matches)
        })
        .await
    }

    async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, AppError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(AppError::internal)?;
        let inner = Arc::clone(&self.inner);
        let span = Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| work(&inner)))
            .await
            .map_err(AppError::internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("Tr0ub4dor&3-horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher
            .verify("Tr0ub4dor&3-horse", Some(&hash))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong", Some(&hash)).await.unwrap());
        assert!(!hasher.verify("no such account", None).await.unwrap());
        assert!(!hasher.verify("x", Some("not a phc string")).await.unwrap());
    }
}
