//! # smpx-zk — zero-knowledge redemption (v0.2)
//!
//! A wallet proves "I know the secret `s` of a voucher whose commitment `C = Poseidon(s, d)`
//! is a leaf of the coordinator's MMR with this root, and this is its nullifier
//! `N = Poseidon(NULLIFIER_DOMAIN, s)`", bound to the redeeming operator and fee, without
//! revealing which leaf. Groth16 over BN254 (arkworks 0.6), so proofs are 128 bytes and
//! verifiable on an EVM chain later.
//!
//! * [`poseidon`] — circom Poseidon as an R1CS gadget, with `light-poseidon`'s constants (the
//!   same hash `smpx_core` computes natively).
//! * [`circuit`] — [`RedeemCircuit`]: public inputs `root, nullifier, denomination, binding`;
//!   the MMR layout and root are `smpx_core::mmr`'s.
//! * This module — keys, [`setup`], [`prove`], [`verify`], [`verify_batch`], 128-byte proof
//!   and verifying-key encodings with typed errors, and [`binding_hash`].
//!
//! # Size and cost
//!
//! Constraints, counted in setup mode ([`constraint_count`]); the MMR is 4-ary, with `L`
//! levels and capacity `4^L − 1`:
//!
//! | capacity | `L` | constraints | FFT domain |
//! |---|---|---|---|
//! | `2^10` | 5 | 2,561 | 4,096 |
//! | `2^20` | 10 | 4,721 | 8,192 |
//! | `2^32` | 16 | 7,505 | 8,192 |
//!
//! A plain binary depth-32 Poseidon Merkle path with a nullifier is 8,220 with the same gadget
//! (domain 16,384), so membership in a `2^32` MMR with every peak bagged in the circuit costs
//! less than that reference; `benches/prove.rs` proves both in the same run and reports the
//! ratio (≈ 0.84 on one core).
//!
//! [`ProvingKey`] keeps the circuit's constraint matrices (built once when the key is made or
//! loaded, ≈ 0.2–0.5 s): proving then only generates the witness (≈ 3 ms) and runs the Groth16
//! prover, instead of re-synthesising and inlining every constraint for each proof.
//!
//! Verification: [`verify`] is arkworks' Groth16 check with a prepared key (three pairings);
//! [`verify_batch`] checks many proofs with one random linear combination (one Miller loop per
//! proof plus three, one final exponentiation), about 4× cheaper per proof. Decoding a proof
//! ([`RedeemProof::from_bytes`]: point decompression and the G2 subgroup check) costs about
//! half as much again, and is needed whichever way the proof is verified.
//!
//! # Keys
//!
//! [`setup`] is a plain circuit-specific Groth16 setup from one RNG: whoever runs it can forge
//! proofs. It is for tests and devnets only; production keys come from a multi-party ceremony
//! (`smpx-ceremony`): [`ceremony::verified_keys`] rechecks a ceremony's transcript and returns
//! the keys, [`ceremony::local_ceremony`] runs a whole ceremony in one process for a devnet.
//!
//! Proving is single-threaded unless the `parallel` feature is on.

pub mod ceremony;
pub mod circuit;
pub mod devnet;
pub mod poseidon;

use ark_bn254::{Bn254, G1Affine, G1Projective, G2Affine};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{AdditiveGroup, Field, PrimeField};
use ark_groth16::Groth16;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, Matrix, OptimizationGoal, SynthesisMode,
    R1CS_PREDICATE_LABEL,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_snark::SNARK;
use ark_std::UniformRand;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use smpx_core::crypto::{commitment, nullifier, Fr};
use smpx_core::mmr::{self, CircuitPath};
use std::sync::Arc;

pub use circuit::{RedeemCircuit, RedeemPublic, RedeemWitness};

/// Bytes of a compressed proof: A (G1, 32) ‖ B (G2, 64) ‖ C (G1, 32).
pub const PROOF_BYTES: usize = 128;

/// Domain tag of [`binding_hash`].
pub const BINDING_DOMAIN: &[u8] = b"smpx/redeem-binding/v1";

