//! Password hashing with Argon2id at OWASP's recommended parameters.
//!
//! Hashing is deliberately slow and memory-hungry (19 MiB per hash), so it runs on the
//! blocking thread pool, never on the async workers, and a semaphore bounds how many
//! hashes run at once: a flood of logins queues instead of exhausting memory. The work
//! memory of a finished hash is kept for the next one (at most one per permit) rather
//! than allocated anew per login, and released once hashing has been idle for
//! [`IDLE_RELEASE`], so that a server back at rest is back at its idle size; each is
//! allocated so that freeing it really gives it back to the system ([`RESERVED_BLOCKS`]).
//! docs/performance.md has the measurements behind both.
//!
//! Accounts imported from the old Flask service keep their Werkzeug hashes until their
//! first successful sign-in (see [`legacy`]); they are verified here too, under
//! the same semaphore, and reported as needing a rehash.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;
use tracing::Span;

use crate::error::AppError;

/// OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Kept work memory is freed once no hash has finished for this long: long enough that
/// a stream of logins keeps reusing it, short enough that a flood's memory is gone
/// soon after the flood.
pub const IDLE_RELEASE: Duration = Duration::from_secs(5);

/// Work memory is reserved at least this large (in 1 KiB blocks) so that glibc's
/// allocator maps it on its own and unmaps it when it is freed. It carves smaller
/// blocks, up to its adaptive threshold of at most 32 MiB, from per-thread arenas that
/// keep them once freed: the 19 MiB a hash needs stayed resident after every flood.
/// Only the blocks the hash touches become resident; the rest is address space.
const RESERVED_BLOCKS: usize = 33 * 1024;

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    /// One per hash that may run; a hash holds its permit until it has finished, even
    /// when its caller has gone (a client that hung up), so that hanging up cannot
    /// start more hashes than there are permits.
    permits: Arc<Semaphore>,
    memory: Mutex<Pool>,
    max_concurrent: usize,
    /// Verified against when the account does not exist, so that an unknown user
    /// costs the same time as a wrong password.
    dummy_hash: String,
}

impl PasswordHasher {
    pub fn new(max_concurrent: usize) -> Result<Self, argon2::password_hash::Error> {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let max_concurrent = max_concurrent.max(1);
        let mut inner = Inner {
            argon,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            memory: Mutex::new(Pool {
                idle: Vec::with_capacity(max_concurrent),
                last_used: Instant::now(),
                release_pending: false,
            }),
            max_concurrent,
            dummy_hash: String::new(),
        };
        inner.dummy_hash = inner.hash_phc(b"no such account")?;
        // An idle server holds no work memory: the pool fills with the first logins.
        if let Ok(pool) = inner.memory.get_mut() {
            pool.idle.clear();
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for the password.
    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let password = password.to_owned();
        self.run(move |inner| {
            inner
                .hash_phc(password.as_bytes())
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
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(AppError::internal)?;
        let inner = Arc::clone(&self.inner);
        let span = Span::current();
        // The permit and the idle release belong to the work, not to its caller, who
        // may be gone before it ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = span.in_scope(|| work(&inner));
            if inner.schedule_release() {
                tokio::spawn(release_when_idle(Arc::downgrade(&inner)));
            }
            result
        })
        .await
        .map_err(AppError::internal)?
    }
}

/// Frees the pooled work memory once hashing has been idle for [`IDLE_RELEASE`]; ends
/// then, or when the hasher is gone. Holds no strong reference while it waits.
async fn release_when_idle(inner: Weak<Inner>) {
    loop {
        let wait = match inner.upgrade() {
            Some(inner) => inner.release_if_idle(Instant::now()),
            None => None,
        };
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => return,
        }
    }
}

