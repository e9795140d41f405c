//! Brute-force protection without a lockout anyone can trigger.
//!
//! Failures are counted per (scope, subject): per login name (username or email, each
//! counted on its own, so that the answers never tell which name and which email
//! belong to one account) and per client address for passwords, per account and per
//! address for second factors, per email and per address for reset requests. Past a
//! small free allowance each further failure blocks the subject for a delay that
//! doubles up to a cap (429 with `Retry-After`), so guessing slows to a crawl while a
//! legitimate user is at worst delayed, never shut out. The counts decay after a quiet
//! window. A browser that has logged in to the account before carries a signed
//! known-device cookie ([`device`]) and is exempt from the per-account limits, so an
//! attacker hammering an account from elsewhere does not keep its owner out; it stays
//! subject to the per-address limits like anyone else.
//!
//! The state lives where every instance sees it: the database (written through
//! [`Db::relaxed_pool`]: a crash of the database server may forget the counts of the
//! last moments before it, as a Redis restart forgets all of them), or Redis when
//! `REDIS_URL` is set. Every decision to refuse or to start blocking is written to the
//! activity log as an authentication event.

pub mod device;
mod redis_store;
mod store;

use std::net::IpAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use serde_json::json;

use crate::accounts::User;
use crate::app::AppState;
use crate::config::Config;
use crate::db::batch::{self, Step};
use crate::db::{Backend, Db};
use crate::error::AppError;
use crate::http::{truncate, Origin};
use crate::logs::{Level, LogEntry};

/// How one kind of attempt is limited.
#[derive(Debug)]
pub struct Rule {
    /// The name stored with the counts and shown in the activity log.
    pub scope: &'static str,
    /// Failures allowed before the first block.
    pub free: i64,
    /// The first block; each further failure doubles it.
    pub base_ms: i64,
    /// The longest block.
    pub cap_ms: i64,
    /// Failures are forgotten after this long without one.
    pub window_ms: i64,
}

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Wrong passwords for one account (or one unknown name).
pub static LOGIN_ACCOUNT: Rule = Rule {
    scope: "login_account",
    free: 5,
    base_ms: SECOND,
    cap_ms: 15 * MINUTE,
    window_ms: HOUR,
};
/// Wrong passwords from one client address, whatever the account: wider, since an
/// office or a carrier NAT puts many people behind one address.
pub static LOGIN_IP: Rule = Rule {
    scope: "login_ip",
    free: 30,
    base_ms: SECOND,
    cap_ms: 15 * MINUTE,
    window_ms: HOUR,
};
/// Wrong second factors (TOTP, emailed or recovery codes) for one account.
pub static TWOFA_ACCOUNT: Rule = Rule {
    scope: "twofa_account",
    free: 5,
    base_ms: SECOND,
    cap_ms: 15 * MINUTE,
    window_ms: HOUR,
};
/// Wrong second factors from one client address.
pub static TWOFA_IP: Rule = Rule {
    scope: "twofa_ip",
    free: 20,
    base_ms: SECOND,
    cap_ms: 15 * MINUTE,
    window_ms: HOUR,
};
/// Password-reset requests for one email address, whether or not it has an account:
/// every request counts, which bounds the mail anyone can make a victim receive.
pub static RESET_EMAIL: Rule = Rule {
    scope: "reset_email",
    free: 3,
    base_ms: MINUTE,
    cap_ms: HOUR,
    window_ms: HOUR,
};
/// Password-reset requests from one client address.
pub static RESET_IP: Rule = Rule {
    scope: "reset_ip",
    free: 10,
    base_ms: MINUTE,
    cap_ms: HOUR,
    window_ms: HOUR,
};
/// Invalid reset tokens from one client address.
pub static RESET_TOKEN_IP: Rule = Rule {
    scope: "reset_token_ip",
    free: 10,
    base_ms: SECOND,
    cap_ms: 15 * MINUTE,
    window_ms: HOUR,
};

const LONGEST_WINDOW_MS: i64 = HOUR;

/// The block after `failures` failures under `rule`, in milliseconds (0: none).
pub fn delay_ms(rule: &Rule, failures: i64) -> i64 {
    if failures < rule.free {
        return 0;
    }
    let doublings = u32::try_from((failures - rule.free).min(30)).unwrap_or(30);
    rule.base_ms
        .saturating_mul(1_i64 << doublings)
        .min(rule.cap_ms)
}

