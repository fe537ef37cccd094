//! The wallet's side: secrets, blinded outputs, and turning blind signatures into tokens.
//!
//! Secrets and blinding factors come from the wallet seed (NUT-13), so a wallet restored from
//! its recovery phrase can re-derive every output it ever made and ask the operator to sign
//! them again (NUT-09 restore, a service concern). Per keyset the wallet keeps a counter and
//! derives output `counter`:
//!
//! * keyset id version `00` (BIP-32, deprecated by NUT-13 but still specified):
//!   `secret = hex(key at m/129372'/0'/keyset_int'/counter'/0)`,
//!   `r = key at m/129372'/0'/keyset_int'/counter'/1`, with
//!   `keyset_int = int(id[0..8]) mod (2^31 − 1)`;
//! * keyset id version `01` (HMAC-SHA256): with
//!   `m = "Cashu_KDF_HMAC_SHA256" ‖ id bytes ‖ counter as u64 BE`,
//!   `secret = hex(HMAC-SHA256(seed, m ‖ 00))`, `r = HMAC-SHA256(seed, m ‖ 01) mod n`.
//!
//! The seed is the wallet's 64-byte BIP-39 seed ([`WalletSeed`]); the same seed also derives
//! voucher secrets, under a different construction, so the two never collide.

use bip32::{ChildNumber, ExtendedPrivateKey};
use hmac::{Hmac, Mac};
use k256::elliptic_curve::ops::Reduce;
use k256::{FieldBytes, Scalar, U256};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use super::dhke;
use super::dleq;
use super::encoding::{BlindingFactor, Secret};
use super::keyset::{KeysetId, KeysetKeys};
use super::wire::{BlindSignature, BlindedMessage, Proof, ProofDleq};
use super::CreditError;
use crate::crypto::WalletSeed;
use crate::Amount;

/// NUT-13 purpose (`129372` is 🥜 in UTF-8 as an integer).
const NUT13_PURPOSE: u32 = 129_372;

/// NUT-13 domain separator for version `01` keysets.
const NUT13_HMAC_DOMAIN: &[u8] = b"Cashu_KDF_HMAC_SHA256";

/// The NUT-13 secret and blinding factor of output `counter` for keyset `id`.
pub fn deterministic_secret(
    seed: &WalletSeed,
    id: &KeysetId,
    counter: u32,
) -> Result<(Secret, BlindingFactor), CreditError> {
    match id {
        KeysetId::V1(_) => bip32_secret(seed, id, counter),
        KeysetId::V2(_) => hmac_secret(seed, id, counter),
    }
}

fn bip32_secret(
    seed: &WalletSeed,
    id: &KeysetId,
    counter: u32,
) -> Result<(Secret, BlindingFactor), CreditError> {
    let derivation = |_| CreditError::Derivation("BIP-32");
    let hardened = |i| ChildNumber::new(i, true).map_err(derivation);
    let mut key =
        ExtendedPrivateKey::<k256::SecretKey>::new(seed.as_bytes()).map_err(derivation)?;
    for step in [
        hardened(NUT13_PURPOSE)?,
        hardened(0)?,
        hardened(id.bip32_index())?,
        hardened(counter)?,
    ] {
        key = key.derive_child(step).map_err(derivation)?;
    }
    let leaf = |i| -> Result<[u8; 32], CreditError> {
        let child = key
            .derive_child(ChildNumber::new(i, false).map_err(derivation)?)
            .map_err(derivation)?;
        Ok(child.to_bytes())
    };
    let mut secret_bytes = leaf(0)?;
    let mut r_bytes = leaf(1)?;
    let secret = Secret::from_bytes(&secret_bytes);
    let r = BlindingFactor::from_bytes(&r_bytes);
    secret_bytes.zeroize();
    r_bytes.zeroize();
    Ok((secret, r?))
}

