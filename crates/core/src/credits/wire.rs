//! Wire types in Cashu's JSON shape (NUT-00, NUT-03, NUT-12).
//!
//! ```json
//! BlindedMessage  {"amount": 8, "id": "01…", "B_": "02…"}
//! BlindSignature  {"amount": 8, "id": "01…", "C_": "03…", "dleq": {"e": "…", "s": "…"}}
//! Proof           {"amount": 8, "id": "01…", "secret": "…", "C": "02…", "dleq": {"e": "…", "s": "…", "r": "…"}}
//! SwapRequest     {"inputs": [Proof…], "outputs": [BlindedMessage…]}
//! SwapResponse    {"signatures": [BlindSignature…]}   (+ "replayed": true for a repeat)
//! ```
//!
//! Amounts are integers in `ucredit` (one smpx [`Amount`] unit). Unknown fields are refused.
//! A `BlindSignature` without `dleq` is refused (it is optional in NUT-12, mandatory here); a
//! `Proof`'s `dleq` is optional and is stripped before spending ([`Proof::for_spending`]).

use serde::{Deserialize, Serialize};

use super::dleq::DleqProof;
use super::encoding::{BlindingFactor, Challenge, Point, Response, Secret};
use super::keyset::{KeysetId, KeysetKeys};
use super::CreditError;
use crate::Amount;

/// A wallet's blinded output `B'` for a token of `amount` under keyset `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlindedMessage {
    /// A power of two that the keyset has (`GET /v1/keys`); any other is `invalid_amount`.
    #[schema(value_type = u64, minimum = 1)]
    pub amount: Amount,
    /// Keyset id, hex.
    pub id: KeysetId,
    /// `B' = hash_to_curve(secret) + r·G`, compressed point, hex.
    #[serde(rename = "B_")]
    pub blinded_secret: Point,
}

/// The operator's blind signature `C' = k·B'` with its DLEQ proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlindSignature {
    #[schema(value_type = u64)]
    pub amount: Amount,
    #[schema(value_type = String)]
    pub id: KeysetId,
    /// `C'`, compressed point, hex.
    #[serde(rename = "C_")]
    #[schema(value_type = String)]
    pub blind_signature: Point,
    #[schema(value_type = Object)]
    pub dleq: DleqProof,
}

/// A token's DLEQ proof with the wallet's blinding factor, so that whoever receives the token
/// can check it (NUT-12). Never needed by the operator (it is stripped before spending).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofDleq {
    /// 32 bytes, lowercase hex.
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub e: Challenge,
    /// A scalar below the secp256k1 group order, lowercase hex (a larger one is
    /// `invalid_request`).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub s: Response,
    /// A non-zero scalar below the secp256k1 group order, lowercase hex (others are
    /// `invalid_request`).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub r: BlindingFactor,
}

impl ProofDleq {
    /// The `(e, s)` part.
    pub fn proof(&self) -> DleqProof {
        DleqProof {
            e: self.e,
            s: self.s,
        }
    }
}

/// A token: `amount`, keyset `id`, secret `x` and `C = k·hash_to_curve(x)`.
///
/// `Debug` redacts the secret and the blinding factor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// A power of two that the keyset has; any other is `invalid_amount`.
    #[schema(value_type = u64, minimum = 1)]
    pub amount: Amount,
    pub id: KeysetId,
    pub secret: Secret,
    /// `C`, compressed point, hex.
    #[serde(rename = "C")]
    pub signature: Point,
    /// Only between wallets; absent when spending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dleq: Option<ProofDleq>,
}

impl Proof {
    /// `Y = hash_to_curve(secret)`: the token's identity in the spent registry.
    pub fn y(&self) -> Result<Point, CreditError> {
        self.secret.y()
    }

    /// The token as it is sent to the operator: without the DLEQ and its blinding factor `r`,
    /// which would link the token to the blind signature it came from.
    pub fn for_spending(&self) -> Proof {
        Proof {
            dleq: None,
            ..self.clone()
        }
    }

