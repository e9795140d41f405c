//! Keys derived from `SECRET_KEY`, one per purpose, so that no two uses share a key
//! and rotating `SECRET_KEY` rotates them all.

use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Encrypts TOTP secrets at rest.
pub const TOTP_SECRET: &str = "gatehouse/v1/totp-secret-encryption";
/// Keys the hashes of emailed login codes.
pub const LOGIN_CODE: &str = "gatehouse/v1/login-code-hash";
/// Signs the known-device cookie.
pub const KNOWN_DEVICE: &str = "gatehouse/v1/known-device-cookie";

/// HKDF-SHA256 of `SECRET_KEY` (its bytes) with `label` as its info.
pub fn derive(secret_key: &[u8], label: &str) -> [u8; 32] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"gatehouse"), secret_key);
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8160, so expansion cannot fail.
    let _ = hk.expand(label.as_bytes(), &mut okm);
    okm
}

/// HMAC-SHA256 of `message` under a 32-byte key, in hex.
pub fn hmac_sha256_hex(key: &[u8; 32], message: &[u8]) -> String {
    // HMAC pads a key shorter than the block to the block size with zeros, so the
    // padded key gives the same MAC while using the infallible constructor.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(GenericArray::from_slice(&block));
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_give_different_keys_and_hmac_matches_the_rfc() {
        let secret = b"0123456789abcdef0123456789abcdef";
        assert_ne!(derive(secret, TOTP_SECRET), derive(secret, LOGIN_CODE));
        assert_eq!(derive(secret, TOTP_SECRET), derive(secret, TOTP_SECRET));
        // RFC 4231 test case 2 uses a 4-byte key ("Jefe"), zero-padded here like HMAC does.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            hmac_sha256_hex(&key, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
