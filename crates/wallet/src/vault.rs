//! Secrets at rest: a passphrase-derived key and the authenticated encryption of every secret
//! the wallet file holds (the seed, blinding states, voucher signatures, sealed envelopes).
//!
//! * Key: Argon2id (RFC 9106) over the passphrase and a random 16-byte salt kept in the file.
//!   The parameters are stored beside the salt, so a wallet keeps opening if the defaults
//!   change later; the defaults are OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane).
//! * Blobs: XChaCha20-Poly1305 with a fresh random 24-byte nonce each, so nonces never need
//!   a counter that could repeat after a restore or a copied file. The associated data names
//!   what the blob is and which row it belongs to, so a blob moved to another row (or a
//!   blinding state passed off as a signature) fails to decrypt rather than being misused.
//! * Key check: a fixed plaintext encrypted under the key. Opening with another passphrase
//!   fails its tag, which is how a wrong passphrase is told apart from a corrupt file.

use crate::error::WalletError;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use smpx_os::Entropy;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// First byte of every blob: the format, so a later format can coexist.
const BLOB_V1: u8 = 1;
const NONCE_LEN: usize = 24;
/// Length of the Argon2 salt.
pub(crate) const SALT_LEN: usize = 16;
/// What the key-check blob decrypts to.
const KEY_CHECK_PLAINTEXT: &[u8] = b"smpx-wallet key check v1";
const KEY_CHECK_AAD: &[u8] = b"smpx-wallet/v1/key-check";

/// Argon2id cost parameters.
///
/// [`KdfParams::default`] is what wallets should use. Lower costs make the passphrase cheaper
/// to guess from a stolen file; they exist for tests and for callers that knowingly trade
/// that away (e.g. a throwaway devnet wallet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// m = 19 MiB, t = 2, p = 1 (OWASP's recommended minimum for Argon2id).
    fn default() -> Self {
        KdfParams {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters Argon2 accepts (8 KiB, 1 pass). For tests only: a file made
    /// with them offers almost no resistance to guessing the passphrase.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
        }
    }

    /// Whether Argon2 accepts these parameters (at least 8 KiB per lane, one pass, one lane).
    pub fn validate(&self) -> Result<(), WalletError> {
        Params::new(self.m_kib, self.t, self.p, Some(32))
            .map(|_| ())
            .map_err(|e| WalletError::InvalidKdf(e.to_string()))
    }

    fn argon2(&self) -> Result<Argon2<'static>, WalletError> {
        let params = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|e| {
            WalletError::Corrupt(format!("unusable key-derivation parameters: {e}"))
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The key that encrypts the wallet's secrets, and the wallet's source of the nonces it seals
/// under. Zeroized on drop; Debug is redacted.
pub(crate) struct VaultKey(Zeroizing<[u8; 32]>, Arc<dyn Entropy>);

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKey(<redacted>)")
    }
}

