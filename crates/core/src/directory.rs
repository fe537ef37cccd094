//! What a relay directory signs for others to rely on: **share statements**.
//!
//! A directory measures the relays of each operator ([`crate::rules::measure`]) and evaluates
//! the operator ([`crate::rules::trust`]); once per period it signs, per operator, the share
//! that evaluation gives. A coordinator configured to trust the directory's key pays the
//! operator that share (under its own cap) instead of an administrator's number, and records
//! the statement's digest beside each redemption it cleared with it, so anyone holding the
//! statement can re-derive the clearing.
//!
//! A statement travels as a [`Signed`] body (receipt format 2) under [`SHARE_DOMAIN`]: the
//! signature is over the body's JSON text, unknown body fields are ignored by readers.
//!
//! ```json
//! {"version":2,"payload":"{\"directory\":\"…\",\"operator_id\":\"op-1\",…}","signer":"<hex>","signature":"<hex>"}
//! ```
//!
//! The body carries the evaluation's inputs and each factor, so a reader can check the
//! arithmetic with [`ShareStatement::rederive`] without trusting the directory's
//! multiplication — only its measurements.

pub mod wire;

use crate::crypto::sign::{SigningKey, VerifyingKey};
use crate::error::{err, ErrorCode, ProtocolError};
use crate::receipt::Signed;
use crate::rules::trust::{self, Evaluation, Share};
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain of a directory's signed share statement.
pub const SHARE_DOMAIN: &str = "smpx/directory/share-statement/v1";

/// The length of a share period: one statement per operator per day.
pub const SHARE_PERIOD_SECS: u64 = 86_400;

/// The start of the share period holding `t` (periods are aligned to the unix epoch).
pub fn period_start(t: UnixTime) -> UnixTime {
    t - t % SHARE_PERIOD_SECS
}

/// One operator's share for one period, as a directory evaluated it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareStatement {
    /// The directory's name (informational; the signer key is what a coordinator trusts).
    pub directory: String,
    /// The operator, by the id the coordinator knows it under.
    pub operator_id: String,
    /// The period the share holds for: `[period_start, period_end)`, unix seconds.
    pub period_start: UnixTime,
    pub period_end: UnixTime,
    /// When the directory evaluated the operator (within or just before the period).
    pub evaluated_at: UnixTime,
    /// The evaluation's inputs.
    pub evaluation: Evaluation,
    /// Each factor and the share, in basis points, under `share.cap_bps`.
    pub share: Share,
}

impl ShareStatement {
    /// A statement for the period holding `now`, evaluated at `now`.
    pub fn new(
        directory: &str,
        operator_id: &str,
        evaluation: Evaluation,
        cap_bps: u32,
        now: UnixTime,
    ) -> ShareStatement {
        let start = period_start(now);
        let share = trust::share(&evaluation, cap_bps);
        ShareStatement {
            directory: directory.to_string(),
            operator_id: operator_id.to_string(),
            period_start: start,
            period_end: start + SHARE_PERIOD_SECS,
            evaluated_at: now,
            evaluation,
            share,
        }
    }

    /// Signs the statement with the directory's key.
    pub fn sign(self, key: &SigningKey) -> Result<Signed<ShareStatement>, ProtocolError> {
        Signed::sign(key, SHARE_DOMAIN, self)
    }

    /// Whether the statement's factors and share are what [`trust::share`] gives for its
    /// evaluation under its cap.
    pub fn rederive(&self) -> bool {
        let cap = u32::try_from(self.share.cap_bps).unwrap_or(u32::MAX);
        trust::share(&self.evaluation, cap) == self.share
    }

    /// Whether the statement holds at `now`.
    pub fn holds_at(&self, now: UnixTime) -> bool {
        self.period_start <= now && now < self.period_end
    }
}

/// Why a coordinator refuses a share statement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatementRefusal {
    #[error("the statement is signed by a key this coordinator does not trust")]
    UntrustedSigner,
    #[error("the statement's signature does not verify")]
    BadSignature,
    #[error("the statement's share is not what its evaluation gives")]
    Arithmetic,
    #[error("the statement's period is malformed")]
    Period,
}

impl From<StatementRefusal> for ProtocolError {
    fn from(r: StatementRefusal) -> ProtocolError {
        err(ErrorCode::StatementRefused, r.to_string())
    }
}