fn hmac_secret(
    seed: &WalletSeed,
    id: &KeysetId,
    counter: u32,
) -> Result<(Secret, BlindingFactor), CreditError> {
    let derive = |kind: u8| -> Result<[u8; 32], CreditError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(seed.as_bytes())
            .map_err(|_| CreditError::Derivation("HMAC key"))?;
        mac.update(NUT13_HMAC_DOMAIN);
        mac.update(id.as_bytes());
        mac.update(&u64::from(counter).to_be_bytes());
        mac.update(&[kind]);
        Ok(mac.finalize().into_bytes().into())
    };
    let mut secret_bytes = derive(0)?;
    let mut r_bytes = derive(1)?;
    let secret = Secret::from_bytes(&secret_bytes);
    let r = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(r_bytes));
    secret_bytes.zeroize();
    r_bytes.zeroize();
    Ok((secret, BlindingFactor::from_scalar(r)?))
}

/// An output the wallet has sent (or will send) for signing, with what it needs to turn the
/// blind signature into a token. The wallet stores it (serde) until the signature arrives, so
/// that change still pending when it crashes can be collected later. `Debug` redacts the secret
/// and the blinding factor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreparedOutput {
    pub message: BlindedMessage,
    pub secret: Secret,
    pub r: BlindingFactor,
    /// The NUT-13 counter it was derived from, if it was.
    pub counter: Option<u32>,
}

impl PreparedOutput {
    /// Blinds `secret` with `r` for a token of `amount` under keyset `id`.
    pub fn new(
        amount: Amount,
        id: KeysetId,
        secret: Secret,
        r: BlindingFactor,
    ) -> Result<Self, CreditError> {
        let blinded_secret = dhke::blind(secret.as_str().as_bytes(), &r)?;
        Ok(Self {
            message: BlindedMessage {
                amount,
                id,
                blinded_secret,
            },
            secret,
            r,
            counter: None,
        })
    }

    /// Checks the operator's answer and unblinds it into a token.
    ///
    /// The signature must answer this output (same keyset and amount) and carry a DLEQ proof
    /// that it was made with the key `keys` publishes for the amount; `keys` must already have
    /// passed [`KeysetKeys::verify_id`]. The token keeps the DLEQ and `r` so that it can be
    /// checked offline by whoever receives it; [`Proof::for_spending`] removes them.
    pub fn finalize(
        &self,
        signature: &BlindSignature,
        keys: &KeysetKeys,
    ) -> Result<Proof, CreditError> {
        if signature.id != self.message.id || keys.id != self.message.id {
            return Err(CreditError::SignatureMismatch("keyset differs"));
        }
        if signature.amount != self.message.amount {
            return Err(CreditError::SignatureMismatch("amount differs"));
        }
        let a = keys.key(signature.amount)?;
        dleq::verify(
            a,
            &self.message.blinded_secret,
            &signature.blind_signature,
            &signature.dleq,
        )?;
        let c = dhke::unblind(&signature.blind_signature, &self.r, a)?;
        Ok(Proof {
            amount: self.message.amount,
            id: self.message.id,
            secret: self.secret.clone(),
            signature: c,
            dleq: Some(ProofDleq {
                e: signature.dleq.e,
                s: signature.dleq.s,
                r: self.r.clone(),
            }),
        })
    }
}

/// Outputs for `amounts` under keyset `id` from the wallet seed, using NUT-13 counters
/// `first_counter, first_counter + 1, …`. The wallet must store the next counter before
/// sending them, so that a crash never reuses a counter for different outputs.
pub fn deterministic_outputs(
    seed: &WalletSeed,
    id: &KeysetId,
    first_counter: u32,
    amounts: &[Amount],
) -> Result<Vec<PreparedOutput>, CreditError> {
    amounts
        .iter()
        .enumerate()
        .map(|(i, amount)| {
            let counter = u32::try_from(i)
                .ok()
                .and_then(|i| first_counter.checked_add(i))
                .ok_or(CreditError::Derivation("NUT-13 counter overflow"))?;
            let (secret, r) = deterministic_secret(seed, id, counter)?;
            let mut out = PreparedOutput::new(*amount, *id, secret, r)?;
            out.counter = Some(counter);
            Ok(out)
        })
        .collect()
}

/// Outputs with fresh random secrets and blinding factors (not restorable from the seed).
pub fn random_outputs<R: RngCore + CryptoRng>(
    rng: &mut R,
    id: &KeysetId,
    amounts: &[Amount],
) -> Result<Vec<PreparedOutput>, CreditError> {
    amounts
        .iter()
        .map(|amount| {
            PreparedOutput::new(
                *amount,
                *id,
                Secret::random(rng),
                BlindingFactor::random(rng),
            )
        })
        .collect()
}

