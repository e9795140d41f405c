//! Resolved sessions kept in memory, so that an authenticated request needs no
//! database round trip.
//!
//! An entry is keyed by the SHA-256 of the cookie value and holds what
//! [`super::session::resolve`] read: the session, its user, the user's roles and
//! permissions, and the session's expiry and last-seen times. What may make an entry
//! stale is dropped at once on the instance that made the change
//! ([`SessionCache::invalidate`], called right after the change commits) and, on
//! PostgreSQL, on every other instance by the triggers of migration
//! `0010_session_cache_notify.sql`, whose NOTIFY reaches the [`listen`] task of each
//! instance when the change commits.
//!
//! A notification travels to each instance on that instance's own connection, so on
//! its own a request sent to another instance right after the change could overtake
//! it. [`SessionCache::invalidate`] therefore does not return until every other
//! instance listening on the same tables has said it is past the change: it sends a
//! sync notification after the change (notifications arrive in commit order), and each
//! listener answers it once it has read everything before it. An instance that does
//! not answer within [`SETTLE_TIMEOUT`] is named in a warning and not waited for.
//!
//! The cache is trusted only while that listener is connected: before it first
//! connects and while it is reconnecting, every request reads the database. A
//! reconnected listener may have missed notifications, so it empties the cache first.
//!
//! SQLite has no notifications; there, triggers record each change in a table that
//! every request checks for news, at the cost of one read of SQLite's WAL-index header
//! while nothing was committed (see [`db::changes`]). Nothing travels, so there is
//! nothing to wait for either: a change is seen by the very next request of every
//! instance on the file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};

use super::session::Authenticated;
use crate::db::changes::{Caught, Changes};
use crate::db::{self, Db};

/// The channel the triggers notify on.
const CHANNEL: &str = "gatehouse_cache";
/// Entries at most (about a kilobyte each: the user's fields, roles and permissions);
/// past this, each new entry pushes out an arbitrary one.
const MAX_ENTRIES: usize = 50_000;
/// The start of the listener's `application_name`, which names its connection to
/// operators and to the other instances; see [`SessionCache::new`].
const LISTENER_NAME: &str = "gatehouse-cache-listener";
/// How long a change waits for the other instances to confirm it reached them.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a change made stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every session of one user: a logout, a revoked session, the user's profile,
    /// password, 2FA, disabled flag or roles.
    User(i64),
    /// Every session: a role or permission itself changed.
    All,
}

/// A notification on the channel.
#[derive(Debug, PartialEq, Eq)]
enum Message<'a> {
    /// From a trigger (see the migration): `*` or `u:<user id>`.
    Stale(Scope),
    /// `s:<seq>:<origin>`: the instance whose listener is `origin` asks every other to
    /// confirm it has read everything sent before.
    Sync { seq: u64, origin: &'a str },
    /// `a:<seq>:<origin>:<from>`: `from` confirms `origin`'s sync `seq`.
    Ack {
        seq: u64,
        origin: &'a str,
        from: &'a str,
    },
}

