//! TOTP secrets at rest: ChaCha20-Poly1305 under a key derived from `SECRET_KEY`, the
//! user id as associated data (a ciphertext copied to another account does not
//! decrypt), stored as base64 of nonce || ciphertext.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::keys;
use crate::error::AppError;

const NONCE_LEN: usize = 12;

fn cipher(secret_key: &[u8]) -> ChaCha20Poly1305 {
    let key = keys::derive(secret_key, keys::TOTP_SECRET);
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

pub fn seal(secret_key: &[u8], user_id: i64, plain: &[u8]) -> Result<String, AppError> {
    use rand::RngCore;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = user_id.to_be_bytes();
    let sealed = cipher(secret_key)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .map_err(|_| AppError::internal(anyhow::anyhow!("sealing a TOTP secret failed")))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// The secret, or an internal error when the value was not sealed for this user under
/// this `SECRET_KEY` (a rotated key makes every stored secret unreadable).
pub fn open(secret_key: &[u8], user_id: i64, stored: &str) -> Result<Vec<u8>, AppError> {
    let fail = || AppError::internal(anyhow::anyhow!("a stored TOTP secret cannot be decrypted"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .map_err(|_| fail())?;
    if bytes.len() <= NONCE_LEN {
        return Err(fail());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let aad = user_id.to_be_bytes();
    cipher(secret_key)
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = b"0123456789abcdef0123456789abcdef-key";
        let stored = seal(key, 7, b"secret bytes").unwrap();
        assert!(!stored.contains("secret"));
        assert_eq!(open(key, 7, &stored).unwrap(), b"secret bytes");
        assert!(open(key, 8, &stored).is_err(), "bound to its user");
        assert!(open(b"another key entirely, also long enough", 7, &stored).is_err());
        assert_ne!(
            seal(key, 7, b"secret bytes").unwrap(),
            stored,
            "fresh nonce"
        );
        assert!(open(key, 7, "not base64!").is_err());
    }
}
