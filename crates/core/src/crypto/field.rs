//! BN254 scalar field elements and the circom-compatible Poseidon hash.
//!
//! Commitments and nullifiers live in the BN254 scalar field because v0.2 proves statements
//! about them in a Groth16 circuit over BN254. The hash computed here must be bit-for-bit the
//! one constrained inside that circuit, so we use circomlib's Poseidon parameters (through
//! `light-poseidon`'s `new_circom`), not arkworks' own sponge, whose constants and state layout
//! differ. The anchor test below pins the circomlib vector `Poseidon([1, 2])`.
//!
//! [`FieldBytes`] is the one wire form of a field element: 32 bytes, big-endian, canonical
//! (strictly below the modulus). Accepting non-canonical encodings would let `x` and `x + p`
//! name the same element, e.g. two spellings of one nullifier.

use std::cell::RefCell;
use std::fmt;

use ark_ff::{BigInt, PrimeField};
use light_poseidon::{Poseidon, PoseidonHasher};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{hex_array, CryptoError};

pub use ark_bn254::Fr;

/// Domain tag that separates nullifiers from commitments: `N = Poseidon(NULLIFIER_DOMAIN, s)`
/// while `C = Poseidon(s, denomination)`.
///
/// The value is the big-endian integer encoding of the ASCII bytes `b"smpx/nf1"` ("nullifier,
/// version 1"). It is a `u64` (not a longer string) so that the v0.2 circuit can embed it as a
/// small constant; it is far larger than any denomination, and it sits in the *first* Poseidon
/// input where commitments carry the secret.
pub const NULLIFIER_DOMAIN: u64 = u64::from_be_bytes(*b"smpx/nf1");

/// Canonical big-endian encoding of a BN254 scalar.
///
/// Serialized as 64 lowercase hex characters. `Ord` is numeric order (big-endian bytes).
/// The field is public so that callers can hold raw bytes, which is why [`FieldBytes::to_fr`]
/// re-checks canonicity; [`FieldBytes::from_hex`] and deserialization check it too.
///
/// Its OpenAPI schema (a pattern below the modulus) is in [`crate::schema`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldBytes(pub [u8; 32]);

impl FieldBytes {
    /// Canonical encoding of `x`.
    pub fn from_fr(x: &Fr) -> Self {
        // `BigInt` limbs are little-endian u64s; write them out most significant first.
        let limbs = x.into_bigint().0;
        let mut out = [0u8; 32];
        for (i, limb) in limbs.iter().enumerate() {
            let end = 32 - 8 * i;
            out[end - 8..end].copy_from_slice(&limb.to_be_bytes());
        }
        Self(out)
    }

    /// The field element, or [`CryptoError::NonCanonicalField`] if the bytes are >= the
    /// modulus (they would otherwise silently wrap).
    pub fn to_fr(&self) -> Result<Fr, CryptoError> {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let end = 32 - 8 * i;
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.0[end - 8..end]);
            *limb = u64::from_be_bytes(word);
        }
        Fr::from_bigint(BigInt::new(limbs)).ok_or(CryptoError::NonCanonicalField)
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex_array::encode(&self.0)
    }

    /// Parses 64 lowercase hex characters of a canonical field element.
    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let bytes = Self(hex_array::decode::<32>(text)?);
        bytes.to_fr()?;
        Ok(bytes)
    }
}

impl From<Fr> for FieldBytes {
    fn from(x: Fr) -> Self {
        Self::from_fr(&x)
    }
}

impl fmt::Debug for FieldBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FieldBytes({})", self.to_hex())
    }
}

impl fmt::Display for FieldBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for FieldBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for FieldBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// circomlib `Poseidon([a, b])` over BN254 (t = 3, x^5 S-box, 8 full / 57 partial rounds).
pub fn poseidon2(a: Fr, b: Fr) -> Fr {
    // A new hasher allocates and converts ~200 round constants; Merkle-tree maintenance
    // hashes in tight loops, so each thread builds one and reuses it.
    thread_local! {
        static HASHER: RefCell<Poseidon<Fr>> = RefCell::new(circom_hasher_2());
    }
    HASHER.with(|hasher| match hasher.borrow_mut().hash(&[a, b]) {
        Ok(h) => h,
        // The hasher was built for exactly two inputs and we pass exactly two.
        Err(e) => unreachable!("Poseidon arity mismatch: {e}"),
    })
}

