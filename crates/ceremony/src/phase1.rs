//! Phase 1: powers of tau (circuit-independent).
//!
//! The accumulator after contributions with secrets `(τ_k, α_k, β_k)` holds, for
//! `τ = Πτ_k`, `α = Πα_k`, `β = Πβ_k` and `N = 2^power`:
//! `[τ^i]₁` for `i < 2N-1`, `[τ^i]₂` for `i < N`, `[α·τ^i]₁` and `[β·τ^i]₁` for `i < N`,
//! and `[β]₂`. That supports any circuit whose evaluation domain has at most `N` points.

use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup};
use ark_serialize::{
    CanonicalDeserialize, CanonicalSerialize, Compress, Read, SerializationError, Valid, Validate,
};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::beacon::{beacon_scalar, Contributor};
use crate::error::{CeremonyError, Element, Fault, Phase, Secret};
use crate::group::{
    chain_g1, chain_g2, g1, g2, powers, random_scalar, read_points, scale, FastMul, RatioBatch,
};
use crate::hash::{fresh_scalar, Digest, Hasher};
use crate::pok::KnowledgeProof;
use crate::progress::{Progress, Stage, Tick};
use crate::MAX_POWER;

/// The powers-of-tau accumulator.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize)]
pub struct Accumulator {
    /// `[τ^i]₁`, `i < 2N-1`.
    pub tau_g1: Vec<G1Affine>,
    /// `[τ^i]₂`, `i < N`.
    pub tau_g2: Vec<G2Affine>,
    /// `[α·τ^i]₁`, `i < N`.
    pub alpha_tau_g1: Vec<G1Affine>,
    /// `[β·τ^i]₁`, `i < N`.
    pub beta_tau_g1: Vec<G1Affine>,
    /// `[β]₂`.
    pub beta_g2: G2Affine,
}

impl Accumulator {
    /// The starting accumulator (every secret 1: all elements are the generators).
    pub fn initial(power: u32) -> Result<Self, CeremonyError> {
        let n = size(power)?;
        Ok(Accumulator {
            tau_g1: vec![g1(); 2 * n - 1],
            tau_g2: vec![g2(); n],
            alpha_tau_g1: vec![g1(); n],
            beta_tau_g1: vec![g1(); n],
            beta_g2: g2(),
        })
    }

    /// `N`, the largest evaluation domain this accumulator supports.
    pub fn domain_size(&self) -> usize {
        self.tau_g2.len()
    }

    fn check_shape(&self, power: u32) -> Result<(), Fault> {
        let n = 1usize << power;
        if self.tau_g1.len() != 2 * n - 1
            || self.tau_g2.len() != n
            || self.alpha_tau_g1.len() != n
            || self.beta_tau_g1.len() != n
        {
            return Err(Fault::Malformed(
                "vector lengths do not match the ceremony size",
            ));
        }
        if self.tau_g1[0] != g1() || self.tau_g2[0] != g2() {
            return Err(Fault::Malformed("the first powers are not the generators"));
        }
        Ok(())
    }
}

impl Valid for Accumulator {
    fn check(&self) -> Result<(), SerializationError> {
        G1Affine::batch_check(self.tau_g1.iter())?;
        G2Affine::batch_check(self.tau_g2.iter())?;
        G1Affine::batch_check(self.alpha_tau_g1.iter())?;
        G1Affine::batch_check(self.beta_tau_g1.iter())?;
        self.beta_g2.check()
    }
}

impl CanonicalDeserialize for Accumulator {
    fn deserialize_with_mode<R: Read>(
        mut reader: R,
        compress: Compress,
        validate: Validate,
    ) -> Result<Self, SerializationError> {
        Ok(Accumulator {
            tau_g1: read_points(&mut reader, compress, validate)?,
            tau_g2: read_points(&mut reader, compress, validate)?,
            alpha_tau_g1: read_points(&mut reader, compress, validate)?,
            beta_tau_g1: read_points(&mut reader, compress, validate)?,
            beta_g2: G2Affine::deserialize_with_mode(&mut reader, compress, validate)?,
        })
    }
}