/// Everything that can go wrong here, phrased for whoever supplied the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZkError {
    /// Proof bytes that are not a valid compressed proof: wrong length, a coordinate not in
    /// the field, a point not on the curve or not in the prime-order subgroup, or the identity.
    #[error("malformed proof: {0}")]
    MalformedProof(&'static str),
    /// Key bytes that do not decode.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// MMR levels the circuit does not support (`2..=smpx_core::mmr::MAX_LEVELS`).
    #[error("unsupported MMR levels {0}")]
    InvalidLevels(u32),
    /// A witness whose shape does not fit the proving key's circuit.
    #[error("witness does not fit the circuit: {0}")]
    WitnessShape(&'static str),
    /// A witness that does not satisfy the statement (wrong secret, path, root, nullifier or
    /// denomination); caught before proving, so no invalid proof is produced.
    #[error("witness does not satisfy the statement: {0}")]
    WitnessMismatch(&'static str),
    /// An error inside the proving system.
    #[error("proving system: {0}")]
    Backend(String),
    /// The trusted-setup ceremony failed or its transcript was rejected (see
    /// [`ceremony`]): `code` is the ceremony error's stable code
    /// (`smpx_ceremony::CeremonyError::code`, e.g. `ceremony.hash_mismatch`), `message`
    /// its description.
    #[error("ceremony [{code}]: {message}")]
    Ceremony {
        /// The ceremony error's stable code.
        code: &'static str,
        /// The ceremony error's message.
        message: String,
    },
}

fn backend(e: impl std::fmt::Display) -> ZkError {
    ZkError::Backend(e.to_string())
}

/// The binding of a redemption to the operator that is paid and the fee it keeps:
/// SHA-256(`BINDING_DOMAIN` ‖ 0 ‖ len(operator_id) as u32 BE ‖ operator_id ‖ fee as u64 BE),
/// with the top 3 bits cleared (so the 253-bit integer is a canonical field element and the
/// map is injective on digests). Computed natively by prover and verifier alike; SHA-256 is
/// cheap on an EVM chain too.
pub fn binding_hash(operator_id: &str, fee_units: u64) -> Fr {
    let mut h = Sha256::new();
    h.update(BINDING_DOMAIN);
    h.update([0u8]);
    h.update((operator_id.len() as u32).to_be_bytes());
    h.update(operator_id.as_bytes());
    h.update(fee_units.to_be_bytes());
    let mut digest: [u8; 32] = h.finalize().into();
    digest[0] &= 0x1f;
    Fr::from_be_bytes_mod_order(&digest)
}

fn check_levels(levels: u32) -> Result<(), ZkError> {
    if (2..=mmr::MAX_LEVELS).contains(&levels) {
        Ok(())
    } else {
        Err(ZkError::InvalidLevels(levels))
    }
}

/// Number of R1CS constraints of the circuit for `levels`, counted in setup mode.
pub fn constraint_count(levels: u32) -> Result<usize, ZkError> {
    check_levels(levels)?;
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_mode(SynthesisMode::Setup);
    RedeemCircuit {
        levels,
        public: None,
        witness: None,
    }
    .generate_constraints(cs.clone())
    .map_err(backend)?;
    cs.finalize();
    Ok(cs.num_constraints())
}

/// A Groth16 proving key for the circuit of one MMR `levels`, with the circuit's constraint
/// matrices (computed once when the key is made or loaded, so that proving only generates
/// the witness: re-synthesising the constraints for every proof would double its cost).
#[derive(Clone)]
pub struct ProvingKey {
    levels: u32,
    pk: ark_groth16::ProvingKey<Bn254>,
    qap: Arc<Qap>,
}

impl PartialEq for ProvingKey {
    fn eq(&self, other: &Self) -> bool {
        self.levels == other.levels && self.pk == other.pk
    }
}

impl std::fmt::Debug for ProvingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvingKey")
            .field("levels", &self.levels)
            .field("constraints", &self.qap.num_constraints)
            .finish_non_exhaustive()
    }
}