impl VaultKey {
    /// Argon2id(passphrase, salt) with `params`; nonces come from `entropy`.
    pub(crate) fn derive(
        passphrase: &str,
        salt: &[u8],
        params: &KdfParams,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, WalletError> {
        let mut key = Zeroizing::new([0u8; 32]);
        params
            .argon2()?
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(|e| WalletError::Corrupt(format!("key derivation failed: {e}")))?;
        Ok(VaultKey(key, entropy))
    }

    /// The same key, sealing under nonces from `entropy`.
    pub(crate) fn with_entropy(mut self, entropy: Arc<dyn Entropy>) -> Self {
        self.1 = entropy;
        self
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// `BLOB_V1 || nonce || ciphertext+tag`, bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, WalletError> {
        let nonce: [u8; NONCE_LEN] = self.1.bytes();
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| WalletError::Corrupt("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(BLOB_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a blob made by [`VaultKey::seal`] with the same `aad`. Returns `None` when the
    /// tag does not verify (wrong key, wrong row, or tampering), `Err` when it is malformed.
    pub(crate) fn open(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, WalletError> {
        let (&version, rest) = blob
            .split_first()
            .ok_or_else(|| WalletError::Corrupt("empty encrypted value".into()))?;
        if version != BLOB_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(WalletError::Corrupt(
                "encrypted value has an unknown format".into(),
            ));
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        Ok(self
            .cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new))
    }

    /// Like [`VaultKey::open`], but a tag failure is corruption: used for rows after the key
    /// check passed, when the key is known to be right.
    pub(crate) fn open_known(
        &self,
        aad: &[u8],
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, WalletError> {
        self.open(aad, blob)?.ok_or_else(|| {
            WalletError::Corrupt(
                "an encrypted value does not decrypt (the file was altered or damaged)".into(),
            )
        })
    }

    pub(crate) fn key_check(&self) -> Result<Vec<u8>, WalletError> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    /// Whether `blob` is this key's key-check value.
    pub(crate) fn matches_key_check(&self, blob: &[u8]) -> Result<bool, WalletError> {
        Ok(self
            .open(KEY_CHECK_AAD, blob)?
            .is_some_and(|pt| pt.as_slice() == KEY_CHECK_PLAINTEXT))
    }
}

/// A fresh random salt from `entropy`.
pub(crate) fn new_salt(entropy: &dyn Entropy) -> [u8; SALT_LEN] {
    entropy.bytes()
}

/// Associated data of each kind of secret blob: purpose and owning row, versioned.
pub(crate) mod aad {
    pub(crate) const SEED: &[u8] = b"smpx-wallet/v1/seed";

    pub(crate) fn blinding(index: u64) -> Vec<u8> {
        format!("smpx-wallet/v1/blinding-state/{index}").into_bytes()
    }

    pub(crate) fn signature(index: u64) -> Vec<u8> {
        format!("smpx-wallet/v1/voucher-signature/{index}").into_bytes()
    }

    pub(crate) fn envelope(index: u64, operator_id: &str, envelope_key: &str) -> Vec<u8> {
        format!("smpx-wallet/v1/envelope/{index}/{operator_id}/{envelope_key}").into_bytes()
    }

    /// A pending protocol-2 redemption (`ZkRedemption`): no secret, but its nullifier links
    /// the voucher to the public redemption record, so it is kept sealed too.
    pub(crate) fn zk_request(index: u64, operator_id: &str, request_key: &str) -> Vec<u8> {
        format!("smpx-wallet/v2/zk-redemption/{index}/{operator_id}/{request_key}").into_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(pass: &str, salt: &[u8]) -> VaultKey {
        VaultKey::derive(
            pass,
            salt,
            &KdfParams::insecure_for_tests(),
            Arc::new(smpx_os::OsEntropy),
        )
        .unwrap()
    }

    #[test]
    fn vault_roundtrip_and_binding() {
        let salt = new_salt(&smpx_os::OsEntropy);
        let k = key("pw", &salt);
        let blob = k.seal(b"a", b"secret bytes").unwrap();
        assert_eq!(
            k.open(b"a", &blob).unwrap().unwrap().as_slice(),
            b"secret bytes"
        );
        // Another row / purpose: refused.
        assert!(k.open(b"b", &blob).unwrap().is_none());
        // Another passphrase, another salt: refused.
        assert!(key("pw2", &salt).open(b"a", &blob).unwrap().is_none());
        assert!(key("pw", &new_salt(&smpx_os::OsEntropy))
            .open(b"a", &blob)
            .unwrap()
            .is_none());
        // Tampering: refused.
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(b"a", &bad).unwrap().is_none());
        // Fresh nonce every time.
        assert_ne!(blob, k.seal(b"a", b"secret bytes").unwrap());
        // Malformed blobs are errors, not panics.
        assert!(k.open(b"a", &[]).is_err());
        assert!(k.open(b"a", &[9; 60]).is_err());
        assert!(k.open(b"a", &[BLOB_V1; 10]).is_err());
    }

    #[test]
    fn vault_key_check_tells_passphrases_apart() {
        let salt = new_salt(&smpx_os::OsEntropy);
        let check = key("right", &salt).key_check().unwrap();
        assert!(key("right", &salt).matches_key_check(&check).unwrap());
        assert!(!key("wrong", &salt).matches_key_check(&check).unwrap());
    }

    #[test]
    fn vault_default_params_are_the_documented_ones() {
        let p = KdfParams::default();
        assert_eq!((p.m_kib, p.t, p.p), (19_456, 2, 1));
        assert!(p.argon2().is_ok());
        assert!(KdfParams::insecure_for_tests().validate().is_ok());
        let too_small = KdfParams {
            m_kib: 1,
            t: 1,
            p: 1,
        };
        assert!(matches!(
            too_small.validate(),
            Err(WalletError::InvalidKdf(_))
        ));
        assert_eq!(
            format!("{:?}", key("x", &new_salt(&smpx_os::OsEntropy))),
            "VaultKey(<redacted>)"
        );
    }
}
