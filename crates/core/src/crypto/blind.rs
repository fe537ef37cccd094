//! Issuer blind signatures over voucher commitments (v0.1 Chaumian e-cash).
//!
//! RFC 9474 `RSABSSA-SHA384-PSS-Randomized`, via `blind-rsa-signatures`: the variant the RFC
//! recommends. "Randomized" means the client prefixes the message with 32 random bytes
//! before hashing, so the issuer never signs a message it could have chosen; the prefix
//! (`msg_randomizer`) travels with the final signature and is needed to verify it.
//! Signatures are publicly verifiable with the issuer's public key, which is what lets the
//! coordinator check a published voucher without talking to the issuer.
//!
//! Flow: wallet [`IssuerPublicKey::blind`]s the commitment bytes and keeps the
//! [`BlindingState`]; issuer [`IssuerSecretKey::blind_sign`]s the [`BlindedMessage`]; wallet
//! [`IssuerPublicKey::finalize`]s into a [`VoucherSignature`], which anyone can
//! [`IssuerPublicKey::verify`]. The issuer sees only the blinded message, so it cannot link
//! the sale to the later publication.
//!
//! Public keys travel as the RFC 9474 `RSASSA-PSS` SubjectPublicKeyInfo, and an issuer key is
//! named by `key_id = SHA-256(SPKI)`. Only the exact canonical SPKI is accepted, so each key
//! has one id.

use std::fmt;

use blind_rsa_signatures::reexports::rsa::traits::PublicKeyParts as _;
use blind_rsa_signatures::{
    BlindMessage, BlindSignature as RsaBlindSignature, BlindingResult, Error as BrsaError, KeyPair,
    MessageRandomizer, PublicKey, Randomized, Secret, SecretKey, Sha384, Signature, PSS,
};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpx_os::Rng010;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{b64, hex_array, CryptoError};

type RsaPk = PublicKey<Sha384, PSS, Randomized>;
type RsaSk = SecretKey<Sha384, PSS, Randomized>;

/// Smallest accepted modulus. RFC 9474 requires at least 2048 bits.
const MIN_MODULUS_BITS: usize = 2048;

/// An issuer's RSA signing key. Debug output is redacted.
#[derive(Clone)]
pub struct IssuerSecretKey(RsaSk);

/// An issuer's RSA public key, as configured at the coordinator.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuerPublicKey(RsaPk);

impl IssuerSecretKey {
    /// A fresh key with a `bits`-bit modulus (2048..=4096; issuers should use at least 2048,
    /// the RFC's 4096 for long-lived keys) and e = 65537.
    pub fn generate(
        bits: usize,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, CryptoError> {
        if !(MIN_MODULUS_BITS..=4096).contains(&bits) {
            return Err(CryptoError::InvalidKey(
                "issuer RSA modulus must be 2048 to 4096 bits",
            ));
        }
        // The crate is on rand_core 0.10, the rest of smpx on 0.6.
        let pair = KeyPair::<Sha384, PSS, Randomized>::generate(&mut Rng010(rng), bits)
            .map_err(|_| CryptoError::InvalidKey("RSA key generation failed"))?;
        Ok(Self(pair.sk))
    }

    pub fn public_key(&self) -> Result<IssuerPublicKey, CryptoError> {
        self.0
            .public_key()
            .map(IssuerPublicKey)
            .map_err(|_| CryptoError::InvalidKey(UNSUPPORTED_RSA))
    }

    /// PKCS#8 DER. The caller is responsible for protecting (and zeroizing) the bytes.
    pub fn to_der(&self) -> Result<Vec<u8>, CryptoError> {
        self.0
            .to_der()
            .map_err(|_| CryptoError::InvalidKey("cannot encode issuer key as PKCS#8"))
    }

    /// Parses PKCS#8 (or PKCS#1) DER and validates the key (consistent CRT components,
    /// 2048..=4096-bit modulus, e = 65537 or 3).
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let sk = RsaSk::from_der(der).map_err(|e| match e {
            BrsaError::EncodingError => CryptoError::InvalidEncoding(
                "issuer secret key: expected PKCS#8 or PKCS#1 DER RSA private key",
            ),
            BrsaError::UnsupportedParameters => CryptoError::InvalidKey(UNSUPPORTED_RSA),
            _ => CryptoError::InvalidKey("issuer secret key components are inconsistent"),
        })?;
        let key = Self(sk);
        if key.public_key()?.modulus_bits() < MIN_MODULUS_BITS {
            return Err(CryptoError::InvalidKey(UNSUPPORTED_RSA));
        }
        Ok(key)
    }

