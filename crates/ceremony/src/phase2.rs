//! Phase 2: the circuit-specific part (δ).
//!
//! From the final phase-1 accumulator and the circuit's R1CS, the initial proving key is
//! computed deterministically with `γ = δ = 1` (exactly the key `ark-groth16`'s generator
//! would produce for secrets `τ, α, β`, `γ = δ = 1` and the standard generators). Each
//! contribution multiplies δ by a fresh secret `d`: `[δ]₁`, `[δ]₂` by `d`, and every
//! element of the H and L queries by `1/d`. Nothing else changes, so contributions record
//! only those parts ([`DeltaKey`]).

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{Field, One, Zero};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::{EvaluationDomain, GeneralEvaluationDomain};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, Matrix, OptimizationGoal, SynthesisMode,
    R1CS_PREDICATE_LABEL,
};
use ark_serialize::{
    CanonicalDeserialize, CanonicalSerialize, Compress, Read, SerializationError, Valid, Validate,
};
use ark_std::cfg_into_iter;
use rand_core::{CryptoRng, RngCore};
#[cfg(feature = "parallel")]
use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::beacon::{beacon_scalar, Contributor};
use crate::error::{CeremonyError, Element, Fault, Phase, Secret};
use crate::group::{g1, g2, powers, random_scalar, read_points, scale, FastMul, G2Glv, RatioBatch};
use crate::hash::{fresh_scalar, Digest, Hasher};
use crate::phase1::Accumulator;
use crate::pok::KnowledgeProof;
use crate::progress::{Progress, Stage, Tick};

/// A circuit's R1CS, as `ark-groth16` sees it: synthesised in setup mode with the
/// constraint-count optimisation goal, inlined, R1CS predicate only.
#[derive(Clone, Debug)]
pub struct R1cs {
    /// Instance variables, including the constant `1`.
    pub num_instance: usize,
    /// Witness variables.
    pub num_witness: usize,
    /// Constraints.
    pub num_constraints: usize,
    /// The A, B and C matrices (rows are constraints; entries `(coefficient, variable)`).
    pub matrices: [Matrix<Fr>; 3],
}

impl R1cs {
    /// Synthesises `circuit` exactly as `Groth16::circuit_specific_setup` and `prove` do.
    pub fn synthesize<C: ConstraintSynthesizer<Fr>>(circuit: C) -> Result<Self, CeremonyError> {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_optimization_goal(OptimizationGoal::Constraints);
        cs.set_mode(SynthesisMode::Setup);
        circuit.generate_constraints(cs.clone())?;
        cs.finalize();
        for (label, n) in cs.get_all_predicates_num_constraints() {
            if label != R1CS_PREDICATE_LABEL && n > 0 {
                return Err(CeremonyError::UnsupportedConstraints(label));
            }
        }
        let mut all = cs.to_matrices()?;
        let m = all.remove(R1CS_PREDICATE_LABEL).unwrap_or_default();
        let num_constraints = cs.num_constraints();
        let mut it = m.into_iter();
        let (a, b, c) = match (it.next(), it.next(), it.next(), it.next()) {
            (Some(a), Some(b), Some(c), None) => (a, b, c),
            (None, None, None, None) if num_constraints == 0 => (vec![], vec![], vec![]),
            _ => {
                return Err(CeremonyError::UnsupportedConstraints(
                    "R1CS predicate without three matrices".into(),
                ))
            }
        };
        if a.len() != num_constraints || b.len() != num_constraints || c.len() != num_constraints {
            return Err(CeremonyError::UnsupportedConstraints(
                "matrix rows differ from the constraint count".into(),
            ));
        }
        Ok(R1cs {
            num_instance: cs.num_instance_variables(),
            num_witness: cs.num_witness_variables(),
            num_constraints,
            matrices: [a, b, c],
        })
    }

    /// The evaluation domain `ark-groth16` uses for this circuit.
    pub fn domain(&self) -> Result<GeneralEvaluationDomain<Fr>, CeremonyError> {
        let needed = self.num_constraints + self.num_instance;
        GeneralEvaluationDomain::<Fr>::new(needed).ok_or(CeremonyError::CircuitTooLarge {
            needed,
            available: 1 << crate::MAX_POWER,
        })
    }