/// `N = 2^power`, checked.
pub(crate) fn size(power: u32) -> Result<usize, CeremonyError> {
    if power == 0 || power > MAX_POWER {
        return Err(CeremonyError::UnsupportedPower(power));
    }
    Ok(1usize << power)
}

/// Proofs of knowledge of the three secrets, each relative to the previous accumulator:
/// `τ` on `[τ]₁`, `α` on `[α]₁`, `β` on `[β]₁`.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize, CanonicalDeserialize)]
pub struct Phase1Proofs {
    /// Knowledge of `τ_k` with `new.tau_g1[1] = τ_k · prev.tau_g1[1]`.
    pub tau: KnowledgeProof,
    /// Knowledge of `α_k` with `new.alpha_tau_g1[0] = α_k · prev.alpha_tau_g1[0]`.
    pub alpha: KnowledgeProof,
    /// Knowledge of `β_k` with `new.beta_tau_g1[0] = β_k · prev.beta_tau_g1[0]`.
    pub beta: KnowledgeProof,
}

/// One phase-1 contribution: who, the accumulator after it, the proofs, and its hash.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize, CanonicalDeserialize)]
pub struct Phase1Contribution {
    /// A participant or the beacon.
    pub contributor: Contributor,
    /// The accumulator after this contribution.
    pub accumulator: Accumulator,
    /// Proofs of knowledge of the secrets (a valid contribution always has them).
    pub proofs: Option<Phase1Proofs>,
    /// The contribution's hash, chaining the previous one (what a contributor publishes).
    pub hash: Digest,
}

impl Phase1Contribution {
    /// The hash of this contribution's content chained to `prev` (the previous
    /// contribution's hash, or the phase's start hash).
    pub fn compute_hash(&self, prev: &Digest) -> Digest {
        Hasher::new("phase1-contribution")
            .item(prev)
            .item(&self.contributor)
            .item(&self.accumulator)
            .item(&self.proofs)
            .finish()
    }
}

/// The hash phase 1 starts from: it fixes the ceremony size.
pub(crate) fn start_hash(power: u32) -> Digest {
    Hasher::new("phase1-start").u64(u64::from(power)).finish()
}

/// A contribution's secrets and proof nonces; zeroized when dropped.
pub(crate) struct Secrets {
    tau: Fr,
    alpha: Fr,
    beta: Fr,
    nonces: [Fr; 3],
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.tau.zeroize();
        self.alpha.zeroize();
        self.beta.zeroize();
        self.nonces.zeroize();
    }
}

impl Secrets {
    pub(crate) fn random<R: RngCore + CryptoRng>(rng: &mut R, extra: &[u8]) -> Self {
        let mut f = |label| fresh_scalar(rng, extra, label);
        Secrets {
            tau: f("tau"),
            alpha: f("alpha"),
            beta: f("beta"),
            nonces: [f("nonce-tau"), f("nonce-alpha"), f("nonce-beta")],
        }
    }

    pub(crate) fn from_beacon(output: &[u8; 32], context: &Digest) -> Self {
        let s = |label, role| beacon_scalar(output, context, label, role);
        Secrets {
            tau: s("phase1-secret", Secret::Tau),
            alpha: s("phase1-secret", Secret::Alpha),
            beta: s("phase1-secret", Secret::Beta),
            nonces: [
                s("phase1-nonce", Secret::Tau),
                s("phase1-nonce", Secret::Alpha),
                s("phase1-nonce", Secret::Beta),
            ],
        }
    }

    #[cfg(test)]
    pub(crate) fn fixed(tau: Fr, alpha: Fr, beta: Fr) -> Self {
        Secrets {
            tau,
            alpha,
            beta,
            nonces: [Fr::from(7u64), Fr::from(8u64), Fr::from(9u64)],
        }
    }
}

