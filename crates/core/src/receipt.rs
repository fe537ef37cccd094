//! Signed receipts: what a party hands out as proof that it recorded something.
//!
//! A receipt is a body, the signer's Ed25519 key and a signature over the body's JSON
//! encoding under a per-purpose domain, so a receipt of one kind can never pass for another.
//! Verifiers re-encode the body they parsed; our bodies are plain structs, whose JSON field
//! order is fixed by their declaration.

use crate::crypto::sign::{Signature64, SigningKey, VerifyingKey};
use crate::error::{err, ErrorCode, ProtocolError};
use serde::{Deserialize, Serialize};

/// Domain of the coordinator's receipt for a published voucher.
pub const PUBLISH_DOMAIN: &str = "smpx/receipt/publish/v1";
/// Domain of the coordinator's receipt for a redemption, handed to the operator.
pub const REDEMPTION_DOMAIN: &str = "smpx/receipt/redemption/v1";
/// Domain of the operator's receipt for a redemption, handed to the wallet.
pub const OPERATOR_DOMAIN: &str = "smpx/receipt/operator-credit/v1";
/// Domain of the coordinator's signed MMR checkpoints.
pub const CHECKPOINT_DOMAIN: &str = "smpx/checkpoint/mmr/v1";

/// A body signed by `signer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    pub body: T,
    /// Ed25519 public key of the signer, hex.
    #[schema(value_type = String)]
    pub signer: VerifyingKey,
    /// Ed25519 signature, hex.
    #[schema(value_type = String)]
    pub signature: Signature64,
}

impl<T: Serialize> Signed<T> {
    pub fn sign(key: &SigningKey, domain: &str, body: T) -> Result<Self, ProtocolError> {
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| err(ErrorCode::Internal, format!("encoding a receipt: {e}")))?;
        Ok(Signed {
            signature: key.sign(domain, &bytes),
            signer: key.verifying_key(),
            body,
        })
    }

    /// Checks the signature, and that it was made by `expected` (a key learned out of band,
    /// e.g. from `GET /v1/params`): a receipt that merely verifies under its own embedded key
    /// proves nothing.
    pub fn verify(&self, domain: &str, expected: &VerifyingKey) -> Result<(), ProtocolError> {
        if &self.signer != expected {
            return Err(err(
                ErrorCode::BadSignature,
                "receipt signed by an unexpected key",
            ));
        }
        let bytes = serde_json::to_vec(&self.body)
            .map_err(|e| err(ErrorCode::Internal, format!("encoding a receipt: {e}")))?;
        self.signer
            .verify(domain, &bytes, &self.signature)
            .map_err(|_| err(ErrorCode::BadSignature, "receipt signature does not verify"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    struct Body {
        a: u64,
    }

    #[test]
    fn receipt_verifies_only_under_its_domain_signer_and_body() {
        let k = SigningKey::generate();
        let r = Signed::sign(&k, PUBLISH_DOMAIN, Body { a: 1 }).unwrap();
        r.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap();
        assert!(r.verify(REDEMPTION_DOMAIN, &k.verifying_key()).is_err());
        let other = SigningKey::generate();
        assert!(r.verify(PUBLISH_DOMAIN, &other.verifying_key()).is_err());
        let mut tampered = r.clone();
        tampered.body.a = 2;
        assert!(tampered.verify(PUBLISH_DOMAIN, &k.verifying_key()).is_err());
        // Round trip through JSON keeps it valid.
        let back: Signed<Body> = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        back.verify(PUBLISH_DOMAIN, &k.verifying_key()).unwrap();
    }
}