/// The circuit's R1CS matrices and dimensions.
struct Qap {
    matrices: Vec<Matrix<Fr>>,
    num_inputs: usize,
    num_witnesses: usize,
    num_constraints: usize,
}

impl Qap {
    /// Synthesises the circuit for `levels` in setup mode.
    fn new(levels: u32) -> Result<Self, ZkError> {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_optimization_goal(OptimizationGoal::Constraints);
        cs.set_mode(SynthesisMode::Setup);
        RedeemCircuit {
            levels,
            public: None,
            witness: None,
        }
        .generate_constraints(cs.clone())
        .map_err(backend)?;
        cs.finalize();
        let mut all = cs.to_matrices().map_err(backend)?;
        let matrices = all
            .remove(R1CS_PREDICATE_LABEL)
            .ok_or_else(|| backend("no R1CS matrices"))?;
        Ok(Self {
            matrices,
            num_inputs: cs.num_instance_variables(),
            num_witnesses: cs.num_witness_variables(),
            num_constraints: cs.num_constraints(),
        })
    }
}

/// A Groth16 verifying key for the circuit of one MMR `levels`.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyingKey {
    levels: u32,
    vk: ark_groth16::VerifyingKey<Bn254>,
}

/// A verifying key with its pairing precomputations, for [`verify`] and [`verify_batch`].
#[derive(Clone, Debug)]
pub struct PreparedVerifyingKey {
    levels: u32,
    pvk: ark_groth16::PreparedVerifyingKey<Bn254>,
    beta_g2: <Bn254 as Pairing>::G2Prepared,
}

impl ProvingKey {
    /// The MMR levels this key proves for.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            levels: self.levels,
            vk: self.pk.vk.clone(),
        }
    }

    /// `levels` (u32 BE) ‖ arkworks compressed proving key.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ZkError> {
        let mut out = self.levels.to_be_bytes().to_vec();
        self.pk
            .serialize_compressed(&mut out)
            .map_err(|_| ZkError::MalformedKey("proving key does not serialize"))?;
        Ok(out)
    }

    /// Parses [`ProvingKey::to_bytes`], checking every point (slow: seconds for large keys).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        let (levels, mut rest) = split_levels(bytes)?;
        let pk = ark_groth16::ProvingKey::<Bn254>::deserialize_compressed(&mut rest)
            .map_err(|_| ZkError::MalformedKey("not a compressed Groth16 BN254 proving key"))?;
        if !rest.is_empty() {
            return Err(ZkError::MalformedKey(
                "trailing bytes after the proving key",
            ));
        }
        Self::new(levels, pk)
    }

    /// Pairs an arkworks proving key (e.g. from a ceremony) with the circuit for `levels`,
    /// checking that the key's dimensions fit it.
    pub fn new(levels: u32, pk: ark_groth16::ProvingKey<Bn254>) -> Result<Self, ZkError> {
        check_levels(levels)?;
        let qap = Qap::new(levels)?;
        if pk.vk.gamma_abc_g1.len() != qap.num_inputs
            || pk.l_query.len() != qap.num_witnesses
            || pk.a_query.len() != qap.num_inputs + qap.num_witnesses
        {
            return Err(ZkError::MalformedKey(
                "proving key does not fit the circuit for these levels",
            ));
        }
        Ok(Self {
            levels,
            pk,
            qap: Arc::new(qap),
        })
    }
}

fn split_levels(bytes: &[u8]) -> Result<(u32, &[u8]), ZkError> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(ZkError::MalformedKey("shorter than the levels prefix"))?;
    let levels = u32::from_be_bytes(*head);
    check_levels(levels)?;
    Ok((levels, rest))
}