    /// NUT-12 check by whoever receives the token: the DLEQ proves that `C` was made with the
    /// key `keys` publishes for this amount. `keys` must have been checked with
    /// [`KeysetKeys::verify_id`].
    pub fn verify_dleq(&self, keys: &KeysetKeys) -> Result<(), CreditError> {
        if keys.id != self.id {
            return Err(CreditError::SignatureMismatch(
                "token is from another keyset",
            ));
        }
        let dleq = self.dleq.as_ref().ok_or(CreditError::MissingDleq)?;
        let a = keys.key(self.amount)?;
        super::dleq::verify_token(
            a,
            self.secret.as_str().as_bytes(),
            &self.signature,
            &dleq.proof(),
            &dleq.r,
        )
    }
}

/// NUT-03 swap, used for spending: tokens in, blinded change out. The operator charges the
/// difference (the price of what is bought).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// 1 to 1000 tokens ([`super::MAX_INPUTS`]).
    #[schema(min_items = 1, max_items = 1000)]
    pub inputs: Vec<Proof>,
    /// At most 1000 ([`super::MAX_OUTPUTS`]); none is a spend without change.
    #[schema(max_items = 1000)]
    pub outputs: Vec<BlindedMessage>,
}

/// Blind signatures on a request's outputs, in the same order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapResponse {
    pub signatures: Vec<BlindSignature>,
    /// `true` when this request was answered before (the identical request sent again, or
    /// at the same time): the change is the same, but the payment was already made by the
    /// first. A wallet retrying its own spend ignores it; a relay selling capacity for the
    /// payment refuses a repeat, so one payment never buys twice. Absent when `false`
    /// (not part of Cashu's NUT-03).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const PROOF: &str = r#"{"amount":1,"id":"00882760bfa2eb41","secret":"daf4dd00a2b68a0858a80450f52c8a7d2ccf87d375e43e216e0c571f089f63e9","C":"024369d2d22a80ecf78f3937da9d5f30c1b9f74f0c32684d583cca0fa6a61cdcfc","dleq":{"e":"b31e58ac6527f34975ffab13e70a48b6d2b0d35abc4b03f0151f09ee1a9763d4","s":"8fbae004c59e754d71df67e392b6ae4e29293113ddc2ec86592a0431d16306d8","r":"a6d13fcd7a18442e6076f5e1e7c887ad5de40a019824bdfa9fe740d302e8d861"}}"#;

    #[test]
    fn credits_wire_proof_roundtrips_in_cashu_shape() {
        let proof: Proof = serde_json::from_str(PROOF).unwrap();
        assert_eq!(serde_json::to_string(&proof).unwrap(), PROOF);
        let debug = format!("{proof:?}");
        assert!(!debug.contains("daf4dd00"), "{debug}");
        assert!(!debug.contains("a6d13fcd"), "{debug}");
        let spend = serde_json::to_value(proof.for_spending()).unwrap();
        assert!(spend.get("dleq").is_none());
        assert_eq!(spend["secret"], proof.secret.as_str());
    }

    #[test]
    fn credits_wire_is_strict() {
        let mut v: serde_json::Value = serde_json::from_str(PROOF).unwrap();
        v["witness"] = "{}".into();
        assert!(serde_json::from_value::<Proof>(v).is_err());
        let bad_secret = PROOF.replace("daf4dd00", "DAF4DD00");
        assert!(serde_json::from_str::<Proof>(&bad_secret).is_err());
        let off_curve = PROOF.replace(
            "024369d2d22a80ecf78f3937da9d5f30c1b9f74f0c32684d583cca0fa6a61cdcfc",
            &format!("02{}", "00".repeat(32)),
        );
        assert!(serde_json::from_str::<Proof>(&off_curve).is_err());
        // A blind signature must carry its DLEQ proof.
        let no_dleq = r#"{"amount":8,"id":"00882760bfa2eb41","C_":"02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"}"#;
        assert!(serde_json::from_str::<BlindSignature>(no_dleq).is_err());
        let msg = r#"{"amount":8,"id":"00882760bfa2eb41","B_":"02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2"}"#;
        let parsed: BlindedMessage = serde_json::from_str(msg).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), msg);
        assert!(serde_json::from_str::<BlindedMessage>(
            &msg.replace("\"amount\":8", "\"amount\":-8")
        )
        .is_err());
    }
}
