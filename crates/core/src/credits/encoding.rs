//! Values that cross the wire, each with exactly one textual form.
//!
//! | type | what | wire form |
//! |---|---|---|
//! | [`Point`] | a secp256k1 point (`B_`, `C_`, `C`, public keys) | 33-byte compressed SEC1, 66 lowercase hex characters |
//! | [`Secret`] | a token's secret `x` | 64 lowercase hex characters (32 bytes), hashed as those 64 ASCII bytes |
//! | [`BlindingFactor`] | the wallet's `r` | 32-byte big-endian scalar, non-zero and below the group order, lowercase hex |
//! | [`Challenge`] | DLEQ `e` (a SHA-256 output) | 32 bytes, lowercase hex |
//! | [`Response`] | DLEQ `s` | 32-byte big-endian scalar below the group order, lowercase hex |
//!
//! Decoders accept only these forms: uppercase hex, wrong lengths, points off the curve and
//! scalars at or above the group order are refused.

use std::fmt;
use std::hash::{Hash, Hasher};

use std::sync::OnceLock;

use k256::elliptic_curve::PrimeField;
use k256::{FieldBytes, Scalar};
use rand::{CryptoRng, RngCore};
use secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CreditError;
use crate::crypto::hex_array;

/// Strict lowercase hex of exactly `N` bytes, with a credits error.
fn hex_n<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], CreditError> {
    hex_array::decode::<N>(text).map_err(|_| CreditError::InvalidEncoding(what))
}

/// The libsecp256k1 context for every point operation, randomized once from the OS (blinding of
/// fixed-base multiplications, a defence in depth against side channels). A process-wide
/// static that changes no result, so it reads [`smpx_os::OsEntropy`] rather than an injected
/// source.
fn ctx() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = Secp256k1::new();
        let mut seed = [0u8; 32];
        smpx_os::Entropy::fill(&smpx_os::OsEntropy, &mut seed);
        ctx.seeded_randomize(&seed);
        seed.zeroize();
        ctx
    })
}

/// A k256 scalar as a libsecp256k1 tweak (the same 32 big-endian bytes, always below n).
fn tweak(k: &Scalar) -> Result<secp256k1::Scalar, CreditError> {
    let mut bytes: [u8; 32] = k.to_bytes().into();
    let t = secp256k1::Scalar::from_be_bytes(bytes);
    bytes.zeroize();
    t.map_err(|_| CreditError::InvalidPoint)
}

/// A point of secp256k1 other than the point at infinity, kept with its compressed encoding.
///
/// The group arithmetic is libsecp256k1's (constant-time for secret scalars); results that
/// would be the point at infinity are [`CreditError::InvalidPoint`].
/// Equality, ordering and hashing are on the 33-byte encoding, which is unique per point.
#[derive(Clone, Copy)]
pub struct Point {
    key: PublicKey,
    bytes: [u8; 33],
}

impl Point {
    /// Parses a 33-byte compressed SEC1 encoding (prefix `02` or `03`, x below the field
    /// modulus, x on the curve).
    pub fn from_bytes(bytes: &[u8; 33]) -> Result<Self, CreditError> {
        if bytes[0] != 0x02 && bytes[0] != 0x03 {
            return Err(CreditError::InvalidPoint);
        }
        let key = PublicKey::from_slice(bytes).map_err(|_| CreditError::InvalidPoint)?;
        Ok(Self { key, bytes: *bytes })
    }