impl VerifyingKey {
    /// The MMR levels this key verifies for.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// `levels` (u32 BE) ‖ arkworks compressed verifying key (4 + 392 bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ZkError> {
        let mut out = self.levels.to_be_bytes().to_vec();
        self.vk
            .serialize_compressed(&mut out)
            .map_err(|_| ZkError::MalformedKey("verifying key does not serialize"))?;
        Ok(out)
    }

    /// Parses [`VerifyingKey::to_bytes`], checking every point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        let (levels, mut rest) = split_levels(bytes)?;
        let vk = ark_groth16::VerifyingKey::<Bn254>::deserialize_compressed(&mut rest)
            .map_err(|_| ZkError::MalformedKey("not a compressed Groth16 BN254 verifying key"))?;
        if !rest.is_empty() {
            return Err(ZkError::MalformedKey(
                "trailing bytes after the verifying key",
            ));
        }
        Self::new(levels, vk)
    }

    /// Wraps an arkworks verifying key (e.g. from a ceremony) for the circuit of `levels`.
    pub fn new(levels: u32, vk: ark_groth16::VerifyingKey<Bn254>) -> Result<Self, ZkError> {
        check_levels(levels)?;
        if vk.gamma_abc_g1.len() != 5 {
            return Err(ZkError::MalformedKey(
                "verifying key is not for 4 public inputs",
            ));
        }
        Ok(Self { levels, vk })
    }

    /// Precomputes what verification needs.
    pub fn prepare(&self) -> PreparedVerifyingKey {
        PreparedVerifyingKey {
            levels: self.levels,
            pvk: ark_groth16::prepare_verifying_key(&self.vk),
            beta_g2: self.vk.beta_g2.into(),
        }
    }
}

impl PreparedVerifyingKey {
    /// The MMR levels this key verifies for.
    pub fn levels(&self) -> u32 {
        self.levels
    }
}

/// A Groth16 redemption proof. 128 bytes compressed ([`RedeemProof::to_bytes`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RedeemProof(ark_groth16::Proof<Bn254>);

impl RedeemProof {
    /// Compressed encoding: A ‖ B ‖ C, arkworks' compressed point format.
    pub fn to_bytes(&self) -> [u8; PROOF_BYTES] {
        let mut out = [0u8; PROOF_BYTES];
        let (a, rest) = out.split_at_mut(32);
        let (b, c) = rest.split_at_mut(64);
        // Writing a valid point into a buffer of exactly its compressed size cannot fail.
        let _ = self.0.a.serialize_compressed(a);
        let _ = self.0.b.serialize_compressed(b);
        let _ = self.0.c.serialize_compressed(c);
        out
    }

    /// Parses exactly [`PROOF_BYTES`] bytes; every point must be a canonical compressed point
    /// on the curve, in the prime-order subgroup, and not the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ZkError> {
        if bytes.len() != PROOF_BYTES {
            return Err(ZkError::MalformedProof("a proof is exactly 128 bytes"));
        }
        let a = G1Affine::deserialize_compressed(&bytes[..32])
            .map_err(|_| ZkError::MalformedProof("A is not a valid G1 point"))?;
        let b = G2Affine::deserialize_compressed(&bytes[32..96])
            .map_err(|_| ZkError::MalformedProof("B is not a valid G2 point"))?;
        let c = G1Affine::deserialize_compressed(&bytes[96..])
            .map_err(|_| ZkError::MalformedProof("C is not a valid G1 point"))?;
        if a.is_zero() || b.is_zero() || c.is_zero() {
            return Err(ZkError::MalformedProof("a proof point is the identity"));
        }
        let proof = Self(ark_groth16::Proof { a, b, c });
        // Exactly one encoding per proof (no alternative flag bits).
        if proof.to_bytes() != bytes {
            return Err(ZkError::MalformedProof("non-canonical point encoding"));
        }
        Ok(proof)
    }
}

/// On the wire (JSON): the 128 bytes as base64url without padding (171 characters).
impl serde::Serialize for RedeemProof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&smpx_core::crypto::b64::encode(&self.to_bytes()))
    }
}

