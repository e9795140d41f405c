//! RFC 6238 TOTP: HMAC-SHA1, 6 digits, 30-second steps, one step of skew either way.
//!
//! Small enough to write out, which keeps the rules visible: which steps are tried,
//! how codes are compared (in constant time), and which step a code proved, so that
//! the caller can refuse a step it has accepted before.

use hmac::digest::generic_array::GenericArray;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: usize = 6;
/// 160 bits, the HMAC-SHA1 output size RFC 4226 recommends for shared secrets.
pub const SECRET_LEN: usize = 20;

/// The time step a Unix time falls in.
pub fn step_at(unix: i64) -> i64 {
    unix.div_euclid(STEP_SECS)
}

/// The code for one time step (RFC 4226 dynamic truncation).
pub fn code_at(secret: &[u8], step: i64) -> String {
    // Secrets here are 20 bytes, below SHA-1's 64-byte block: zero-padding the key
    // to the block is what HMAC does anyway, and lets the constructor be infallible.
    let mut block = [0u8; 64];
    let len = secret.len().min(64);
    block[..len].copy_from_slice(&secret[..len]);
    let mut mac = <Hmac<Sha1> as KeyInit>::new(GenericArray::from_slice(&block));
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// Whether `code` is six digits.
pub fn looks_like_code(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The newest step within one step of `now` whose code is `code` and that is later
/// than `after` (the last step accepted for this user), if any.
pub fn verify(secret: &[u8], code: &str, now: i64, after: i64) -> Option<i64> {
    if !looks_like_code(code) {
        return None;
    }
    let current = step_at(now);
    let mut matched = None;
    // Every candidate is computed and compared, so timing does not tell which matched.
    for step in [current - 1, current, current + 1] {
        let equal = bool::from(code_at(secret, step).as_bytes().ct_eq(code.as_bytes()));
        if equal && step > after {
            matched = Some(step);
        }
    }
    matched
}

/// A new random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    use rand::RngCore;
    let mut secret = [0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// Base32 without padding, as authenticator apps read it.
pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (their 8-digit codes, last six digits here).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(secret, step_at(time)), code, "t = {time}");
        }
    }

    #[test]
    fn skew_and_replay() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let step = step_at(now);
        let previous = code_at(secret, step - 1);
        let next = code_at(secret, step + 1);
        let too_old = code_at(secret, step - 2);
        assert_eq!(verify(secret, &previous, now, 0), Some(step - 1));
        assert_eq!(verify(secret, &next, now, 0), Some(step + 1));
        assert_eq!(verify(secret, &too_old, now, 0), None);
        // A step already accepted is not accepted again.
        assert_eq!(verify(secret, &previous, now, step - 1), None);
        assert_eq!(verify(secret, "12345", now, 0), None);
        assert_eq!(verify(secret, "abcdef", now, 0), None);
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