fn circom_hasher_2() -> Poseidon<Fr> {
    match Poseidon::<Fr>::new_circom(2) {
        Ok(h) => h,
        // circom parameters exist for 1..=12 inputs; 2 is a compile-time constant.
        Err(e) => unreachable!("circom Poseidon parameters for 2 inputs: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ark_ff::{AdditiveGroup, BigInteger, Field};

    /// circomlib / circomlibjs: poseidon([1, 2]).
    const POSEIDON_1_2: &str = "115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a";
    /// BN254 scalar field modulus r, big-endian.
    const MODULUS: &str = "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001";

    #[test]
    fn crypto_poseidon2_matches_circomlib_vector() {
        let h = poseidon2(Fr::from(1u64), Fr::from(2u64));
        assert_eq!(FieldBytes::from_fr(&h).to_hex(), POSEIDON_1_2);
        // Argument order matters (it is a hash of a sequence, not a set).
        assert_ne!(poseidon2(Fr::from(2u64), Fr::from(1u64)), h);
        // The cached per-thread hasher leaves no state behind between calls.
        assert_eq!(poseidon2(Fr::from(1u64), Fr::from(2u64)), h);
    }

    #[test]
    fn crypto_field_modulus_constant_is_the_bn254_scalar_modulus() {
        let modulus_from_ark = hex::encode(<Fr as PrimeField>::MODULUS.to_bytes_be());
        assert_eq!(modulus_from_ark, MODULUS);
    }

    #[test]
    fn crypto_field_bytes_rejects_modulus_and_above() {
        let modulus = hex_array::decode::<32>(MODULUS).unwrap();
        assert_eq!(
            FieldBytes(modulus).to_fr(),
            Err(CryptoError::NonCanonicalField)
        );
        assert_eq!(
            FieldBytes::from_hex(MODULUS),
            Err(CryptoError::NonCanonicalField)
        );
        let mut above = modulus;
        above[31] += 1;
        assert_eq!(
            FieldBytes(above).to_fr(),
            Err(CryptoError::NonCanonicalField)
        );
        assert_eq!(
            FieldBytes([0xff; 32]).to_fr(),
            Err(CryptoError::NonCanonicalField)
        );
        let json = format!("\"{MODULUS}\"");
        assert!(serde_json::from_str::<FieldBytes>(&json).is_err());

        // r - 1 is the largest canonical value, and it is -1 in the field.
        let mut below = modulus;
        below[31] -= 1;
        assert_eq!(FieldBytes(below).to_fr().unwrap(), -Fr::ONE);
    }

    #[test]
    fn crypto_field_bytes_hex_and_serde_roundtrip() {
        for x in [
            Fr::ZERO,
            Fr::ONE,
            -Fr::ONE,
            Fr::from(u64::MAX),
            poseidon2(Fr::from(7u64), Fr::from(9u64)),
        ] {
            let b = FieldBytes::from_fr(&x);
            assert_eq!(b.to_fr().unwrap(), x);
            assert_eq!(FieldBytes::from_hex(&b.to_hex()).unwrap(), b);
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(json, format!("\"{}\"", b.to_hex()));
            assert_eq!(serde_json::from_str::<FieldBytes>(&json).unwrap(), b);
        }
        // Big-endian: 1 is the last byte, and byte order is numeric order.
        let one = FieldBytes::from_fr(&Fr::ONE);
        assert_eq!(one.0[31], 1);
        assert!(one < FieldBytes::from_fr(&Fr::from(256u64)));
        assert_eq!(format!("{one:?}"), format!("FieldBytes({})", one.to_hex()));
    }

    #[test]
    fn crypto_field_bytes_from_hex_rejects_garbage() {
        for bad in [
            "",
            "00",
            "zz",
            &"0".repeat(63),
            &"0".repeat(65),
            &"A".repeat(64),
        ] {
            assert!(matches!(
                FieldBytes::from_hex(bad),
                Err(CryptoError::InvalidEncoding(_))
            ));
        }
    }

    #[test]
    fn crypto_nullifier_domain_is_the_documented_tag() {
        assert_eq!(NULLIFIER_DOMAIN.to_be_bytes(), *b"smpx/nf1");
    }
}