impl<'de> serde::Deserialize<'de> for RedeemProof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = smpx_core::crypto::b64::decode(&text).map_err(serde::de::Error::custom)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Circuit-specific Groth16 setup for MMRs of `levels` levels. **Trusted**: the RNG's output
/// is toxic waste; use it for tests and devnets, and a ceremony's keys elsewhere.
pub fn setup<R: RngCore + CryptoRng>(
    levels: u32,
    rng: &mut R,
) -> Result<(ProvingKey, VerifyingKey), ZkError> {
    check_levels(levels)?;
    let circuit = RedeemCircuit {
        levels,
        public: None,
        witness: None,
    };
    let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(circuit, rng).map_err(backend)?;
    Ok((ProvingKey::new(levels, pk)?, VerifyingKey { levels, vk }))
}

/// Checks natively, before the expensive proving, that the witness satisfies the statement.
fn check_witness(levels: u32, public: &RedeemPublic, w: &RedeemWitness) -> Result<(), ZkError> {
    let path: &CircuitPath = &w.path;
    let path_len = levels as usize - 1;
    let n_slots = mmr::SLOTS_PER_HEIGHT * levels as usize;
    if path.digits.len() != path_len || path.siblings.len() != path_len {
        return Err(ZkError::WitnessShape(
            "path length does not match the key's levels",
        ));
    }
    if path.slots.len() != n_slots || path.slot >= n_slots {
        return Err(ZkError::WitnessShape(
            "peak slots do not match the key's levels",
        ));
    }
    if path.digits.iter().any(|d| *d > 3) {
        return Err(ZkError::WitnessShape("a position digit is above 3"));
    }
    let null = nullifier(&w.secret).0.to_fr().map_err(backend)?;
    if null != public.nullifier {
        return Err(ZkError::WitnessMismatch("nullifier is not the secret's"));
    }
    let mut cur = commitment(&w.secret, public.denomination)
        .0
        .to_fr()
        .map_err(backend)?;
    let height = path.slot / mmr::SLOTS_PER_HEIGHT;
    for j in 0..height {
        let d = path.digits[j] as usize;
        let mut children = [Fr::ZERO; mmr::ARITY];
        let mut others = path.siblings[j].iter();
        for (i, c) in children.iter_mut().enumerate() {
            *c = if i == d {
                cur
            } else {
                others.next().copied().unwrap_or(Fr::ZERO)
            };
        }
        cur = mmr::node_hash(&children);
    }
    if cur != path.slots[path.slot] {
        return Err(ZkError::WitnessMismatch(
            "the leaf (secret, denomination) does not climb to the selected peak",
        ));
    }
    if mmr::root_from_header(path.header, &path.slots) != public.root {
        return Err(ZkError::WitnessMismatch("peaks do not hash to the root"));
    }
    Ok(())
}

/// Proves a redemption. The witness is checked natively first: a witness that does not
/// satisfy the statement is refused with [`ZkError::WitnessMismatch`] rather than producing
/// a proof that does not verify.
pub fn prove<R: RngCore + CryptoRng>(
    pk: &ProvingKey,
    public: &RedeemPublic,
    witness: &RedeemWitness,
    rng: &mut R,
) -> Result<RedeemProof, ZkError> {
    check_witness(pk.levels, public, witness)?;
    // Witness generation only: the constraints were fixed in the key's matrices.
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove {
        construct_matrices: false,
        generate_lc_assignments: false,
    });
    RedeemCircuit {
        levels: pk.levels,
        public: Some(*public),
        witness: Some(witness.clone()),
    }
    .generate_constraints(cs.clone())
    .map_err(backend)?;
    let instance = cs.instance_assignment().map_err(backend)?;
    let witness_values = cs.witness_assignment().map_err(backend)?;
    let qap = &pk.qap;
    if instance.len() != qap.num_inputs || witness_values.len() != qap.num_witnesses {
        return Err(backend(
            "witness generation does not match the circuit's shape",
        ));
    }
    let full = [instance, witness_values].concat();
    let r = Fr::rand(rng);
    let s = Fr::rand(rng);
    Groth16::<Bn254>::create_proof_with_reduction_and_matrices(
        &pk.pk,
        r,
        s,
        &qap.matrices,
        qap.num_inputs,
        qap.num_constraints,
        &full,
    )
    .map(RedeemProof)
    .map_err(backend)
}

