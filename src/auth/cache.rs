//! Resolved sessions kept in memory, so that an authenticated request needs no
//! database round trip.
//!
//! An entry is keyed by the SHA-256 of the cookie value and holds what
//! [`super::session::resolve`] read: the session, its user, the user's roles and
//! permissions, and the session's expiry and last-seen times. What may make an entry
//! stale is dropped at once on the instance that made the change ([`SessionCache::invalidate`],
//! called right after the change commits) and, on PostgreSQL, on every other instance
//! by the triggers of migration `0010_session_cache_notify.sql`, whose NOTIFY reaches
//! the [`listen`] task of each instance when the change commits.
//!
//! The cache is trusted only while that listener is connected: before it first
//! connects, while it is reconnecting, and always on SQLite (whose many instances on
//! one file would have no way to tell each other), every request reads the database.
//! A reconnected listener may have missed notifications, so it empties the cache first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::session::Authenticated;
use crate::db;

/// The channel the triggers notify on.
const CHANNEL: &str = "gatehouse_cache";
/// Past this many entries the cache starts over rather than grow without bound.
const MAX_ENTRIES: usize = 200_000;
/// The start of the listener's `application_name`, which names its connection (and,
/// by a random suffix, its instance) to operators.
const LISTENER_NAME: &str = "gatehouse-cache-listener";

/// What a change made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every session of one user: a logout, a revoked session, the user's profile,
    /// password, 2FA, disabled flag or roles.
    User(i64),
    /// Every session: a role or permission itself changed.
    All,
}

impl Scope {
    /// Reads a trigger's payload; see the migration.
    fn parse(payload: &str) -> Option<Self> {
        match payload {
            "*" => Some(Self::All),
            _ => payload
                .strip_prefix("u:")
                .and_then(|id| id.parse().ok())
                .map(Self::User),
        }
    }
}

/// A resolved session as cached.
#[derive(Debug, Clone)]
pub struct Entry {
    pub auth: Arc<Authenticated>,
    pub expires_at: i64,
    /// The last `last_seen_at` this instance read or wrote.
    pub last_seen_at: i64,
}

/// The in-memory session cache of one instance; cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                listening: watch::Sender::new(false),
                generation: watch::Sender::new(0),
                listener_name: format!("{LISTENER_NAME}-{:08x}", rand::random::<u32>()),
                maps: Mutex::default(),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Whether the listener is connected, which is what makes entries trustworthy.
    listening: watch::Sender<bool>,
    /// Bumped by every invalidation, so a database read that raced one is not cached.
    generation: watch::Sender<u64>,
    /// The listener connection's `application_name`.
    listener_name: String,
    maps: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    entries: HashMap<String, Entry>,
    /// The token hashes of each user's entries, so a user's sessions go without a scan.
    by_user: HashMap<i64, Vec<String>>,
}

impl SessionCache {
    fn maps(&self) -> MutexGuard<'_, Maps> {
        // No code panics while holding the lock; a poisoned map is still consistent.
        self.inner
            .maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether entries may be used now.
    pub fn trusted(&self) -> bool {
        *self.inner.listening.borrow()
    }