/// Checks a statement against the directory keys a coordinator trusts: a trusted signer, a
/// good signature, consistent arithmetic and a sane period. Whether it *holds* now, and
/// whether it is newer than the one on record, is the caller's comparison.
pub fn check_statement<'a>(
    statement: &'a Signed<ShareStatement>,
    trusted: &[VerifyingKey],
) -> Result<&'a ShareStatement, StatementRefusal> {
    if !trusted.contains(&statement.signer) {
        return Err(StatementRefusal::UntrustedSigner);
    }
    let body = statement
        .verify(SHARE_DOMAIN, &statement.signer)
        .map_err(|_| StatementRefusal::BadSignature)?;
    if !body.rederive() {
        return Err(StatementRefusal::Arithmetic);
    }
    if body.period_end <= body.period_start
        || body.period_end - body.period_start > 31 * SHARE_PERIOD_SECS
    {
        return Err(StatementRefusal::Period);
    }
    Ok(body)
}

/// The digest a ledger entry records to name the statement that set a share: SHA-256 of the
/// domain, a zero byte and the signed payload, hex.
pub fn statement_digest(statement: &Signed<ShareStatement>) -> String {
    let mut h = Sha256::new();
    h.update(SHARE_DOMAIN.as_bytes());
    h.update([0u8]);
    h.update(statement.payload().as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn statement() -> ShareStatement {
        ShareStatement::new(
            "dir-1",
            "op-1",
            Evaluation {
                verified_identity: true,
                time_on_network_secs: 365 * 86_400,
                relay_uptimes: vec![0.995],
                probation_uptimes: Vec::new(),
            },
            7000,
            1_800_000_000,
        )
    }

    #[test]
    fn a_statement_holds_for_its_day_and_rederives() {
        let s = statement();
        assert_eq!(s.share.share_bps, 6965);
        assert_eq!(s.period_start, 1_800_000_000 - 1_800_000_000 % 86_400);
        assert!(s.holds_at(1_800_000_000));
        assert!(!s.holds_at(s.period_end));
        assert!(s.rederive());
    }

    #[test]
    fn only_trusted_good_consistent_statements_pass() {
        let dir = key(1);
        let signed = statement().sign(&dir).unwrap();
        let trusted = [dir.verifying_key()];
        assert_eq!(
            check_statement(&signed, &trusted).unwrap().operator_id,
            "op-1"
        );
        // Another directory's key.
        assert_eq!(
            check_statement(&signed, &[key(2).verifying_key()]),
            Err(StatementRefusal::UntrustedSigner)
        );
        // A share the evaluation does not give, signed honestly: still refused.
        let mut inflated = statement();
        inflated.share.share_bps = 7000;
        let signed = inflated.sign(&dir).unwrap();
        assert_eq!(
            check_statement(&signed, &trusted),
            Err(StatementRefusal::Arithmetic)
        );
        // A signature by another key claiming to be the trusted one.
        let mut forged = statement().sign(&key(2)).unwrap();
        forged.signer = dir.verifying_key();
        assert_eq!(
            check_statement(&forged, &trusted),
            Err(StatementRefusal::BadSignature)
        );
    }

    /// Golden vector: `testdata/share_statement.json` (never rewritten by a test). The
    /// directory's secret key, the statement as it travels and its digest. To add a vector,
    /// sign a statement with a fixed key and write its `serde_json::to_string` here.
    const GOLDEN: &str = include_str!("testdata/share_statement.json");

    #[test]
    fn share_statement_golden_vector() {
        let v: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
        let secret: [u8; 32] = hex::decode(v["directory_secret"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_bytes(&secret);
        let wire = v["statement"].as_str().unwrap();
        // Signing the same statement gives the same bytes (Ed25519 is deterministic).
        let signed = statement().sign(&key).unwrap();
        assert_eq!(serde_json::to_string(&signed).unwrap(), wire);
        // The stored bytes parse, verify under the key and rederive.
        let parsed: Signed<ShareStatement> = serde_json::from_str(wire).unwrap();
        assert_eq!(
            check_statement(&parsed, &[key.verifying_key()]).unwrap(),
            &statement()
        );
        assert_eq!(statement_digest(&parsed), v["digest"].as_str().unwrap());
    }

    #[test]
    fn the_digest_names_the_signed_bytes() {
        let dir = key(1);
        let a = statement().sign(&dir).unwrap();
        let b = statement().sign(&dir).unwrap();
        assert_eq!(statement_digest(&a), statement_digest(&b));
        let mut other = statement();
        other.operator_id = "op-2".into();
        assert_ne!(
            statement_digest(&a),
            statement_digest(&other.sign(&dir).unwrap())
        );
        assert_eq!(statement_digest(&a).len(), 64);
    }
}