    /// The digest binding phase 2 to this circuit: variable counts, the domain, every
    /// matrix entry.
    pub fn digest(&self) -> Digest {
        let mut h = Hasher::new("r1cs")
            .u64(self.num_instance as u64)
            .u64(self.num_witness as u64)
            .u64(self.num_constraints as u64);
        for m in &self.matrices {
            for row in m {
                h = h.u64(row.len() as u64);
                for (coeff, var) in row {
                    h = h.item(coeff).u64(*var as u64);
                }
            }
        }
        h.finish()
    }
}

/// The δ-dependent part of the proving key: all that phase-2 contributions change.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize)]
pub struct DeltaKey {
    /// `[δ]₁`.
    pub delta_g1: G1Affine,
    /// `[δ]₂`.
    pub delta_g2: G2Affine,
    /// `[τ^i·Z(τ)/δ]₁`, `i < n-1`.
    pub h_query: Vec<G1Affine>,
    /// `[(β·a_j(τ) + α·b_j(τ) + c_j(τ))/δ]₁` for each witness variable `j`.
    pub l_query: Vec<G1Affine>,
}

impl Valid for DeltaKey {
    fn check(&self) -> Result<(), SerializationError> {
        self.delta_g1.check()?;
        self.delta_g2.check()?;
        G1Affine::batch_check(self.h_query.iter())?;
        G1Affine::batch_check(self.l_query.iter())
    }
}

impl CanonicalDeserialize for DeltaKey {
    fn deserialize_with_mode<R: Read>(
        mut reader: R,
        compress: Compress,
        validate: Validate,
    ) -> Result<Self, SerializationError> {
        Ok(DeltaKey {
            delta_g1: G1Affine::deserialize_with_mode(&mut reader, compress, validate)?,
            delta_g2: G2Affine::deserialize_with_mode(&mut reader, compress, validate)?,
            h_query: read_points(&mut reader, compress, validate)?,
            l_query: read_points(&mut reader, compress, validate)?,
        })
    }
}

impl DeltaKey {
    /// The δ-dependent part of `pk`.
    pub fn of(pk: &ProvingKey<Bn254>) -> Self {
        DeltaKey {
            delta_g1: pk.delta_g1,
            delta_g2: pk.vk.delta_g2,
            h_query: pk.h_query.clone(),
            l_query: pk.l_query.clone(),
        }
    }

    /// Puts this δ-dependent part into `pk`.
    pub fn apply_to(&self, pk: &mut ProvingKey<Bn254>) {
        pk.delta_g1 = self.delta_g1;
        pk.vk.delta_g2 = self.delta_g2;
        pk.h_query.clone_from(&self.h_query);
        pk.l_query.clone_from(&self.l_query);
    }
}

/// One phase-2 contribution.
#[derive(Clone, Debug, PartialEq, Eq, CanonicalSerialize, CanonicalDeserialize)]
pub struct Phase2Contribution {
    /// A participant or the beacon.
    pub contributor: Contributor,
    /// The δ-dependent key after this contribution.
    pub key: DeltaKey,
    /// Proof of knowledge of `d` with `new [δ]₁ = d · previous [δ]₁`.
    pub proof: Option<KnowledgeProof>,
    /// The contribution's hash, chaining the previous one.
    pub hash: Digest,
}

impl Phase2Contribution {
    /// The hash of this contribution's content chained to `prev`.
    pub fn compute_hash(&self, prev: &Digest) -> Digest {
        Hasher::new("phase2-contribution")
            .item(prev)
            .item(&self.contributor)
            .item(&self.key)
            .item(&self.proof)
            .finish()
    }
}

/// Phase 2 of a transcript: the circuit it is for, the initial proving key (δ = 1,
/// derived from phase 1 by the coordinator and checked by [`verify_initial_key`]) and the
/// contributions.
#[derive(Clone, Debug, PartialEq, CanonicalSerialize, CanonicalDeserialize)]
pub struct Phase2 {
    /// [`R1cs::digest`] of the circuit.
    pub circuit: Digest,
    /// The proving key before any contribution (γ = δ = 1).
    pub initial: ProvingKey<Bn254>,
    /// The contributions, in order.
    pub contributions: Vec<Phase2Contribution>,
}

