//! The issuer's signing keys at rest: encrypted in the database under a key-encryption key
//! that lives in a file of the issuer's home (`<home>/key-encryption-key`, mode 0600), so a
//! dump, backup or replica of the database holds no usable signing key.
//!
//! A wrapped key is `"smpx-wrap1" ‖ nonce[24] ‖ XChaCha20-Poly1305(kek, nonce, der, aad =
//! key_id)`: the key id as associated data ties each ciphertext to its row, so rows cannot
//! be swapped. Rows written before this (plain DER) are still read, and wrapped at start
//! ([`crate::Issuer::start`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"smpx-wrap1";
const NONCE_LEN: usize = 24;

/// The key-encryption key.
pub struct KeyWrap {
    cipher: XChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WrapError {
    #[error("a stored signing key does not decrypt with this issuer's key-encryption key (another home directory's database, or a damaged row)")]
    Undecryptable,
    #[error("encrypting a signing key failed")]
    Encrypt,
}

impl KeyWrap {
    /// From the contents of the key-encryption-key file (a random token).
    pub fn from_secret(secret: &str) -> KeyWrap {
        let mut h = Sha256::new();
        h.update(b"smpx issuer key-encryption key v1\0");
        h.update(secret.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        KeyWrap {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    pub fn wrap(&self, key_id: &[u8; 32], der: &[u8]) -> Result<Vec<u8>, WrapError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: der,
                    aad: key_id,
                },
            )
            .map_err(|_| WrapError::Encrypt)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The DER of a stored key: decrypted if wrapped, as it is if it is a plain row from
    /// before keys were wrapped.
    pub fn unwrap(&self, key_id: &[u8; 32], stored: &[u8]) -> Result<Vec<u8>, WrapError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Ok(stored.to_vec());
        };
        if rest.len() < NONCE_LEN {
            return Err(WrapError::Undecryptable);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key_id,
                },
            )
            .map_err(|_| WrapError::Undecryptable)
    }

    /// Whether a stored key is wrapped (rather than a plain row to migrate).
    pub fn is_wrapped(stored: &[u8]) -> bool {
        stored.starts_with(MAGIC)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_kek_and_its_key_id() {
        let kek = KeyWrap::from_secret("secret one");
        let der = b"0\x82 a DER-encoded RSA key".to_vec();
        let id = [7u8; 32];
        let wrapped = kek.wrap(&id, &der).unwrap();
        assert!(KeyWrap::is_wrapped(&wrapped));
        assert!(
            !wrapped.windows(der.len()).any(|w| w == der),
            "no plaintext in the row"
        );
        assert_eq!(kek.unwrap(&id, &wrapped).unwrap(), der);
        // Another issuer's kek, another row's id, a flipped byte, a cut row: refused.
        assert_eq!(
            KeyWrap::from_secret("secret two").unwrap(&id, &wrapped),
            Err(WrapError::Undecryptable)
        );
        assert_eq!(
            kek.unwrap(&[8u8; 32], &wrapped),
            Err(WrapError::Undecryptable)
        );
        let mut flipped = wrapped.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(kek.unwrap(&id, &flipped), Err(WrapError::Undecryptable));
        assert_eq!(
            kek.unwrap(&id, &wrapped[..MAGIC.len() + 5]),
            Err(WrapError::Undecryptable)
        );
        // Two wraps of one key differ (fresh nonce).
        assert_ne!(kek.wrap(&id, &der).unwrap(), wrapped);
    }

    #[test]
    fn a_plain_row_from_before_is_read_as_it_is() {
        let kek = KeyWrap::from_secret("s");
        let der = b"0\x82 plain".to_vec();
        assert!(!KeyWrap::is_wrapped(&der));
        assert_eq!(kek.unwrap(&[1; 32], &der).unwrap(), der);
    }
}
