//! Checkpoint cosignatures (C2SP `tlog-cosignature`, https://c2sp.org/tlog-cosignature, the
//! Ed25519 type): a witness's statement that, at a time, the checkpoint is the largest
//! consistent tree it has seen for that log.
//!
//! # Format (tlog-cosignature §Format, §Ed25519 signed message)
//!
//! A cosignature is a signature line of the checkpoint note, under a key of type `0x04`
//! (key ID `SHA-256(name || 0x0A || 0x04 || public key)[:4]`). Its signature bytes are a
//! `timestamped_signature`: the timestamp as a big-endian `u64` (at most `2^63 − 1`), then the
//! 64-byte Ed25519 signature over
//!
//! ```text
//! cosignature/v1
//! time <timestamp in decimal, no leading zeroes>
//! <the whole checkpoint text, extension lines and final newline included>
//! ```
//!
//! The header line separates cosignatures from every other use of the key; the message
//! does not name the cosigner, so one key must serve only one cosigner name (the spec's
//! rule, kept by deriving names and keys together).
//!
//! Verification is [`super::note::Note::verify_known`] with cosigner keys
//! ([`super::note::KeyType::Cosignature`]); each verified cosignature carries its timestamp,
//! which the caller compares with its own `now` (a cosignature from the future may be
//! rejected).

use std::fmt;

use ed25519_dalek::Signer as _;

use super::checkpoint::Checkpoint;
use super::note::{self, KeyError, KeyType, SignatureLine, VerifierKey};

/// The largest timestamp a cosignature may carry (tlog-cosignature §Format).
pub const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// The header line of the signed message, for domain separation.
pub const HEADER: &str = "cosignature/v1";

/// Why a cosignature could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("timestamp {0} is above 2^63 - 1")]
    TimestampTooLarge(u64),
}

/// The bytes a cosignature signs: header line, time line, then the checkpoint text.
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("{HEADER}\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's named cosigning key. Debug output is redacted; zeroized on drop.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl Cosigner {
    /// From the cosigner's name (a schema-less URL, by the spec's advice) and its 32-byte
    /// RFC 8032 secret key (seed).
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !note::is_valid_name(name) {
            return Err(KeyError::InvalidName);
        }
        Ok(Self {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key clients configure for this cosigner (type `0x04`).
    pub fn verifier_key(&self) -> Result<VerifierKey, KeyError> {
        VerifierKey::new(
            &self.name,
            KeyType::Cosignature,
            self.key.verifying_key().to_bytes(),
        )
    }

    /// The cosignature line for `checkpoint` at `timestamp` (unix seconds); add it to the
    /// checkpoint's note with [`super::note::Note::add_signature`].
    pub fn cosign(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<SignatureLine, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge(timestamp));
        }
        let message = signed_message(&checkpoint.to_text(), timestamp);
        let mut signature = timestamp.to_be_bytes().to_vec();
        signature.extend_from_slice(&self.key.sign(message.as_bytes()).to_bytes());
        let public = self.key.verifying_key().to_bytes();
        Ok(SignatureLine {
            name: self.name.clone(),
            key_id: note::key_id(&self.name, KeyType::Cosignature, &public),
            signature,
        })
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cosigner({}, <redacted>)", self.name)
    }
}

/// Splits a `timestamped_signature` (the bytes after the key ID) into its timestamp and
/// Ed25519 signature, or `None` if it is not 72 bytes with a timestamp of at most
/// [`MAX_TIMESTAMP`]. Reading the time does not verify anything.
pub fn split_timestamped(signature: &[u8]) -> Option<(u64, &[u8; 64])> {
    let (timestamp, signature) = signature.split_first_chunk::<8>()?;
    let timestamp = u64::from_be_bytes(*timestamp);
    let signature: &[u8; 64] = signature.try_into().ok()?;
    (timestamp <= MAX_TIMESTAMP).then_some((timestamp, signature))
}

/// Checks a `timestamped_signature` on `text`, returning its timestamp.
pub(super) fn check(public: &[u8; 32], text: &str, signature: &[u8]) -> Result<u64, ()> {
    let (timestamp, signature) = split_timestamped(signature).ok_or(())?;
    let message = signed_message(text, timestamp);
    note::ed25519_verify(public, message.as_bytes(), signature)?;
    Ok(timestamp)
}