/// What counting a failure did.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    pub failures: i64,
    /// The block this failure started (0: none).
    pub blocked_ms: i64,
}

/// What reserving an attempt did.
#[derive(Debug, Clone, Copy)]
pub enum Reserved {
    /// The subject is blocked until then; nothing was counted.
    Blocked { until_ms: i64 },
    /// Counted as a failure; `set_until_ms` is the block after it and
    /// `previous_until_ms` the one before, for giving the slot back.
    Counted {
        recorded: Recorded,
        set_until_ms: i64,
        previous_until_ms: i64,
    },
}

pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// What an attempt that succeeded gives back of its reservation.
#[derive(Debug, Clone, Copy)]
pub enum Return<'a> {
    /// Gives back one reserved failure, with the block it started (see
    /// [`Reserved::Counted`]).
    Release {
        rule: &'static Rule,
        subject: &'a str,
        set_until_ms: i64,
        previous_until_ms: i64,
    },
    /// Forgets all the subject's failures: it has proven itself.
    Clear {
        rule: &'static Rule,
        subject: &'a str,
    },
}

impl Return<'_> {
    fn key(&self) -> (&'static str, &str) {
        match *self {
            Return::Release { rule, subject, .. } | Return::Clear { rule, subject } => {
                (rule.scope, subject)
            }
        }
    }
}

/// The shared throttle state, in the database or in Redis; cheap to clone.
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

enum Inner {
    /// The database's relaxed pool ([`Db::relaxed_pool`]).
    Db {
        pool: sqlx::AnyPool,
        backend: Backend,
    },
    Redis(Box<redis_store::RedisStore>),
}