    /// The issuer's half of the protocol: a raw RSA signature on the blinded message.
    /// It learns nothing about the commitment inside.
    pub fn blind_sign(&self, blinded: &BlindedMessage) -> Result<BlindSignature, CryptoError> {
        self.0
            .blind_sign(&blinded.0)
            .map(|sig| BlindSignature(sig.0))
            .map_err(|_| CryptoError::BlindSign)
    }
}

const UNSUPPORTED_RSA: &str =
    "issuer key must be RSA with a 2048- to 4096-bit modulus and e = 65537 (or 3)";

impl fmt::Debug for IssuerSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuerSecretKey(<redacted>)")
    }
}

impl IssuerPublicKey {
    /// RFC 9474 encoding: SubjectPublicKeyInfo with the `id-RSASSA-PSS` algorithm and its
    /// SHA-384 / MGF1-SHA-384 / 48-byte-salt parameters, DER.
    pub fn to_spki(&self) -> Result<Vec<u8>, CryptoError> {
        self.0
            .to_spki()
            .map_err(|_| CryptoError::InvalidKey("cannot encode issuer key as SPKI"))
    }

    /// Parses the RFC 9474 SPKI produced by [`IssuerPublicKey::to_spki`]. Rejects moduli
    /// below 2048 bits and any other encoding of the key.
    pub fn from_spki(spki: &[u8]) -> Result<Self, CryptoError> {
        let pk = RsaPk::from_spki(spki).map_err(|e| match e {
            BrsaError::UnsupportedParameters => CryptoError::InvalidKey(UNSUPPORTED_RSA),
            _ => CryptoError::InvalidEncoding(
                "issuer public key: expected RSASSA-PSS SubjectPublicKeyInfo DER (RFC 9474)",
            ),
        })?;
        let key = Self(pk);
        if key.modulus_bits() < MIN_MODULUS_BITS {
            return Err(CryptoError::InvalidKey(UNSUPPORTED_RSA));
        }
        // The crate's parser checks only the algorithm OID and skips the hash, MGF and salt
        // parameters. Requiring the exact re-encoding refuses keys declared for another
        // RFC 9474 variant and makes key_id a function of the key alone.
        if key.to_spki()? != spki {
            return Err(CryptoError::InvalidEncoding(
                "issuer public key SPKI must declare RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt",
            ));
        }
        Ok(key)
    }

    /// `SHA-256(SPKI DER)`: the stable name of an issuer key.
    pub fn key_id(&self) -> Result<[u8; 32], CryptoError> {
        Ok(Sha256::digest(self.to_spki()?).into())
    }

    /// Modulus length in bytes: the length of blinded messages and all signatures.
    pub fn modulus_bytes(&self) -> usize {
        let rsa: &blind_rsa_signatures::reexports::rsa::RsaPublicKey = self.0.as_ref();
        rsa.size()
    }

    fn modulus_bits(&self) -> usize {
        let n = self.0.components().n();
        match n.iter().position(|&b| b != 0) {
            Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
            None => 0,
        }
    }

