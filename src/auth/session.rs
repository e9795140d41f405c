//! Server-side sessions.
//!
//! The browser holds a 256-bit random value; the database holds only its SHA-256, so a
//! copy of the sessions table cannot be replayed as cookies. Every request looks the
//! session up, from memory when the instance's cache can be trusted (see
//! [`super::cache`]) and from the database otherwise, so that revocation and expiry
//! take effect at once on every instance sharing the database.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, CookieBuilder, SameSite};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::cache::{Entry, SessionCache};
use crate::accounts::User;
use crate::config::Config;
use crate::db::batch::{self, Step, Value};
use crate::db::{self, Db};
use crate::http::Origin;
use crate::rbac::{self, Access};

pub const SESSION_COOKIE: &str = "session";
pub const CSRF_COOKIE: &str = "X-CSRFToken";

/// The session a request was made with.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub csrf_token: String,
    pub created_at: i64,
}

/// A request's proven identity: its session, its user and what the user may do.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session: Session,
    pub user: User,
    pub access: Access,
}

/// A freshly issued session: the cookie value exists only here and in the browser.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

pub fn random_token() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a random token. The value already has 256 bits of entropy, so
/// a fast hash is enough; no salt or stretching is needed.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Every request with a cookie makes one: written digit by digit rather than through
    // `hex::encode`'s iterator of chars, which cost several times as much.
    let mut hash = String::with_capacity(64);
    for byte in sha2::Sha256::digest(token.as_bytes()) {
        hash.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hash.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hash
}

/// Starts a session for the user, with no other write (a benchmark's setup does). A
/// login writes its session with its event and its throttle give-back instead
/// (`accounts::service`).
pub async fn create(
    db: &Db,
    config: &Config,
    user_id: i64,
    origin: &Origin,
) -> Result<NewSession, sqlx::Error> {
    let pending = Pending::new(config, user_id, origin);
    batch::run(db.writer(), db.backend(), &pending.then(Vec::new())).await?;
    Ok(pending.session)
}

/// A session whose row is yet to be written, for a caller that writes it in one round
/// trip with writes of its own ([`batch::run`]); [`create`] writes it alone.
pub struct Pending {
    pub session: NewSession,
    token_hash: String,
    user_id: i64,
    created_at: i64,
    expires_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Pending {
    pub fn new(config: &Config, user_id: i64, origin: &Origin) -> Self {
        let session = NewSession {
            token: random_token(),
            csrf_token: random_token(),
        };
        let created_at = db::now();
        Self {
            token_hash: token_hash(&session.token),
            session,
            user_id,
            created_at,
            expires_at: created_at + secs(config.session_lifetime),
            ip: origin.ip.clone(),
            user_agent: origin.user_agent.clone(),
        }
    }

    /// The writes of one round trip: the `INSERT` that makes the session live, then
    /// `after`. The row goes first, so that where it cannot be written none of `after`
    /// is (on SQLite the first failing statement ends the call; on PostgreSQL the
    /// statement is all or nothing).
    pub fn then<'a>(&'a self, after: Vec<Step<'a>>) -> Vec<Step<'a>> {
        let mut steps = Vec::with_capacity(after.len() + 1);
        steps.push(self.step());
        steps.extend(after);
        steps
    }

    fn step(&self) -> Step<'_> {
        Step::new(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, \
             expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
            vec![
                Value::Text(&self.token_hash),
                Value::Int(self.user_id),
                Value::Text(&self.session.csrf_token),
                Value::Int(self.created_at),
                Value::Int(self.expires_at),
                Value::OptionalText(self.ip.as_deref()),
                Value::OptionalText(self.user_agent.as_deref()),
            ],
        )
    }
}

