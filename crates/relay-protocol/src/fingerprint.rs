//! The CA fingerprint: the relay's identity in its address.
//!
//! `fingerprint = base64url_nopad(SHA-256(DER of the CA certificate))` — 43 characters, as in
//! SMP's server addresses. It names the *offline* CA, so the relay can replace its online TLS
//! key and certificate (see `smpx_relay_transport::RelayIdentity::rotate_online`) without changing its
//! address.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a fingerprint in its text form (base64url of 32 bytes, no padding).
pub const FINGERPRINT_TEXT_LEN: usize = 43;

/// SHA-256 of the relay's CA certificate (DER). Compared in constant time.
#[derive(Clone, Copy, Debug, Eq)]
pub struct CaFingerprint([u8; 32]);

impl CaFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// From the raw 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for CaFingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for CaFingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for CaFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// Why a fingerprint's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// Not exactly 43 characters.
    #[error("a CA fingerprint is {FINGERPRINT_TEXT_LEN} base64url characters, got {0}")]
    Length(usize),
    /// A character outside the base64url alphabet, padding, or non-canonical trailing bits.
    #[error("a CA fingerprint is base64url without padding")]
    Encoding,
}

impl FromStr for CaFingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != FINGERPRINT_TEXT_LEN {
            return Err(FingerprintError::Length(s.chars().count()));
        }
        // The engine refuses non-canonical trailing bits, so each fingerprint has one text form.
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| FingerprintError::Encoding)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| FingerprintError::Encoding)?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_canonical() {
        let fp = CaFingerprint::of_certificate(b"not really a certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), FINGERPRINT_TEXT_LEN);
        assert_eq!(text.parse::<CaFingerprint>(), Ok(fp));
        // Flip the last character's low bits: non-canonical encodings are refused.
        let mut chars: Vec<char> = text.chars().collect();
        let last = chars[42];
        chars[42] = if last == 'A' { 'B' } else { 'A' };
        let other: String = chars.into_iter().collect();
        match other.parse::<CaFingerprint>() {
            Ok(p) => assert_ne!(p, fp),
            Err(e) => assert_eq!(e, FingerprintError::Encoding),
        }
        assert_eq!(
            "abc".parse::<CaFingerprint>(),
            Err(FingerprintError::Length(3))
        );
        let padded = format!("{}=", &text[..42]);
        assert_eq!(
            padded.parse::<CaFingerprint>(),
            Err(FingerprintError::Encoding)
        );
    }
}