    /// The wallet's first step: blinds `msg` (the commitment bytes) with fresh randomness from
    /// `rng`.
    /// Send the [`BlindedMessage`]; keep the [`BlindingState`] secret until
    /// [`IssuerPublicKey::finalize`].
    pub fn blind(
        &self,
        msg: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(BlindedMessage, BlindingState), CryptoError> {
        let BlindingResult {
            blind_message,
            secret,
            msg_randomizer,
        } = self
            .0
            .blind(&mut Rng010(rng), msg)
            .map_err(|_| CryptoError::BlindSign)?;
        // Always present for the Randomized variant.
        let msg_randomizer = msg_randomizer.ok_or(CryptoError::BlindSign)?;
        Ok((
            BlindedMessage(blind_message.0),
            BlindingState {
                inv: secret.0,
                msg_randomizer: msg_randomizer.0,
            },
        ))
    }

    /// Unblinds the issuer's answer and verifies the result, so a wallet never stores a
    /// signature that would later be refused. [`CryptoError::BadSignature`] means the issuer
    /// answered with something that is not a signature under this key.
    pub fn finalize(
        &self,
        sig: &BlindSignature,
        state: &BlindingState,
        msg: &[u8],
    ) -> Result<VoucherSignature, CryptoError> {
        let size = self.modulus_bytes();
        if sig.0.len() != size || state.inv.len() != size {
            return Err(CryptoError::BlindSign);
        }
        let mut blinding = BlindingResult {
            // Not used by finalization; only the inverse and the randomizer are.
            blind_message: BlindMessage(Vec::new()),
            secret: Secret(state.inv.clone()),
            msg_randomizer: Some(MessageRandomizer(state.msg_randomizer)),
        };
        let result = self
            .0
            .finalize(&RsaBlindSignature(sig.0.clone()), &blinding, msg);
        blinding.secret.0.zeroize();
        let signature = result.map_err(|e| match e {
            BrsaError::VerificationFailed => CryptoError::BadSignature,
            _ => CryptoError::BlindSign,
        })?;
        Ok(VoucherSignature {
            signature: signature.0,
            msg_randomizer: state.msg_randomizer,
        })
    }

    /// Verifies a finalized signature on `msg`.
    pub fn verify(&self, sig: &VoucherSignature, msg: &[u8]) -> Result<(), CryptoError> {
        self.0
            .verify(
                &Signature(sig.signature.clone()),
                Some(MessageRandomizer(sig.msg_randomizer)),
                msg,
            )
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl fmt::Debug for IssuerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key_id = self.key_id().map(hex::encode).unwrap_or_default();
        f.debug_struct("IssuerPublicKey")
            .field("bits", &self.modulus_bits())
            .field("key_id", &key_id)
            .finish()
    }
}

/// The blinded commitment the wallet sends to the issuer; base64url on the wire.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct BlindedMessage(#[serde(with = "b64::serde")] pub Vec<u8>);

/// The issuer's signature on a [`BlindedMessage`]; base64url on the wire.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct BlindSignature(#[serde(with = "b64::serde")] pub Vec<u8>);

/// What the wallet must keep between [`IssuerPublicKey::blind`] and
/// [`IssuerPublicKey::finalize`]: the unblinding inverse and the message randomizer.
///
/// Serializable so the wallet can store it (encrypted) across a crash between purchase and
/// finalization: `{"inv": base64url, "msg_randomizer": hex}`. Anyone holding it together
/// with the blinded message can link the purchase to the voucher. Zeroized on drop; Debug is
/// redacted.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct BlindingState {
    #[serde(with = "b64::serde")]
    inv: Vec<u8>,
    #[serde(with = "hex_array::serde")]
    msg_randomizer: [u8; 32],
}

impl fmt::Debug for BlindingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindingState(<redacted>)")
    }
}

