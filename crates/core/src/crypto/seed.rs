//! The wallet seed: one BIP-39 recovery phrase from which every voucher secret is derived.
//!
//! A wallet that loses its storage must be able to find its vouchers again, so voucher
//! secrets are not random but `HKDF-SHA256(seed, index)`: restoring the phrase and
//! re-deriving indices `0, 1, 2, ...` recovers every secret (and so every commitment and
//! nullifier). BIP-39 is used as-is, with an empty BIP-39 passphrase, so the phrase can be
//! checked with any BIP-39 tool; the HKDF salt is versioned so a future derivation can
//! coexist with this one.

use std::fmt;

use ark_ff::PrimeField;
use bip39::{Language, Mnemonic};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::field::Fr;
use super::voucher::VoucherSecret;
use super::CryptoError;

/// HKDF salt for voucher secrets; bump the version to change the derivation.
const VOUCHER_SECRET_SALT: &[u8] = b"smpx/voucher-secret/v1";

/// The 64-byte BIP-39 seed of a wallet. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WalletSeed([u8; 64]);

impl WalletSeed {
    /// A new 24-word English recovery phrase (256 bits from `rng`).
    pub fn generate_mnemonic(rng: &mut (impl RngCore + CryptoRng)) -> String {
        let mut entropy = [0u8; 32];
        rng.fill_bytes(&mut entropy);
        let phrase = match Mnemonic::from_entropy_in(Language::English, &entropy) {
            Ok(m) => m.to_string(),
            // 256 bits is one of the five entropy sizes BIP-39 defines.
            Err(e) => unreachable!("BIP-39 rejected 256-bit entropy: {e}"),
        };
        entropy.zeroize();
        phrase
    }

    /// The seed of an English BIP-39 phrase (any valid length), with an empty BIP-39
    /// passphrase. Whitespace is normalised and case ignored, since phrases are often typed
    /// back from paper; the checksum must be valid.
    pub fn from_mnemonic(phrase: &str) -> Result<Self, CryptoError> {
        let mut normalised = phrase
            .split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ");
        let parsed = Mnemonic::parse_in(Language::English, normalised.as_str());
        normalised.zeroize();
        let mnemonic = parsed.map_err(|e| {
            CryptoError::InvalidMnemonic(match e {
                bip39::Error::BadWordCount(_) => "expected 12, 15, 18, 21 or 24 words",
                bip39::Error::UnknownWord(_) => "a word is not in the BIP-39 English word list",
                bip39::Error::InvalidChecksum => {
                    "checksum mismatch: a word is mistyped or out of order"
                }
                _ => "not a valid BIP-39 English phrase",
            })
        })?;
        Ok(Self(mnemonic.to_seed("")))
    }

    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The voucher secret at `index`:
    /// `HKDF-SHA256(salt = "smpx/voucher-secret/v1", ikm = seed, info = index as u64 BE)`,
    /// 64 output bytes reduced mod r (bias about 2^-258).
    pub fn voucher_secret(&self, index: u64) -> VoucherSecret {
        let hk = Hkdf::<Sha256>::new(Some(VOUCHER_SECRET_SALT), &self.0);
        let mut okm = [0u8; 64];
        if let Err(e) = hk.expand(&index.to_be_bytes(), &mut okm) {
            // HKDF-SHA256 can expand to 255 * 32 bytes; 64 is fixed here.
            unreachable!("HKDF-SHA256 refused a 64-byte output: {e}");
        }
        let s = Fr::from_be_bytes_mod_order(&okm);
        okm.zeroize();
        VoucherSecret::from_fr(s)
    }
}