impl Throttle {
    /// Redis when the configuration names one (connected on first use), else the
    /// database.
    pub fn new(db: &Db, config: &Config) -> anyhow::Result<Self> {
        let inner = match &config.redis_url {
            Some(url) => Inner::Redis(Box::new(
                redis_store::RedisStore::new(url.expose_secret(), &config.redis_key_prefix)
                    .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
            )),
            None => Inner::Db {
                pool: db.relaxed_pool().clone(),
                backend: db.backend(),
            },
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Milliseconds until the subject may try again (0: now).
    pub async fn wait_ms(&self, rule: &Rule, subject: &str) -> Result<i64, AppError> {
        let until = match &*self.inner {
            Inner::Db { pool, .. } => store::blocked_until(pool, rule, subject).await?,
            Inner::Redis(r) => r.blocked_until(rule, subject).await.map_err(redis_down)?,
        };
        Ok((until - now_ms()).max(0))
    }

    /// Counts one failure (or, for request-rate rules, one request).
    pub async fn record(&self, rule: &Rule, subject: &str) -> Result<Recorded, AppError> {
        let now = now_ms();
        Ok(match &*self.inner {
            Inner::Db { pool, .. } => store::record(pool, rule, subject, now).await?,
            Inner::Redis(r) => r.record(rule, subject, now).await.map_err(redis_down)?,
        })
    }

    /// Counts an attempt as a failure under each of its rules before it is judged,
    /// unless that subject is blocked; see [`Attempt::reserve`]. The answers are in
    /// the order of `keys`.
    pub async fn reserve(&self, keys: &[(&'static Rule, &str)]) -> Result<Vec<Reserved>, AppError> {
        self.reserve_at(keys, now_ms()).await
    }

    /// [`Throttle::reserve`] as if the time were `now` (Unix milliseconds), so that a
    /// test can walk a subject through its blocks without waiting them out.
    pub async fn reserve_at(
        &self,
        keys: &[(&'static Rule, &str)],
        now: i64,
    ) -> Result<Vec<Reserved>, AppError> {
        if let Inner::Db {
            pool,
            backend: Backend::Postgres,
        } = &*self.inner
        {
            if keys.len() > 1 && distinct(keys.iter().map(|(rule, s)| (rule.scope, *s))) {
                return Ok(store::reserve_together(pool, keys, now).await?);
            }
        }
        let mut answers = Vec::with_capacity(keys.len());
        for &(rule, subject) in keys {
            let answer = match &*self.inner {
                Inner::Db { pool, .. } => store::reserve(pool, rule, subject, now)
                    .await
                    .map_err(AppError::from),
                Inner::Redis(r) => r.reserve(rule, subject, now).await.map_err(redis_down),
            };
            match answer {
                Ok(reserved) => answers.push(reserved),
                Err(e) => {
                    // Counted all together or not at all, as in one statement.
                    self.give_back(&returns(keys, &answers)).await?;
                    return Err(e);
                }
            }
        }
        Ok(answers)
    }

    /// The writes that give `items` back, for a caller to send in one round trip with
    /// writes of its own ([`batch::run`]); none where that cannot be done: the
    /// throttle is in Redis, or on PostgreSQL two items are about one row.
    pub fn give_back_steps<'a>(&self, items: &[Return<'a>]) -> Option<Vec<Step<'a>>> {
        match &*self.inner {
            Inner::Db { backend, .. }
                if *backend == Backend::Sqlite || distinct(items.iter().map(Return::key)) =>
            {
                Some(items.iter().map(store::give_back_step).collect())
            }
            _ => None,
        }
    }

    /// Gives back failures counted by [`Throttle::reserve`], or forgets subjects: in
    /// one round trip where the store allows it.
    pub async fn give_back(&self, items: &[Return<'_>]) -> Result<(), AppError> {
        match &*self.inner {
            Inner::Db { pool, backend } => match self.give_back_steps(items) {
                Some(steps) => batch::run(pool, *backend, &steps).await?,
                None => {
                    for item in items {
                        batch::run(pool, *backend, &[store::give_back_step(item)]).await?;
                    }
                }
            },
            Inner::Redis(r) => {
                for item in items {
                    match *item {
                        Return::Release {
                            rule,
                            subject,
                            set_until_ms,
                            previous_until_ms,
                        } => {
                            r.release(rule, subject, set_until_ms, previous_until_ms)
                                .await
                        }
                        Return::Clear { rule, subject } => r.clear(rule, subject).await,
                    }
                    .map_err(redis_down)?;
                }
            }
        }
        Ok(())
    }

    /// Forgets the subject's failures, after it has proven itself.
    pub async fn clear(&self, rule: &'static Rule, subject: &str) -> Result<(), AppError> {
        self.give_back(&[Return::Clear { rule, subject }]).await
    }

    /// Forgets lapsed entries (Redis expires its keys by itself).
    pub async fn prune(&self) -> Result<u64, AppError> {
        match &*self.inner {
            Inner::Db { pool, .. } => Ok(store::prune(pool, now_ms(), LONGEST_WINDOW_MS).await?),
            Inner::Redis(_) => Ok(0),
        }
    }
}

/// Whether no (scope, subject) comes twice: the steps of one statement must not write
/// one row twice.
fn distinct<'a>(keys: impl Iterator<Item = (&'static str, &'a str)>) -> bool {
    let mut seen = Vec::new();
    for key in keys {
        if seen.contains(&key) {
            return false;
        }
        seen.push(key);
    }
    true
}

/// What gives back the counted ones among `answers`, the reservations of `keys`.
fn returns<'a>(keys: &[(&'static Rule, &'a str)], answers: &[Reserved]) -> Vec<Return<'a>> {
    keys.iter()
        .zip(answers)
        .filter_map(|(&(rule, subject), answer)| match *answer {
            Reserved::Counted {
                set_until_ms,
                previous_until_ms,
                ..
            } => Some(Return::Release {
                rule,
                subject,
                set_until_ms,
                previous_until_ms,
            }),
            Reserved::Blocked { .. } => None,
        })
        .collect()
}

/// Without its shared state the throttle cannot decide; refusing (503) is safer than
/// letting guesses through unthrottled.
fn redis_down(e: redis::RedisError) -> AppError {
    AppError::Unavailable(anyhow::anyhow!("redis: {e}"))
}

/// The subject for password guesses: the name the attempt gave, whether or not an
/// account has it. A username and an email of one account are counted apart: keying
/// both by the account would answer 429 to an account's email once its username is
/// blocked, and 401 to anyone else's, telling which email goes with which name. The
/// price is that an account's two names together get twice the free allowance.
pub fn login_subject(identifier: &str) -> String {
    format!("name:{}", identifier.to_lowercase())
}

/// The subject for per-account rules.
pub fn account_subject(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// The subject for per-address rules: the address, IPv6 by its /64 (one customer's
/// network, which can hold any number of addresses).
pub fn ip_subject(origin: &Origin) -> String {
    match origin.ip.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V6(v6))) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(Ok(IpAddr::V6(v6))) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Some(Ok(ip)) => ip.to_string(),
        _ => "unknown".to_owned(),
    }
}

/// One guarded attempt: the rules and subjects it is counted under, and who made it,
/// for the activity log.
pub struct Attempt<'a> {
    state: &'a AppState,
    origin: &'a Origin,
    user: Option<&'a User>,
    keys: Vec<(&'static Rule, String)>,
}

impl<'a> Attempt<'a> {
    pub fn new(state: &'a AppState, origin: &'a Origin) -> Self {
        Self {
            state,
            origin,
            user: None,
            keys: Vec::new(),
        }
    }