/// Checks `keys` (its id) once and finalizes each output with the signature at the same
/// position. Fails as a whole if any signature is wrong: a wallet must not accept an answer
/// in which the operator tried to tag one output.
pub fn finalize_all(
    prepared: &[PreparedOutput],
    signatures: &[BlindSignature],
    keys: &KeysetKeys,
) -> Result<Vec<Proof>, CreditError> {
    if prepared.len() != signatures.len() {
        return Err(CreditError::SignatureMismatch(
            "not one signature per output",
        ));
    }
    keys.verify_id()?;
    prepared
        .iter()
        .zip(signatures)
        .map(|(p, s)| p.finalize(s, keys))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::credits::dleq::DleqProof;
    use crate::credits::encoding::Response;
    use crate::credits::keyset::{Day, KeyRing, Keyset, KeysetParams, MasterSecret};
    use crate::credits::swap::sign_outputs;
    use crate::credits::Point;
    use rand::rngs::OsRng;
    use serde::Deserialize;

    const NUT13: &str = include_str!("testdata/nut13.json");

    #[derive(Deserialize)]
    struct Vectors {
        mnemonic: String,
        v1: Derivation,
        v2: Derivation,
    }
    #[derive(Deserialize)]
    struct Derivation {
        keyset_id: String,
        secrets: Vec<String>,
        r: Vec<String>,
    }

    #[test]
    fn credits_nut13_deterministic_secret_vectors() {
        let v: Vectors = serde_json::from_str(NUT13).unwrap();
        let seed = WalletSeed::from_mnemonic(&v.mnemonic).unwrap();
        for d in [&v.v1, &v.v2] {
            let id = KeysetId::from_hex(&d.keyset_id).unwrap();
            assert_eq!(d.secrets.len(), 5);
            for (counter, (secret, r)) in d.secrets.iter().zip(&d.r).enumerate() {
                let (s, b) = deterministic_secret(&seed, &id, counter as u32).unwrap();
                assert_eq!(s.as_str(), secret, "{} secret {counter}", d.keyset_id);
                assert_eq!(hex::encode(b.to_bytes()), *r, "{} r {counter}", d.keyset_id);
            }
        }
        assert_eq!(
            KeysetId::from_hex(&v.v1.keyset_id).unwrap().bip32_index(),
            864559728
        );
    }

    #[test]
    fn credits_wallet_restores_credits_from_the_seed() {
        let seed = WalletSeed::from_mnemonic(
            "half depart obvious quality work element tank gorilla view sugar picture humble",
        )
        .unwrap();
        let now = 20_000 * crate::DAY;
        for version in [
            crate::credits::KeysetIdVersion::V1,
            crate::credits::KeysetIdVersion::V2,
        ] {
            let params = KeysetParams {
                orders: 8,
                id_version: version,
                ..KeysetParams::default()
            };
            let ring = KeyRing::new(MasterSecret::from_bytes([3u8; 32]), params, now).unwrap();
            let keyset = ring.current(now).unwrap();
            let amounts = crate::credits::split(Amount(13), 8);
            let outputs = deterministic_outputs(&seed, keyset.id(), 7, &amounts).unwrap();
            assert_eq!(outputs[0].counter, Some(7));
            let msgs: Vec<_> = outputs.iter().map(|o| o.message.clone()).collect();
            let tokens = finalize_all(
                &outputs,
                &sign_outputs(&msgs, &ring).unwrap(),
                &keyset.keys(),
            )
            .unwrap();

            // Lost storage: the same seed and counters give the same blinded messages, and the
            // operator's signatures on them (NUT-09) give back the same tokens.
            let restored = deterministic_outputs(&seed, keyset.id(), 7, &amounts).unwrap();
            let again: Vec<_> = restored.iter().map(|o| o.message.clone()).collect();
            assert_eq!(again, msgs);
            let back = finalize_all(
                &restored,
                &sign_outputs(&again, &ring).unwrap(),
                &keyset.keys(),
            )
            .unwrap();
            assert_eq!(back, tokens);
            for t in &tokens {
                t.verify_dleq(&keyset.keys()).unwrap();
                keyset.verify(t).unwrap();
            }
            // Other counters give other secrets.
            let next = deterministic_outputs(&seed, keyset.id(), 8, &amounts[..1]).unwrap();
            assert_ne!(next[0].message, msgs[0]);
        }
    }

    fn setup() -> (
        KeyRing,
        Vec<PreparedOutput>,
        Vec<BlindSignature>,
        KeysetKeys,
    ) {
        let now = 20_000 * crate::DAY;
        let params = KeysetParams {
            orders: 8,
            ..KeysetParams::default()
        };
        let ring = KeyRing::new(MasterSecret::from_bytes([5u8; 32]), params, now).unwrap();
        let keys = ring.current(now).unwrap().keys();
        let outputs = random_outputs(&mut OsRng, &keys.id, &[Amount(4), Amount(1)]).unwrap();
        let msgs: Vec<_> = outputs.iter().map(|o| o.message.clone()).collect();
        let sigs = sign_outputs(&msgs, &ring).unwrap();
        (ring, outputs, sigs, keys)
    }

    #[test]
    fn credits_wallet_refuses_a_signature_under_an_unpublished_key() {
        let (_, outputs, sigs, keys) = setup();
        finalize_all(&outputs, &sigs, &keys).unwrap();

        // The operator signs one output with a key it does not publish (tagging), with an
        // honest DLEQ for that key: the proof does not match the published key.
        let tagging = Keyset::derive(
            &MasterSecret::from_bytes([6u8; 32]),
            Day(20_000),
            &KeysetParams {
                orders: 8,
                ..KeysetParams::default()
            },
        )
        .unwrap();
        let mut msg = outputs[1].message.clone();
        msg.id = *tagging.id();
        let mut tagged = tagging.sign(&msg).unwrap();
        tagged.id = keys.id;
        let mut mixed = sigs.clone();
        mixed[1] = tagged;
        assert_eq!(
            finalize_all(&outputs, &mixed, &keys),
            Err(CreditError::BadDleq)
        );

        // A tampered DLEQ, a swapped signature, a changed amount, a missing signature.
        let mut bad = sigs.clone();
        bad[0].dleq = DleqProof {
            e: bad[0].dleq.e,
            s: Response::from_bytes(&[1u8; 32]).unwrap(),
        };
        assert_eq!(
            finalize_all(&outputs, &bad, &keys),
            Err(CreditError::BadDleq)
        );
        let swapped = vec![sigs[1].clone(), sigs[0].clone()];
        assert!(finalize_all(&outputs, &swapped, &keys).is_err());
        let mut amount = sigs.clone();
        amount[1].amount = Amount(4);
        assert_eq!(
            finalize_all(&outputs, &amount, &keys),
            Err(CreditError::SignatureMismatch("amount differs"))
        );
        assert!(finalize_all(&outputs, &sigs[..1], &keys).is_err());
        // Keys whose id does not match them are refused before anything else.
        let mut lying = keys.clone();
        lying.final_expiry += 1;
        assert_eq!(
            finalize_all(&outputs, &sigs, &lying),
            Err(CreditError::KeysetIdMismatch)
        );
    }

    #[test]
    fn credits_token_dleq_check_by_the_receiver() {
        let (_, outputs, sigs, keys) = setup();
        // A pending output survives a round trip through the wallet's storage.
        let stored = serde_json::to_string(&outputs).unwrap();
        assert!(!format!("{outputs:?}").contains(outputs[0].secret.as_str()));
        let outputs: Vec<PreparedOutput> = serde_json::from_str(&stored).unwrap();
        let tokens = finalize_all(&outputs, &sigs, &keys).unwrap();
        tokens[0].verify_dleq(&keys).unwrap();
        let mut forged = tokens[0].clone();
        forged.signature =
            Point::from_hex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap();
        assert_eq!(forged.verify_dleq(&keys), Err(CreditError::BadDleq));
        assert_eq!(
            tokens[0].for_spending().verify_dleq(&keys),
            Err(CreditError::MissingDleq)
        );
        let mut relabelled = tokens[1].clone();
        relabelled.amount = Amount(2);
        assert_eq!(relabelled.verify_dleq(&keys), Err(CreditError::BadDleq));
    }
}