impl<'a> Message<'a> {
    /// Reads a payload strictly: anything else is `None`.
    fn parse(payload: &'a str) -> Option<Self> {
        let mut parts = payload.split(':');
        let message = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
            ("*", None, ..) => Self::Stale(Scope::All),
            ("u", Some(id), None, _) => Self::Stale(Scope::User(id.parse().ok()?)),
            ("s", Some(seq), Some(origin), None) => Self::Sync {
                seq: seq.parse().ok()?,
                origin: name(origin)?,
            },
            ("a", Some(seq), Some(origin), Some(from)) => Self::Ack {
                seq: seq.parse().ok()?,
                origin: name(origin)?,
                from: name(from)?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(message)
    }
}

/// A listener's name as a payload may carry it.
fn name(text: &str) -> Option<&str> {
    text.starts_with(LISTENER_NAME).then_some(text)
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

impl SessionCache {
    /// A cache whose changes wait for the other instances on `db` (PostgreSQL), or for
    /// none (`None`: SQLite, where the cache is never trusted anyway).
    ///
    /// The listener's name is `gatehouse-cache-listener-<tables>-<instance>`: `<tables>`
    /// is the same for every instance on the same database and schema, so that each finds
    /// its peers, and not the instances of another deployment sharing the server, by
    /// name in `pg_stat_activity`; `<instance>` is random.
    pub fn new(db: Option<Db>) -> Self {
        let tables = db.as_ref().map_or_else(String::new, |db| {
            hex::encode(&Sha256::digest(db.namespace().as_bytes())[..4])
        });
        Self {
            inner: Arc::new(Inner {
                listening: watch::Sender::new(false),
                generation: watch::Sender::new(0),
                peers: format!("{LISTENER_NAME}-{tables}-"),
                listener_name: format!("{LISTENER_NAME}-{tables}-{:08x}", rand::random::<u32>()),
                db,
                changes: OnceLock::new(),
                syncs: Mutex::default(),
                next_sync: AtomicU64::new(0),
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
    /// What the names of the other instances' listeners start with.
    peers: String,
    /// Where changes ask the other instances to confirm them; see [`SessionCache::new`].
    db: Option<Db>,
    /// On SQLite, the change log the cache follows instead of a listener.
    changes: OnceLock<Arc<Changes>>,
    /// This instance's syncs still waiting for answers, by sequence number.
    syncs: Mutex<HashMap<u64, Sync>>,
    next_sync: AtomicU64,
    maps: Mutex<Maps>,
}

/// A sync waiting for the listeners that have not answered yet.
#[derive(Debug)]
struct Sync {
    waiting: HashSet<String>,
    done: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Maps {
    entries: HashMap<String, Entry>,
    /// The token hashes of each user's entries, so a user's sessions go without a scan.
    by_user: HashMap<i64, Vec<String>>,
}

impl Maps {
    fn remove(&mut self, token_hash: &str) {
        let Some(entry) = self.entries.remove(token_hash) else {
            return;
        };
        let user_id = entry.auth.user.id;
        if let Some(hashes) = self.by_user.get_mut(&user_id) {
            hashes.retain(|hash| hash != token_hash);
            if hashes.is_empty() {
                self.by_user.remove(&user_id);
            }
        }
    }
}

impl SessionCache {
    fn maps(&self) -> MutexGuard<'_, Maps> {
        lock(&self.inner.maps)
    }

    fn syncs(&self) -> MutexGuard<'_, HashMap<u64, Sync>> {
        lock(&self.inner.syncs)
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

    /// Whether [`Self::catch_up`] would find nothing to drop: on PostgreSQL always (its
    /// listener drops entries as changes arrive), on SQLite when nothing can have been
    /// committed since the last catch-up.
    pub fn caught_up_now(&self) -> bool {
        self.inner
            .changes
            .get()
            .is_none_or(|changes| changes.quiet())
    }

    /// On SQLite, drops what other connections changed since the last request; to be
    /// called before [`Self::get`]. While the change log cannot be read, everything is
    /// dropped at every request, so the cache holds nothing it could not check.
    pub async fn catch_up(&self) {
        let Some(changes) = self.inner.changes.get() else {
            return;
        };
        if changes.quiet() {
            return;
        }
        match changes.catch_up().await {
            Ok(Caught::Nothing) => {}
            Ok(Caught::Users(users)) => {
                for user in users {
                    self.drop_stale(Scope::User(user));
                }
            }
            Ok(Caught::Everything) => self.drop_stale(Scope::All),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the session cache's change log");
                self.drop_stale(Scope::All);
            }
        }
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
        if maps.entries.len() >= MAX_ENTRIES && !maps.entries.contains_key(&token_hash) {
            if let Some(victim) = maps.entries.keys().next().cloned() {
                maps.remove(&victim);
            }
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
        self.maps().remove(token_hash);
    }

    /// Drops what `scope` made stale, here and on every other instance. Called once
    /// the change has committed; returns when the other instances listening on the
    /// same tables have confirmed they are past it (or after [`SETTLE_TIMEOUT`]).
    pub async fn invalidate(&self, scope: Scope) {
        self.drop_stale(scope);
        self.settle().await;
    }

    fn drop_stale(&self, scope: Scope) {
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

    /// Waits until every other listening instance has read the notifications of the
    /// change just committed. Without this instance's own listener no answer could
    /// arrive, so there is nothing to wait for; the triggers' notifications still go.
    async fn settle(&self) {
        let Some(db) = self.answerable() else {
            return;
        };
        // Read before the sync is sent: a listener found here was listening before
        // it, so it will hear it.
        let peers = sqlx::query_scalar::<_, String>(
            "SELECT application_name FROM pg_stat_activity \
             WHERE datname = current_database() AND starts_with(application_name, $1) \
             AND application_name <> $2",
        )
        .bind(&self.inner.peers)
        .bind(self.listener_name())
        .fetch_all(db.pool())
        .await;
        let peers = match peers {
            Ok(peers) if peers.is_empty() => return,
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot find the other instances to confirm a session change");
                return;
            }
        };
        self.sync(db, peers.into_iter().collect()).await;
    }

    /// Waits until this instance has read every change committed before the call, for
    /// whoever changed the database behind the service's back (an operator, a test)
    /// and must not race the notification: on PostgreSQL, until a sync sent now comes
    /// back through this instance's own listener (notifications arrive in commit
    /// order); on SQLite, the change log is read as the next request would.
    pub async fn caught_up(&self) {
        self.catch_up().await;
        if let Some(db) = self.answerable() {
            let me = self.listener_name().to_owned();
            self.sync(db, [me].into()).await;
        }
    }

    /// Where to send a sync, on PostgreSQL while this instance's listener is connected
    /// (and so can hear the answers).
    fn answerable(&self) -> Option<&Db> {
        self.inner.db.as_ref().filter(|_| self.trusted())
    }

    /// Sends a sync and waits until the listeners `waiting` have answered it (this
    /// instance's own by reading it), or [`SETTLE_TIMEOUT`] has passed.
    async fn sync(&self, db: &Db, waiting: HashSet<String>) {
        let seq = self.inner.next_sync.fetch_add(1, Ordering::Relaxed);
        let (done, confirmed) = oneshot::channel();
        self.syncs().insert(seq, Sync { waiting, done });
        let pending = Pending { cache: self, seq };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("s:{seq}:{}", self.listener_name()))
            .execute(db.pool())
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot send a session cache sync");
            return;
        }
        match tokio::time::timeout(SETTLE_TIMEOUT, confirmed).await {
            Ok(Ok(())) => {}
            // The listener went down: this instance no longer trusts its cache, and
            // answers could no longer arrive.
            Ok(Err(_)) => {}
            Err(_) => {
                let missing = pending.missing();
                tracing::warn!(
                    ?missing,
                    "instances did not confirm a session change in time"
                );
            }
        }
    }

    /// `from` confirmed this instance's sync `seq`.
    fn confirmed(&self, seq: u64, from: &str) {
        let mut syncs = self.syncs();
        let Some(sync) = syncs.get_mut(&seq) else {
            return;
        };
        sync.waiting.remove(from);
        if sync.waiting.is_empty() {
            if let Some(sync) = syncs.remove(&seq) {
                // The waiter may have given up; then nobody needs to hear it.
                let _ = sync.done.send(());
            }
        }
    }

    /// Marks the listener connected (after emptying the cache, since notifications
    /// may have been missed) or disconnected (from then on the cache is bypassed).
    fn set_listening(&self, listening: bool) {
        if listening {
            self.drop_stale(Scope::All);
        }
        self.inner.listening.send_replace(listening);
        if !listening {
            self.drop_stale(Scope::All);
            // Their answers would arrive on the lost connection: stop waiting.
            self.syncs().clear();
        }
    }
}

/// A sync in flight, forgotten when its waiter is done or dropped.
struct Pending<'a> {
    cache: &'a SessionCache,
    seq: u64,
}

impl Pending<'_> {
    /// The listeners that have not answered.
    fn missing(&self) -> Vec<String> {
        let syncs = self.cache.syncs();
        let mut missing: Vec<String> = syncs
            .get(&self.seq)
            .map(|sync| sync.waiting.iter().cloned().collect())
            .unwrap_or_default();
        missing.sort();
        missing
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.cache.syncs().remove(&self.seq);
    }
}

/// No code panics while holding these locks; a poisoned map is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl db::listen::Subscriber for SessionCache {
    fn connected(&self) {
        self.set_listening(true);
    }

    fn notified(&self, payload: &str) -> Option<String> {
        let me = self.listener_name();
        match Message::parse(payload) {
            Some(Message::Stale(scope)) => self.drop_stale(scope),
            // Everything sent before it has been read: confirm.
            Some(Message::Sync { seq, origin }) if origin != me => {
                return Some(format!("a:{seq}:{origin}:{me}"));
            }
            // This instance's own sync: everything before it has been read here.
            Some(Message::Sync { seq, .. }) => self.confirmed(seq, me),
            Some(Message::Ack { seq, origin, from }) if origin == me => self.confirmed(seq, from),
            Some(Message::Ack { .. }) => {}
            // Not ours to read: stale is never safe, so drop all.
            None => self.drop_stale(Scope::All),
        }
        None
    }

    fn disconnected(&self) {
        self.set_listening(false);
    }
}

/// Follows the change log of the SQLite database at `database_url` from now on; until
/// this succeeds, the cache is not trusted. Returns the change log, for the activity
/// log's writer to mark its own commits read ([`Changes::before_own_commit`]).
pub async fn follow(cache: &SessionCache, database_url: &str) -> Option<Arc<Changes>> {
    match Changes::open(database_url).await {
        Ok(changes) => {
            if cache.inner.changes.set(Arc::new(changes)).is_ok() {
                cache.set_listening(true);
            }
            cache.inner.changes.get().cloned()
        }
        Err(e) => {
            tracing::warn!(error = %e, "session cache off: cannot follow the database's changes");
            None
        }
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
    use crate::db::listen::Subscriber;
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
        let a = "gatehouse-cache-listener-0badf00d-00000001";
        let b = "gatehouse-cache-listener-0badf00d-00000002";
        assert_eq!(Message::parse("*"), Some(Message::Stale(Scope::All)));
        assert_eq!(
            Message::parse("u:42"),
            Some(Message::Stale(Scope::User(42)))
        );
        assert_eq!(
            Message::parse(&format!("s:7:{a}")),
            Some(Message::Sync { seq: 7, origin: a })
        );
        assert_eq!(
            Message::parse(&format!("a:7:{a}:{b}")),
            Some(Message::Ack {
                seq: 7,
                origin: a,
                from: b
            })
        );
        for bad in [
            "",
            "u:",
            "u:x",
            "u:1:2",
            "42",
            "x:1",
            "**",
            "*:1",
            "s:1",
            "s:x:gatehouse-cache-listener-1",
            "s:1:someone",
            &format!("s:1:{a}:{b}"),
            &format!("a:1:{a}"),
            &format!("a:1:{a}:{b}:x"),
        ] {
            assert_eq!(Message::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn syncs_are_answered_by_others_and_complete_when_all_have() {
        let cache = SessionCache::new(None);
        let me = cache.listener_name().to_owned();
        let other = "gatehouse-cache-listener--0000000f";
        // Another instance's sync is answered, this instance's own is not.
        assert_eq!(
            cache.notified(&format!("s:3:{other}")),
            Some(format!("a:3:{other}:{me}"))
        );
        assert_eq!(cache.notified(&format!("s:3:{me}")), None);

        // A sync of this instance completes when the last listener has answered.
        let (done, mut confirmed) = oneshot::channel();
        cache.syncs().insert(
            9,
            Sync {
                waiting: [other.to_owned(), format!("{other}0")].into(),
                done,
            },
        );
        assert_eq!(cache.notified(&format!("a:9:{me}:{other}")), None);
        assert!(confirmed.try_recv().is_err());
        // Answers to someone else's sync are not counted.
        cache.notified(&format!("a:9:{other}:{other}0"));
        assert!(confirmed.try_recv().is_err());
        cache.notified(&format!("a:9:{me}:{other}0"));
        assert_eq!(confirmed.try_recv(), Ok(()));
        assert!(cache.syncs().is_empty());
    }

    #[test]
    fn a_lost_listener_ends_the_waits() {
        let cache = SessionCache::new(None);
        cache.set_listening(true);
        let (done, mut confirmed) = oneshot::channel();
        cache.syncs().insert(
            1,
            Sync {
                waiting: ["gatehouse-cache-listener--00000001".to_owned()].into(),
                done,
            },
        );
        cache.set_listening(false);
        assert!(matches!(
            confirmed.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn nothing_is_cached_or_served_while_the_listener_is_down() {
        let cache = SessionCache::new(None);
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
        let cache = SessionCache::new(None);
        cache.set_listening(true);
        let generation = cache.generation();
        cache.insert("a1".into(), entry(1), generation);
        cache.insert("a2".into(), entry(1), generation);
        cache.insert("b".into(), entry(2), generation);
        cache.drop_stale(Scope::User(1));
        assert!(cache.get("a1").is_none() && cache.get("a2").is_none());
        assert!(cache.get("b").is_some());

        // A read that began before an invalidation is not cached.
        cache.insert("a1".into(), entry(1), generation);
        assert!(cache.get("a1").is_none());

        cache.drop_stale(Scope::All);
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn a_full_cache_pushes_out_one_entry_and_forgets_cleanly() {
        let cache = SessionCache::new(None);
        cache.set_listening(true);
        for i in 0..MAX_ENTRIES as i64 + 10 {
            cache.insert(format!("t{i}"), entry(i % 1000), cache.generation());
        }
        let maps = cache.maps();
        assert_eq!(maps.entries.len(), MAX_ENTRIES);
        let indexed: usize = maps.by_user.values().map(Vec::len).sum();
        assert_eq!(indexed, MAX_ENTRIES, "every entry indexed by its user once");
        drop(maps);

        cache.forget("t5");
        cache.forget("t5");
        let maps = cache.maps();
        let indexed: usize = maps.by_user.values().map(Vec::len).sum();
        assert_eq!(indexed, maps.entries.len());
    }
}