/// Multiplies `secrets` into `prev`.
pub(crate) fn contribute(
    prev: &Accumulator,
    prev_hash: &Digest,
    contributor: Contributor,
    secrets: &Secrets,
    progress: &dyn Progress,
) -> Phase1Contribution {
    let n = prev.tau_g2.len();
    let total = (prev.tau_g1.len() + 3 * n) as u64;
    let tick = Tick::new(progress, Stage::Contribute(Phase::One), total);
    let tau_powers = Zeroizing::new(powers(secrets.tau, prev.tau_g1.len()));

    let tau_g1 = scale::<G1Projective>(&prev.tau_g1, |i| tau_powers[i], &tick);
    let tau_g2 = scale::<G2Projective>(&prev.tau_g2, |i| tau_powers[i], &tick);
    let alpha = secrets.alpha;
    let alpha_tau_g1 = scale::<G1Projective>(&prev.alpha_tau_g1, |i| alpha * tau_powers[i], &tick);
    let beta = secrets.beta;
    let beta_tau_g1 = scale::<G1Projective>(&prev.beta_tau_g1, |i| beta * tau_powers[i], &tick);
    let beta_g2 = G2Projective::fast_mul(prev.beta_g2.into_group(), secrets.beta).into_affine();
    let accumulator = Accumulator {
        tau_g1,
        tau_g2,
        alpha_tau_g1,
        beta_tau_g1,
        beta_g2,
    };

    let proofs = Phase1Proofs {
        tau: KnowledgeProof::prove(
            &secrets.tau,
            secrets.nonces[0],
            &prev.tau_g1[1],
            &accumulator.tau_g1[1],
            prev_hash,
            Secret::Tau,
        ),
        alpha: KnowledgeProof::prove(
            &secrets.alpha,
            secrets.nonces[1],
            &prev.alpha_tau_g1[0],
            &accumulator.alpha_tau_g1[0],
            prev_hash,
            Secret::Alpha,
        ),
        beta: KnowledgeProof::prove(
            &secrets.beta,
            secrets.nonces[2],
            &prev.beta_tau_g1[0],
            &accumulator.beta_tau_g1[0],
            prev_hash,
            Secret::Beta,
        ),
    };
    let mut c = Phase1Contribution {
        contributor,
        accumulator,
        proofs: Some(proofs),
        hash: Digest([0; 32]),
    };
    c.hash = c.compute_hash(prev_hash);
    c
}

