//! Encryption to a known recipient (v0.1 redemption: `[C, s, operator]` to the coordinator,
//! carried through the operator, who must not read it).
//!
//! RFC 9180 HPKE in base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
//! ChaCha20Poly1305, single-shot (one message per encapsulation), via the `hpke` crate.
//! Base mode is deliberate: the sender is anonymous. Callers bind context with `info`
//! (which protocol message this is) and `aad` (data sent in the clear alongside, e.g. the
//! operator id); both must match at opening.

use std::fmt;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, HpkeError, Kem as _, OpModeR, OpModeS, Serializable};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smpx_os::Rng09;
use zeroize::Zeroize;

use super::{b64, hex_array, CryptoError};

type Kem = X25519HkdfSha256;

/// The coordinator's (or any recipient's) HPKE private key. Debug output is redacted; the
/// underlying key is zeroized on drop.
#[derive(Clone)]
pub struct HpkeSecretKey(<Kem as hpke::Kem>::PrivateKey);

/// An X25519 HPKE public key; 64 lowercase hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct HpkePublicKey(#[serde(with = "hex_array::serde")] pub [u8; 32]);

impl HpkeSecretKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let (sk, _) = Kem::gen_keypair(&mut Rng09(rng));
        Self(sk)
    }

    /// The 32-byte X25519 private key as stored by [`HpkeSecretKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| CryptoError::InvalidKey("HPKE secret key must be 32 bytes"))
    }

    /// The caller is responsible for protecting (and zeroizing) the bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut encoded = self.0.to_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(&encoded);
        encoded.as_mut_slice().zeroize();
        out
    }

    pub fn public_key(&self) -> HpkePublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(&Kem::sk_to_pk(&self.0).to_bytes());
        HpkePublicKey(out)
    }
}

impl fmt::Debug for HpkeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HpkeSecretKey(<redacted>)")
    }
}

impl HpkePublicKey {
    pub fn to_hex(&self) -> String {
        hex_array::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        hex_array::decode(text).map(Self)
    }
}

impl fmt::Debug for HpkePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkePublicKey({})", self.to_hex())
    }
}

/// A sealed message: the HPKE encapsulated key and the AEAD ciphertext (with its tag).
/// On the wire: `{"enc": base64url, "ciphertext": base64url}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    /// Base64url.
    #[serde(with = "b64::serde")]
    #[schema(value_type = String, pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$")]
    pub enc: Vec<u8>,
    /// Base64url.
    #[serde(with = "b64::serde")]
    #[schema(value_type = String, pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$")]
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    /// `SHA-256(len(enc) || enc || len(ciphertext) || ciphertext)`, lengths as u64
    /// big-endian. Names one envelope so a retried submission can be recognised as the same
    /// request (each seal uses a fresh `enc`, so distinct submissions never collide). The
    /// length prefixes keep the split between the fields unambiguous.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((self.enc.len() as u64).to_be_bytes());
        h.update(&self.enc);
        h.update((self.ciphertext.len() as u64).to_be_bytes());
        h.update(&self.ciphertext);
        h.finalize().into()
    }
}

