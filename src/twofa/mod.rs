//! Two-factor authentication: TOTP with a pending secret that replaces the active one
//! only once confirmed, ten single-use recovery codes, and one-time codes emailed at
//! login.
//!
//! Every code is single use. TOTP codes by time step: the last accepted step is kept
//! per user and only a later one is accepted, so a code overheard or replayed within
//! its 90-second window is refused. Recovery and emailed codes by a conditional UPDATE
//! of their row. Only keyed hashes of recovery and emailed codes are stored; TOTP
//! secrets, which must be read back, are encrypted ([`sealed`]).

mod emails;
pub mod keys;
mod routes;
pub mod sealed;
pub mod store;
pub mod totp;

use secrecy::ExposeSecret;
use serde_json::json;

pub use routes::routes;

use crate::accounts::User;
use crate::app::AppState;
use crate::db;
use crate::error::AppError;
use crate::http::Origin;
use crate::logs::{ActivityLog, Level, LogEntry};
use crate::throttle::{self, Attempt};

pub const RECOVERY_CODES: usize = 10;
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const RECOVERY_CODE_LEN: usize = 10;

/// What a pending enrollment hands the user: the secret as a URI and as a QR code.
pub struct Enrollment {
    pub uri: String,
    pub qr_svg: String,
}

/// Which second factor a login token proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    EmailedCode,
    RecoveryCode,
}

impl Proof {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::EmailedCode => "emailed_code",
            Self::RecoveryCode => "recovery_code",
        }
    }
}

/// Creates a new pending secret for the user and returns how to load it into an
/// authenticator. An active secret keeps working until this one is confirmed.
pub async fn begin_enrollment(state: &AppState, user: &User) -> Result<Enrollment, AppError> {
    let secret = totp::new_secret();
    let sealed = sealed::seal(state.config.secret_key.expose_secret(), user.id, &secret)?;
    store::set_pending(&state.db, user.id, &sealed).await?;
    let uri = otpauth_uri(
        &state.config.totp_issuer,
        &user.email,
        &totp::base32(&secret),
    );
    let qr_svg = qr_svg(&uri)?;
    Ok(Enrollment { uri, qr_svg })
}

/// The enrollment awaiting confirmation, or a new one: a page that shows the QR code
/// again (after a wrong code, say) must not change the secret the app has scanned.
pub async fn pending_or_new_enrollment(
    state: &AppState,
    user: &User,
) -> Result<Enrollment, AppError> {
    let pending = store::load(&state.db, user.id)
        .await?
        .and_then(|row| row.pending_enc);
    let Some(pending) = pending else {
        return begin_enrollment(state, user).await;
    };
    let secret = sealed::open(state.config.secret_key.expose_secret(), user.id, &pending)?;
    let uri = otpauth_uri(
        &state.config.totp_issuer,
        &user.email,
        &totp::base32(&secret),
    );
    let qr_svg = qr_svg(&uri)?;
    Ok(Enrollment { uri, qr_svg })
}

/// `otpauth://totp/<issuer>:<email>?secret=<base32>&issuer=<issuer>`, the label and
/// issuer percent-encoded where they must be.
pub fn otpauth_uri(issuer: &str, email: &str, secret_b32: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_b32}&issuer={issuer}",
        percent_encode(email)
    )
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b'+') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn qr_svg(uri: &str) -> Result<String, AppError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(AppError::internal)?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // Inline SVG for an HTML page: without the XML declaration the renderer adds.
    Ok(match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    })
}

/// The stored form of a recovery code: it has 50 random bits, and the key derived
/// from `SECRET_KEY` means a copy of the table alone does not allow guessing offline.
fn recovery_hash(secret_key: &[u8], user_id: i64, normalized: &str) -> String {
    let key = keys::derive(secret_key, keys::LOGIN_CODE);
    keys::hmac_sha256_hex(&key, format!("recovery:{user_id}:{normalized}").as_bytes())
}

fn email_code_hash(secret_key: &[u8], user_id: i64, code: &str) -> String {
    let key = keys::derive(secret_key, keys::LOGIN_CODE);
    keys::hmac_sha256_hex(&key, format!("email:{user_id}:{code}").as_bytes())
}

/// Ten new recovery codes, `xxxxx-xxxxx`, and their hashes.
fn new_recovery_codes(secret_key: &[u8], user_id: i64) -> (Vec<String>, Vec<String>) {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let raw: String = (0..RECOVERY_CODE_LEN)
            .map(|_| char::from(RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())]))
            .collect();
        let hash = recovery_hash(secret_key, user_id, &raw);
        if hashes.contains(&hash) {
            continue;
        }
        codes.push(format!("{}-{}", &raw[..5], &raw[5..]));
        hashes.push(hash);
    }
    (codes, hashes)
}