/// Checks one contribution against the accumulator before it.
///
/// Together the checks establish, for the key elements `[τ]₁`, `[α]₁`, `[β]₁`, that the
/// contributor knows the factor `x` relating them to the previous accumulator (Schnorr,
/// bound to `prev_hash`), and that every other element is the same power/product of the
/// new `τ, α, β` (pairing checks batched by random linear combinations):
/// 1. shape and generators; 2. hash chain; 3. not a copy; 4. proofs present;
/// 5. key elements changed and not the identity; 6. proofs of knowledge;
/// 7. for the beacon, the secrets are the ones the beacon derives;
/// 8. `e([τ]₁, g₂) = e(g₁, [τ]₂)` and `e([β]₁, g₂) = e(g₁, [β]₂)`;
/// 9. `[τ^{i+1}]₁`, `[α·τ^{i+1}]₁`, `[β·τ^{i+1}]₁` are `τ` times their predecessors, and
///    `[τ^{i+1}]₂` is `τ` times `[τ^i]₂`: each chain reduced to one pair by a random
///    linear combination, and all the same-ratio relations of 8–9 checked with one
///    multi-pairing (split to name the culprit if it fails).
pub(crate) fn verify_contribution(
    prev: &Accumulator,
    prev_hash: &Digest,
    c: &Phase1Contribution,
    power: u32,
    tick: &Tick<'_>,
) -> Result<(), Fault> {
    let acc = &c.accumulator;
    acc.check_shape(power)?;
    if c.hash != c.compute_hash(prev_hash) {
        return Err(Fault::HashMismatch);
    }
    if acc == prev {
        return Err(Fault::ReusedAccumulator);
    }
    let proofs = c.proofs.as_ref().ok_or(Fault::MissingProof)?;
    let keys = [
        (Secret::Tau, &prev.tau_g1[1], &acc.tau_g1[1], &proofs.tau),
        (
            Secret::Alpha,
            &prev.alpha_tau_g1[0],
            &acc.alpha_tau_g1[0],
            &proofs.alpha,
        ),
        (
            Secret::Beta,
            &prev.beta_tau_g1[0],
            &acc.beta_tau_g1[0],
            &proofs.beta,
        ),
    ];
    for (secret, before, after, _) in keys {
        if after.is_zero() {
            return Err(Fault::Degenerate(secret));
        }
        if after == before {
            return Err(Fault::SecretNotApplied(secret));
        }
    }
    for (secret, before, after, proof) in keys {
        if !proof.verify(before, after, prev_hash, secret) {
            return Err(Fault::InvalidProof(secret));
        }
    }
    tick.advance(1);
    if let Contributor::Beacon(beacon) = &c.contributor {
        let output = beacon.output(&crate::progress::Silent);
        let s = Secrets::from_beacon(&output, prev_hash);
        for (secret, before, after, _) in keys {
            let x = match secret {
                Secret::Tau => s.tau,
                Secret::Alpha => s.alpha,
                _ => s.beta,
            };
            if (before.into_group() * x).into_affine() != *after {
                return Err(Fault::BeaconMismatch(secret));
            }
        }
    }
    tick.advance(1);

    // Random linear combinations of each chain: Σ_i r^i·P_i and Σ_i r^i·P_{i+1}.
    let coeffs = powers(random_scalar(), acc.tau_g1.len());
    let tau = chain_g1(&acc.tau_g1, &coeffs);
    let alpha = chain_g1(&acc.alpha_tau_g1, &coeffs);
    let beta = chain_g1(&acc.beta_tau_g1, &coeffs);
    let tau2 = chain_g2(&acc.tau_g2, &coeffs);
    tick.advance(1);

    let (g1p, g2p) = (g1().into_group(), g2().into_group());
    let t1 = acc.tau_g1[1].into_group();
    let t2 = acc.tau_g2[1].into_group();
    let mut batch = RatioBatch::new();
    batch.push(Element::TauG2, (g1p, t1), (g2p, t2), false);
    batch.push(
        Element::BetaG2,
        (g1p, acc.beta_tau_g1[0].into()),
        (g2p, acc.beta_g2.into()),
        false,
    );
    batch.push(Element::TauG1, tau, (g2p, t2), false);
    batch.push(Element::AlphaTauG1, alpha, (g2p, t2), false);
    batch.push(Element::BetaTauG1, beta, (g2p, t2), false);
    if acc.tau_g2.len() > 2 {
        batch.push(Element::TauG2, (g1p, t1), tau2, false);
    }
    batch.check().map_err(Fault::Inconsistent)?;
    tick.advance(1);
    Ok(())
}

/// Number of progress units [`verify_contribution`] reports.
pub(crate) const VERIFY_STEPS: u64 = 4;

/// Verifies a whole phase 1 and returns the final accumulator and hash.
pub(crate) fn verify_all<'a>(
    power: u32,
    contributions: &'a [Phase1Contribution],
    progress: &dyn Progress,
) -> Result<(std::borrow::Cow<'a, Accumulator>, Digest), CeremonyError> {
    let mut prev: std::borrow::Cow<'a, Accumulator> =
        std::borrow::Cow::Owned(Accumulator::initial(power)?);
    let mut prev_hash = start_hash(power);
    let mut closed = false;
    let mut participants = 0usize;
    for (index, c) in contributions.iter().enumerate() {
        let fail = |fault| CeremonyError::InvalidContribution {
            phase: Phase::One,
            index,
            hash: c.hash,
            fault,
        };
        if closed {
            return Err(fail(Fault::AfterBeacon));
        }
        let tick = Tick::new(progress, Stage::Verify(Phase::One, index), VERIFY_STEPS);
        verify_contribution(&prev, &prev_hash, c, power, &tick).map_err(fail)?;
        match c.contributor {
            Contributor::Beacon(_) => closed = true,
            Contributor::Participant { .. } => participants += 1,
        }
        prev = std::borrow::Cow::Borrowed(&c.accumulator);
        prev_hash = c.hash;
    }
    if participants == 0 {
        return Err(CeremonyError::NoParticipant(Phase::One));
    }
    Ok((prev, prev_hash))
}