impl Phase2 {
    /// The hash phase 2 starts from: the end of phase 1, the circuit, the initial key.
    pub fn start_hash(&self, phase1_hash: &Digest) -> Digest {
        Hasher::new("phase2-start")
            .item(phase1_hash)
            .item(&self.circuit)
            .item(&self.initial)
            .finish()
    }

    /// The δ-dependent key after the last contribution (or the initial one).
    pub fn current(&self) -> std::borrow::Cow<'_, DeltaKey> {
        match self.contributions.last() {
            Some(c) => std::borrow::Cow::Borrowed(&c.key),
            None => std::borrow::Cow::Owned(DeltaKey::of(&self.initial)),
        }
    }

    /// The initial key with the last contribution's δ parts, **as recorded** (nothing is
    /// checked here; [`crate::verify_transcript`] returns the same key after checking).
    pub fn proving_key(&self) -> ProvingKey<Bn254> {
        let mut pk = self.initial.clone();
        if let Some(c) = self.contributions.last() {
            c.key.apply_to(&mut pk);
        }
        pk
    }
}

/// Below this many terms a column is combined term by term; from it on, with one
/// multi-scalar multiplication (Pippenger), which for circuits like Poseidon — long columns,
/// large coefficients — is several times cheaper per term.
const MSM_THRESHOLD: usize = 16;

/// One column of a matrix — `(constraint, coefficient)` entries — and the bases it
/// combines.
type Part<'a, A> = (&'a [(usize, Fr)], &'a [A]);