/// The live session and user behind a cookie value, if there is one: not revoked, not
/// past its absolute lifetime, not idle too long, and its user not disabled. Served
/// from `cache` when it holds the session (see [`super::cache`]); the expiry times
/// are checked on every request all the same.
pub async fn resolve(
    db: &Db,
    config: &Config,
    cache: &SessionCache,
    token: &str,
) -> Result<Option<Arc<Authenticated>>, sqlx::Error> {
    let clock = Clock::new(config);
    let hash = token_hash(token);
    cache.catch_up().await;
    if let Some(entry) = cache.get(&hash) {
        match clock.judge(entry.expires_at, entry.last_seen_at) {
            Judged::Live => return Ok(Some(entry.auth)),
            Judged::Expired => {
                cache.forget(&hash);
                return Ok(None);
            }
            Judged::DueForTouch => {
                touch(db, entry.auth.session.id, clock.now).await?;
                cache.touched(&hash, clock.now);
                return Ok(Some(entry.auth));
            }
            // Idle by this instance's clock: another instance may have seen the
            // session since, which only the database knows.
            Judged::Idle => {}
        }
    }

    let generation = cache.generation();
    // One statement for the session, its user and the user's roles and permissions
    // (a row per role and permission).
    static LOOKUP: LazyLock<String> = LazyLock::new(|| {
        rbac::with_access(
            "s.id, s.csrf_token, s.created_at, s.last_seen_at, \
             u.id, u.username, u.email, u.first_name, u.last_name, u.email_verified, \
             u.disabled, u.twofa_enabled, u.created_at, u.password_changed_at, s.expires_at",
            "sessions s JOIN users u ON u.id = s.user_id",
            "s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
             AND s.last_seen_at > $3 AND u.disabled = 0",
            "role_name",
        )
    });
    let rows = sqlx::query(&LOOKUP)
        .bind(&hash)
        .bind(clock.now)
        .bind(clock.idle_limit)
        .fetch_all(db.pool())
        .await?;
    let Some(first) = rows.first() else {
        cache.forget(&hash);
        return Ok(None);
    };
    let session = Session {
        id: first.try_get(0)?,
        csrf_token: first.try_get(1)?,
        created_at: first.try_get(2)?,
    };
    let mut last_seen_at: i64 = first.try_get(3)?;
    let user = user_from_row(first, 4)?;
    let expires_at: i64 = first.try_get(14)?;
    let mut access = Access::default();
    for row in &rows {
        access.add(row.try_get(15)?, row.try_get(16)?);
    }

    // The lookup read only a live session: it is due for a touch or not.
    if clock.judge(expires_at, last_seen_at) == Judged::DueForTouch {
        touch(db, session.id, clock.now).await?;
        last_seen_at = clock.now;
    }
    let auth = Arc::new(Authenticated {
        session,
        user,
        access,
    });
    cache.insert(
        hash,
        Entry {
            auth: Arc::clone(&auth),
            expires_at,
            last_seen_at,
        },
        generation,
    );
    Ok(Some(auth))
}

/// The live session behind a cookie value when memory alone can tell: the cache is
/// trusted and caught up, holds the session, and its idle clock is not due for a
/// write. `None` means "ask [`resolve`]", never "no session".
pub fn cached(config: &Config, cache: &SessionCache, token: &str) -> Option<Arc<Authenticated>> {
    if !cache.caught_up_now() {
        return None;
    }
    let entry = cache.get(&token_hash(token))?;
    matches!(
        Clock::new(config).judge(entry.expires_at, entry.last_seen_at),
        Judged::Live
    )
    .then_some(entry.auth)
}

/// The times a cached session is judged by, read once per request.
struct Clock {
    now: i64,
    idle_limit: i64,
    /// Writing on every request would serialise all reads behind the database's
    /// writer; the idle clock only needs a resolution well under the idle timeout.
    touch_every: i64,
}

/// What a cached session's times say of it.
#[derive(Debug, PartialEq, Eq)]
enum Judged {
    Live,
    /// Past its absolute lifetime.
    Expired,
    /// Live, and its idle clock is to be written.
    DueForTouch,
    /// Idle by this instance's clock.
    Idle,
}

impl Clock {
    fn new(config: &Config) -> Self {
        let now = db::now();
        let idle = secs(config.session_idle_timeout);
        Self {
            now,
            idle_limit: now - idle,
            touch_every: (idle / 4).min(60),
        }
    }

    fn judge(&self, expires_at: i64, last_seen_at: i64) -> Judged {
        if expires_at <= self.now {
            Judged::Expired
        } else if last_seen_at <= self.idle_limit {
            Judged::Idle
        } else if self.now - last_seen_at >= self.touch_every {
            Judged::DueForTouch
        } else {
            Judged::Live
        }
    }
}

/// Moves the session's idle clock to `now`, through [`Db::relaxed_pool`]: a touch lost
/// in a crash of the database server leaves the clock a little early, which shortens
/// the session and never lengthens it.
async fn touch(db: &Db, session_id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
        .bind(now)
        .bind(session_id)
        .execute(db.relaxed_pool())
        .await?;
    Ok(())
}