/// Encrypts `plaintext` to `pk`, bound to `info` and `aad`, with a fresh `enc` from `rng`.
pub fn seal(
    pk: &HpkePublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Envelope, CryptoError> {
    let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(&pk.0)
        .map_err(|_| CryptoError::InvalidKey("HPKE public key must be 32 bytes"))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
        &OpModeS::Base,
        &recipient,
        info,
        plaintext,
        aad,
        &mut Rng09(rng),
    )
    .map_err(|e| match e {
        // RFC 9180 §7.1.4: a shared secret of all zeros means a low-order public key.
        HpkeError::EncapError => {
            CryptoError::InvalidKey("HPKE public key is not usable (low-order X25519 point)")
        }
        _ => CryptoError::InvalidKey("HPKE encryption failed for this key"),
    })?;
    Ok(Envelope {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Decrypts an envelope sealed to `sk`'s public key with the same `info` and `aad`.
/// Every authentication failure is [`CryptoError::Decrypt`], without saying which input was
/// wrong.
pub fn open(
    sk: &HpkeSecretKey,
    info: &[u8],
    aad: &[u8],
    env: &Envelope,
) -> Result<Vec<u8>, CryptoError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&env.enc)
        .map_err(|_| CryptoError::InvalidEncoding("HPKE enc must be 32 bytes"))?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk.0,
        &enc,
        info,
        &env.ciphertext,
        aad,
    )
    .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// RFC 9180 Appendix A.2.1 (see `_source` in the file).
    const RFC9180: &str = include_str!("testdata/rfc9180_a2_1_x25519_chacha20poly1305_base.json");

    #[derive(serde::Deserialize)]
    #[allow(non_snake_case)]
    struct Vector {
        mode: u8,
        kem_id: u16,
        kdf_id: u16,
        aead_id: u16,
        info: String,
        ikmR: String,
        skRm: String,
        pkRm: String,
        enc: String,
        encryptions: Vec<Encryption>,
    }

    #[derive(serde::Deserialize)]
    struct Encryption {
        seq: u64,
        aad: String,
        pt: String,
        ct: String,
    }

    fn h(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    #[test]
    fn crypto_rfc9180_a2_1_vector() {
        let v: Vector = serde_json::from_str(RFC9180).unwrap();
        // The suite we use, by its registry ids.
        assert_eq!((v.mode, v.kem_id, v.kdf_id, v.aead_id), (0, 0x20, 1, 3));
        assert_eq!(Kem::KEM_ID, v.kem_id);

        let (sk_r, pk_r) = Kem::derive_keypair(&h(&v.ikmR));
        assert_eq!(pk_r.to_bytes().to_vec(), h(&v.pkRm));
        assert_eq!(sk_r.to_bytes().to_vec(), h(&v.skRm));

        let sk = HpkeSecretKey::from_bytes(&h(&v.skRm)).unwrap();
        assert_eq!(sk.public_key().0.to_vec(), h(&v.pkRm));
        assert_eq!(sk.to_bytes().to_vec(), h(&v.skRm));

        // Sequence 0 is exactly our single-shot open.
        let first = &v.encryptions[0];
        assert_eq!(first.seq, 0);
        let env = Envelope {
            enc: h(&v.enc),
            ciphertext: h(&first.ct),
        };
        let pt = open(&sk, &h(&v.info), &h(&first.aad), &env).unwrap();
        assert_eq!(pt, h(&first.pt));

        // Later sequence numbers need a context: checks the whole key schedule via the crate.
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&h(&v.enc)).unwrap();
        let mut ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk.0,
            &enc,
            &h(&v.info),
        )
        .unwrap();
        for (i, e) in v.encryptions.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
            assert_eq!(ctx.open(&h(&e.ct), &h(&e.aad)).unwrap(), h(&e.pt));
        }

        // A later-sequence ciphertext is not a single-shot message.
        let second = Envelope {
            enc: h(&v.enc),
            ciphertext: h(&v.encryptions[1].ct),
        };
        assert_eq!(
            open(&sk, &h(&v.info), &h(&v.encryptions[1].aad), &second),
            Err(CryptoError::Decrypt)
        );
    }

    #[test]
    fn crypto_hpke_seal_open_roundtrip_and_context_binding() {
        let sk = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        let pk = sk.public_key();
        let seal_c = || {
            seal(
                &pk,
                b"smpx/redeem/v1",
                b"operator-7",
                b"C||s",
                &mut rand::rngs::OsRng,
            )
            .unwrap()
        };
        let env = seal_c();
        assert_eq!(env.enc.len(), 32);
        assert_eq!(env.ciphertext.len(), 4 + 16);
        assert_eq!(
            open(&sk, b"smpx/redeem/v1", b"operator-7", &env).unwrap(),
            b"C||s"
        );

        // Wrong aad, wrong info, wrong key: all the same opaque error.
        assert_eq!(
            open(&sk, b"smpx/redeem/v1", b"operator-8", &env),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            open(&sk, b"smpx/other/v1", b"operator-7", &env),
            Err(CryptoError::Decrypt)
        );
        let stranger = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(
            open(&stranger, b"smpx/redeem/v1", b"operator-7", &env),
            Err(CryptoError::Decrypt)
        );

        // Fresh encapsulation each time.
        let again = seal_c();
        assert_ne!(again.enc, env.enc);
        assert_ne!(again.digest(), env.digest());
    }

    #[test]
    fn crypto_hpke_keys_and_envelopes_come_from_the_given_rng_only() {
        use smpx_os::{Entropy, SeededEntropy};
        let seal_with = |seed: u64| {
            let e: &dyn Entropy = &SeededEntropy::new(seed);
            let sk = HpkeSecretKey::generate(&mut e.rng());
            let env = seal(&sk.public_key(), b"i", b"a", b"m", &mut e.rng()).unwrap();
            (sk.to_bytes(), env.enc, env.ciphertext)
        };
        assert_eq!(seal_with(1), seal_with(1));
        assert_ne!(seal_with(1).1, seal_with(2).1);
    }

    #[test]
    fn crypto_hpke_tampered_or_truncated_ciphertext_is_decrypt_error() {
        let sk = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        let env = seal(
            &sk.public_key(),
            b"i",
            b"a",
            b"hello world",
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        for cut in 0..env.ciphertext.len() {
            let truncated = Envelope {
                enc: env.enc.clone(),
                ciphertext: env.ciphertext[..cut].to_vec(),
            };
            assert_eq!(open(&sk, b"i", b"a", &truncated), Err(CryptoError::Decrypt));
        }
        for i in 0..env.ciphertext.len() {
            let mut tampered = env.clone();
            tampered.ciphertext[i] ^= 0x01;
            assert_eq!(open(&sk, b"i", b"a", &tampered), Err(CryptoError::Decrypt));
        }
        let mut other_enc = env.clone();
        other_enc.enc[5] ^= 0x01;
        assert_eq!(open(&sk, b"i", b"a", &other_enc), Err(CryptoError::Decrypt));
        // A low-order point as enc: the DH result is zero and decapsulation refuses it.
        let zero_enc = Envelope {
            enc: vec![0; 32],
            ciphertext: env.ciphertext.clone(),
        };
        assert_eq!(open(&sk, b"i", b"a", &zero_enc), Err(CryptoError::Decrypt));
        for bad_len in [0usize, 31, 33] {
            let malformed = Envelope {
                enc: vec![9; bad_len],
                ciphertext: env.ciphertext.clone(),
            };
            assert!(matches!(
                open(&sk, b"i", b"a", &malformed),
                Err(CryptoError::InvalidEncoding(_))
            ));
        }
    }

    #[test]
    fn crypto_hpke_keys_and_wire_forms() {
        let sk = HpkeSecretKey::generate(&mut rand::rngs::OsRng);
        let restored = HpkeSecretKey::from_bytes(&sk.to_bytes()).unwrap();
        assert_eq!(restored.public_key(), sk.public_key());
        assert_ne!(
            HpkeSecretKey::generate(&mut rand::rngs::OsRng).public_key(),
            sk.public_key()
        );
        assert!(HpkeSecretKey::from_bytes(&[1; 31]).is_err());
        assert!(HpkeSecretKey::from_bytes(&[]).is_err());
        assert_eq!(format!("{sk:?}"), "HpkeSecretKey(<redacted>)");

        let pk = sk.public_key();
        let json = serde_json::to_string(&pk).unwrap();
        assert_eq!(json, format!("\"{}\"", pk.to_hex()));
        assert_eq!(serde_json::from_str::<HpkePublicKey>(&json).unwrap(), pk);
        assert_eq!(HpkePublicKey::from_hex(&pk.to_hex()).unwrap(), pk);
        assert!(HpkePublicKey::from_hex("00").is_err());

        // The all-zero public key is a low-order point: refused when sealing.
        assert!(matches!(
            seal(
                &HpkePublicKey([0; 32]),
                b"",
                b"",
                b"x",
                &mut rand::rngs::OsRng
            ),
            Err(CryptoError::InvalidKey(_))
        ));

        let env = Envelope {
            enc: vec![0xfb; 32],
            ciphertext: vec![1, 2, 3],
        };
        let value = serde_json::to_value(&env).unwrap();
        assert_eq!(value["ciphertext"], "AQID");
        assert_eq!(serde_json::from_value::<Envelope>(value).unwrap(), env);
    }

    #[test]
    fn crypto_envelope_digest_separates_fields() {
        let a = Envelope {
            enc: vec![1, 2],
            ciphertext: vec![3],
        };
        let b = Envelope {
            enc: vec![1],
            ciphertext: vec![2, 3],
        };
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.clone().digest());
        let mut expected = Sha256::new();
        expected.update([0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
        assert_eq!(a.digest(), <[u8; 32]>::from(expected.finalize()));
    }
}