/// `Σ coeff·bases[row]` over every `(terms, bases)` part.
fn combine<G: FastMul>(parts: &[Part<'_, G::Affine>]) -> G {
    let total: usize = parts.iter().map(|(t, _)| t.len()).sum();
    if total >= MSM_THRESHOLD {
        let mut bases = Vec::with_capacity(total);
        let mut scalars = Vec::with_capacity(total);
        for (terms, b) in parts {
            for (row, coeff) in terms.iter() {
                bases.push(b[*row]);
                scalars.push(*coeff);
            }
        }
        return G::msm_unchecked(&bases, &scalars);
    }
    let mut acc = G::zero();
    for (terms, b) in parts {
        for (row, coeff) in terms.iter() {
            let base = b[*row];
            if coeff.is_one() {
                acc += base;
            } else if (-*coeff).is_one() {
                acc -= base;
            } else if !coeff.is_zero() {
                acc += G::fast_mul(base.into_group(), *coeff);
            }
        }
    }
    acc
}

/// Lagrange basis in the exponent: `[L_j(τ)]₁` for the domain's points, from `[τ^i]₁`,
/// `i < n`: `L_j(τ) = (1/n)·Σ_i ω^{-ij}·τ^i`, an inverse FFT over group elements.
fn lagrange_g1(domain: &GeneralEvaluationDomain<Fr>, powers: &[G1Affine]) -> Vec<G1Affine> {
    let mut v: Vec<G1Projective> = powers[..domain.size()]
        .iter()
        .map(|p| p.into_group())
        .collect();
    domain.ifft_in_place(&mut v);
    G1Projective::normalize_batch(&v)
}

/// [`lagrange_g1`] in G2 (through the GLV wrapper).
fn lagrange_g2(domain: &GeneralEvaluationDomain<Fr>, powers: &[G2Affine]) -> Vec<G2Affine> {
    let mut v: Vec<G2Glv> = powers[..domain.size()]
        .iter()
        .map(|p| G2Glv(p.into_group()))
        .collect();
    domain.ifft_in_place(&mut v);
    G2Projective::normalize_batch(&v.iter().map(|p| p.0).collect::<Vec<_>>())
}

/// The initial proving key (γ = δ = 1) for `r1cs` from the phase-1 accumulator.
pub(crate) fn initial_key(
    r1cs: &R1cs,
    acc: &Accumulator,
    progress: &dyn Progress,
) -> Result<ProvingKey<Bn254>, CeremonyError> {
    let domain = r1cs.domain()?;
    let n = domain.size();
    if n > acc.domain_size() {
        return Err(CeremonyError::CircuitTooLarge {
            needed: n,
            available: acc.domain_size(),
        });
    }
    let tick = Tick::new(progress, Stage::PreparePhase2, 6);
    let l_g1 = lagrange_g1(&domain, &acc.tau_g1);
    tick.advance(1);
    let l_alpha = lagrange_g1(&domain, &acc.alpha_tau_g1);
    tick.advance(1);
    let l_beta = lagrange_g1(&domain, &acc.beta_tau_g1);
    tick.advance(1);
    let l_g2 = lagrange_g2(&domain, &acc.tau_g2);
    tick.advance(1);

    // Column view: for each variable, its (constraint, coefficient) entries in A, B, C.
    let num_vars = r1cs.num_instance + r1cs.num_witness;
    let mut cols: [Vec<Vec<(usize, Fr)>>; 3] = Default::default();
    for (m, col) in r1cs.matrices.iter().zip(cols.iter_mut()) {
        *col = vec![Vec::new(); num_vars];
        for (row, entries) in m.iter().enumerate() {
            for (coeff, var) in entries {
                if *var >= num_vars {
                    return Err(CeremonyError::UnsupportedConstraints(
                        "a constraint refers to an unknown variable".into(),
                    ));
                }
                col[*var].push((row, *coeff));
            }
        }
    }
    let nc = r1cs.num_constraints;
    let ni = r1cs.num_instance;
    // ark-groth16 adds one "input constraint" per instance variable (x_i · 1 = 0) in the
    // A polynomials, at domain points nc..nc+ni, so the instance polynomials are
    // linearly independent.
    let rows: Vec<(G1Projective, G1Projective, G2Projective, G1Projective)> =
        cfg_into_iter!(0..num_vars)
            .map(|i| {
                let (ca, cb, cc) = (&cols[0][i][..], &cols[1][i][..], &cols[2][i][..]);
                let mut a: G1Projective = combine(&[(ca, &l_g1)]);
                let b1: G1Projective = combine(&[(cb, &l_g1)]);
                let b2: G2Projective = combine(&[(cb, &l_g2)]);
                let mut abc: G1Projective = combine(&[(ca, &l_beta), (cb, &l_alpha), (cc, &l_g1)]);
                if i < ni {
                    a += l_g1[nc + i];
                    abc += l_beta[nc + i];
                }
                (a, b1, b2, abc)
            })
            .collect();
    tick.advance(1);
    let a_query = G1Projective::normalize_batch(&rows.iter().map(|r| r.0).collect::<Vec<_>>());
    let b_g1_query = G1Projective::normalize_batch(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    let b_g2_query = G2Projective::normalize_batch(&rows.iter().map(|r| r.2).collect::<Vec<_>>());
    let mut abc = G1Projective::normalize_batch(&rows.iter().map(|r| r.3).collect::<Vec<_>>());
    let l_query = abc.split_off(ni);
    // H: [τ^i·(τ^n − 1)]₁ = [τ^{n+i}]₁ − [τ^i]₁ for i < n−1.
    let h: Vec<G1Projective> = (0..n.saturating_sub(1))
        .map(|i| acc.tau_g1[n + i].into_group() - acc.tau_g1[i])
        .collect();
    let h_query = G1Projective::normalize_batch(&h);
    tick.advance(1);

    Ok(ProvingKey {
        vk: VerifyingKey {
            alpha_g1: acc.alpha_tau_g1[0],
            beta_g2: acc.beta_g2,
            gamma_g2: g2(),
            delta_g2: g2(),
            gamma_abc_g1: abc,
        },
        beta_g1: acc.beta_tau_g1[0],
        delta_g1: g1(),
        a_query,
        b_g1_query,
        b_g2_query,
        h_query,
        l_query,
    })
}

/// Checks a claimed initial key (γ = δ = 1) for `r1cs` against the phase-1 accumulator
/// without recomputing the Lagrange basis: every fixed element is compared directly, the H
/// query element by element (`[τ^{n+i}]₁ − [τ^i]₁`), and each query vector with a random
/// linear combination. For random `s`, `Σ_i s_i·a_i(X) = Σ_j w_j·L_j(X)` with
/// `w_j = Σ_i s_i·A_{j,i}` (plus the input constraints), whose coefficients are `IFFT(w)`;
/// so `Σ_i s_i·[a_i(τ)]₁` must equal `MSM([τ^k]₁, IFFT(w))`. If any claimed element is wrong
/// the two sides differ except with probability `1/r`. Likewise for B (in G1 and G2) and
/// for `[β·a_i(τ) + α·b_i(τ) + c_i(τ)]₁` (γ_abc followed by L) against `[β·τ^k]₁`,
/// `[α·τ^k]₁`, `[τ^k]₁`.
pub fn verify_initial_key(
    r1cs: &R1cs,
    acc: &Accumulator,
    pk: &ProvingKey<Bn254>,
    progress: &dyn Progress,
) -> Result<(), CeremonyError> {
    let mismatch = CeremonyError::InitialKeyMismatch;
    let domain = r1cs.domain()?;
    let n = domain.size();
    if n > acc.domain_size() {
        return Err(CeremonyError::CircuitTooLarge {
            needed: n,
            available: acc.domain_size(),
        });
    }
    let tick = Tick::new(progress, Stage::VerifyPhase2Start, 5);
    let (ni, nc) = (r1cs.num_instance, r1cs.num_constraints);
    let m = ni + r1cs.num_witness;
    if pk.a_query.len() != m
        || pk.b_g1_query.len() != m
        || pk.b_g2_query.len() != m
        || pk.vk.gamma_abc_g1.len() != ni
        || pk.l_query.len() != m - ni
        || pk.h_query.len() != n.saturating_sub(1)
    {
        return Err(mismatch("query lengths"));
    }
    if pk.vk.alpha_g1 != acc.alpha_tau_g1[0]
        || pk.beta_g1 != acc.beta_tau_g1[0]
        || pk.vk.beta_g2 != acc.beta_g2
        || pk.vk.gamma_g2 != g2()
        || pk.delta_g1 != g1()
        || pk.vk.delta_g2 != g2()
    {
        return Err(mismatch("alpha, beta, gamma or delta"));
    }
    let h_ok = cfg_into_iter!(0..n.saturating_sub(1))
        .all(|i| pk.h_query[i].into_group() == acc.tau_g1[n + i].into_group() - acc.tau_g1[i]);
    if !h_ok {
        return Err(mismatch("h_query"));
    }
    tick.advance(1);

    let s = powers(random_scalar(), m);
    let mut w: [Vec<Fr>; 3] = [
        vec![Fr::zero(); n],
        vec![Fr::zero(); n],
        vec![Fr::zero(); n],
    ];
    for (matrix, wk) in r1cs.matrices.iter().zip(w.iter_mut()) {
        for (row, entries) in matrix.iter().enumerate() {
            for (coeff, var) in entries {
                let si = s.get(*var).ok_or(CeremonyError::UnsupportedConstraints(
                    "a constraint refers to an unknown variable".into(),
                ))?;
                wk[row] += *coeff * si;
            }
        }
    }
    for i in 0..ni {
        w[0][nc + i] += s[i];
    }
    let [wa, wb, wc] = w;
    let (ca, cb, cc) = (domain.ifft(&wa), domain.ifft(&wb), domain.ifft(&wc));
    tick.advance(1);
    let g1msm = |bases: &[G1Affine], scalars: &[Fr]| {
        <G1Projective as VariableBaseMSM>::msm_unchecked(bases, scalars)
    };
    let tau = &acc.tau_g1[..n];
    if g1msm(&pk.a_query, &s) != g1msm(tau, &ca) {
        return Err(mismatch("a_query"));
    }
    if g1msm(&pk.b_g1_query, &s) != g1msm(tau, &cb) {
        return Err(mismatch("b_g1_query"));
    }
    tick.advance(1);
    let lhs = <G2Projective as VariableBaseMSM>::msm_unchecked(&pk.b_g2_query, &s);
    let rhs = <G2Projective as VariableBaseMSM>::msm_unchecked(&acc.tau_g2[..n], &cb);
    if lhs != rhs {
        return Err(mismatch("b_g2_query"));
    }
    tick.advance(1);
    let lhs = g1msm(&pk.vk.gamma_abc_g1, &s[..ni]) + g1msm(&pk.l_query, &s[ni..]);
    let rhs =
        g1msm(&acc.beta_tau_g1[..n], &ca) + g1msm(&acc.alpha_tau_g1[..n], &cb) + g1msm(tau, &cc);
    if lhs != rhs {
        return Err(mismatch("gamma_abc_g1 / l_query"));
    }
    tick.advance(1);
    Ok(())
}

/// A phase-2 secret and its proof nonce; zeroized when dropped.
pub(crate) struct DeltaSecret {
    delta: Fr,
    nonce: Fr,
}

impl Drop for DeltaSecret {
    fn drop(&mut self) {
        self.delta.zeroize();
        self.nonce.zeroize();
    }
}

impl DeltaSecret {
    pub(crate) fn random<R: RngCore + CryptoRng>(rng: &mut R, extra: &[u8]) -> Self {
        DeltaSecret {
            delta: fresh_scalar(rng, extra, "delta"),
            nonce: fresh_scalar(rng, extra, "nonce-delta"),
        }
    }

    pub(crate) fn from_beacon(output: &[u8; 32], context: &Digest) -> Self {
        DeltaSecret {
            delta: beacon_scalar(output, context, "phase2-secret", Secret::Delta),
            nonce: beacon_scalar(output, context, "phase2-nonce", Secret::Delta),
        }
    }

    #[cfg(test)]
    pub(crate) fn fixed(delta: Fr) -> Self {
        DeltaSecret {
            delta,
            nonce: Fr::from(11u64),
        }
    }
}

/// Multiplies δ by `secret` in `prev`.
pub(crate) fn contribute(
    prev: &DeltaKey,
    prev_hash: &Digest,
    contributor: Contributor,
    secret: &DeltaSecret,
    progress: &dyn Progress,
) -> Phase2Contribution {
    let total = (prev.h_query.len() + prev.l_query.len()) as u64;
    let tick = Tick::new(progress, Stage::Contribute(Phase::Two), total);
    // `delta` is never zero, so the inverse exists.
    let inv = Zeroizing::new(secret.delta.inverse().unwrap_or_default());
    let h_query = scale::<G1Projective>(&prev.h_query, |_| *inv, &tick);
    let l_query = scale::<G1Projective>(&prev.l_query, |_| *inv, &tick);
    let key = DeltaKey {
        delta_g1: (prev.delta_g1.into_group() * secret.delta).into_affine(),
        delta_g2: G2Projective::fast_mul(prev.delta_g2.into_group(), secret.delta).into_affine(),
        h_query,
        l_query,
    };
    let proof = KnowledgeProof::prove(
        &secret.delta,
        secret.nonce,
        &prev.delta_g1,
        &key.delta_g1,
        prev_hash,
        Secret::Delta,
    );
    let mut c = Phase2Contribution {
        contributor,
        key,
        proof: Some(proof),
        hash: Digest([0; 32]),
    };
    c.hash = c.compute_hash(prev_hash);
    c
}

/// Number of progress units [`verify_contribution`] reports.
pub(crate) const VERIFY_STEPS: u64 = 3;

/// Checks one contribution against the δ-dependent key before it: shape, hash chain, not a
/// copy, proof present, `[δ]₁` changed and not the identity, the Schnorr proof of `d` with
/// `new [δ]₁ = d·prev [δ]₁` (bound to `prev_hash`), the beacon's `d` for a beacon,
/// `e([δ]₁, g₂) = e(g₁, [δ]₂)`, and — batched by a random linear combination over all H and
/// L elements — `e(new_i, new [δ]₂) = e(prev_i, prev [δ]₂)`, i.e. every query element was
/// divided by the same `d`. Everything else in the key is not recorded per contribution,
/// so cannot change.
pub(crate) fn verify_contribution(
    prev: &DeltaKey,
    prev_hash: &Digest,
    c: &Phase2Contribution,
    tick: &Tick<'_>,
) -> Result<(), Fault> {
    let key = &c.key;
    if key.h_query.len() != prev.h_query.len() || key.l_query.len() != prev.l_query.len() {
        return Err(Fault::Malformed("query lengths changed"));
    }
    if c.hash != c.compute_hash(prev_hash) {
        return Err(Fault::HashMismatch);
    }
    if key == prev {
        return Err(Fault::ReusedAccumulator);
    }
    let proof = c.proof.as_ref().ok_or(Fault::MissingProof)?;
    if key.delta_g1.is_zero() || key.delta_g2.is_zero() {
        return Err(Fault::Degenerate(Secret::Delta));
    }
    if key.delta_g1 == prev.delta_g1 {
        return Err(Fault::SecretNotApplied(Secret::Delta));
    }
    if !proof.verify(&prev.delta_g1, &key.delta_g1, prev_hash, Secret::Delta) {
        return Err(Fault::InvalidProof(Secret::Delta));
    }
    if let Contributor::Beacon(beacon) = &c.contributor {
        let output = beacon.output(&crate::progress::Silent);
        let s = DeltaSecret::from_beacon(&output, prev_hash);
        if (prev.delta_g1.into_group() * s.delta).into_affine() != key.delta_g1 {
            return Err(Fault::BeaconMismatch(Secret::Delta));
        }
    }
    tick.advance(1);

    let len = key.h_query.len().max(key.l_query.len());
    let coeffs = powers(random_scalar(), len);
    let msm = |v: &[G1Affine]| G1Projective::msm_unchecked(v, &coeffs[..v.len()]);
    let (h_new, h_old) = (msm(&key.h_query), msm(&prev.h_query));
    let (l_new, l_old) = (msm(&key.l_query), msm(&prev.l_query));
    tick.advance(1);
    let (g1p, g2p) = (g1().into_group(), g2().into_group());
    let (d_old, d_new) = (prev.delta_g2.into_group(), key.delta_g2.into_group());
    let mut batch = RatioBatch::new();
    batch.push(
        Element::Delta,
        (g1p, key.delta_g1.into()),
        (g2p, d_new),
        false,
    );
    // new_i = prev_i / d and new [δ]₂ = d·prev [δ]₂: prev_i/new_i = new [δ]₂/prev [δ]₂.
    batch.push(Element::HQuery, (h_new, h_old), (d_old, d_new), true);
    batch.push(Element::LQuery, (l_new, l_old), (d_old, d_new), true);
    batch.check().map_err(Fault::Inconsistent)?;
    tick.advance(1);
    Ok(())
}

/// Verifies a phase 2's contributions from `start` (its start hash); returns the final
/// δ-dependent key. Requires at least one participant and a closing beacon.
pub(crate) fn verify_all(
    phase2: &Phase2,
    start: Digest,
    progress: &dyn Progress,
) -> Result<(), CeremonyError> {
    let initial = DeltaKey::of(&phase2.initial);
    let mut prev = &initial;
    let mut prev_hash = start;
    let mut closed = false;
    let mut participants = 0usize;
    for (index, c) in phase2.contributions.iter().enumerate() {
        let fail = |fault| CeremonyError::InvalidContribution {
            phase: Phase::Two,
            index,
            hash: c.hash,
            fault,
        };
        if closed {
            return Err(fail(Fault::AfterBeacon));
        }
        let tick = Tick::new(progress, Stage::Verify(Phase::Two, index), VERIFY_STEPS);
        verify_contribution(prev, &prev_hash, c, &tick).map_err(fail)?;
        match c.contributor {
            Contributor::Beacon(_) => closed = true,
            Contributor::Participant { .. } => participants += 1,
        }
        prev = &c.key;
        prev_hash = c.hash;
    }
    if participants == 0 {
        return Err(CeremonyError::NoParticipant(Phase::Two));
    }
    if !closed {
        return Err(CeremonyError::NotFinalized);
    }
    Ok(())
}
