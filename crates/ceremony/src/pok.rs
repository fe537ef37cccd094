//! Proof of knowledge of a contributor's secret: a Schnorr proof, made non-interactive
//! with Fiat–Shamir, that the contributor knows `x` with `public = x·base`, where `base` is
//! the element *before* the contribution and `public` the same element after it. The
//! challenge is bound to the hash of the transcript so far, so a proof cannot be replayed
//! in another position or ceremony.

use ark_bn254::{Fr, G1Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use zeroize::Zeroize;

use crate::error::Secret;
use crate::hash::{Digest, Hasher};

/// A Schnorr proof of knowledge of `x` such that `public = x·base` in G1.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize, CanonicalDeserialize)]
pub struct KnowledgeProof {
    /// `R = k·base` for the prover's nonce `k`.
    pub commitment: G1Affine,
    /// `s = k + c·x` where `c` hashes the context, base, public element and `R`.
    pub response: Fr,
}

impl KnowledgeProof {
    /// Proves knowledge of `secret`; `nonce` must be fresh, secret randomness (or, for a
    /// beacon, derived from the beacon) and is zeroized here.
    pub(crate) fn prove(
        secret: &Fr,
        mut nonce: Fr,
        base: &G1Affine,
        public: &G1Affine,
        context: &Digest,
        label: Secret,
    ) -> Self {
        let commitment = (base.into_group() * nonce).into_affine();
        let c = challenge(base, public, &commitment, context, label);
        let response = nonce + c * secret;
        nonce.zeroize();
        KnowledgeProof {
            commitment,
            response,
        }
    }

    /// Checks the proof for `public = x·base` under `context` (the hash of the transcript
    /// before the contribution).
    pub fn verify(
        &self,
        base: &G1Affine,
        public: &G1Affine,
        context: &Digest,
        label: Secret,
    ) -> bool {
        if base.is_zero() || public.is_zero() || self.commitment.is_zero() {
            return false;
        }
        let c = challenge(base, public, &self.commitment, context, label);
        base.into_group() * self.response == self.commitment.into_group() + public.into_group() * c
    }
}

fn challenge(
    base: &G1Affine,
    public: &G1Affine,
    commitment: &G1Affine,
    context: &Digest,
    label: Secret,
) -> Fr {
    Hasher::new("schnorr-challenge")
        .bytes(label.to_string().as_bytes())
        .item(context)
        .item(base)
        .item(public)
        .item(commitment)
        .scalar()
}