    /// Waits until the listener is connected, for whoever must not measure or test a
    /// bypassed cache.
    pub async fn until_trusted(&self) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.listening().wait_for(|listening| *listening).await;
    }

    /// Follows the listener's state: `true` while connected.
    pub fn listening(&self) -> watch::Receiver<bool> {
        self.inner.listening.subscribe()
    }

    /// The `application_name` of this instance's listener connection.
    pub fn listener_name(&self) -> &str {
        &self.inner.listener_name
    }

    /// The cached resolution of a token hash, if the cache is trusted and holds one.
    pub fn get(&self, token_hash: &str) -> Option<Entry> {
        if !self.trusted() {
            return None;
        }
        self.maps().entries.get(token_hash).cloned()
    }

    /// The generation to pass to [`Self::insert`]; read it before the database.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Follows the invalidations: the value changes with each one.
    pub fn invalidations(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Caches what was read from the database, unless an invalidation happened since
    /// `generation` was taken: the read may then predate the change.
    pub fn insert(&self, token_hash: String, entry: Entry, generation: u64) {
        if !self.trusted() {
            return;
        }
        let mut maps = self.maps();
        if self.generation() != generation {
            return;
        }
        if maps.entries.len() >= MAX_ENTRIES {
            maps.entries.clear();
            maps.by_user.clear();
        }
        let user_id = entry.auth.user.id;
        if maps.entries.insert(token_hash.clone(), entry).is_none() {
            maps.by_user.entry(user_id).or_default().push(token_hash);
        }
    }

    /// Records that this instance wrote the session's `last_seen_at`.
    pub fn touched(&self, token_hash: &str, last_seen_at: i64) {
        if let Some(entry) = self.maps().entries.get_mut(token_hash) {
            entry.last_seen_at = last_seen_at;
        }
    }

    /// Forgets one entry, e.g. one found expired.
    pub fn forget(&self, token_hash: &str) {
        self.maps().entries.remove(token_hash);
    }

    /// Drops what `scope` made stale. Called once the change has committed; other
    /// instances learn of it from the database's notification.
    pub fn invalidate(&self, scope: Scope) {
        let mut maps = self.maps();
        self.inner
            .generation
            .send_modify(|generation| *generation += 1);
        match scope {
            Scope::User(user_id) => {
                for hash in maps.by_user.remove(&user_id).unwrap_or_default() {
                    maps.entries.remove(&hash);
                }
            }
            Scope::All => {
                maps.entries.clear();
                maps.by_user.clear();
            }
        }
    }

    /// Marks the listener connected (after emptying the cache, since notifications
    /// may have been missed) or disconnected (from then on the cache is bypassed).
    fn set_listening(&self, listening: bool) {
        if listening {
            self.invalidate(Scope::All);
        }
        self.inner.listening.send_replace(listening);
        if !listening {
            self.invalidate(Scope::All);
        }
    }
}

impl db::listen::Subscriber for SessionCache {
    fn connected(&self) {
        self.set_listening(true);
    }

    fn notified(&self, payload: &str) {
        // Not ours to read: stale is never safe, so drop all.
        self.invalidate(Scope::parse(payload).unwrap_or(Scope::All));
    }

    fn disconnected(&self) {
        self.set_listening(false);
    }
}

/// Listens for the triggers' notifications on PostgreSQL until `stop`, reconnecting
/// whenever the connection is lost; see the module documentation.
pub async fn listen(cache: SessionCache, database_url: String, stop: watch::Receiver<bool>) {
    let name = cache.listener_name().to_owned();
    db::listen::listen(&database_url, &name, CHANNEL, &cache, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::User;
    use crate::auth::session::Session;
    use crate::rbac::Access;

    fn entry(user_id: i64) -> Entry {
        Entry {
            auth: Arc::new(Authenticated {
                session: Session {
                    id: user_id,
                    csrf_token: String::new(),
                    created_at: 0,
                },
                user: User {
                    id: user_id,
                    username: format!("u{user_id}"),
                    email: String::new(),
                    first_name: String::new(),
                    last_name: String::new(),
                    email_verified: true,
                    disabled: false,
                    twofa_enabled: false,
                    created_at: 0,
                    password_changed_at: 0,
                },
                access: Access::default(),
            }),
            expires_at: i64::MAX,
            last_seen_at: 0,
        }
    }

    #[test]
    fn payloads_are_read_strictly() {
        assert_eq!(Scope::parse("*"), Some(Scope::All));
        assert_eq!(Scope::parse("u:42"), Some(Scope::User(42)));
        for bad in ["", "u:", "u:x", "42", "x:1", "**"] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn nothing_is_cached_or_served_while_the_listener_is_down() {
        let cache = SessionCache::default();
        cache.insert("a".into(), entry(1), cache.generation());
        assert!(cache.get("a").is_none());

        cache.set_listening(true);
        cache.insert("a".into(), entry(1), cache.generation());
        assert!(cache.get("a").is_some());

        // Down: bypassed at once, and what was held is gone when it comes back.
        cache.set_listening(false);
        assert!(cache.get("a").is_none());
        cache.set_listening(true);
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn invalidation_drops_the_users_entries_and_stale_reads() {
        let cache = SessionCache::default();
        cache.set_listening(true);
        let generation = cache.generation();
        cache.insert("a1".into(), entry(1), generation);
        cache.insert("a2".into(), entry(1), generation);
        cache.insert("b".into(), entry(2), generation);
        cache.invalidate(Scope::User(1));
        assert!(cache.get("a1").is_none() && cache.get("a2").is_none());
        assert!(cache.get("b").is_some());

        // A read that began before an invalidation is not cached.
        cache.insert("a1".into(), entry(1), generation);
        assert!(cache.get("a1").is_none());

        cache.invalidate(Scope::All);
        assert!(cache.get("b").is_none());
    }
}
