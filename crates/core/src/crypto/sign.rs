//! Ed25519 signatures for receipts, checkpoints and service identities (ed25519-dalek 2).
//!
//! One key may sign many kinds of statements, so every signature is bound to a purpose: the
//! signed bytes are `len(domain) as u16 BE || domain || msg`. A receipt signature can then
//! never be replayed as, say, a checkpoint signature, even when the message bytes coincide.
//! The length prefix makes the framing unambiguous. Verification is `verify_strict`
//! (rejects small-order keys and non-canonical signatures), so a signature has one valid form.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey as DalekSigningKey};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::{hex_array, CryptoError};

/// An Ed25519 signing key. Debug output is redacted; zeroized on drop.
#[derive(Clone)]
pub struct SigningKey(DalekSigningKey);

/// An Ed25519 public key; 64 lowercase hex characters on the wire.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct VerifyingKey(#[serde(with = "hex_array::serde")] pub [u8; 32]);

/// An Ed25519 signature; 128 lowercase hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Signature64(#[serde(with = "hex_array::serde")] pub [u8; 64]);

impl SigningKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self(DalekSigningKey::generate(rng))
    }

    /// From the 32-byte RFC 8032 secret key (seed).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(DalekSigningKey::from_bytes(bytes))
    }

    /// The 32-byte RFC 8032 secret key; the caller is responsible for protecting it.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `msg` for the purpose named by `domain` (e.g. `"smpx/receipt/v1"`).
    ///
    /// # Panics
    /// If `domain` is longer than 65535 bytes. Domains are short constants chosen by the
    /// program, never peer input.
    pub fn sign(&self, domain: &str, msg: &[u8]) -> Signature64 {
        let Some(framed) = frame(domain, msg) else {
            panic!("signature domain longer than 65535 bytes");
        };
        Signature64(self.0.sign(&framed).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl VerifyingKey {
    /// Checks `sig` on `msg` for the purpose `domain`.
    /// [`CryptoError::InvalidKey`] if the key bytes are not a curve point,
    /// [`CryptoError::BadSignature`] for every other failure.
    pub fn verify(&self, domain: &str, msg: &[u8], sig: &Signature64) -> Result<(), CryptoError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| CryptoError::InvalidKey("not an Ed25519 public key"))?;
        let framed = frame(domain, msg).ok_or(CryptoError::BadSignature)?;
        key.verify_strict(&framed, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| CryptoError::BadSignature)
    }

    pub fn to_hex(&self) -> String {
        hex_array::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        hex_array::decode(text).map(Self)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.to_hex())
    }
}

impl fmt::Debug for Signature64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature64({})", hex_array::encode(&self.0))
    }
}

/// `len(domain) as u16 BE || domain || msg`, or `None` if the domain does not fit.
fn frame(domain: &str, msg: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(domain.len()).ok()?;
    let mut framed = Vec::with_capacity(2 + domain.len() + msg.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(domain.as_bytes());
    framed.extend_from_slice(msg);
    Some(framed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;

    /// RFC 8032 §7.1, TEST 1 (empty message).
    const RFC8032_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    #[test]
    fn crypto_ed25519_rfc8032_test_1() {
        let sk = DalekSigningKey::from_bytes(&hex_array::decode::<32>(RFC8032_SK).unwrap());
        assert_eq!(hex::encode(sk.verifying_key().to_bytes()), RFC8032_PK);
        let sig = sk.sign(b"");
        assert_eq!(hex::encode(sig.to_bytes()), RFC8032_SIG);
        sk.verifying_key().verify(b"", &sig).unwrap();
        assert!(sk.verifying_key().verify(b"x", &sig).is_err());

        // The wrapper derives the same public key from the same secret.
        let ours = SigningKey::from_bytes(&hex_array::decode::<32>(RFC8032_SK).unwrap());
        assert_eq!(ours.verifying_key().to_hex(), RFC8032_PK);
        assert_eq!(ours.to_bytes().to_vec(), hex::decode(RFC8032_SK).unwrap());
        // Our signature is over the framed message, so it differs from the raw RFC one.
        assert_ne!(hex::encode(ours.sign("", b"").0), RFC8032_SIG);
    }

    #[test]
    fn crypto_ed25519_domain_separation() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let vk = sk.verifying_key();
        let sig = sk.sign("a", b"receipt");
        vk.verify("a", b"receipt", &sig).unwrap();
        assert_eq!(
            vk.verify("b", b"receipt", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            vk.verify("a", b"receipT", &sig),
            Err(CryptoError::BadSignature)
        );
        // Moving bytes between domain and message is not the same statement.
        let sig_ab = sk.sign("ab", b"c");
        assert_eq!(
            vk.verify("a", b"bc", &sig_ab),
            Err(CryptoError::BadSignature)
        );
        // Another key.
        let other = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        assert_eq!(
            other.verify("a", b"receipt", &sig),
            Err(CryptoError::BadSignature)
        );
        // Tampered signature.
        let mut bad = sig;
        bad.0[0] ^= 1;
        assert_eq!(
            vk.verify("a", b"receipt", &bad),
            Err(CryptoError::BadSignature)
        );
        // It is a plain Ed25519 signature over the documented framing.
        let raw = ed25519_dalek::VerifyingKey::from_bytes(&vk.0).unwrap();
        let framed = [&[0u8, 1][..], b"a", b"receipt"].concat();
        raw.verify(&framed, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .unwrap();
    }

    #[test]
    fn crypto_ed25519_malformed_keys_and_signatures() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        let sig = sk.sign("d", b"m");
        // Roughly half of all y coordinates have no point on edwards25519; take the first.
        let not_a_point = (2u8..=255)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
            .unwrap();
        assert!(matches!(
            VerifyingKey(not_a_point).verify("d", b"m", &sig),
            Err(CryptoError::InvalidKey(_))
        ));
        // Small-order key (the identity) is refused by strict verification.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(VerifyingKey(identity).verify("d", b"m", &sig).is_err());
        assert!(sk
            .verifying_key()
            .verify("d", b"m", &Signature64([0xff; 64]))
            .is_err());
        assert!(VerifyingKey::from_hex("zz").is_err());
        let long_domain = "x".repeat(70_000);
        assert_eq!(
            sk.verifying_key().verify(&long_domain, b"m", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn crypto_ed25519_wire_forms_and_redaction() {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(format!("{sk:?}"), "SigningKey(<redacted>)");
        let restored = SigningKey::from_bytes(&sk.to_bytes());
        assert_eq!(restored.verifying_key(), sk.verifying_key());

        let vk = sk.verifying_key();
        let json = serde_json::to_string(&vk).unwrap();
        assert_eq!(json.len(), 64 + 2);
        assert_eq!(serde_json::from_str::<VerifyingKey>(&json).unwrap(), vk);

        let sig = sk.sign("d", b"m");
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(json.len(), 128 + 2);
        assert_eq!(serde_json::from_str::<Signature64>(&json).unwrap(), sig);
        assert!(serde_json::from_str::<Signature64>("\"abcd\"").is_err());
        // Deterministic signatures (RFC 8032).
        assert_eq!(sk.sign("d", b"m"), sig);
    }
}