    /// Parses 66 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, CreditError> {
        Self::from_bytes(&hex_n::<33>(
            text,
            "expected a compressed secp256k1 point: 66 lowercase hex characters",
        )?)
    }

    /// The compressed encoding.
    pub fn as_bytes(&self) -> &[u8; 33] {
        &self.bytes
    }

    /// Lowercase hex of the compressed encoding.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The 65-byte uncompressed encoding (`04 ‖ x ‖ y`), as NUT-12 hashes it.
    pub fn uncompressed(&self) -> [u8; 65] {
        self.key.serialize_uncompressed()
    }

    /// The generator `G`.
    pub fn generator() -> Point {
        let mut bytes = [0x02u8; 33];
        bytes[1..].copy_from_slice(&secp256k1::constants::GENERATOR_X);
        match Self::from_bytes(&bytes) {
            Ok(g) => g,
            // G's y is even, so 02 ‖ x is its encoding.
            Err(e) => unreachable!("secp256k1 generator does not decode: {e}"),
        }
    }

    fn from_key(key: PublicKey) -> Point {
        Self {
            key,
            bytes: key.serialize(),
        }
    }

    /// `k·G`; refuses `k = 0`.
    pub(crate) fn mul_generator(k: &Scalar) -> Result<Point, CreditError> {
        let mut bytes: [u8; 32] = k.to_bytes().into();
        let sk = SecretKey::from_slice(&bytes);
        bytes.zeroize();
        let mut sk = sk.map_err(|_| CreditError::InvalidPoint)?;
        let p = PublicKey::from_secret_key(ctx(), &sk);
        sk.non_secure_erase();
        Ok(Self::from_key(p))
    }

    /// `k·P`; refuses `k = 0`.
    pub(crate) fn mul(&self, k: &Scalar) -> Result<Point, CreditError> {
        self.key
            .mul_tweak(ctx(), &tweak(k)?)
            .map(Self::from_key)
            .map_err(|_| CreditError::InvalidPoint)
    }

    /// `P + Q`; refuses the point at infinity.
    pub(crate) fn add(&self, other: &Point) -> Result<Point, CreditError> {
        self.key
            .combine(&other.key)
            .map(Self::from_key)
            .map_err(|_| CreditError::InvalidPoint)
    }

    /// `P − Q`; refuses the point at infinity.
    pub(crate) fn sub(&self, other: &Point) -> Result<Point, CreditError> {
        self.add(&Self::from_key(other.key.negate(ctx())))
    }
}

impl PartialEq for Point {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Point {}

impl Hash for Point {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for Point {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Point {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point({})", self.to_hex())
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Point::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A token's secret `x`: 32 bytes, carried and hashed as 64 lowercase hex characters.
///
/// Knowing it (with `C`) is owning the token, so it is zeroized on drop and redacted in
/// `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// A fresh uniformly random secret.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let secret = Self::from_bytes(&bytes);
        bytes.zeroize();
        secret
    }

    /// The secret whose 32 bytes are `bytes` (hex-encoded, as NUT-13 does).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(hex::encode(bytes))
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, CreditError> {
        let mut bytes = hex_n::<32>(
            text,
            "expected a secret of 64 lowercase hex characters (32 bytes)",
        )?;
        bytes.zeroize();
        Ok(Self(text.to_owned()))
    }

    /// The secret as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Y = hash_to_curve(x)` over the 64 ASCII characters, as NUT-00 hashes a secret string.
    /// This is the token's identity in the spent registry.
    pub fn y(&self) -> Result<Point, CreditError> {
        super::dhke::hash_to_curve(self.0.as_bytes())
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Secret::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses a canonical 32-byte big-endian scalar (below the group order).
fn scalar_from_bytes(bytes: &[u8; 32]) -> Option<Scalar> {
    Scalar::from_repr(FieldBytes::from(*bytes)).into()
}

/// The wallet's blinding factor `r`: a non-zero scalar. Zeroized on drop, redacted in
/// `Debug`. Revealing it to the operator links the token to its issuance.
#[derive(Clone)]
pub struct BlindingFactor(Scalar);

impl BlindingFactor {
    /// A fresh uniformly random non-zero scalar.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            let parsed = Self::from_bytes(&bytes);
            bytes.zeroize();
            if let Ok(r) = parsed {
                return r;
            }
        }
    }

    /// Parses a canonical non-zero scalar.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CreditError> {
        match scalar_from_bytes(bytes) {
            Some(s) if !bool::from(s.is_zero()) => Ok(Self(s)),
            _ => Err(CreditError::InvalidEncoding(
                "blinding factor must be a non-zero scalar below the secp256k1 group order",
            )),
        }
    }

