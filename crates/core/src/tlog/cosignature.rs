//! Checkpoint cosignatures (C2SP `tlog-cosignature`, <https://c2sp.org/tlog-cosignature>, the
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
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey::of_signing_key(&self.name, KeyType::Cosignature, &self.key)
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
        Ok(SignatureLine {
            name: self.name.clone(),
            key_id: self.verifier_key().key_id(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tlog::note::{Note, NoteError, NoteSigner, Verified};

    /// Cosignatures computed by `testdata/tlog_cosignature_vector.py` with Python's
    /// `cryptography`, from the spec alone: no published vector comes with a private key.
    #[test]
    fn matches_an_independent_implementation() {
        const VECTOR: &str = include_str!("../testdata/tlog_cosignature_vector.json");
        let vector: serde_json::Value = serde_json::from_str(VECTOR).unwrap();
        let seed: [u8; 32] = hex::decode(vector["seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let cosigner = Cosigner::new(vector["name"].as_str().unwrap(), &seed).unwrap();
        let key = cosigner.verifier_key();
        assert_eq!(key.to_string(), vector["vkey"].as_str().unwrap());
        assert_eq!(
            VerifierKey::parse(vector["vkey"].as_str().unwrap()).unwrap(),
            key
        );
        let cases = vector["vectors"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let text = case["checkpoint"].as_str().unwrap();
            let timestamp = case["timestamp"].as_u64().unwrap();
            assert_eq!(
                signed_message(text, timestamp),
                case["message"].as_str().unwrap()
            );
            let checkpoint = Checkpoint::parse(text).unwrap();
            let mut note = Note::new(text).unwrap();
            note.add_signature(cosigner.cosign(&checkpoint, timestamp).unwrap())
                .unwrap();
            let want = format!("{text}\n{}", case["line"].as_str().unwrap());
            assert_eq!(note.render(), want);
            let verified = Note::parse(want.as_bytes())
                .unwrap()
                .verify(std::slice::from_ref(&key))
                .unwrap();
            assert_eq!(
                verified,
                [Verified {
                    name: key.name().into(),
                    key_id: key.key_id(),
                    key_type: KeyType::Cosignature,
                    timestamp: Some(timestamp)
                }]
            );
        }
    }

    #[test]
    fn published_keys_and_lines_have_the_documented_shape() {
        // A witness key in use (transparency-dev/formats note_cosigv1_test.go): its key ID
        // is computed with the 0x04 type byte.
        let remora = VerifierKey::parse(
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        )
        .unwrap();
        assert_eq!(
            (remora.key_type(), remora.key_id()),
            (KeyType::Cosignature, 0xda77ade7)
        );
        // The C2SP example: the witness line carries key ID, then the time of the
        // example's signed message (1679315147), then 64 signature bytes.
        let example = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
            — example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
            — witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let note = Note::parse(example.as_bytes()).unwrap();
        let witness = &note.signatures()[1];
        assert_eq!(witness.key_id, 0x8d66cf3f);
        assert_eq!(
            split_timestamped(&witness.signature).map(|(t, _)| t),
            Some(1679315147)
        );
        assert_eq!(split_timestamped(&note.signatures()[0].signature), None);
    }

    #[test]
    fn a_witness_cosigns_what_a_log_signed() {
        let log = NoteSigner::new("example.com/log", &[1; 32]).unwrap();
        let witness = Cosigner::new("witness.example/a", &[2; 32]).unwrap();
        let witness_key = witness.verifier_key();
        let checkpoint = Checkpoint::new("example.com/log", 7, [9; 32])
            .unwrap()
            .with_extension("x")
            .unwrap();
        let mut note = checkpoint.sign(&log).unwrap();
        note.add_signature(witness.cosign(&checkpoint, 1_700_000_000).unwrap())
            .unwrap();
        let signed = note.render();

        let (opened, note) =
            Checkpoint::open(signed.as_bytes(), "example.com/log", &log.verifier_key()).unwrap();
        assert_eq!(opened, checkpoint);
        let cosigned = note
            .verify_known(std::slice::from_ref(&witness_key))
            .unwrap();
        assert_eq!(cosigned.len(), 1);
        assert_eq!(cosigned[0].timestamp, Some(1_700_000_000));

        // The extension lines are signed too.
        let tampered = Note::parse(signed.replacen("\nx\n", "\ny\n", 1).as_bytes()).unwrap();
        assert!(matches!(
            tampered.verify_known(std::slice::from_ref(&witness_key)),
            Err(NoteError::BadSignature { .. })
        ));
        // The timestamp is signed: another time under the same signature fails.
        let mut line = note.signatures()[1].clone();
        line.signature[7] ^= 1;
        let mut moved = note.clone();
        moved.add_signature(line).unwrap();
        assert!(matches!(
            moved.verify_known(std::slice::from_ref(&witness_key)),
            Err(NoteError::BadSignature { .. })
        ));
        // The same key as a plain Ed25519 note key has another key ID: the cosignature is
        // not its signature, and the log signature is not a cosignature.
        let as_note_key =
            VerifierKey::new("witness.example/a", KeyType::Ed25519, *witness_key.public()).unwrap();
        assert_ne!(as_note_key.key_id(), witness_key.key_id());
        assert_eq!(note.verify_known(&[as_note_key]), Ok(vec![]));
        assert_eq!(
            witness.cosign(&checkpoint, MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampTooLarge(1 << 63))
        );
    }

    #[test]
    fn timestamps_above_the_limit_or_short_signatures_never_verify() {
        let witness = Cosigner::new("w", &[5; 32]).unwrap();
        let public = *witness.verifier_key().public();
        let checkpoint = Checkpoint::new("o", 1, [0; 32]).unwrap();
        let line = witness.cosign(&checkpoint, MAX_TIMESTAMP).unwrap();
        assert_eq!(
            check(&public, &checkpoint.to_text(), &line.signature),
            Ok(MAX_TIMESTAMP)
        );
        let mut over = line.signature.clone();
        over[0] = 0x80;
        assert_eq!(check(&public, &checkpoint.to_text(), &over), Err(()));
        assert_eq!(
            check(&public, &checkpoint.to_text(), &line.signature[..71]),
            Err(())
        );
        assert_eq!(
            check(
                &public,
                &checkpoint.to_text(),
                &[line.signature.clone(), vec![0]].concat()
            ),
            Err(())
        );
    }
}
