//! NUT-00 blind Diffie–Hellman key exchange (BDHKE) on secp256k1.
//!
//! ```text
//! Y  = hash_to_curve(x)          the token's point (x: the secret)
//! B' = Y + r·G                   wallet blinds with r
//! C' = k·B'                      operator signs with the key k of the amount (K = k·G)
//! C  = C' − r·K                  wallet unblinds: C = k·Y
//! C == k·hash_to_curve(x)        operator verifies a token
//! ```
//!
//! `hash_to_curve` is NUT-00's own (not RFC 9380): with
//! `h = SHA-256("Secp256k1_HashToCurve_Cashu_" ‖ x)`, try `02 ‖ SHA-256(h ‖ counter_le32)`
//! for `counter = 0, 1, …` until it decodes as a compressed point.

use k256::Scalar;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::encoding::{BlindingFactor, Point};
use super::CreditError;

/// NUT-00's domain separator for `hash_to_curve`.
pub const DOMAIN_SEPARATOR: &[u8] = b"Secp256k1_HashToCurve_Cashu_";

/// NUT-00 `hash_to_curve(message)`.
pub fn hash_to_curve(message: &[u8]) -> Result<Point, CreditError> {
    let msg_hash = Sha256::new()
        .chain_update(DOMAIN_SEPARATOR)
        .chain_update(message)
        .finalize();
    let mut candidate = [0u8; 33];
    candidate[0] = 0x02;
    for counter in 0u32..(1 << 16) {
        let h = Sha256::new()
            .chain_update(msg_hash)
            .chain_update(counter.to_le_bytes())
            .finalize();
        candidate[1..].copy_from_slice(&h);
        if let Ok(point) = Point::from_bytes(&candidate) {
            return Ok(point);
        }
    }
    Err(CreditError::HashToCurve)
}

/// Wallet: `B' = hash_to_curve(x) + r·G`.
pub fn blind(secret: &[u8], r: &BlindingFactor) -> Result<Point, CreditError> {
    let y = hash_to_curve(secret)?;
    blind_point(&y, r)
}

/// Wallet: `B' = Y + r·G` for an already hashed `Y`.
pub fn blind_point(y: &Point, r: &BlindingFactor) -> Result<Point, CreditError> {
    y.add(&Point::mul_generator(r.scalar())?)
}

/// Operator: `C' = k·B'`.
pub fn sign(k: &Scalar, blinded: &Point) -> Result<Point, CreditError> {
    blinded.mul(k)
}

/// Wallet: `C = C' − r·K`.
pub fn unblind(
    blind_signature: &Point,
    r: &BlindingFactor,
    public_key: &Point,
) -> Result<Point, CreditError> {
    blind_signature.sub(&public_key.mul(r.scalar())?)
}

/// Operator: does `C == k·hash_to_curve(x)`?
pub fn verify(k: &Scalar, secret: &[u8], signature: &Point) -> Result<bool, CreditError> {
    let y = hash_to_curve(secret)?;
    Ok(verify_point(k, &y, signature))
}

/// Operator: does `C == k·Y` for an already hashed `Y`? Compares encodings in constant time.
pub fn verify_point(k: &Scalar, y: &Point, signature: &Point) -> bool {
    match y.mul(k) {
        Ok(expected) => expected.as_bytes().ct_eq(signature.as_bytes()).into(),
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use k256::elliptic_curve::PrimeField;
    use k256::FieldBytes;
    use serde::Deserialize;

    const NUT00: &str = include_str!("testdata/nut00.json");

    #[derive(Deserialize)]
    struct Vectors {
        hash_to_curve: Vec<HashToCurve>,
        blinded_messages: Vec<Blinded>,
        blind_signatures: Vec<Signed>,
    }
    #[derive(Deserialize)]
    struct HashToCurve {
        message: String,
        point: String,
    }
    #[derive(Deserialize)]
    struct Blinded {
        x: String,
        r: String,
        #[serde(rename = "B_")]
        b: String,
    }
    #[derive(Deserialize)]
    struct Signed {
        k: String,
        #[serde(rename = "B_")]
        b: String,
        #[serde(rename = "C_")]
        c: String,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(NUT00).unwrap()
    }

    fn scalar(text: &str) -> Scalar {
        let bytes: [u8; 32] = hex::decode(text).unwrap().try_into().unwrap();
        Option::from(Scalar::from_repr(FieldBytes::from(bytes))).unwrap()
    }

    #[test]
    fn credits_nut00_hash_to_curve_vectors() {
        let v = vectors();
        assert_eq!(v.hash_to_curve.len(), 3);
        for t in v.hash_to_curve {
            let msg = hex::decode(&t.message).unwrap();
            assert_eq!(
                hash_to_curve(&msg).unwrap().to_hex(),
                t.point,
                "{}",
                t.message
            );
        }
    }

    #[test]
    fn credits_nut00_blinded_message_vectors() {
        let v = vectors();
        assert_eq!(v.blinded_messages.len(), 2);
        for t in v.blinded_messages {
            // NUT-00 vectors hash the secret's raw bytes here (x is "a hex encoded byte array").
            let x = hex::decode(&t.x).unwrap();
            let r = BlindingFactor::from_hex(&t.r).unwrap();
            assert_eq!(blind(&x, &r).unwrap().to_hex(), t.b);
        }
    }

    #[test]
    fn credits_nut00_blind_signature_vectors() {
        let v = vectors();
        assert_eq!(v.blind_signatures.len(), 2);
        for t in v.blind_signatures {
            let b = Point::from_hex(&t.b).unwrap();
            assert_eq!(sign(&scalar(&t.k), &b).unwrap().to_hex(), t.c);
        }
    }

    #[test]
    fn credits_bdhke_roundtrip_and_forgery() {
        let mut rng = rand::rngs::OsRng;
        let k = <Scalar as k256::elliptic_curve::Field>::random(&mut rng);
        let public = Point::mul_generator(&k).unwrap();
        let secret = b"e2e2a2f0ad4f6b7c1f4a0c2f1b3e5d7a9c8e6f4a2b0d1c3e5f7a9b8c6d4e2f0a1";
        let r = BlindingFactor::random(&mut rng);
        let b = blind(secret, &r).unwrap();
        let c_ = sign(&k, &b).unwrap();
        let c = unblind(&c_, &r, &public).unwrap();
        assert!(verify(&k, secret, &c).unwrap());
        // The blind signature itself is not a token signature; another key, another secret
        // or a wrong blinding factor fail.
        assert!(!verify(&k, secret, &c_).unwrap());
        assert!(!verify(&(k + Scalar::ONE), secret, &c).unwrap());
        assert!(!verify(&k, b"another secret", &c).unwrap());
        let wrong_r = BlindingFactor::random(&mut rng);
        let c_wrong = unblind(&c_, &wrong_r, &public).unwrap();
        assert!(!verify(&k, secret, &c_wrong).unwrap());
    }
}
