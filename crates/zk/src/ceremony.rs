//! The redemption circuit's Groth16 keys from a multi-party ceremony (`smpx-ceremony`).
//!
//! [`setup`](crate::setup) makes keys from one RNG, so whoever ran it can forge proofs. Here
//! the keys come from a [`Transcript`] of a ceremony in which every participant multiplied
//! fresh secrets into the parameters and proved it; the keys are safe if any one participant
//! destroyed their secrets.
//!
//! * [`required_power`] — the powers-of-tau size a ceremony for the circuit of `levels` must
//!   be started with ([`Transcript::new`]).
//! * [`begin_phase2`] — prepares phase 2 of a ceremony for the circuit of `levels`.
//! * [`verified_keys`] — rechecks a finalised transcript from scratch against the blank
//!   [`RedeemCircuit`] for `levels` and returns the keys, ready for [`prove`](crate::prove) /
//!   [`verify`](crate::verify).
//! * [`local_ceremony`] — a whole ceremony in one process, for devnets and tests.
//!
//! Ceremony errors become [`ZkError::Ceremony`], carrying the ceremony error's stable code
//! (e.g. `ceremony.hash_mismatch`) and message.

use ark_poly::EvaluationDomain;
use rand_core::{OsRng, RngCore};
use smpx_ceremony::phase2::R1cs;
use smpx_ceremony::{Beacon, CeremonyError, Digest, Phase, Progress, State, Transcript};

use crate::{check_levels, ProvingKey, RedeemCircuit, VerifyingKey, ZkError};