/// Verifies one proof: `Ok(true)` iff it is valid for these public inputs.
pub fn verify(
    pvk: &PreparedVerifyingKey,
    public: &RedeemPublic,
    proof: &RedeemProof,
) -> Result<bool, ZkError> {
    Groth16::<Bn254>::verify_with_processed_vk(&pvk.pvk, &public.to_field_elements(), &proof.0)
        .map_err(backend)
}

/// Verifies many proofs at once: `Ok(true)` iff all are valid (except with probability
/// about `n·2^-128`). On `false`, verify one by one to find the invalid ones.
///
/// A random linear combination of the Groth16 equations with 128-bit weights `r_i`
/// (`r_0 = 1`): `Π e(r_i·A_i, B_i) · e(−Σr_i·α, β) · e(−Σr_i·IC_i, γ) · e(−Σr_i·C_i, δ) = 1`,
/// where `Σr_i·IC_i` is folded per public input into one 5-point MSM: one Miller loop per proof
/// plus three, one final exponentiation.
pub fn verify_batch<R: RngCore + CryptoRng>(
    pvk: &PreparedVerifyingKey,
    items: &[(RedeemPublic, RedeemProof)],
    rng: &mut R,
) -> Result<bool, ZkError> {
    if items.is_empty() {
        return Ok(true);
    }
    let vk = &pvk.pvk.vk;
    let mut r_sum = Fr::ZERO;
    let mut input_weights = [Fr::ZERO; 4];
    let mut g1 = Vec::with_capacity(items.len() + 3);
    let mut g2 = Vec::with_capacity(items.len() + 3);
    let mut weights = Vec::with_capacity(items.len());
    let mut cs = Vec::with_capacity(items.len());
    for (i, (public, proof)) in items.iter().enumerate() {
        let r = if i == 0 {
            Fr::ONE
        } else {
            let mut bytes = [0u8; 16];
            rng.fill_bytes(&mut bytes);
            Fr::from(u128::from_le_bytes(bytes))
        };
        r_sum += r;
        for (acc, x) in input_weights.iter_mut().zip(public.to_field_elements()) {
            *acc += r * x;
        }
        g1.push(proof.0.a * r);
        g2.push(<Bn254 as Pairing>::G2Prepared::from(proof.0.b));
        weights.push(r);
        cs.push(proof.0.c);
    }
    let sum_c = G1Projective::msm(&cs, &weights).map_err(|_| backend("MSM length mismatch"))?;
    let mut ic_bases = Vec::with_capacity(5);
    ic_bases.extend_from_slice(&vk.gamma_abc_g1);
    let mut ic_scalars = vec![r_sum];
    ic_scalars.extend_from_slice(&input_weights);
    if ic_bases.len() != ic_scalars.len() {
        return Err(ZkError::MalformedKey(
            "verifying key is not for 4 public inputs",
        ));
    }
    let sum_ic =
        G1Projective::msm(&ic_bases, &ic_scalars).map_err(|_| backend("MSM length mismatch"))?;
    // e(A,B) = e(α,β)·e(IC,γ)·e(C,δ); the prepared key holds −γ and −δ.
    let sum_alpha = vk.alpha_g1 * r_sum;
    let mut g1: Vec<<Bn254 as Pairing>::G1Prepared> = G1Projective::normalize_batch(&g1)
        .into_iter()
        .map(Into::into)
        .collect();
    g1.push((-sum_alpha).into_affine().into());
    g1.push(sum_ic.into_affine().into());
    g1.push(sum_c.into_affine().into());
    g2.push(pvk.beta_g2.clone());
    g2.push(pvk.pvk.gamma_g2_neg_pc.clone());
    g2.push(pvk.pvk.delta_g2_neg_pc.clone());
    let ml = Bn254::multi_miller_loop(g1, g2);
    Ok(Bn254::final_exponentiation(ml)
        .is_some_and(|out| out.0 == <Bn254 as Pairing>::TargetField::ONE))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
