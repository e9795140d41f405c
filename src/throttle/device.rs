//! The known-device cookie: proof that this browser has completed a login to the
//! account before, which exempts it from the per-account limits.
//!
//! Its value is `user_id.issued_at.mac`, the MAC an HMAC-SHA256 under a key derived
//! from `SECRET_KEY` over the user, the issue time and the time of the user's last
//! password change: nobody can forge one, and a password change or reset retires every
//! device's. It is sent only to `/login` and grants nothing by itself; a password and
//! any second factor are still needed.

use axum::http::{HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::accounts::User;
use crate::auth::session;
use crate::config::Config;
use crate::db;
use crate::twofa::keys;

pub const DEVICE_COOKIE: &str = "gh_device";
const LIFETIME_SECS: i64 = 180 * 86_400;

fn mac(config: &Config, user: &User, issued_at: i64) -> String {
    let key = keys::derive(config.secret_key.expose_secret(), keys::KNOWN_DEVICE);
    let message = format!("{}:{}:{}", user.id, issued_at, user.password_changed_at);
    keys::hmac_sha256_hex(&key, message.as_bytes())
}

/// The `Set-Cookie` header that marks this browser as known for `user`.
pub fn issue(config: &Config, user: &User) -> HeaderValue {
    let issued_at = db::now();
    let value = format!("{}.{issued_at}.{}", user.id, mac(config, user, issued_at));
    let cookie = Cookie::build((DEVICE_COOKIE, value))
        .path("/login")
        .max_age(cookie::time::Duration::seconds(LIFETIME_SECS))
        .same_site(SameSite::Lax)
        .http_only(true);
    session::set_cookie(config, cookie)
}

/// Whether the request carries a live known-device cookie for `user`.
pub fn is_known(config: &Config, headers: &HeaderMap, user: &User) -> bool {
    let Some(value) = session::cookie(headers, DEVICE_COOKIE) else {
        return false;
    };
    let mut parts = value.splitn(3, '.');
    let (Some(id), Some(issued_at), Some(sent_mac)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(id), Ok(issued_at)) = (id.parse::<i64>(), issued_at.parse::<i64>()) else {
        return false;
    };
    let now = db::now();
    id == user.id
        && issued_at <= now
        && now - issued_at < LIFETIME_SECS
        && bool::from(
            mac(config, user, issued_at)
                .as_bytes()
                .ct_eq(sent_mac.as_bytes()),
        )
}