impl From<CeremonyError> for ZkError {
    /// [`ZkError::Ceremony`] with the error's stable code and message.
    fn from(e: CeremonyError) -> Self {
        ZkError::Ceremony {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The circuit's shape for `levels`, without values: what the ceremony is run for.
fn blank(levels: u32) -> RedeemCircuit {
    RedeemCircuit {
        levels,
        public: None,
        witness: None,
    }
}

/// The circuit for `levels` as the ceremony sees it (synthesised in setup mode, R1CS only),
/// after checking `levels`.
fn r1cs(levels: u32) -> Result<R1cs, ZkError> {
    check_levels(levels)?;
    Ok(R1cs::synthesize(blank(levels))?)
}

/// The powers-of-tau size (`log2` of the largest supported FFT domain) that a ceremony for
/// the redemption circuit of `levels` needs: `Transcript::new(required_power(levels)?)`.
///
/// This is `log2` of the evaluation domain Groth16 uses for the circuit — constraints plus
/// public inputs (including the constant 1), rounded up to a power of two — computed from
/// the circuit's R1CS exactly as [`Transcript::begin_phase2`] computes it, so phase 2 of a
/// ceremony started with this power fits the circuit (and a smaller power does not).
/// Synthesises the circuit once (a fraction of a second for 16 levels).
///
/// | `levels` | 2 | 3 | 5 | 10 | 16 |
/// |---|---|---|---|---|---|
/// | power | 11 | 11 | 12 | 13 | 13 |
pub fn required_power(levels: u32) -> Result<u32, ZkError> {
    let size = r1cs(levels)?.domain()?.size();
    if !size.is_power_of_two() {
        return Err(ZkError::Backend(format!(
            "evaluation domain of {size} points is not a power of two"
        )));
    }
    // `Transcript::new` accepts powers from 1.
    Ok(size.trailing_zeros().max(1))
}

/// Begins phase 2 of `transcript` for the redemption circuit of `levels`
/// ([`Transcript::begin_phase2`] with the blank [`RedeemCircuit`]): verifies every phase-1
/// contribution, then derives the circuit's initial key from the last accumulator (the
/// slow step of a ceremony). Returns phase 2's start hash.
///
/// Errors: [`ZkError::InvalidLevels`]; [`ZkError::Ceremony`] with e.g.
/// `ceremony.circuit_too_large` (the transcript's power is below [`required_power`]),
/// `ceremony.wrong_state` (phase 2 already begun), `ceremony.no_participant` or the fault
/// of an invalid phase-1 contribution.
pub fn begin_phase2(
    levels: u32,
    transcript: &mut Transcript,
    progress: &dyn Progress,
) -> Result<Digest, ZkError> {
    check_levels(levels)?;
    Ok(transcript.begin_phase2(blank(levels), progress)?)
}

/// Rechecks a ceremony's whole transcript for the redemption circuit of `levels` and
/// returns its keys.
///
/// Requires the ceremony to be finalised (phase 2 closed by the public random beacon) and
/// prepared for exactly this circuit (checked first, before the slow part); then runs
/// [`smpx_ceremony::verify_transcript`] with the blank [`RedeemCircuit`] for `levels`:
/// every phase-1 contribution from the fixed start, phase 2's initial key against the last
/// accumulator and the circuit, every phase-2 contribution, at least one participant per
/// phase. The keys are wrapped with [`ProvingKey::new`] / [`VerifyingKey::new`], which
/// check their dimensions against the circuit.
///
/// Errors: [`ZkError::InvalidLevels`] for unsupported `levels`; [`ZkError::Ceremony`] with
/// the ceremony's code (`ceremony.not_finalized`, `ceremony.circuit_mismatch`, or the fault
/// of the first invalid contribution, e.g. `ceremony.hash_mismatch`) when the transcript is
/// rejected.
pub fn verified_keys(
    levels: u32,
    transcript: &Transcript,
    progress: &dyn Progress,
) -> Result<(ProvingKey, VerifyingKey), ZkError> {
    let circuit = r1cs(levels)?;
    if transcript.state() != State::Finalized {
        return Err(CeremonyError::NotFinalized.into());
    }
    // Fail fast on a transcript for another circuit (e.g. other levels): verifying phase 1
    // first would take most of the time `verify_transcript` takes.
    if let Some(p2) = &transcript.phase2 {
        let actual = circuit.digest();
        if p2.circuit != actual {
            return Err(CeremonyError::CircuitMismatch {
                recorded: p2.circuit,
                actual,
            }
            .into());
        }
    }
    drop(circuit);
    let (pk, vk) = smpx_ceremony::verify_transcript(blank(levels), transcript, progress)?;
    Ok((ProvingKey::new(levels, pk)?, VerifyingKey::new(levels, vk)?))
}

/// Runs a whole ceremony for the redemption circuit of `levels` in this process — what a
/// devnet does instead of a trusted single-party [`setup`](crate::setup):
///
/// 1. [`Transcript::new`] with [`required_power`]`(levels)`;
/// 2. `contributors` phase-1 contributions, named `local-1`, `local-2`, …, each with fresh
///    secrets from the operating system's generator (zeroized after use);
/// 3. [`begin_phase2`] (verifies phase 1, prepares the circuit's initial key);
/// 4. `contributors` phase-2 contributions, named likewise;
/// 5. [`Transcript::finalize`] with a [`Beacon`] whose value is 32 fresh random bytes from
///    the operating system (one hash iteration).
///
/// **Devnet only.** Every contribution and the beacon are made on the same machine, so the
/// keys are exactly as trustworthy as that machine and process (the beacon is not a public,
/// unpredictable value anyone can recompute; here it is simply one more random
/// contribution). Production keys come from participants running `smpx ceremony
/// contribute` on their own machines, closed with a real public beacon, and are loaded with
/// [`verified_keys`].
///
/// `contributors` must be at least 1 (`ceremony.no_participant` otherwise). The returned
/// transcript passes [`verified_keys`] for `levels`.
///
/// Cost (release build, one core, 2 contributors): about 19 s for 3 levels (power 11),
/// 40 s for 5 (power 12) and 95 s for 16 (power 13), three quarters of it in
/// [`begin_phase2`]; the transcript is then 1.5, 2.8 and 6.1 MB.
pub fn local_ceremony(
    levels: u32,
    contributors: usize,
    progress: &dyn Progress,
) -> Result<Transcript, ZkError> {
    let power = required_power(levels)?;
    if contributors == 0 {
        return Err(CeremonyError::NoParticipant(Phase::One).into());
    }
    let mut t = Transcript::new(power)?;
    for i in 1..=contributors {
        t.contribute(&format!("local-{i}"), b"", progress)?;
    }
    begin_phase2(levels, &mut t, progress)?;
    for i in 1..=contributors {
        t.contribute(&format!("local-{i}"), b"", progress)?;
    }
    let mut value = [0u8; 32];
    OsRng.fill_bytes(&mut value);
    let beacon = Beacon::new(value.to_vec(), 0)?;
    t.finalize(&beacon, progress)?;
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{binding_hash, prove, verify, RedeemPublic, RedeemWitness};
    use ark_ec::{AffineRepr, CurveGroup};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use smpx_ceremony::Silent;
    use smpx_core::crypto::{commitment, nullifier, VoucherSecret};
    use smpx_core::mmr::{Mmr, MmrParams};
    use std::sync::OnceLock;

    const LEVELS: u32 = 2;

    /// One finalised local ceremony for `LEVELS`, shared by the tests.
    fn transcript() -> &'static Transcript {
        static T: OnceLock<Transcript> = OnceLock::new();
        T.get_or_init(|| local_ceremony(LEVELS, 2, &Silent).unwrap())
    }

    fn code(e: ZkError) -> &'static str {
        match e {
            ZkError::Ceremony { code, .. } => code,
            other => panic!("not a ceremony error: {other:?}"),
        }
    }

    #[test]
    fn ceremony_required_power_fits_the_circuit() {
        for levels in [2, 3, 5, 16] {
            let power = required_power(levels).unwrap();
            let needed = crate::constraint_count(levels).unwrap() + 5;
            assert!(1usize << power >= needed, "levels {levels}");
            assert!(1usize << (power - 1) < needed, "levels {levels}");
        }
        // The sizes in the crate documentation's table.
        assert_eq!(required_power(2).unwrap(), 11);
        assert_eq!(required_power(3).unwrap(), 11);
        assert_eq!(required_power(5).unwrap(), 12);
        assert_eq!(required_power(10).unwrap(), 13);
        assert_eq!(required_power(16).unwrap(), 13);
        assert_eq!(required_power(1), Err(ZkError::InvalidLevels(1)));
        assert_eq!(required_power(99), Err(ZkError::InvalidLevels(99)));
    }

    #[test]
    fn ceremony_smaller_power_is_too_small() {
        let mut t = Transcript::new(required_power(LEVELS).unwrap() - 1).unwrap();
        t.contribute("a", b"", &Silent).unwrap();
        let e = begin_phase2(LEVELS, &mut t, &Silent).unwrap_err();
        assert_eq!(code(e), "ceremony.circuit_too_large");
    }

    #[test]
    fn ceremony_keys_prove_and_verify_a_real_redemption() {
        let t = transcript();
        assert_eq!(t.state(), State::Finalized);
        assert_eq!(t.phase1.len(), 2);
        assert_eq!(t.phase2.as_ref().unwrap().contributions.len(), 3);
        let (pk, vk) = verified_keys(LEVELS, t, &Silent).unwrap();
        assert_eq!(pk.levels(), LEVELS);
        assert_eq!(vk, pk.verifying_key());
        let vk = VerifyingKey::from_bytes(&vk.to_bytes().unwrap()).unwrap();
        let pvk = vk.prepare();

        // An MMR of 7 vouchers (capacity 15); prove leaf 5.
        let secret = |i: u64| VoucherSecret::random(&mut StdRng::seed_from_u64(500 + i));
        let denom = |i: u64| [1, 10, 100][(i % 3) as usize];
        let leaves = (0..7).map(|i| commitment(&secret(i), denom(i)).0.to_fr().unwrap());
        let mmr = Mmr::from_leaves(
            MmrParams {
                id: 7,
                levels: LEVELS,
            },
            leaves,
        )
        .unwrap();
        let s = secret(5);
        let public = RedeemPublic {
            root: mmr.root(),
            nullifier: nullifier(&s).0.to_fr().unwrap(),
            denomination: denom(5),
            binding: binding_hash("operator-a", 30),
        };
        let witness = RedeemWitness {
            secret: s,
            path: mmr.proof(5).unwrap().circuit_path().unwrap(),
        };
        let mut rng = StdRng::seed_from_u64(9);
        let proof = prove(&pk, &public, &witness, &mut rng).unwrap();
        assert!(verify(&pvk, &public, &proof).unwrap());
        let other = RedeemPublic {
            binding: binding_hash("operator-b", 30),
            ..public
        };
        assert!(!verify(&pvk, &other, &proof).unwrap());
    }

    #[test]
    fn ceremony_tampered_last_contribution_is_rejected() {
        let mut t = transcript().clone();
        {
            let p2 = t.phase2.as_mut().unwrap();
            let last = p2.contributions.last_mut().unwrap();
            let l = &mut last.key.l_query[0];
            *l = (*l + ark_bn254::G1Affine::generator()).into_affine();
        }
        let e = verified_keys(LEVELS, &t, &Silent).unwrap_err();
        assert_eq!(code(e), "ceremony.hash_mismatch");

        // Even with its hash recomputed, the altered key is refused.
        let p2 = t.phase2.as_mut().unwrap();
        let n = p2.contributions.len();
        let prev = p2.contributions[n - 2].hash;
        let last = &mut p2.contributions[n - 1];
        last.hash = last.compute_hash(&prev);
        let e = verified_keys(LEVELS, &t, &Silent).unwrap_err();
        assert!(
            matches!(
                code(e.clone()),
                "ceremony.inconsistent" | "ceremony.beacon_mismatch"
            ),
            "{e}"
        );
    }

    #[test]
    fn ceremony_transcript_for_other_levels_or_unfinished_is_rejected() {
        let t = transcript();
        let e = verified_keys(LEVELS + 1, t, &Silent).unwrap_err();
        assert_eq!(code(e), "ceremony.circuit_mismatch");
        assert_eq!(
            verified_keys(0, t, &Silent).unwrap_err(),
            ZkError::InvalidLevels(0)
        );

        let mut open = t.clone();
        open.phase2.as_mut().unwrap().contributions.pop();
        let e = verified_keys(LEVELS, &open, &Silent).unwrap_err();
        assert_eq!(code(e), "ceremony.not_finalized");

        let e = local_ceremony(LEVELS, 0, &Silent).unwrap_err();
        assert_eq!(code(e), "ceremony.no_participant");
    }
}
