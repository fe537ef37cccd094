//! Cryptographic compositions used by every smpx role.
//!
//! This module owns the *choice and wiring* of primitives, never the primitives themselves:
//! each one comes from a vetted crate and is pinned to a published standard, and every
//! submodule tests itself against that standard's own vectors.
//!
//! | submodule | what | standard / crate |
//! |---|---|---|
//! | [`field`] | BN254 scalars and circom-compatible Poseidon | `light-poseidon` (circom parameters) |
//! | [`voucher`] | voucher secret `s`, commitment `C`, nullifier `N` | Poseidon over BN254 |
//! | [`seed`] | wallet seed and deterministic voucher secrets | BIP-39 + HKDF-SHA256 |
//! | [`blind`] | issuer blind signatures over commitments | RFC 9474 RSABSSA-SHA384-PSS-Randomized |
//! | [`envelope`] | encryption to the coordinator | RFC 9180 HPKE base mode, X25519 / HKDF-SHA256 / ChaCha20Poly1305 |
//! | [`sign`] | receipts and service identities | Ed25519 (RFC 8032), domain-separated |
//!
//! Wire encodings are fixed here so that every crate writes the same bytes the same way:
//! 32-byte values (field elements, keys, hashes) are **lowercase hex**, exactly 64 characters;
//! variable-length byte strings are **base64url without padding**. Decoders accept only the
//! canonical form, so a value has exactly one textual representation (it can be compared,
//! indexed and hashed as text without surprises).

pub mod blind;
pub mod envelope;
pub mod field;
pub mod seed;
pub mod sign;
pub mod voucher;

pub use blind::{
    BlindSignature, BlindedMessage, BlindingState, IssuerPublicKey, IssuerSecretKey,
    VoucherSignature,
};
pub use envelope::{open, seal, Envelope, HpkePublicKey, HpkeSecretKey};
pub use field::{poseidon2, FieldBytes, Fr, NULLIFIER_DOMAIN};
pub use seed::WalletSeed;
pub use sign::{Signature64, SigningKey, VerifyingKey};
pub use voucher::{commitment, nullifier, Commitment, Nullifier, VoucherSecret};

/// Everything that can go wrong in this module, phrased for whoever sent the bad input.
///
/// Errors never carry secret material. They distinguish "your bytes are malformed"
/// ([`CryptoError::InvalidEncoding`]) from "well-formed but cryptographically wrong"
/// ([`CryptoError::BadSignature`], [`CryptoError::Decrypt`]) so that services can map them to
/// different stable error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A recovery phrase that is not a valid BIP-39 English mnemonic; the text says why.
    #[error("invalid recovery phrase: {0}")]
    InvalidMnemonic(&'static str),
    /// Bytes or text that do not have the expected shape; the text names what was expected.
    #[error("invalid encoding: {0}")]
    InvalidEncoding(&'static str),
    /// A 32-byte value that is not the canonical encoding of a BN254 scalar (it is >= the
    /// field modulus), so two different byte strings could name the same element.
    #[error("not a canonical BN254 field element: value must be below the field modulus")]
    NonCanonicalField,
    /// A signature that does not verify for this key, message and purpose.
    #[error("signature does not verify")]
    BadSignature,
    /// The blind-signature protocol could not proceed: the blinded message or blind signature
    /// does not fit this issuer key (wrong length or not below the modulus).
    #[error("blind signature step failed: input does not fit this issuer key")]
    BlindSign,
    /// An envelope that does not open with this key, `info` and `aad` (wrong recipient, wrong
    /// context, or tampered / truncated ciphertext).
    #[error("envelope does not decrypt with this key and context")]
    Decrypt,
    /// A key that cannot be used; the text says why.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}

/// Base64url without padding: the wire encoding for variable-length byte strings.
pub mod b64 {
    use super::CryptoError;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    /// Encodes `bytes` as base64url without padding.
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes canonical base64url without padding. Padding, the standard alphabet, whitespace
    /// and non-zero trailing bits are rejected, so every byte string has exactly one encoding.
    pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CryptoError::InvalidEncoding("expected base64url without padding"))
    }

    /// `#[serde(with = "smpx_core::crypto::b64::serde")]` for `Vec<u8>` fields.
    pub mod serde {
        use ::serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::encode(bytes))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            super::decode(&text).map_err(::serde::de::Error::custom)
        }
    }
}

/// Lowercase hex for fixed-size byte arrays (32-byte values on the wire, 64-byte signatures).
pub mod hex_array {
    use super::CryptoError;

    /// Encodes as lowercase hex.
    pub fn encode<const N: usize>(bytes: &[u8; N]) -> String {
        hex::encode(bytes)
    }

    /// Decodes exactly `2 * N` lowercase hex characters. Uppercase is rejected so that each
    /// value has a single textual form.
    pub fn decode<const N: usize>(text: &str) -> Result<[u8; N], CryptoError> {
        let well_formed = text.len() == 2 * N
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(CryptoError::InvalidEncoding(match N {
                32 => "expected 64 lowercase hex characters",
                64 => "expected 128 lowercase hex characters",
                _ => "expected lowercase hex of the exact length",
            }));
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out)
            .map_err(|_| CryptoError::InvalidEncoding("expected lowercase hex"))?;
        Ok(out)
    }

    /// `#[serde(with = "smpx_core::crypto::hex_array::serde")]` for `[u8; N]` fields.
    pub mod serde {
        use ::serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer, const N: usize>(
            bytes: &[u8; N],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.serialize_str(&super::encode(bytes))
        }

        pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
            d: D,
        ) -> Result<[u8; N], D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            super::decode(&text).map_err(::serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn crypto_b64_roundtrip_and_canonical() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let text = b64::encode(&bytes);
            assert!(!text.contains('='));
            assert_eq!(b64::decode(&text).unwrap(), bytes);
        }
        // URL-safe alphabet, not the standard one.
        assert_eq!(b64::encode(&[0xfb, 0xff]), "-_8");
        assert!(b64::decode("+/8").is_err());
        // Padding and non-canonical trailing bits are refused.
        assert!(b64::decode("AA==").is_err());
        assert!(b64::decode("AB").is_err());
    }

    #[test]
    fn crypto_b64_and_hex_reject_garbage_without_panicking() {
        for garbage in ["", "!", "a b", "é", "A", "AAAAA", "\u{0}\u{0}", "zz"] {
            let _ = b64::decode(garbage);
            assert!(hex_array::decode::<32>(garbage).is_err());
        }
        assert!(b64::decode("*").is_err());
        assert!(b64::decode("A").is_err());
    }

    #[test]
    fn crypto_hex_array_is_strict() {
        let bytes = [0xabu8; 32];
        let text = hex_array::encode(&bytes);
        assert_eq!(text, "ab".repeat(32));
        assert_eq!(hex_array::decode::<32>(&text).unwrap(), bytes);
        assert!(hex_array::decode::<32>(&text.to_uppercase()).is_err());
        assert!(hex_array::decode::<32>(&text[..62]).is_err());
        assert!(hex_array::decode::<32>(&format!("{text}00")).is_err());
        assert!(hex_array::decode::<32>(&format!("0x{}", &text[2..])).is_err());
    }

    #[test]
    fn crypto_error_messages_name_the_problem() {
        let e = CryptoError::InvalidEncoding("expected 64 lowercase hex characters");
        assert_eq!(
            e.to_string(),
            "invalid encoding: expected 64 lowercase hex characters"
        );
    }
}
