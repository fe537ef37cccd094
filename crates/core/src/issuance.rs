//! What an issuer signs. The RSA blind signature is over a domain-separated encoding of the
//! commitment, so an issuer key can never be used to sign anything but a voucher of smpx.

use crate::crypto::voucher::Commitment;

const DOMAIN: &[u8] = b"smpx/voucher/v1:";

/// The message an issuer (blindly) signs for the voucher with commitment `c`.
pub fn voucher_message(c: &Commitment) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&c.0 .0);
    m
}

/// Runs both sides of a purchase in one place — the wallet's blinding and finalising and the
/// issuer's blind signature — and returns the voucher secret and its publish request.
/// For tests, benchmarks and tools that act as issuer and buyer at once; a real purchase
/// splits this between the wallet and the issuer service. The secret and the blinding come
/// from `rng`.
pub fn issue_locally(
    issuer_key: &crate::crypto::blind::IssuerSecretKey,
    key_id: &str,
    denomination: u64,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<
    (
        crate::crypto::voucher::VoucherSecret,
        crate::api::PublishRequest,
    ),
    crate::crypto::CryptoError,
> {
    use crate::crypto::voucher::{commitment, VoucherSecret};
    let s = VoucherSecret::random(rng);
    let c = commitment(&s, denomination);
    let pk = issuer_key.public_key()?;
    let msg = voucher_message(&c);
    let (blinded, state) = pk.blind(&msg, rng)?;
    let blind_sig = issuer_key.blind_sign(&blinded)?;
    let signature = pk.finalize(&blind_sig, &state, &msg)?;
    Ok((
        s,
        crate::api::PublishRequest {
            commitment: c,
            denomination,
            key_id: key_id.to_owned(),
            signature,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::blind::IssuerSecretKey;
    use smpx_os::{Entropy, SeededEntropy};

    #[test]
    fn the_same_seeded_source_gives_the_same_key_secret_and_request() {
        let run = |seed: u64| {
            let e: &dyn Entropy = &SeededEntropy::new(seed);
            let key = IssuerSecretKey::generate(2048, &mut e.rng()).unwrap();
            let (s, req) = issue_locally(&key, "k-1", 10, &mut e.rng()).unwrap();
            (s.to_bytes().0, serde_json::to_vec(&req).unwrap())
        };
        let first = run(5);
        assert_eq!(first, run(5));
        let other = run(6);
        assert_ne!(first.0, other.0);
        assert_ne!(first.1, other.1);
    }
}