/// Reads a user from `row` starting at column `at`, in the order of [`USER_COLUMNS`].
pub fn user_from_row(row: &AnyRow, at: usize) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get(at)?,
        username: row.try_get(at + 1)?,
        email: row.try_get(at + 2)?,
        first_name: row.try_get(at + 3)?,
        last_name: row.try_get(at + 4)?,
        email_verified: row.try_get::<i64, _>(at + 5)? != 0,
        disabled: row.try_get::<i64, _>(at + 6)? != 0,
        twofa_enabled: row.try_get::<i64, _>(at + 7)? != 0,
        created_at: row.try_get(at + 8)?,
        password_changed_at: row.try_get(at + 9)?,
    })
}

/// The user columns [`user_from_row`] reads, for queries on `users` alone.
pub const USER_COLUMNS: &str = "id, username, email, first_name, last_name, email_verified, \
     disabled, twofa_enabled, created_at, password_changed_at";

pub async fn revoke(db: &Db, session_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(db::now())
        .bind(session_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Revokes the session a cookie value names, whoever it belongs to.
pub async fn revoke_token(db: &Db, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
        .bind(db::now())
        .bind(token_hash(token))
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Revokes every session of the user except `keep`.
pub async fn revoke_all_for_user<'e, E>(
    executor: E,
    user_id: i64,
    keep: Option<i64>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
         AND id <> $3",
    )
    .bind(db::now())
    .bind(user_id)
    .bind(keep.unwrap_or(-1))
    .execute(executor)
    .await?;
    Ok(())
}

/// Forgets sessions that can no longer be used.
pub async fn prune(db: &Db, config: &Config) -> Result<u64, sqlx::Error> {
    let now = db::now();
    let result = sqlx::query(
        "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1 OR last_seen_at < $2",
    )
    .bind(now - 86_400)
    .bind(now - secs(config.session_idle_timeout) - 86_400)
    .execute(db.writer())
    .await?;
    Ok(result.rows_affected())
}

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` headers that hand a new session to the browser.
pub fn set_cookies(config: &Config, session: &NewSession) -> [HeaderValue; 2] {
    let max_age = secs(config.session_lifetime);
    [
        session_cookie(config, &session.token, max_age),
        csrf_cookie(config, &session.csrf_token, max_age),
    ]
}

/// The `Set-Cookie` headers that remove both cookies.
pub fn clear_cookies(config: &Config) -> [HeaderValue; 2] {
    [session_cookie(config, "", 0), csrf_cookie(config, "", 0)]
}

/// The session token: never readable by scripts, sent on top-level navigation.
fn session_cookie(config: &Config, token: &str, max_age: i64) -> HeaderValue {
    let cookie = Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age))
        .same_site(SameSite::Lax)
        .http_only(true);
    set_cookie(config, cookie)
}

/// The CSRF token: the front end's script reads it to echo it in `X-CSRFToken`.
fn csrf_cookie(config: &Config, token: &str, max_age: i64) -> HeaderValue {
    let cookie = Cookie::build((CSRF_COOKIE, token))
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age))
        .same_site(SameSite::Strict)
        .http_only(false);
    set_cookie(config, cookie)
}

/// A `Set-Cookie` header for one of Gatehouse's cookies, `Secure` when the
/// configuration says the service is reached over HTTPS.
pub fn set_cookie(config: &Config, cookie: CookieBuilder<'_>) -> HeaderValue {
    let cookie = cookie.secure(config.session_cookie_secure).build();
    // Names and values are our own tokens, digits and hex: always valid header text.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::{Clock, Judged};

    #[test]
    fn a_cached_session_is_live_only_inside_both_limits_and_before_its_touch() {
        // An idle timeout of 30 minutes: touched at most once a minute.
        let clock = Clock {
            now: 10_000,
            idle_limit: 10_000 - 1_800,
            touch_every: 60,
        };
        let later = clock.now + 3_600;
        assert_eq!(clock.judge(later, clock.now - 59), Judged::Live);
        assert_eq!(clock.judge(later, clock.now - 60), Judged::DueForTouch);
        assert_eq!(
            clock.judge(later, clock.idle_limit + 1),
            Judged::DueForTouch
        );
        assert_eq!(clock.judge(later, clock.idle_limit), Judged::Idle);
        // Expiry wins over everything: an expired session is never served or touched.
        assert_eq!(clock.judge(clock.now, clock.now), Judged::Expired);
        assert_eq!(
            clock.judge(clock.now - 1, clock.idle_limit),
            Judged::Expired
        );
    }

    #[test]
    fn a_token_hash_is_the_lowercase_hex_of_its_sha256() {
        // The form stored in `sessions.token_hash` by every earlier version.
        for token in ["", "a", &super::random_token()] {
            let expected = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            assert_eq!(super::token_hash(token), expected);
        }
        assert_eq!(
            super::token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