/// A token as typed: spaces and dashes dropped, letters lower-cased.
fn normalize(token: &str) -> String {
    token
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn looks_like_recovery_code(normalized: &str) -> bool {
    normalized.len() == RECOVERY_CODE_LEN
        && normalized.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
}

/// Accepts a TOTP code of the active secret once; `false` for a wrong or used code.
async fn use_totp(state: &AppState, user_id: i64, code: &str) -> Result<bool, AppError> {
    let Some(row) = store::load(&state.db, user_id).await? else {
        return Ok(false);
    };
    let Some(sealed_secret) = row.secret_enc else {
        return Ok(false);
    };
    let secret = sealed::open(
        state.config.secret_key.expose_secret(),
        user_id,
        &sealed_secret,
    )?;
    match totp::verify(&secret, code, db::now(), row.last_step) {
        Some(step) => Ok(store::claim_step(state.db.writer(), user_id, step).await?),
        None => Ok(false),
    }
}

async fn use_recovery_code(
    state: &AppState,
    user_id: i64,
    normalized: &str,
) -> Result<bool, AppError> {
    let hash = recovery_hash(state.config.secret_key.expose_secret(), user_id, normalized);
    Ok(store::consume_recovery_code(state.db.writer(), user_id, &hash).await?)
}

/// Which second factor `token` proves for the user, if any; each is used up.
pub async fn verify_login_token(
    state: &AppState,
    user: &User,
    token: &str,
) -> Result<Option<Proof>, AppError> {
    let token = normalize(token);
    if totp::looks_like_code(&token) {
        if use_totp(state, user.id, &token).await? {
            return Ok(Some(Proof::Totp));
        }
        let hash = email_code_hash(state.config.secret_key.expose_secret(), user.id, &token);
        if store::consume_email_code(&state.db, user.id, &hash).await? {
            return Ok(Some(Proof::EmailedCode));
        }
        return Ok(None);
    }
    if looks_like_recovery_code(&token) && use_recovery_code(state, user.id, &token).await? {
        return Ok(Some(Proof::RecoveryCode));
    }
    Ok(None)
}

/// Emails a fresh login code unless one went out in the last minute. Returns whether
/// one was sent.
pub async fn send_login_code(state: &AppState, user: &User) -> Result<bool, AppError> {
    use rand::Rng;
    let mut tx = state.db.begin().await?;
    if !store::claim_email_slot(&mut tx, user.id).await? {
        return Ok(false);
    }
    let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
    let hash = email_code_hash(state.config.secret_key.expose_secret(), user.id, &code);
    store::insert_email_code(&mut tx, user.id, &hash).await?;
    let email = emails::login_code(&user.email, &user.first_name, &code)?;
    state
        .mailer
        .enqueue(&mut tx, &email)
        .await
        .map_err(AppError::internal)?;
    tx.commit().await?;
    state.mailer.wake();
    Ok(true)
}

/// The second-factor step of login, after the password has been proven: nothing when
/// 2FA is off; with no token, a code by email and the contract's 400; with a token,
/// the check, throttled per account (unless `known_device`) and per address.
pub async fn check_login(
    state: &AppState,
    user: &User,
    token: Option<&str>,
    origin: &Origin,
    known_device: bool,
) -> Result<Option<Proof>, AppError> {
    if !user.twofa_enabled {
        return Ok(None);
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        let sent = send_login_code(state, user).await?;
        state.activity.record(
            LogEntry::auth(Level::Info, "2FA required at login")
                .user(user)
                .origin(origin)
                .details(json!({ "code_emailed": sent })),
        );
        return Err(AppError::TwofaRequired);
    };
    let mut attempt = Attempt::new(state, origin)
        .user(Some(user))
        .by_ip(&throttle::TWOFA_IP);
    if !known_device {
        attempt = attempt.by(&throttle::TWOFA_ACCOUNT, throttle::account_subject(user.id));
    }
    attempt.check().await?;
    // A token longer than any code cannot be one; it is not worth hashing.
    let proof = if token.len() <= 64 {
        verify_login_token(state, user, token).await?
    } else {
        None
    };
    match proof {
        Some(proof) => {
            attempt.clear(&throttle::TWOFA_ACCOUNT).await?;
            Ok(Some(proof))
        }
        None => {
            attempt.failed().await?;
            state.activity.record(
                LogEntry::auth(Level::Warning, "login failed: invalid 2FA token")
                    .user(user)
                    .origin(origin),
            );
            Err(AppError::Unauthenticated(
                "invalid_twofa_token",
                "Invalid 2FA token",
            ))
        }
    }
}

/// What [`update`] did.
pub enum Update {
    /// The code proved nothing.
    Refused,
    /// On, with these new recovery codes.
    Enabled(Vec<String>),
    Disabled,
}

/// Turns 2FA on (confirming the pending secret) or off with a code, throttled per
/// account and address like login.
pub async fn update(
    state: &AppState,
    user: &User,
    origin: &Origin,
    enabled: bool,
    token: &str,
) -> Result<Update, AppError> {
    // Guessing codes from a session (a stolen one, say) is throttled like at login.
    let attempt = Attempt::new(state, origin)
        .user(Some(user))
        .by_ip(&throttle::TWOFA_IP)
        .by(&throttle::TWOFA_ACCOUNT, throttle::account_subject(user.id));
    attempt.check().await?;
    // Stored in the transaction of the change.
    let record = LogEntry::auth(
        Level::Info,
        if enabled {
            "2FA enabled"
        } else {
            "2FA disabled"
        },
    )
    .user(user)
    .origin(origin);
    let (ok, recovery_codes) = if enabled {
        match enable(state, user, token, record).await? {
            Some(codes) => (true, Some(codes)),
            None => (false, None),
        }
    } else {
        (disable(state, user, token, record).await?, None)
    };
    if !ok {
        attempt.failed().await?;
        state.activity.record(
            LogEntry::auth(Level::Warning, "2FA update failed")
                .user(user)
                .origin(origin)
                .details(json!({ "enabled": enabled })),
        );
        return Ok(Update::Refused);
    }
    attempt.clear(&throttle::TWOFA_ACCOUNT).await?;
    Ok(match recovery_codes {
        Some(codes) => Update::Enabled(codes),
        None => Update::Disabled,
    })
}

/// Confirms the pending secret with a code from it: 2FA on (or re-keyed), ten new
/// recovery codes returned, and `record` stored with the change. `None` when the code
/// does not prove the pending secret.
pub async fn enable(
    state: &AppState,
    user: &User,
    token: &str,
    record: LogEntry,
) -> Result<Option<Vec<String>>, AppError> {
    let code = normalize(token);
    let Some(row) = store::load(&state.db, user.id).await? else {
        return Ok(None);
    };
    let Some(pending) = row.pending_enc else {
        return Ok(None);
    };
    let secret = sealed::open(state.config.secret_key.expose_secret(), user.id, &pending)?;
    // No earlier step bars the way: no code of this secret has been accepted yet.
    let Some(step) = totp::verify(&secret, &code, db::now(), i64::MIN) else {
        return Ok(None);
    };
    let (codes, hashes) = new_recovery_codes(state.config.secret_key.expose_secret(), user.id);
    let mut tx = state.db.begin().await?;
    if !store::activate(&mut tx, user.id, &pending, step, &hashes).await? {
        return Ok(None);
    }
    ActivityLog::record_in(&mut tx, record).await?;
    tx.commit().await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(user.id))
        .await;
    Ok(Some(codes))
}