/// A finalized RFC 9474 signature on a commitment, with the randomizer needed to verify it.
/// On the wire: `{"signature": base64url, "msg_randomizer": 64 hex chars}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoucherSignature {
    /// Base64url (as long as the key's modulus; otherwise `bad_signature`).
    #[serde(with = "b64::serde")]
    #[schema(value_type = String, pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$")]
    pub signature: Vec<u8>,
    /// 64 lowercase hex characters.
    #[serde(with = "hex_array::serde")]
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub msg_randomizer: [u8; 32],
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use blind_rsa_signatures::reexports::rsa::{BoxedUint, RsaPrivateKey, RsaPublicKey};
    use std::sync::OnceLock;

    /// RFC 9474 Appendix A, RSABSSA-SHA384-PSS-Randomized (see `_source` in the file).
    const RFC9474: &str = include_str!("testdata/rfc9474_sha384_pss_randomized.json");

    #[derive(serde::Deserialize)]
    struct Vector {
        p: String,
        q: String,
        n: String,
        e: String,
        d: String,
        msg: String,
        msg_prefix: String,
        inv: String,
        blinded_msg: String,
        blind_sig: String,
        sig: String,
    }

    fn vector() -> Vector {
        serde_json::from_str(RFC9474).unwrap()
    }

    fn uint(hex_digits: &str) -> BoxedUint {
        BoxedUint::from_str_radix_vartime(hex_digits, 16).unwrap()
    }

    fn bytes(hex_digits: &str) -> Vec<u8> {
        hex::decode(hex_digits).unwrap()
    }

    fn rfc_key() -> IssuerSecretKey {
        let v = vector();
        let inner = RsaPrivateKey::from_components(
            uint(&v.n),
            uint(&v.e),
            uint(&v.d),
            vec![uint(&v.p), uint(&v.q)],
        )
        .unwrap();
        IssuerSecretKey(RsaSk::new(inner))
    }

    /// Key generation is slow; tests that only need *a* key share one.
    fn test_key() -> &'static IssuerSecretKey {
        static KEY: OnceLock<IssuerSecretKey> = OnceLock::new();
        KEY.get_or_init(|| IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng).unwrap())
    }

    #[test]
    fn crypto_rfc9474_pss_randomized_vector() {
        let v = vector();
        let sk = rfc_key();
        let pk = sk.public_key().unwrap();
        let msg = bytes(&v.msg);
        assert_eq!(pk.modulus_bytes(), bytes(&v.n).len());

        // Issuer: raw RSA on the published blinded message gives the published blind sig.
        let blind_sig = sk
            .blind_sign(&BlindedMessage(bytes(&v.blinded_msg)))
            .unwrap();
        assert_eq!(blind_sig.0, bytes(&v.blind_sig));

        // Wallet: unblinding with the published inverse and prefix gives the published sig.
        let state = BlindingState {
            inv: bytes(&v.inv),
            msg_randomizer: bytes(&v.msg_prefix).try_into().unwrap(),
        };
        let sig = pk.finalize(&blind_sig, &state, &msg).unwrap();
        assert_eq!(sig.signature, bytes(&v.sig));
        assert_eq!(sig.msg_randomizer.to_vec(), bytes(&v.msg_prefix));

        pk.verify(&sig, &msg).unwrap();

        // A flipped bit anywhere breaks it: signature, randomizer, message.
        let mut bad = sig.clone();
        bad.signature[17] ^= 0x01;
        assert_eq!(pk.verify(&bad, &msg), Err(CryptoError::BadSignature));
        let mut bad = sig.clone();
        bad.msg_randomizer[0] ^= 0x80;
        assert_eq!(pk.verify(&bad, &msg), Err(CryptoError::BadSignature));
        let mut other = msg.clone();
        other[0] ^= 0x01;
        assert_eq!(pk.verify(&sig, &other), Err(CryptoError::BadSignature));
        assert_eq!(
            pk.verify(&sig, b"another message"),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn crypto_rfc9474_finalize_refuses_a_wrong_blind_signature() {
        let v = vector();
        let pk = rfc_key().public_key().unwrap();
        let state = BlindingState {
            inv: bytes(&v.inv),
            msg_randomizer: bytes(&v.msg_prefix).try_into().unwrap(),
        };
        let mut blind_sig = BlindSignature(bytes(&v.blind_sig));
        blind_sig.0[100] ^= 0x04;
        assert_eq!(
            pk.finalize(&blind_sig, &state, &bytes(&v.msg)),
            Err(CryptoError::BadSignature)
        );
        // Wrong length and out-of-range values are errors, not panics.
        let short = BlindSignature(vec![1; 10]);
        assert_eq!(
            pk.finalize(&short, &state, &bytes(&v.msg)),
            Err(CryptoError::BlindSign)
        );
        let huge = BlindSignature(vec![0xff; pk.modulus_bytes()]);
        assert!(pk.finalize(&huge, &state, &bytes(&v.msg)).is_err());
    }

    #[test]
    fn crypto_blind_roundtrip_and_wrong_key() {
        let sk = test_key();
        let pk = sk.public_key().unwrap();
        let msg = b"commitment bytes";
        let (blinded, state) = pk.blind(msg, &mut rand::rngs::OsRng).unwrap();
        assert_eq!(blinded.0.len(), pk.modulus_bytes());
        let blind_sig = sk.blind_sign(&blinded).unwrap();
        let sig = pk.finalize(&blind_sig, &state, msg).unwrap();
        pk.verify(&sig, msg).unwrap();

        // Blinding is randomized: the issuer sees unrelated values for the same message.
        let (blinded2, state2) = pk.blind(msg, &mut rand::rngs::OsRng).unwrap();
        assert_ne!(blinded, blinded2);
        let sig2 = pk
            .finalize(&sk.blind_sign(&blinded2).unwrap(), &state2, msg)
            .unwrap();
        assert_ne!(sig.signature, sig2.signature);
        pk.verify(&sig2, msg).unwrap();

        // Another issuer's key: its signatures do not verify here, and its blind
        // signatures do not finalize here.
        let other = rfc_key();
        let other_pk = other.public_key().unwrap();
        assert_eq!(other_pk.verify(&sig, msg), Err(CryptoError::BadSignature));
        let (blinded_other, state_other) = other_pk.blind(msg, &mut rand::rngs::OsRng).unwrap();
        let foreign = other.blind_sign(&blinded_other).unwrap();
        assert!(pk.finalize(&foreign, &state_other, msg).is_err());
        let sig_other = other_pk.finalize(&foreign, &state_other, msg).unwrap();
        assert_eq!(pk.verify(&sig_other, msg), Err(CryptoError::BadSignature));
    }

    #[test]
    fn crypto_blind_sign_rejects_malformed_input() {
        let sk = test_key();
        let size = sk.public_key().unwrap().modulus_bytes();
        for bad in [
            vec![],
            vec![1u8; size - 1],
            vec![1u8; size + 1],
            vec![0xff; size],
        ] {
            assert_eq!(
                sk.blind_sign(&BlindedMessage(bad)),
                Err(CryptoError::BlindSign)
            );
        }
    }

    #[test]
    fn crypto_issuer_keys_roundtrip_and_key_id() {
        let sk = test_key();
        let pk = sk.public_key().unwrap();
        let spki = pk.to_spki().unwrap();
        let parsed = IssuerPublicKey::from_spki(&spki).unwrap();
        assert_eq!(parsed, pk);
        assert_eq!(parsed.key_id().unwrap(), pk.key_id().unwrap());
        let id: [u8; 32] = Sha256::digest(&spki).into();
        assert_eq!(pk.key_id().unwrap(), id);
        assert_ne!(
            pk.key_id().unwrap(),
            rfc_key().public_key().unwrap().key_id().unwrap()
        );

        let der = sk.to_der().unwrap();
        let sk2 = IssuerSecretKey::from_der(&der).unwrap();
        assert_eq!(sk2.public_key().unwrap(), pk);

        assert_eq!(format!("{sk:?}"), "IssuerSecretKey(<redacted>)");
        assert!(format!("{pk:?}").contains("bits: 2048"));
        let (_, state) = pk.blind(b"x", &mut rand::rngs::OsRng).unwrap();
        assert_eq!(format!("{state:?}"), "BlindingState(<redacted>)");
    }

    #[test]
    fn crypto_rfc9474_spki_of_the_4096_bit_vector_key() {
        let pk = rfc_key().public_key().unwrap();
        let spki = pk.to_spki().unwrap();
        assert_eq!(IssuerPublicKey::from_spki(&spki).unwrap(), pk);
        assert_eq!(pk.modulus_bytes(), 512);
    }

    #[test]
    fn crypto_issuer_keys_reject_garbage_without_panicking() {
        let spki = test_key().public_key().unwrap().to_spki().unwrap();
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x30],
            vec![0u8; 100],
            vec![0xff; 500],
            vec![0x30; 2000],
            spki[..spki.len() - 1].to_vec(),
            spki[..80].to_vec(),
        ];
        // Every single-byte corruption of the header region.
        for i in 0..80 {
            let mut s = spki.clone();
            s[i] ^= 0x5a;
            inputs.push(s);
        }
        for input in &inputs {
            assert!(
                IssuerPublicKey::from_spki(input).is_err(),
                "accepted {input:02x?}"
            );
            assert!(IssuerSecretKey::from_der(input).is_err());
        }
        // A plain rsaEncryption SPKI of a valid key is not the RFC 9474 encoding.
        use blind_rsa_signatures::reexports::rsa::pkcs8::EncodePublicKey as _;
        let pk = test_key().public_key().unwrap();
        let rsa_pk: &RsaPublicKey = pk.0.as_ref();
        let plain = rsa_pk.to_public_key_der().unwrap();
        assert!(matches!(
            IssuerPublicKey::from_spki(plain.as_bytes()),
            Err(CryptoError::InvalidEncoding(_))
        ));
    }

    #[test]
    fn crypto_issuer_spki_for_another_rfc9474_variant_is_refused() {
        // Same key, declared for SHA-384 with a zero-length salt (PSSZERO).
        let pk = test_key().public_key().unwrap();
        let rsa_pk: RsaPublicKey = AsRef::<RsaPublicKey>::as_ref(&pk.0).clone();
        let pss_zero = PublicKey::<Sha384, blind_rsa_signatures::PSSZero, Randomized>::new(rsa_pk)
            .to_spki()
            .unwrap();
        assert!(matches!(
            IssuerPublicKey::from_spki(&pss_zero),
            Err(CryptoError::InvalidEncoding(_))
        ));
    }

    #[test]
    fn crypto_issuer_spki_rejects_small_moduli() {
        // Odd moduli of 2047 and 2040 bits (public keys need not be real to be refused).
        for (len, top) in [(256usize, 0x7fu8), (255, 0xff)] {
            let mut n = vec![0xffu8; len];
            n[0] = top;
            let n = BoxedUint::from_be_slice_vartime(&n);
            let rsa_pk = RsaPublicKey::new(n, BoxedUint::from(65537u32)).unwrap();
            let spki = RsaPk::new(rsa_pk).to_spki().unwrap();
            assert!(matches!(
                IssuerPublicKey::from_spki(&spki),
                Err(CryptoError::InvalidKey(_))
            ));
        }
        assert!(matches!(
            IssuerSecretKey::generate(1024, &mut rand::rngs::OsRng),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn crypto_blind_wire_types_serde() {
        let blinded = BlindedMessage(vec![0xfb, 0xff, 0x00]);
        let json = serde_json::to_string(&blinded).unwrap();
        assert_eq!(json, "\"-_8A\"");
        assert_eq!(
            serde_json::from_str::<BlindedMessage>(&json).unwrap(),
            blinded
        );
        assert!(serde_json::from_str::<BlindSignature>("\"+/8A\"").is_err());

        let sig = VoucherSignature {
            signature: vec![1, 2, 3],
            msg_randomizer: [0xab; 32],
        };
        let json = serde_json::to_value(&sig).unwrap();
        assert_eq!(json["signature"], "AQID");
        assert_eq!(json["msg_randomizer"], "ab".repeat(32));
        assert_eq!(
            serde_json::from_value::<VoucherSignature>(json).unwrap(),
            sig
        );

        let state = BlindingState {
            inv: vec![9; 4],
            msg_randomizer: [1; 32],
        };
        let text = serde_json::to_string(&state).unwrap();
        let back: BlindingState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.inv, state.inv);
        assert_eq!(back.msg_randomizer, state.msg_randomizer);
    }

    #[test]
    fn crypto_blinding_state_survives_storage_between_blind_and_finalize() {
        let sk = test_key();
        let pk = sk.public_key().unwrap();
        let (blinded, state) = pk.blind(b"c", &mut rand::rngs::OsRng).unwrap();
        let stored = serde_json::to_string(&state).unwrap();
        drop(state);
        let restored: BlindingState = serde_json::from_str(&stored).unwrap();
        let sig = pk
            .finalize(&sk.blind_sign(&blinded).unwrap(), &restored, b"c")
            .unwrap();
        pk.verify(&sig, b"c").unwrap();
    }
}