impl Inner {
    /// A PHC string for `password` under our parameters and a new salt.
    fn hash_phc(&self, password: &[u8]) -> argon2::password_hash::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let len = self
            .argon
            .params()
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = self.compute(&self.argon, password, salt.as_salt(), len)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon.params())?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` gives the hash of `phc`, computed with the parameters it
    /// names (older hashes may name other costs); compared in constant time.
    fn argon_matches(&self, password: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let argon = match (
            Algorithm::try_from(parsed.algorithm),
            parsed
                .version
                .map_or(Ok(Version::default()), Version::try_from),
            Params::try_from(&parsed),
        ) {
            (Ok(algorithm), Ok(version), Ok(params)) => Argon2::new(algorithm, version, params),
            _ => return false,
        };
        self.compute(&argon, password.as_bytes(), salt, expected.len())
            .is_ok_and(|computed| computed == expected)
    }

    /// Argon2 of `password` and `salt` into `len` bytes, in work memory from the pool.
    fn compute(
        &self,
        argon: &Argon2<'_>,
        password: &[u8],
        salt: Salt<'_>,
        len: usize,
    ) -> argon2::password_hash::Result<Output> {
        let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
        let salt = salt.decode_b64(&mut salt_bytes)?;
        let mut blocks = self.take_memory(argon.params().block_count());
        let output = Output::init_with(len, |out| {
            Ok(argon.hash_password_into_with_memory(password, salt, out, &mut blocks)?)
        });
        self.give_back(blocks);
        output
    }

    fn take_memory(&self, blocks: usize) -> Vec<Block> {
        let pooled = self.memory.lock().ok().and_then(|mut pool| {
            let at = pool.idle.iter().position(|m| m.len() == blocks)?;
            Some(pool.idle.swap_remove(at))
        });
        pooled.unwrap_or_else(|| {
            let mut memory = Vec::with_capacity(blocks.max(RESERVED_BLOCKS));
            memory.resize(blocks, Block::default());
            memory
        })
    }

    /// Keeps `memory` for the next hash, unless as many are kept as may run at once.
    fn give_back(&self, memory: Vec<Block>) {
        if let Ok(mut pool) = self.memory.lock() {
            pool.last_used = Instant::now();
            if pool.idle.len() < self.max_concurrent {
                pool.idle.push(memory);
            }
        }
    }

    /// Whether a release task must be started: memory is kept and no task is waiting
    /// to release it. The caller starts one when told so.
    fn schedule_release(&self) -> bool {
        let Ok(mut pool) = self.memory.lock() else {
            return false;
        };
        let start = !pool.release_pending && !pool.idle.is_empty();
        pool.release_pending |= start;
        start
    }

    /// Frees the kept memory if no hash has finished since [`IDLE_RELEASE`] before
    /// `now`, and returns `None`: the release task is done. Otherwise returns how long
    /// to wait before asking again.
    fn release_if_idle(&self, now: Instant) -> Option<Duration> {
        let freed = {
            let Ok(mut pool) = self.memory.lock() else {
                return None;
            };
            let idle_for = now.saturating_duration_since(pool.last_used);
            if idle_for < IDLE_RELEASE && !pool.idle.is_empty() {
                return Some(IDLE_RELEASE - idle_for);
            }
            pool.release_pending = false;
            std::mem::take(&mut pool.idle)
        };
        // Freed outside the lock: returning 19 MiB blocks to the system is not free.
        drop(freed);
        trim_allocator();
        None
    }
}

/// Hands the allocator's free pages back to the system, once hashing has gone quiet
/// (which, for a login service, is when a flood is over). glibc keeps what a thread
/// freed in that thread's arena, and gives back only the free space at an arena's top:
/// after a flood of connections each Tokio worker's arena held 4 MiB that nothing used,
/// between the few allocations still live. `malloc_trim` walks every arena and returns
/// every whole free page; it locks each arena in turn, so it runs here and on no
/// request's path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_allocator() {
    // SAFETY: `malloc_trim` takes no pointer and is thread-safe (glibc locks each arena
    // while it trims it); it returns only pages no allocation is using.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give free memory back by themselves, or have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_allocator() {}

/// Work memory of finished hashes, for the next ones; never more than the permits.
struct Pool {
    idle: Vec<Vec<Block>>,
    /// When a hash last gave its memory back.
    last_used: Instant,
    /// Whether a task is waiting to release the memory once it has been idle long enough.
    release_pending: bool,
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

    /// A caller dropped while its hash runs (the client hung up, or a timeout) leaves
    /// the hash running on the blocking pool; its permit stays taken until the hash
    /// ends, so no other hash starts beside it, and the memory it leaves in the pool is
    /// still released when hashing goes idle.
    #[tokio::test]
    async fn a_hash_keeps_its_permit_when_its_caller_is_gone() {
        let hasher = PasswordHasher::new(1).unwrap();
        let (started, running) = tokio::sync::oneshot::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run(move |inner| {
                        started.send(()).ok();
                        finished.recv().ok();
                        Ok(inner.argon_matches("a guess", &inner.dummy_hash))
                    })
                    .await
            }
        });
        running.await.unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(hasher.inner.permits.available_permits(), 0);

        finish.send(()).unwrap();
        let again = hasher.inner.permits.acquire().await.unwrap();
        let pool = hasher.inner.memory.lock().unwrap();
        assert_eq!(pool.idle.len(), 1);
        assert!(pool.release_pending);
        drop((pool, again));
    }

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

    #[tokio::test]
    async fn pooled_memory_gives_the_standard_hashes_and_stays_bounded() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(2).unwrap();
        // Ours verifies with the crate's own API, and the crate's (other costs
        // included) with ours.
        let ours = hasher.hash("Correct-Horse-9").await.unwrap();
        let stock = Argon2::default();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(stock.verify_password(b"Correct-Horse-9", &parsed).is_ok());
        let cheaper = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).unwrap(),
        );
        let theirs = cheaper
            .hash_password(b"Correct-Horse-9", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(hasher
            .verify("Correct-Horse-9", Some(&theirs))
            .await
            .unwrap());
        assert!(!hasher
            .verify("Correct-Horse-8", Some(&theirs))
            .await
            .unwrap());
        // Many at once: the pool keeps at most one work memory per permit.
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let hasher = hasher.clone();
                let ours = ours.clone();
                tokio::spawn(async move { hasher.verify("Correct-Horse-9", Some(&ours)).await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap().unwrap());
        }
        let kept = |hasher: &PasswordHasher| hasher.inner.memory.lock().unwrap().idle.len();
        assert!((1..=2).contains(&kept(&hasher)));
        assert!(hasher.inner.memory.lock().unwrap().release_pending);
        assert!(
            !hasher.inner.schedule_release(),
            "one release task at a time"
        );

        // What the release task does when it wakes: too early, nothing is freed and it
        // is told how long to wait; once hashing has been idle long enough, the memory
        // is freed and the task ends.
        let last_used = hasher.inner.memory.lock().unwrap().last_used;
        let wait = hasher
            .inner
            .release_if_idle(last_used + Duration::from_secs(1));
        assert_eq!(wait, Some(IDLE_RELEASE - Duration::from_secs(1)));
        assert!((1..=2).contains(&kept(&hasher)));
        assert_eq!(hasher.inner.release_if_idle(last_used + IDLE_RELEASE), None);
        assert_eq!(kept(&hasher), 0);
        assert!(!hasher.inner.memory.lock().unwrap().release_pending);
        // New memory is reserved past glibc's mmap threshold, so that freeing it unmaps it.
        let fresh = hasher.inner.take_memory(19 * 1024);
        assert_eq!(fresh.len(), 19 * 1024);
        assert!(fresh.capacity() * std::mem::size_of::<Block>() > 32 * 1024 * 1024);
        drop(fresh);
        // Hashing again works with new memory, keeps it, and asks for a new release.
        assert!(hasher.verify("Correct-Horse-9", Some(&ours)).await.unwrap());
        assert_eq!(kept(&hasher), 1);
        assert!(hasher.inner.memory.lock().unwrap().release_pending);
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