impl fmt::Debug for WalletSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WalletSeed(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Official BIP-39 English vectors (trezor/python-mnemonic vectors.json; passphrase
    /// "TREZOR"): entropy, mnemonic, seed.
    const TREZOR_VECTORS: [(&str, &str, &str); 3] = [
        (
            "00000000000000000000000000000000",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
        ),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art",
            "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
        ),
        (
            "7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f",
            "legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth useful legal winner thank year wave sausage worth title",
            "bc09fca1804f7e69da93c2f2028eb238c227f2e9dda30cd63699232578480a4021b146ad717fbb7e451ce9eb835f43620bf5c514db0f8add49f5d121449d3e87",
        ),
    ];

    #[test]
    fn crypto_bip39_official_vectors_through_the_crate() {
        for (entropy, phrase, seed) in TREZOR_VECTORS {
            let m = Mnemonic::from_entropy(&hex::decode(entropy).unwrap()).unwrap();
            assert_eq!(m.to_string(), phrase);
            assert_eq!(hex::encode(m.to_seed("TREZOR")), seed);
            let parsed = Mnemonic::parse_in(Language::English, phrase).unwrap();
            assert_eq!(hex::encode(parsed.to_entropy()), entropy);
        }
    }

    #[test]
    fn crypto_bip39_from_mnemonic_uses_empty_passphrase() {
        let (_, phrase, trezor_seed) = TREZOR_VECTORS[1];
        let ours = WalletSeed::from_mnemonic(phrase).unwrap();
        let expected = Mnemonic::parse_in(Language::English, phrase)
            .unwrap()
            .to_seed("");
        assert_eq!(ours.as_bytes(), &expected);
        assert_ne!(hex::encode(ours.as_bytes()), trezor_seed);
    }

    #[test]
    fn crypto_bip39_generated_phrase_is_24_valid_words_and_fresh() {
        let a = WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng);
        let b = WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng);
        assert_eq!(a.split(' ').count(), 24);
        assert_ne!(a, b);
        assert!(WalletSeed::from_mnemonic(&a).is_ok());
    }

    #[test]
    fn crypto_bip39_restore_is_deterministic() {
        let phrase = WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng);
        let original = WalletSeed::from_mnemonic(&phrase).unwrap();
        // Typed back from paper: odd spacing, line breaks, capitals.
        let retyped = format!("  {}\n", phrase.to_uppercase().replace(' ', " \t "));
        let restored = WalletSeed::from_mnemonic(&retyped).unwrap();
        assert_eq!(original.as_bytes(), restored.as_bytes());
        for i in [0u64, 1, 2, 1_000_000, u64::MAX] {
            assert_eq!(
                original.voucher_secret(i).to_fr(),
                restored.voucher_secret(i).to_fr()
            );
        }
        assert_ne!(
            original.voucher_secret(0).to_fr(),
            original.voucher_secret(1).to_fr()
        );
        let other =
            WalletSeed::from_mnemonic(&WalletSeed::generate_mnemonic(&mut rand::rngs::OsRng))
                .unwrap();
        assert_ne!(
            original.voucher_secret(0).to_fr(),
            other.voucher_secret(0).to_fr()
        );
    }

    #[test]
    fn crypto_voucher_secret_derivation_is_the_documented_hkdf() {
        let seed = WalletSeed::from_bytes([7u8; 64]);
        let mut okm = [0u8; 64];
        Hkdf::<Sha256>::new(Some(b"smpx/voucher-secret/v1"), &[7u8; 64])
            .expand(&5u64.to_be_bytes(), &mut okm)
            .unwrap();
        assert_eq!(
            seed.voucher_secret(5).to_fr(),
            Fr::from_be_bytes_mod_order(&okm)
        );
    }

    #[test]
    fn crypto_bip39_rejects_bad_phrases() {
        // Last word changed: every word is valid, the checksum is not.
        let bad_checksum = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
        assert_eq!(
            WalletSeed::from_mnemonic(bad_checksum).map(|_| ()),
            Err(CryptoError::InvalidMnemonic(
                "checksum mismatch: a word is mistyped or out of order"
            ))
        );
        let unknown = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandonn";
        assert!(matches!(
            WalletSeed::from_mnemonic(unknown),
            Err(CryptoError::InvalidMnemonic(_))
        ));
        for bad in ["", "abandon", "about about", "🙂 🙂 🙂"] {
            assert!(matches!(
                WalletSeed::from_mnemonic(bad),
                Err(CryptoError::InvalidMnemonic(_))
            ));
        }
    }

    #[test]
    fn crypto_wallet_seed_debug_is_redacted() {
        let seed = WalletSeed::from_bytes([9u8; 64]);
        assert_eq!(format!("{seed:?}"), "WalletSeed(<redacted>)");
    }
}