    /// The account the attempt is about, when it is known.
    pub fn user(mut self, user: Option<&'a User>) -> Self {
        self.user = user;
        self
    }

    pub fn by_ip(mut self, rule: &'static Rule) -> Self {
        self.keys.push((rule, ip_subject(self.origin)));
        self
    }

    pub fn by(mut self, rule: &'static Rule, subject: impl Into<String>) -> Self {
        self.keys.push((rule, subject.into()));
        self
    }

    /// 429 with the longest wait among the attempt's subjects, if any is blocked.
    pub async fn check(&self) -> Result<(), AppError> {
        let mut longest = 0;
        for (rule, subject) in &self.keys {
            let wait = self.state.throttle.wait_ms(rule, subject).await?;
            if wait > 0 {
                self.log(
                    format!("throttled: {}", rule.scope),
                    json!({ "scope": rule.scope, "subject": truncate(subject, 64), "retry_after_secs": secs(wait) }),
                );
                longest = longest.max(wait);
            }
        }
        if longest > 0 {
            return Err(AppError::Throttled {
                retry_after_secs: secs(longest),
            });
        }
        Ok(())
    }

    /// Counts a failure under every rule of the attempt.
    pub async fn failed(&self) -> Result<(), AppError> {
        for (rule, subject) in &self.keys {
            let recorded = self.state.throttle.record(rule, subject).await?;
            if recorded.blocked_ms > 0 {
                self.log(
                    format!("throttle engaged: {}", rule.scope),
                    json!({
                        "scope": rule.scope,
                        "subject": truncate(subject, 64),
                        "failures": recorded.failures,
                        "blocked_secs": secs(recorded.blocked_ms),
                    }),
                );
            }
        }
        Ok(())
    }

    /// Counts the attempt as a failure under every rule *before* it is judged, so that
    /// a burst of concurrent guesses cannot all be checked before any is counted: past
    /// the free allowance a subject is blocked by the reservation itself, and the
    /// attempts behind it are refused (429) without being judged. An attempt that
    /// succeeds gives its slots back with [`Attempt::release`]; a failure keeps them.
    pub async fn reserve(&self) -> Result<Reservation, AppError> {
        let keys: Vec<(&'static Rule, &str)> = self
            .keys
            .iter()
            .map(|(rule, subject)| (*rule, subject.as_str()))
            .collect();
        let answers = self.state.throttle.reserve(&keys).await?;
        let mut held = Vec::with_capacity(keys.len());
        let mut longest = 0;
        for (&(rule, subject), answer) in keys.iter().zip(answers) {
            match answer {
                Reserved::Counted {
                    recorded,
                    set_until_ms,
                    previous_until_ms,
                } => {
                    if recorded.blocked_ms > 0 {
                        self.log(
                            format!("throttle engaged: {}", rule.scope),
                            json!({
                                "scope": rule.scope,
                                "subject": truncate(subject, 64),
                                "failures": recorded.failures,
                                "blocked_secs": secs(recorded.blocked_ms),
                            }),
                        );
                    }
                    held.push((rule, subject.to_owned(), set_until_ms, previous_until_ms));
                }
                Reserved::Blocked { until_ms } => {
                    let wait = (until_ms - now_ms()).max(1);
                    self.log(
                        format!("throttled: {}", rule.scope),
                        json!({ "scope": rule.scope, "subject": truncate(subject, 64), "retry_after_secs": secs(wait) }),
                    );
                    longest = longest.max(wait);
                }
            }
        }
        if longest > 0 {
            // Refused without being judged: it is not a failure.
            self.release(Reservation(held)).await?;
            return Err(AppError::Throttled {
                retry_after_secs: secs(longest),
            });
        }
        Ok(Reservation(held))
    }

    /// Gives back the slots of a reservation: the attempt succeeded.
    pub async fn release(&self, reservation: Reservation) -> Result<(), AppError> {
        self.release_clearing_if(reservation, None).await
    }

    /// Gives back the slots of a reservation and forgets the failures counted under
    /// `rule`: the attempt succeeded and proved the subject. A slot of `rule` is not
    /// given back first, since forgetting its row gives back everything. One round
    /// trip where the store allows it.
    pub async fn release_clearing(
        &self,
        reservation: Reservation,
        rule: &'static Rule,
    ) -> Result<(), AppError> {
        self.release_clearing_if(reservation, Some(rule)).await
    }

    /// The writes of [`Attempt::release_clearing`], for a caller to send in one round
    /// trip with writes of its own ([`batch::run`]); once they are done the reservation
    /// is [`Reservation::given_back`]. None where the throttle cannot (see
    /// [`Throttle::give_back_steps`]): then release it as usual.
    pub fn release_clearing_steps<'r>(
        &self,
        reservation: &'r Reservation,
        rule: &'static Rule,
    ) -> Option<Vec<Step<'r>>> {
        self.state
            .throttle
            .give_back_steps(&reservation.returns(Some(rule)))
    }