/// Turns 2FA off, given a TOTP code of the active secret or an unused recovery code,
/// and stores `record` with the change. `false` when 2FA is off or the token proves
/// nothing.
pub async fn disable(
    state: &AppState,
    user: &User,
    token: &str,
    record: LogEntry,
) -> Result<bool, AppError> {
    let token = normalize(token);
    let Some(row) = store::load(&state.db, user.id).await? else {
        return Ok(false);
    };
    let Some(active) = row.secret_enc else {
        return Ok(false);
    };
    let mut tx = state.db.begin().await?;
    let proven = if totp::looks_like_code(&token) {
        let secret = sealed::open(state.config.secret_key.expose_secret(), user.id, &active)?;
        match totp::verify(&secret, &token, db::now(), row.last_step) {
            Some(step) => store::claim_step(&mut *tx, user.id, step).await?,
            None => false,
        }
    } else if looks_like_recovery_code(&token) {
        let hash = recovery_hash(state.config.secret_key.expose_secret(), user.id, &token);
        store::consume_recovery_code(&mut *tx, user.id, &hash).await?
    } else {
        false
    };
    if !proven {
        return Ok(false);
    }
    store::deactivate(&mut tx, user.id).await?;
    ActivityLog::record_in(&mut tx, record).await?;
    tx.commit().await?;
    state
        .sessions
        .invalidate(crate::auth::cache::Scope::User(user.id))
        .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_qr() {
        let uri = otpauth_uri("Gatehouse", "ann@example.com", "ABC234");
        assert_eq!(
            uri,
            "otpauth://totp/Gatehouse:ann@example.com?secret=ABC234&issuer=Gatehouse"
        );
        assert_eq!(
            otpauth_uri("My Co&", "a@b.c", "X"),
            "otpauth://totp/My%20Co%26:a@b.c?secret=X&issuer=My%20Co%26"
        );
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let (codes, hashes) = new_recovery_codes(b"k", 1);
        assert_eq!(codes.len(), RECOVERY_CODES);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert_eq!(code.len(), 11);
            let typed = format!(" {} ", code.to_uppercase());
            let n = normalize(&typed);
            assert!(looks_like_recovery_code(&n));
            assert_eq!(&recovery_hash(b"k", 1, &n), hash);
            assert_ne!(&recovery_hash(b"k", 2, &n), hash, "bound to the user");
        }
        let mut unique = hashes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
    }
}
