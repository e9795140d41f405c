//! Password hashing with Argon2id at OWASP's recommended parameters.
//!
//! Hashing is deliberately slow and memory-hungry (19 MiB per hash), so it runs on the
//! blocking thread pool, never on the async workers, and a semaphore bounds how many
//! hashes run at once: a flood of logins queues instead of exhausting memory.
//!
//! Accounts imported from the old Flask service keep their Werkzeug hashes until their
//! first successful sign-in (see [`legacy`]); they are verified here too, under
//! the same semaphore, and reported as needing a rehash.

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
        Ok(self.check(password, stored).await?.matches())
    }

    /// Like [`Self::verify`], and also says whether a matching hash is an imported
    /// Werkzeug one that should now be replaced by Argon2id.
    pub async fn check(&self, password: &str, stored: Option<&str>) -> Result<Verdict, AppError> {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(move |inner| {
            let Some(stored) = stored else {
                inner.argon_matches(&password, &inner.dummy_hash);
                return Ok(Verdict::Mismatch);
            };
            Ok(match legacy::Hash::parse(&stored) {
                Some(old) if old.matches(&password) => Verdict::MatchesLegacy,
                Some(_) => Verdict::Mismatch,
                None if PasswordHash::new(&stored).is_ok() => {
                    match inner.argon_matches(&password, &stored) {
                        true => Verdict::Matches,
                        false => Verdict::Mismatch,
                    }
                }
                // No usable password (an imported account whose old hash could not be
                // carried over): it costs the time of a real check all the same.
                None => {
                    inner.argon_matches(&password, &inner.dummy_hash);
                    Verdict::Mismatch
                }
            })
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

impl Inner {
    fn argon_matches(&self, password: &str, phc: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|parsed| {
            self.argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Mismatch,
    Matches,
    /// It matches an imported Werkzeug hash, which is to be replaced now that the
    /// password is known.
    MatchesLegacy,
}

impl Verdict {
    pub fn matches(self) -> bool {
        self != Self::Mismatch
    }

    pub fn needs_rehash(self) -> bool {
        self == Self::MatchesLegacy
    }
}

/// Werkzeug's `generate_password_hash` formats, as the old Flask service stored them:
/// `scrypt:N:r:p$salt$hex` (its default) and `pbkdf2:hash:iterations$salt$hex`. The
/// salt is used as its own ASCII text, the password as UTF-8, as Werkzeug does.
pub mod legacy {
    use pbkdf2::pbkdf2_hmac;
    use subtle::ConstantTimeEq;

    /// Werkzeug's scrypt output length; its pbkdf2 output is the hash's digest size.
    const SCRYPT_LEN: usize = 64;
    /// A stored hash asking for more than this (scrypt's 128·N·r·p bytes, or this many
    /// PBKDF2 iterations) is refused rather than computed: Werkzeug's own defaults
    /// need 32 MiB and 600,000, and a sign-in must not be made to cost arbitrarily much.
    const MAX_SCRYPT_BYTES: u64 = 64 * 1024 * 1024;
    const MAX_ITERATIONS: u32 = 2_000_000;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Method {
        Scrypt { log_n: u8, r: u32, p: u32 },
        Pbkdf2 { digest: Digest, iterations: u32 },
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Digest {
        Sha1,
        Sha256,
        Sha512,
    }

    /// A parsed Werkzeug hash that can be verified.
    #[derive(Debug)]
    pub struct Hash {
        method: Method,
        salt: Vec<u8>,
        expected: Vec<u8>,
    }

    impl Hash {
        /// `None` for anything that is not a complete, verifiable Werkzeug hash:
        /// another format (Argon2id PHC strings included), an unknown method, or a
        /// digest cut short (as a non-strict MySQL column leaves it).
        pub fn parse(stored: &str) -> Option<Self> {
            let mut parts = stored.splitn(3, '$');
            let (method, salt, hex_digest) = (parts.next()?, parts.next()?, parts.next()?);
            let method = parse_method(method)?;
            let expected = hex::decode(hex_digest).ok()?;
            let length = match method {
                Method::Scrypt { .. } => SCRYPT_LEN,
                Method::Pbkdf2 { digest, .. } => digest.len(),
            };
            (expected.len() == length).then(|| Self {
                method,
                salt: salt.as_bytes().to_vec(),
                expected,
            })
        }

        /// Recomputes the hash of `password` and compares in constant time.
        pub fn matches(&self, password: &str) -> bool {
            let mut out = vec![0u8; self.expected.len()];
            let password = password.as_bytes();
            match self.method {
                Method::Scrypt { log_n, r, p } => {
                    let Ok(params) = scrypt::Params::new(log_n, r, p, SCRYPT_LEN) else {
                        return false;
                    };
                    if scrypt::scrypt(password, &self.salt, &params, &mut out).is_err() {
                        return false;
                    }
                }
                Method::Pbkdf2 { digest, iterations } => match digest {
                    Digest::Sha1 => {
                        pbkdf2_hmac::<sha1::Sha1>(password, &self.salt, iterations, &mut out)
                    }
                    Digest::Sha256 => {
                        pbkdf2_hmac::<sha2::Sha256>(password, &self.salt, iterations, &mut out)
                    }
                    Digest::Sha512 => {
                        pbkdf2_hmac::<sha2::Sha512>(password, &self.salt, iterations, &mut out)
                    }
                },
            }
            out.ct_eq(&self.expected).into()
        }
    }

    impl Digest {
        fn len(self) -> usize {
            match self {
                Self::Sha1 => 20,
                Self::Sha256 => 32,
                Self::Sha512 => 64,
            }
        }
    }

    fn parse_method(text: &str) -> Option<Method> {
        let mut args = text.split(':');
        match args.next()? {
            "scrypt" => {
                let rest: Vec<&str> = args.collect();
                let (n, r, p) = match rest.as_slice() {
                    [] => (32768u64, 8u32, 1u32),
                    [n, r, p] => (n.parse().ok()?, r.parse().ok()?, p.parse().ok()?),
                    _ => return None,
                };
                if !n.is_power_of_two() || n < 2 || r == 0 || p == 0 {
                    return None;
                }
                let memory = 128u64
                    .checked_mul(n)?
                    .checked_mul(u64::from(r))?
                    .checked_mul(u64::from(p))?;
                if memory > MAX_SCRYPT_BYTES {
                    return None;
                }
                let log_n = u8::try_from(n.trailing_zeros()).ok()?;
                Some(Method::Scrypt { log_n, r, p })
            }
            "pbkdf2" => {
                let digest = match args.next() {
                    None | Some("sha256") => Digest::Sha256,
                    Some("sha1") => Digest::Sha1,
                    Some("sha512") => Digest::Sha512,
                    Some(_) => return None,
                };
                let iterations = match args.next() {
                    None => 600_000,
                    Some(n) => n.parse().ok()?,
                };
                if args.next().is_some() || iterations == 0 || iterations > MAX_ITERATIONS {
                    return None;
                }
                Some(Method::Pbkdf2 { digest, iterations })
            }
            _ => None,
        }
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

    /// The two hashes of the old service's reference database and Werkzeug's pbkdf2
    /// test vector, all of `SecureP@ssw0rd` (shared/spec/seed-schema.md §4).
    const WERKZEUG_SCRYPT: &str = "scrypt:32768:8:1$ZtkX0d91git46Lmu$3867bef859f882ae993fbf8a57660f78987fe0a17804de258f75920c4a9961ae3e391251a07d795615697bd036012bc6be66d064886494573247c031c8a9b37d";
    const WERKZEUG_PBKDF2: &str = "pbkdf2:sha256:600000$7j1NQyc5DlBstNeo$58e4dbb876c8f13553f589cc0cb5cc0290eeae2192bec7164388327d0153751a";

    #[tokio::test]
    async fn werkzeug_hashes_verify_and_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(2).unwrap();
        for stored in [WERKZEUG_SCRYPT, WERKZEUG_PBKDF2] {
            assert_eq!(
                hasher.check("SecureP@ssw0rd", Some(stored)).await.unwrap(),
                Verdict::MatchesLegacy
            );
            assert_eq!(
                hasher.check("SecureP@ssw0rd!", Some(stored)).await.unwrap(),
                Verdict::Mismatch
            );
        }
        let argon = hasher.hash("SecureP@ssw0rd").await.unwrap();
        assert_eq!(
            hasher.check("SecureP@ssw0rd", Some(&argon)).await.unwrap(),
            Verdict::Matches
        );
    }

    #[test]
    fn odd_werkzeug_values_are_refused_not_computed() {
        for stored in [
            &WERKZEUG_SCRYPT[..128],
            "sha256$salt$abcdef",
            "plain$$SecureP@ssw0rd",
            "scrypt:32768:8$salt$00",
            "scrypt:1048576:8:1$salt$00",
            "pbkdf2:md5:1000$salt$00",
            "pbkdf2:sha256:0$salt$00",
            "scrypt",
            "",
        ] {
            assert!(legacy::Hash::parse(stored).is_none(), "{stored}");
        }
        let bare = legacy::Hash::parse(&format!("scrypt${}", &WERKZEUG_SCRYPT[17..])).unwrap();
        assert!(
            bare.matches("SecureP@ssw0rd"),
            "bare scrypt means 32768:8:1"
        );
    }
}