    async fn release_clearing_if(
        &self,
        reservation: Reservation,
        clearing: Option<&'static Rule>,
    ) -> Result<(), AppError> {
        let items = reservation.returns(clearing);
        if items.is_empty() {
            return Ok(());
        }
        self.state.throttle.give_back(&items).await
    }

    /// Forgets the failures counted under `rule`, after a success.
    pub async fn clear(&self, rule: &'static Rule) -> Result<(), AppError> {
        for (r, subject) in &self.keys {
            if std::ptr::eq(*r, rule) {
                self.state.throttle.clear(rule, subject).await?;
            }
        }
        Ok(())
    }

    fn log(&self, message: String, details: serde_json::Value) {
        tracing::warn!(details = %details, "{message}");
        let mut entry = LogEntry::auth(Level::Warning, message)
            .origin(self.origin)
            .details(details);
        if let Some(user) = self.user {
            entry = entry.user(user);
        }
        self.state.activity.record(entry);
    }
}

/// The failures an attempt has counted in advance; see [`Attempt::reserve`].
#[must_use = "a reservation that is not released stays counted as a failure"]
pub struct Reservation(Vec<(&'static Rule, String, i64, i64)>);

impl Reservation {
    /// What giving the reservation back writes: a failure given back under each rule,
    /// except that the subject of `clearing` is forgotten (which gives back everything
    /// it counted).
    fn returns(&self, clearing: Option<&'static Rule>) -> Vec<Return<'_>> {
        self.0
            .iter()
            .map(|(rule, subject, set_until_ms, previous_until_ms)| {
                if clearing.is_some_and(|c| std::ptr::eq(*rule, c)) {
                    Return::Clear { rule, subject }
                } else {
                    Return::Release {
                        rule,
                        subject,
                        set_until_ms: *set_until_ms,
                        previous_until_ms: *previous_until_ms,
                    }
                }
            })
            .collect()
    }

    /// Done with: the writes of [`Attempt::release_clearing_steps`] have run.
    pub fn given_back(self) {}
}

/// Whole seconds, rounded up: a client told to wait 0 s would retry at once.
fn secs(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let delays: Vec<i64> = (1..=8).map(|f| delay_ms(&LOGIN_ACCOUNT, f)).collect();
        assert_eq!(delays, [0, 0, 0, 0, 1000, 2000, 4000, 8000]);
        assert_eq!(delay_ms(&LOGIN_ACCOUNT, 500), 15 * MINUTE);
        assert_eq!(secs(1), 1);
        assert_eq!(secs(1000), 1);
        assert_eq!(secs(1001), 2);
    }

    #[test]
    fn ipv6_clients_are_counted_by_network() {
        let origin = |ip: &str| Origin {
            ip: Some(ip.to_owned()),
            user_agent: None,
        };
        assert_eq!(
            ip_subject(&origin("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ip_subject(&origin("2001:db8:1:2::ffff")),
            ip_subject(&origin("2001:db8:1:2:aaaa::1"))
        );
        assert_eq!(ip_subject(&origin("::ffff:10.0.0.1")), "10.0.0.1");
        assert_eq!(ip_subject(&origin("127.0.0.1")), "127.0.0.1");
        assert_eq!(ip_subject(&Origin::default()), "unknown");
    }
}