    pub(crate) fn from_scalar(s: Scalar) -> Result<Self, CreditError> {
        if bool::from(s.is_zero()) {
            return Err(CreditError::Derivation("blinding factor is zero"));
        }
        Ok(Self(s))
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, CreditError> {
        let mut bytes = hex_n::<32>(
            text,
            "expected a blinding factor of 64 lowercase hex characters",
        )?;
        let r = Self::from_bytes(&bytes);
        bytes.zeroize();
        r
    }

    /// The 32-byte big-endian encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.0
    }
}

impl Drop for BlindingFactor {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for BlindingFactor {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for BlindingFactor {}

impl fmt::Debug for BlindingFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindingFactor(<redacted>)")
    }
}

impl Serialize for BlindingFactor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = self.to_bytes();
        let text = hex::encode(bytes);
        bytes.zeroize();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for BlindingFactor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        BlindingFactor::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The DLEQ challenge `e`: a SHA-256 output, used as a scalar reduced modulo the group order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge(pub [u8; 32]);

impl Challenge {
    pub fn from_hex(text: &str) -> Result<Self, CreditError> {
        hex_n::<32>(text, "expected DLEQ e: 64 lowercase hex characters").map(Self)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `e` as a scalar (`int(e) mod n`, as Cashu's implementations use it).
    pub(crate) fn scalar(&self) -> Scalar {
        use k256::elliptic_curve::ops::Reduce;
        <Scalar as Reduce<k256::U256>>::reduce_bytes(&FieldBytes::from(self.0))
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Challenge({})", self.to_hex())
    }
}

impl Serialize for Challenge {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Challenge {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Challenge::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The DLEQ response `s`: a scalar below the group order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Response(pub(crate) Scalar);

impl Response {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CreditError> {
        scalar_from_bytes(bytes)
            .map(Self)
            .ok_or(CreditError::InvalidEncoding(
                "DLEQ s must be a scalar below the secp256k1 group order",
            ))
    }

    pub fn from_hex(text: &str) -> Result<Self, CreditError> {
        Self::from_bytes(&hex_n::<32>(
            text,
            "expected DLEQ s: 64 lowercase hex characters",
        )?)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({})", self.to_hex())
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Response::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const G_HEX: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    #[test]
    fn credits_point_roundtrip_and_strictness() {
        let g = Point::from_hex(G_HEX).unwrap();
        assert_eq!(g.to_hex(), G_HEX);
        assert_eq!(Point::generator(), g);
        assert_eq!(Point::mul_generator(&Scalar::ONE).unwrap(), g);
        let two = Point::mul_generator(&Scalar::from(2u64)).unwrap();
        assert_eq!(g.add(&g).unwrap(), two);
        assert_eq!(g.mul(&Scalar::from(2u64)).unwrap(), two);
        assert_eq!(two.sub(&g).unwrap(), g);
        assert_eq!(g.sub(&g), Err(CreditError::InvalidPoint));
        assert_eq!(g.mul(&Scalar::ZERO), Err(CreditError::InvalidPoint));
        assert_eq!(
            Point::mul_generator(&Scalar::ZERO),
            Err(CreditError::InvalidPoint)
        );
        assert_eq!(serde_json::to_string(&g).unwrap(), format!("\"{G_HEX}\""));
        let back: Point = serde_json::from_str(&format!("\"{G_HEX}\"")).unwrap();
        assert_eq!(back, g);
        // Uppercase, wrong length, uncompressed prefix, infinity, x not on the curve.
        assert!(Point::from_hex(&G_HEX.to_uppercase()).is_err());
        assert!(Point::from_hex(&G_HEX[..64]).is_err());
        assert!(Point::from_hex(&format!("04{}", &G_HEX[2..])).is_err());
        assert!(Point::from_hex(&"00".repeat(33)).is_err());
        assert_eq!(
            Point::from_hex(&format!("02{}", "00".repeat(32))),
            Err(CreditError::InvalidPoint)
        );
        // x = p (the field modulus) is not canonical.
        let p = "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f";
        assert_eq!(
            Point::from_hex(&format!("02{p}")),
            Err(CreditError::InvalidPoint)
        );
        assert_eq!(g.uncompressed()[0], 0x04);
    }

    #[test]
    fn credits_secret_is_64_lowercase_hex_and_redacted() {
        let s = Secret::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(Secret::from_hex(&"AB".repeat(32)).is_err());
        assert!(Secret::from_hex(&"ab".repeat(31)).is_err());
        assert!(Secret::from_hex("test_message").is_err());
        let json = serde_json::to_string(&s).unwrap();
        let back: Secret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let r = Secret::random(&mut rand::rngs::OsRng);
        assert_eq!(r.as_str().len(), 64);
        assert_ne!(r, Secret::random(&mut rand::rngs::OsRng));
    }

    #[test]
    fn credits_scalars_are_canonical() {
        let n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let n_minus_1 = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";
        assert!(BlindingFactor::from_hex(n).is_err());
        assert!(BlindingFactor::from_hex(&"00".repeat(32)).is_err());
        assert!(BlindingFactor::from_hex(n_minus_1).is_ok());
        assert!(Response::from_hex(n).is_err());
        assert_eq!(Response::from_hex(n_minus_1).unwrap().to_hex(), n_minus_1);
        // e is a hash output: any 32 bytes, including values above n.
        assert_eq!(Challenge::from_hex(n).unwrap().to_hex(), n);
        assert_eq!(Challenge::from_hex(n).unwrap().scalar(), Scalar::ZERO);
        let r = BlindingFactor::random(&mut rand::rngs::OsRng);
        assert_eq!(format!("{r:?}"), "BlindingFactor(<redacted>)");
        let back: BlindingFactor =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
