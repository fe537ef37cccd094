//! v0.1 redemption: the envelope a wallet seals to the coordinator (seed 003, v0.1).
//!
//! The wallet reveals `(C, s, denomination)` and names the operator it redeems at, encrypted
//! with HPKE (RFC 9180) to the coordinator's published key, and hands the envelope to that
//! operator, who forwards it. The operator learns nothing about the voucher; the coordinator
//! checks `C = H(s, denomination)` and that the forwarding operator is the one named inside,
//! so an envelope replayed through another operator is refused.

use crate::crypto::envelope::{self, Envelope, HpkePublicKey, HpkeSecretKey};
use crate::crypto::field::FieldBytes;
use crate::crypto::voucher::{commitment, Commitment, VoucherSecret};
use crate::error::{err, ErrorCode, ProtocolError};
use serde::{Deserialize, Serialize};

/// HPKE `info` for v0.1 redemption envelopes.
pub const ENVELOPE_INFO_V1: &[u8] = b"smpx/v0.1/redeem";

/// Redemption protocol version 1 (Chaumian, the coordinator sees `C`).
pub const PROTOCOL_V1: u32 = 1;
/// v0.2: a Groth16 proof of membership with a nullifier (`smpx-zk`).
pub const PROTOCOL_V2: u32 = 2;

/// What the envelope carries. Secret: never logged, never stored by the coordinator.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionPayloadV1 {
    pub commitment: Commitment,
    pub secret: FieldBytes,
    pub denomination: u64,
    pub operator_id: String,
}

impl std::fmt::Debug for RedemptionPayloadV1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedemptionPayloadV1")
            .field("commitment", &self.commitment)
            .field("secret", &"<redacted>")
            .field("denomination", &self.denomination)
            .field("operator_id", &self.operator_id)
            .finish()
    }
}

/// Seals a v0.1 redemption of the voucher `(s, denomination)` at `operator_id`.
pub fn seal_v1(
    coordinator: &HpkePublicKey,
    secret: &VoucherSecret,
    denomination: u64,
    operator_id: &str,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<Envelope, ProtocolError> {
    let payload = RedemptionPayloadV1 {
        commitment: commitment(secret, denomination),
        secret: secret.to_bytes(),
        denomination,
        operator_id: operator_id.to_owned(),
    };
    let plaintext = serde_json::to_vec(&payload)
        .map_err(|e| err(ErrorCode::Internal, format!("encoding the envelope: {e}")))?;
    envelope::seal(coordinator, ENVELOPE_INFO_V1, &[], &plaintext, rng)
        .map_err(|e| err(ErrorCode::Internal, format!("sealing the envelope: {e}")))
}

/// Opens an envelope and checks that the secret opens the commitment. Does not check the
/// operator: the caller compares `operator_id` with who forwarded it.
pub fn open_v1(sk: &HpkeSecretKey, env: &Envelope) -> Result<RedemptionPayloadV1, ProtocolError> {
    let plaintext = envelope::open(sk, ENVELOPE_INFO_V1, &[], env)
        .map_err(|_| err(ErrorCode::InvalidEnvelope, "the envelope does not decrypt"))?;
    let payload: RedemptionPayloadV1 = serde_json::from_slice(&plaintext).map_err(|_| {
        err(
            ErrorCode::InvalidEnvelope,
            "the envelope content is malformed",
        )
    })?;
    let secret = VoucherSecret::from_bytes(&payload.secret).map_err(|_| {
        err(
            ErrorCode::InvalidEnvelope,
            "the secret is not a field element",
        )
    })?;
    if !payload.commitment.opens_to(&secret, payload.denomination) {
        return Err(err(
            ErrorCode::CommitmentMismatch,
            "the secret does not open the commitment for this denomination",
        ));
    }
    Ok(payload)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn envelope_roundtrip_and_checks() {
        let sk = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        let s = VoucherSecret::random(&mut rand::thread_rng());
        let env = seal_v1(&sk.public_key(), &s, 10, "op-1", &mut rand::rngs::OsRng).unwrap();
        let p = open_v1(&sk, &env).unwrap();
        assert_eq!(p.operator_id, "op-1");
        assert_eq!(p.commitment, commitment(&s, 10));
        assert!(
            !format!("{p:?}").contains(&p.secret.to_hex()),
            "Debug must not print s"
        );

        // Another coordinator key cannot open it.
        let other = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(
            open_v1(&other, &env).unwrap_err().code,
            ErrorCode::InvalidEnvelope
        );

        // A payload whose secret does not open C.
        let wrong = RedemptionPayloadV1 {
            commitment: commitment(&s, 10),
            secret: s.to_bytes(),
            denomination: 100,
            operator_id: "op-1".into(),
        };
        let pt = serde_json::to_vec(&wrong).unwrap();
        let env2 = envelope::seal(
            &sk.public_key(),
            ENVELOPE_INFO_V1,
            &[],
            &pt,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        assert_eq!(
            open_v1(&sk, &env2).unwrap_err().code,
            ErrorCode::CommitmentMismatch
        );

        // Garbage that decrypts but is not a payload.
        let env3 = envelope::seal(
            &sk.public_key(),
            ENVELOPE_INFO_V1,
            &[],
            b"{}",
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        assert_eq!(
            open_v1(&sk, &env3).unwrap_err().code,
            ErrorCode::InvalidEnvelope
        );
    }
}
