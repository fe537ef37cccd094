//! The voucher secret `s`, its commitment `C` and its nullifier `N`.
//!
//! * `C = Poseidon(s, denomination)`: what the issuer blind-signs and the coordinator
//!   publishes. The denomination is hashed in so that v0.2 can prove "my leaf is worth `d`"
//!   without revealing the leaf, and so that one secret can never back two denominations.
//! * `N = Poseidon(NULLIFIER_DOMAIN, s)`: what v0.2 reveals at redemption. It depends on `s`
//!   only, so a secret is spent once whatever it was committed as; the domain tag in the
//!   first slot keeps it from ever equalling a commitment.
//!
//! Both are plain Poseidon over BN254 so the same values can be recomputed inside the circuit.

use std::fmt;

use ark_ff::PrimeField;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::field::{poseidon2, FieldBytes, Fr, NULLIFIER_DOMAIN};
use super::CryptoError;

/// A voucher's secret `s`. Knowing it is owning the voucher.
///
/// Zeroized on drop. `Fr` is `Copy`, so values handed out by [`VoucherSecret::to_fr`] or
/// [`VoucherSecret::to_bytes`] are the caller's to protect.
#[derive(Clone)]
pub struct VoucherSecret(Fr);

impl VoucherSecret {
    /// A fresh uniformly random secret.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        // 64 bytes reduced mod r: the bias is about 2^-258, unlike reducing 32 bytes.
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let s = Fr::from_be_bytes_mod_order(&wide);
        wide.zeroize();
        Self(s)
    }

    /// Wraps an already-derived field element (see [`super::seed::WalletSeed::voucher_secret`]).
    pub(crate) fn from_fr(s: Fr) -> Self {
        Self(s)
    }

    /// The secret as a field element, e.g. as a witness for the v0.2 prover.
    pub fn to_fr(&self) -> Fr {
        self.0
    }

    /// Canonical encoding, as sent (encrypted) in a v0.1 redemption.
    pub fn to_bytes(&self) -> FieldBytes {
        FieldBytes::from_fr(&self.0)
    }

    /// Parses a canonical encoding; rejects values >= the field modulus.
    pub fn from_bytes(bytes: &FieldBytes) -> Result<Self, CryptoError> {
        bytes.to_fr().map(Self)
    }
}

impl Drop for VoucherSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for VoucherSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VoucherSecret(<redacted>)")
    }
}

/// Voucher commitment `C = Poseidon(s, denomination)`; 64 lowercase hex characters on the wire.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Commitment(pub FieldBytes);

impl Commitment {
    /// Whether `s` and `denomination` open this commitment (constant-time comparison, as
    /// the coordinator checks a secret it was sent).
    pub fn opens_to(&self, s: &VoucherSecret, denomination: u64) -> bool {
        commitment(s, denomination).0 .0.ct_eq(&self.0 .0).into()
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Voucher nullifier `N = Poseidon(NULLIFIER_DOMAIN, s)`; 64 lowercase hex characters on the
/// wire.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Debug,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Nullifier(pub FieldBytes);

impl fmt::Display for Nullifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `C = Poseidon(s, denomination)`.
pub fn commitment(s: &VoucherSecret, denomination: u64) -> Commitment {
    Commitment(FieldBytes::from_fr(&poseidon2(s.0, Fr::from(denomination))))
}

/// `N = Poseidon(NULLIFIER_DOMAIN, s)`.
pub fn nullifier(s: &VoucherSecret) -> Nullifier {
    Nullifier(FieldBytes::from_fr(&poseidon2(
        Fr::from(NULLIFIER_DOMAIN),
        s.0,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn secret(seed: u64) -> VoucherSecret {
        VoucherSecret::random(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn crypto_commitment_is_poseidon_of_secret_and_denomination() {
        let s = VoucherSecret::from_fr(Fr::from(1u64));
        // Poseidon(1, 2): the circomlib anchor, reached through the voucher API.
        assert_eq!(
            commitment(&s, 2).0.to_hex(),
            "115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a"
        );
    }

    #[test]
    fn crypto_commitment_binds_denomination() {
        let s = secret(1);
        let c1 = commitment(&s, 1);
        let c10 = commitment(&s, 10);
        let c100 = commitment(&s, 100);
        assert_ne!(c1, c10);
        assert_ne!(c10, c100);
        assert_ne!(c1, c100);
        assert!(c10.opens_to(&s, 10));
        assert!(!c10.opens_to(&s, 1));
        assert!(!c10.opens_to(&secret(2), 10));
        // Deterministic.
        assert_eq!(commitment(&s, 10), c10);
    }

    #[test]
    fn crypto_nullifier_differs_from_commitment_and_between_secrets() {
        let s = secret(3);
        let n = nullifier(&s);
        assert_ne!(n.0, commitment(&s, 1).0);
        assert_ne!(n.0, commitment(&s, NULLIFIER_DOMAIN).0);
        assert_ne!(n, nullifier(&secret(4)));
        assert_eq!(n, nullifier(&s));
        assert_eq!(
            n.0.to_fr().unwrap(),
            poseidon2(Fr::from(NULLIFIER_DOMAIN), s.to_fr())
        );
    }

    #[test]
    fn crypto_voucher_secret_bytes_roundtrip_and_redaction() {
        let s = secret(5);
        let back = VoucherSecret::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(back.to_fr(), s.to_fr());
        assert_eq!(format!("{s:?}"), "VoucherSecret(<redacted>)");
        assert_eq!(
            VoucherSecret::from_bytes(&FieldBytes([0xff; 32])).map(|_| ()),
            Err(CryptoError::NonCanonicalField)
        );
        assert_ne!(secret(6).to_fr(), secret(7).to_fr());
    }

    #[test]
    fn crypto_commitment_and_nullifier_serde_as_hex() {
        let s = secret(8);
        let c = commitment(&s, 10);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.0.to_hex()));
        assert_eq!(serde_json::from_str::<Commitment>(&json).unwrap(), c);
        let n = nullifier(&s);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Nullifier>(&json).unwrap(), n);
        assert!(serde_json::from_str::<Nullifier>("\"00\"").is_err());
    }
}
