//! End-to-end ceremonies on a tiny circuit, and every way a contribution can be bad.

use std::sync::atomic::{AtomicUsize, Ordering};

use ark_bn254::{Bn254, Fr, G1Affine, G2Affine};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup};
use ark_ff::{One, UniformRand};
use ark_groth16::Groth16;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError,
};
use ark_snark::SNARK;
use rand_core::OsRng;
use smpx_ceremony::{
    verify_transcript, verify_transcript_silent, Beacon, CeremonyError, Contributor, Element,
    Fault, Phase, Secret, Silent, Stage, State, Transcript,
};

use crate::demo::Demo;

/// A different circuit: x·x = z.
struct Square;

impl ConstraintSynthesizer<Fr> for Square {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let x = cs.new_witness_variable(|| Err(SynthesisError::AssignmentMissing))?;
        let z = cs.new_input_variable(|| Err(SynthesisError::AssignmentMissing))?;
        let lc = |v| LinearCombination::from_sum_coeff_vars(&[(Fr::one(), v)]);
        cs.enforce_r1cs_constraint(|| lc(x), || lc(x), || lc(z))
    }
}

/// `n` multiplication constraints in a chain: x_{i+1} = x_i · x_i.
struct Chain(usize);

impl ConstraintSynthesizer<Fr> for Chain {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let missing = || Err(SynthesisError::AssignmentMissing);
        let mut x = cs.new_input_variable(missing)?;
        for _ in 0..self.0 {
            let y = cs.new_witness_variable(missing)?;
            let lc = |v| LinearCombination::from_sum_coeff_vars(&[(Fr::one(), v)]);
            cs.enforce_r1cs_constraint(|| lc(x), || lc(x), || lc(y))?;
            x = y;
        }
        Ok(())
    }
}

const POWER: u32 = 3;

fn beacon(tag: &str) -> Beacon {
    Beacon::new(tag.as_bytes().to_vec(), 4).unwrap()
}

fn phase1_only(contributors: usize) -> Transcript {
    let mut t = Transcript::new(POWER).unwrap();
    for i in 0..contributors {
        t.contribute(&format!("p1-{i}"), b"", &Silent).unwrap();
    }
    t
}

fn ceremony(contributors: usize) -> Transcript {
    let mut t = phase1_only(contributors);
    t.finalize(&beacon("phase-1 beacon"), &Silent).unwrap();
    t.begin_phase2(Demo::blank(), &Silent).unwrap();
    for i in 0..contributors {
        t.contribute(&format!("p2-{i}"), b"", &Silent).unwrap();
    }
    t.finalize(&beacon("final beacon"), &Silent).unwrap();
    t
}

fn fault(e: CeremonyError) -> (Phase, usize, Fault) {
    match e {
        CeremonyError::InvalidContribution {
            phase,
            index,
            fault,
            ..
        } => (phase, index, fault),
        other => panic!("expected an invalid contribution, got {other:?}"),
    }
}

/// Re-seals phase-1 contribution `i` (as a cheating contributor would: a consistent hash).
fn rehash1(t: &mut Transcript, i: usize) {
    let prev = if i == 0 {
        t.phase1_start_hash()
    } else {
        t.phase1[i - 1].hash
    };
    t.phase1[i].hash = t.phase1[i].compute_hash(&prev);
}

fn rehash2(t: &mut Transcript, i: usize) {
    let p = t.phase2.as_ref().unwrap();
    let prev = if i == 0 {
        let p1 = t.phase1.last().unwrap().hash;
        p.start_hash(&p1)
    } else {
        p.contributions[i - 1].hash
    };
    let p = t.phase2.as_mut().unwrap();
    p.contributions[i].hash = p.contributions[i].compute_hash(&prev);
}

fn bump(p: &G1Affine) -> G1Affine {
    (p.into_group() + G1Affine::generator()).into_affine()
}

#[test]
fn three_contributors_and_beacon_give_working_keys() {
    let t = ceremony(3);
    assert_eq!(t.state(), State::Finalized);
    assert_eq!(t.contributions().len(), 8);
    let reports = AtomicUsize::new(0);
    let verified = AtomicUsize::new(0);
    let progress = |stage: Stage, done: u64, total: u64| {
        reports.fetch_add(1, Ordering::Relaxed);
        assert!(done <= total);
        if matches!(stage, Stage::Verify(..)) && done == total {
            verified.fetch_add(1, Ordering::Relaxed);
        }
    };
    let (pk, vk) = verify_transcript(Demo::blank(), &t, &progress).unwrap();
    assert!(reports.load(Ordering::Relaxed) > 8);
    assert_eq!(verified.load(Ordering::Relaxed), 8);
    assert_eq!(pk.vk, vk);

    let (circuit, public) = Demo::with(3, 11);
    let proof = Groth16::<Bn254>::prove(&pk, circuit, &mut OsRng).unwrap();
    assert!(Groth16::<Bn254>::verify(&vk, &public, &proof).unwrap());
    let wrong = vec![public[0] + Fr::one(), public[1]];
    assert!(!Groth16::<Bn254>::verify(&vk, &wrong, &proof).unwrap());
    let pvk = Groth16::<Bn254>::process_vk(&vk).unwrap();
    assert!(Groth16::<Bn254>::verify_with_processed_vk(&pvk, &public, &proof).unwrap());
}

#[test]
fn keys_differ_between_ceremonies() {
    let (pk1, vk1) = verify_transcript_silent(Demo::blank(), &ceremony(1)).unwrap();
    let (pk2, vk2) = verify_transcript_silent(Demo::blank(), &ceremony(1)).unwrap();
    assert_ne!(vk1.alpha_g1, vk2.alpha_g1);
    assert_ne!(vk1.beta_g2, vk2.beta_g2);
    assert_ne!(vk1.delta_g2, vk2.delta_g2);
    assert_ne!(vk1.gamma_abc_g1, vk2.gamma_abc_g1);
    assert_ne!(pk1.a_query, pk2.a_query);
    assert_ne!(pk1.h_query, pk2.h_query);
    // A proof under one ceremony's keys does not verify under the other's.
    let (circuit, public) = Demo::with(2, 5);
    let proof = Groth16::<Bn254>::prove(&pk1, circuit, &mut OsRng).unwrap();
    assert!(!Groth16::<Bn254>::verify(&vk2, &public, &proof).unwrap());
}

#[test]
fn contribution_hashes_chain_and_are_reported() {
    let mut t = Transcript::new(POWER).unwrap();
    let h1 = t
        .contribute("alice", b"dice rolls: 3 1 4 1 5 9 2 6", &Silent)
        .unwrap();
    let h2 = t.contribute("bob", b"", &Silent).unwrap();
    assert_ne!(h1, h2);
    assert_eq!(t.phase1[0].hash, h1);
    assert_eq!(t.phase1[1].hash, h2);
    assert_eq!(t.phase1[1].compute_hash(&h1), h2);
    assert_eq!(h1.to_string().len(), 64);
    assert_eq!(h1.to_string().parse::<smpx_ceremony::Digest>().unwrap(), h1);
    t.verify_latest(&Silent).unwrap();
    let info = t.contributions();
    assert_eq!(
        info[1].contributor,
        Contributor::Participant { name: "bob".into() }
    );
}

#[test]
fn serialisation_round_trips() {
    let t = ceremony(2);
    let bytes = t.to_bytes().unwrap();
    let back = Transcript::from_bytes(&bytes).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.to_bytes().unwrap(), bytes);
    let (pk, _) = verify_transcript_silent(Demo::blank(), &back).unwrap();
    let (pk0, _) = verify_transcript_silent(Demo::blank(), &t).unwrap();
    assert_eq!(pk, pk0);

    // An open ceremony round-trips too (a contributor's file in, file out).
    let open = phase1_only(1);
    let mut file = Vec::new();
    open.write_to(&mut file).unwrap();
    let mut reread = Transcript::read_from(file.as_slice()).unwrap();
    reread.contribute("next", b"", &Silent).unwrap();
    reread.verify_phase1(&Silent).unwrap();

    for bad in [
        &bytes[..bytes.len() - 1],
        &bytes[..100],
        &bytes[..5],
        &[bytes.as_slice(), &[0]].concat()[..],
    ] {
        let e = Transcript::from_bytes(bad).unwrap_err();
        assert!(matches!(e, CeremonyError::Encoding(_)), "{e:?}");
        assert_eq!(e.code(), "ceremony.encoding");
    }
    let mut wrong_magic = bytes.clone();
    wrong_magic[0] ^= 1;
    assert!(matches!(
        Transcript::from_bytes(&wrong_magic),
        Err(CeremonyError::Encoding(_))
    ));
    // A flipped byte inside the data: either the encoding or a contribution is rejected.
    let mut flipped = bytes.clone();
    let at = bytes.len() / 2;
    flipped[at] ^= 0x40;
    match Transcript::from_bytes(&flipped) {
        Err(CeremonyError::Encoding(_)) => {}
        Ok(t2) => assert!(verify_transcript_silent(Demo::blank(), &t2).is_err()),
        Err(e) => panic!("unexpected {e:?}"),
    }
}

#[test]
fn phase1_contribution_without_proof_is_rejected() {
    let mut t = phase1_only(2);
    t.phase1[1].proofs = None;
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(e.code(), "ceremony.missing_proof");
    assert_eq!(fault(e), (Phase::One, 1, Fault::MissingProof));
    assert_eq!(
        fault(t.verify_latest(&Silent).unwrap_err()).2,
        Fault::MissingProof
    );
}

#[test]
fn phase1_forged_proofs_are_rejected() {
    // A random response.
    let mut t = phase1_only(2);
    t.phase1[1].proofs.as_mut().unwrap().alpha.response = Fr::rand(&mut OsRng);
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(
        fault(e),
        (Phase::One, 1, Fault::InvalidProof(Secret::Alpha))
    );

    // The previous contributor's proofs, replayed.
    let mut t = phase1_only(2);
    t.phase1[1].proofs = t.phase1[0].proofs.clone();
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 1, Fault::InvalidProof(Secret::Tau)));

    // Restarting from scratch (discarding earlier contributions): the attacker knows its
    // own secrets relative to the generators, but not relative to the previous state.
    let mut t = phase1_only(2);
    let mut fresh = phase1_only(1);
    t.phase1[1] = fresh.phase1.remove(0);
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 1, Fault::InvalidProof(Secret::Tau)));
}

#[test]
fn phase1_reused_accumulator_is_rejected() {
    let mut t = phase1_only(2);
    t.phase1[1].accumulator = t.phase1[0].accumulator.clone();
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 1, Fault::ReusedAccumulator));

    // Only α left unchanged.
    let mut t = phase1_only(2);
    let prev = t.phase1[0].accumulator.clone();
    t.phase1[1].accumulator.alpha_tau_g1[0] = prev.alpha_tau_g1[0];
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(
        fault(e),
        (Phase::One, 1, Fault::SecretNotApplied(Secret::Alpha))
    );
}

#[test]
fn phase1_tampered_elements_are_rejected() {
    let cases: [(&str, Fault); 5] = [
        ("tau_g1", Fault::Inconsistent(Element::TauG1)),
        ("alpha", Fault::Inconsistent(Element::AlphaTauG1)),
        ("beta", Fault::Inconsistent(Element::BetaTauG1)),
        ("tau_g2", Fault::Inconsistent(Element::TauG2)),
        ("beta_g2", Fault::Inconsistent(Element::BetaG2)),
    ];
    let base = phase1_only(2);
    for (what, expected) in cases {
        let mut t = base.clone();
        let acc = &mut t.phase1[1].accumulator;
        match what {
            "tau_g1" => acc.tau_g1[11] = bump(&acc.tau_g1[11]),
            "alpha" => acc.alpha_tau_g1[5] = bump(&acc.alpha_tau_g1[5]),
            "beta" => acc.beta_tau_g1[6] = bump(&acc.beta_tau_g1[6]),
            "tau_g2" => {
                acc.tau_g2[3] = (acc.tau_g2[3].into_group() + G2Affine::generator()).into_affine()
            }
            _ => acc.beta_g2 = (acc.beta_g2.into_group().double()).into_affine(),
        }
        // Without re-sealing the hash, the hash chain catches it first.
        let e = t.verify_latest(&Silent).unwrap_err();
        assert_eq!(fault(e), (Phase::One, 1, Fault::HashMismatch), "{what}");
        rehash1(&mut t, 1);
        let e = t.verify_latest(&Silent).unwrap_err();
        assert_eq!(fault(e), (Phase::One, 1, expected), "{what}");
    }
    // Tampering an earlier contribution breaks the chain at that contribution.
    let mut t = base.clone();
    t.phase1[0].accumulator.tau_g1[2] = bump(&t.phase1[0].accumulator.tau_g1[2]);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 0, Fault::HashMismatch));
    // Replacing a generator.
    let mut t = base;
    t.phase1[1].accumulator.tau_g1[0] = bump(&G1Affine::generator());
    rehash1(&mut t, 1);
    assert!(matches!(
        fault(t.verify_phase1(&Silent).unwrap_err()).2,
        Fault::Malformed(_)
    ));
}

#[test]
fn contribution_built_on_a_stale_state_is_rejected() {
    // Contributor 3 worked from contributor 1's output, ignoring contributor 2.
    let mut t = phase1_only(1);
    let mut stale = t.clone();
    t.contribute("2", b"", &Silent).unwrap();
    stale.contribute("3", b"", &Silent).unwrap();
    t.phase1.push(stale.phase1.pop().unwrap());
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 2, Fault::HashMismatch));
    rehash1(&mut t, 2);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(fault(e), (Phase::One, 2, Fault::InvalidProof(Secret::Tau)));
}

fn phase2_open(contributors: usize) -> Transcript {
    let mut t = phase1_only(1);
    t.begin_phase2(Demo::blank(), &Silent).unwrap();
    for i in 0..contributors {
        t.contribute(&format!("p2-{i}"), b"", &Silent).unwrap();
    }
    t
}

fn finish_and_verify(mut t: Transcript) -> CeremonyError {
    // Appending the beacon to a bad transcript is possible (it does not verify);
    // full verification must name the bad contribution.
    t.finalize(&beacon("b"), &Silent).unwrap();
    verify_transcript_silent(Demo::blank(), &t).unwrap_err()
}

#[test]
fn phase2_contribution_without_proof_is_rejected() {
    let mut t = phase2_open(2);
    t.phase2.as_mut().unwrap().contributions[1].proof = None;
    rehash2(&mut t, 1);
    assert_eq!(
        fault(t.verify_latest(&Silent).unwrap_err()),
        (Phase::Two, 1, Fault::MissingProof)
    );
    assert_eq!(
        fault(finish_and_verify(t)),
        (Phase::Two, 1, Fault::MissingProof)
    );
}

#[test]
fn phase2_forged_proof_is_rejected() {
    let mut t = phase2_open(2);
    {
        let p = t.phase2.as_mut().unwrap();
        let proof = p.contributions[1].proof.as_mut().unwrap();
        proof.commitment = (proof.commitment.into_group() + G1Affine::generator()).into_affine();
    }
    rehash2(&mut t, 1);
    assert_eq!(
        fault(finish_and_verify(t)),
        (Phase::Two, 1, Fault::InvalidProof(Secret::Delta))
    );

    // Replay of the previous contributor's proof.
    let mut t = phase2_open(2);
    {
        let p = t.phase2.as_mut().unwrap();
        p.contributions[1].proof = p.contributions[0].proof.clone();
    }
    rehash2(&mut t, 1);
    assert_eq!(
        fault(finish_and_verify(t)),
        (Phase::Two, 1, Fault::InvalidProof(Secret::Delta))
    );
}

#[test]
fn phase2_reused_key_is_rejected() {
    let mut t = phase2_open(2);
    {
        let p = t.phase2.as_mut().unwrap();
        p.contributions[1].key = p.contributions[0].key.clone();
    }
    rehash2(&mut t, 1);
    assert_eq!(
        fault(finish_and_verify(t)),
        (Phase::Two, 1, Fault::ReusedAccumulator)
    );
}

#[test]
fn phase2_tampered_elements_are_rejected() {
    let base = phase2_open(2);
    for (what, expected) in [
        ("l", Fault::Inconsistent(Element::LQuery)),
        ("h", Fault::Inconsistent(Element::HQuery)),
        ("delta_g2", Fault::Inconsistent(Element::Delta)),
        ("delta_g1", Fault::InvalidProof(Secret::Delta)),
    ] {
        let mut t = base.clone();
        {
            let key = &mut t.phase2.as_mut().unwrap().contributions[1].key;
            match what {
                "l" => key.l_query[0] = bump(&key.l_query[0]),
                "h" => key.h_query[3] = bump(&key.h_query[3]),
                "delta_g2" => {
                    key.delta_g2 = key.delta_g2.into_group().double().into_affine();
                }
                _ => key.delta_g1 = bump(&key.delta_g1),
            }
        }
        assert_eq!(
            fault(t.verify_latest(&Silent).unwrap_err()),
            (Phase::Two, 1, Fault::HashMismatch),
            "{what}"
        );
        rehash2(&mut t, 1);
        assert_eq!(
            fault(finish_and_verify(t)),
            (Phase::Two, 1, expected),
            "{what}"
        );
    }
}

#[test]
fn forged_beacon_contributions_are_rejected() {
    // A participant's contribution relabelled as the beacon: its secrets are not the
    // beacon's.
    let mut t = phase1_only(2);
    t.phase1[1].contributor = Contributor::Beacon(beacon("x"));
    rehash1(&mut t, 1);
    let e = t.verify_phase1(&Silent).unwrap_err();
    assert_eq!(
        fault(e),
        (Phase::One, 1, Fault::BeaconMismatch(Secret::Tau))
    );

    let mut t = ceremony(1);
    let p = t.phase2.as_mut().unwrap();
    let last = p.contributions.len() - 1;
    p.contributions[last].contributor = Contributor::Beacon(beacon("another value"));
    rehash2(&mut t, last);
    let e = verify_transcript_silent(Demo::blank(), &t).unwrap_err();
    assert_eq!(
        fault(e),
        (Phase::Two, 1, Fault::BeaconMismatch(Secret::Delta))
    );
}

#[test]
fn ceremony_state_rules() {
    // A beacon needs a participant before it.
    let mut t = Transcript::new(POWER).unwrap();
    assert!(matches!(
        t.finalize(&beacon("b"), &Silent),
        Err(CeremonyError::NoParticipant(Phase::One))
    ));
    assert!(matches!(
        t.begin_phase2(Demo::blank(), &Silent),
        Err(CeremonyError::NoParticipant(Phase::One))
    ));
    t.contribute("a", b"", &Silent).unwrap();
    t.finalize(&beacon("b"), &Silent).unwrap();
    assert_eq!(t.state(), State::Phase1Closed);
    assert!(matches!(
        t.contribute("late", b"", &Silent),
        Err(CeremonyError::WrongState { .. })
    ));
    // Not finalised: phase 2 missing, then without its beacon, then without participants.
    assert!(matches!(
        verify_transcript_silent(Demo::blank(), &t),
        Err(CeremonyError::NotFinalized)
    ));
    t.begin_phase2(Demo::blank(), &Silent).unwrap();
    assert!(matches!(
        t.finalize(&beacon("b"), &Silent),
        Err(CeremonyError::NoParticipant(Phase::Two))
    ));
    t.contribute("c", b"", &Silent).unwrap();
    assert!(matches!(
        verify_transcript_silent(Demo::blank(), &t),
        Err(CeremonyError::NotFinalized)
    ));
    t.finalize(&beacon("b"), &Silent).unwrap();
    assert_eq!(t.state(), State::Finalized);
    assert!(matches!(
        t.contribute("late", b"", &Silent),
        Err(CeremonyError::WrongState { .. })
    ));
    verify_transcript_silent(Demo::blank(), &t).unwrap();

    // A contribution appended after the final beacon.
    let mut late = t.clone();
    {
        let p = late.phase2.as_mut().unwrap();
        let mut extra = p.contributions[0].clone();
        extra.contributor = Contributor::Participant {
            name: "late".into(),
        };
        p.contributions.push(extra);
    }
    let e = verify_transcript_silent(Demo::blank(), &late).unwrap_err();
    assert_eq!(fault(e), (Phase::Two, 2, Fault::AfterBeacon));
}

#[test]
fn wrong_circuit_and_wrong_initial_key_are_rejected() {
    let t = ceremony(1);
    t.verify_phase2_start(Demo::blank(), &Silent).unwrap();
    assert!(matches!(
        t.verify_phase2_start(Square, &Silent),
        Err(CeremonyError::CircuitMismatch { .. })
    ));
    assert!(matches!(
        verify_transcript_silent(Square, &t),
        Err(CeremonyError::CircuitMismatch { .. })
    ));
    for (what, expected) in [
        ("a", "a_query"),
        ("b1", "b_g1_query"),
        ("b2", "b_g2_query"),
        ("abc", "gamma_abc_g1 / l_query"),
        ("l", "gamma_abc_g1 / l_query"),
        ("h", "h_query"),
        ("alpha", "alpha, beta, gamma or delta"),
    ] {
        let mut bad = t.clone();
        let pk = &mut bad.phase2.as_mut().unwrap().initial;
        match what {
            "a" => pk.a_query[2] = bump(&pk.a_query[2]),
            "b1" => pk.b_g1_query[1] = bump(&pk.b_g1_query[1]),
            "b2" => {
                pk.b_g2_query[1] = (pk.b_g2_query[1].into_group() + G2Affine::generator()).into()
            }
            "abc" => pk.vk.gamma_abc_g1[1] = bump(&pk.vk.gamma_abc_g1[1]),
            "l" => pk.l_query[3] = bump(&pk.l_query[3]),
            "h" => pk.h_query[0] = bump(&pk.h_query[0]),
            _ => pk.vk.alpha_g1 = bump(&pk.vk.alpha_g1),
        }
        match verify_transcript_silent(Demo::blank(), &bad) {
            Err(CeremonyError::InitialKeyMismatch(part)) => assert_eq!(part, expected),
            other => panic!("{what}: {other:?}"),
        }
        assert!(bad.verify_phase2_start(Demo::blank(), &Silent).is_err());
    }
    // Too large for phase 1: 2^3 points cannot hold 20 constraints.
    let mut t = phase1_only(1);
    assert!(matches!(
        t.begin_phase2(Chain(20), &Silent),
        Err(CeremonyError::CircuitTooLarge {
            needed: 32,
            available: 8
        })
    ));
    assert!(matches!(
        Transcript::new(0),
        Err(CeremonyError::UnsupportedPower(0))
    ));
}

#[test]
fn beacon_output_is_iterated_sha256() {
    // SHA-256("abc"), once.
    let b = Beacon::from_hex("616263", 0).unwrap();
    assert_eq!(
        hex::encode(b.output(&Silent)),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let b2 = Beacon::from_hex("0x616263", 1).unwrap();
    let once = b.output(&Silent);
    let twice = Beacon::new(once.to_vec(), 0).unwrap().output(&Silent);
    assert_eq!(b2.output(&Silent), twice);
    assert!(Beacon::from_hex("zz", 1).is_err());
    // A decoded transcript cannot smuggle in an unbounded beacon delay.
    let mut t = phase1_only(1);
    t.finalize(&beacon("b"), &Silent).unwrap();
    if let Contributor::Beacon(b) = &mut t.phase1[1].contributor {
        b.log2_iterations = 60;
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(smpx_ceremony::MAGIC);
    bytes.extend_from_slice(&smpx_ceremony::FORMAT_VERSION.to_le_bytes());
    ark_serialize::CanonicalSerialize::serialize_compressed(&t, &mut bytes).unwrap();
    assert!(matches!(
        Transcript::from_bytes(&bytes),
        Err(CeremonyError::Encoding(_))
    ));
    assert!(Beacon::new(vec![], 1).is_err());
    assert!(Beacon::new(vec![1], 49).is_err());
}

#[test]
fn larger_chain_circuit_proves() {
    // 2^6 powers, a 40-constraint circuit (domain 64).
    let mut t = Transcript::new(6).unwrap();
    t.contribute("a", b"", &Silent).unwrap();
    t.begin_phase2(Chain(40), &Silent).unwrap();
    t.contribute("b", b"", &Silent).unwrap();
    t.finalize(&beacon("z"), &Silent).unwrap();
    let (pk, vk) = verify_transcript_silent(Chain(40), &t).unwrap();
    assert_eq!(pk.h_query.len(), 63);

    struct ChainW(Fr, usize);
    impl ConstraintSynthesizer<Fr> for ChainW {
        fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
            let mut v = self.0;
            let mut x = cs.new_input_variable(|| Ok(v))?;
            for _ in 0..self.1 {
                v = v * v;
                let y = cs.new_witness_variable(|| Ok(v))?;
                let lc = |w| LinearCombination::from_sum_coeff_vars(&[(Fr::one(), w)]);
                cs.enforce_r1cs_constraint(|| lc(x), || lc(x), || lc(y))?;
                x = y;
            }
            Ok(())
        }
    }
    let x0 = Fr::from(3u64);
    let proof = Groth16::<Bn254>::prove(&pk, ChainW(x0, 40), &mut OsRng).unwrap();
    assert!(Groth16::<Bn254>::verify(&vk, &[x0], &proof).unwrap());
    assert!(!Groth16::<Bn254>::verify(&vk, &[x0 + Fr::one()], &proof).unwrap());
}

#[test]
fn points_off_the_curve_or_outside_the_subgroup_are_refused() {
    use ark_bn254::Fq2;
    use ark_serialize::CanonicalSerialize;
    // A G2 point on the curve but (almost surely) outside the prime-order subgroup.
    let mut x = Fq2::from(7u64);
    let rogue = loop {
        if let Some(p) = G2Affine::get_point_from_x_unchecked(x, true) {
            if !p.is_in_correct_subgroup_assuming_on_curve() {
                break p;
            }
        }
        x += Fq2::one();
    };
    let mut t = phase1_only(1);
    t.phase1[0].accumulator.tau_g2[2] = rogue;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(smpx_ceremony::MAGIC);
    bytes.extend_from_slice(&smpx_ceremony::FORMAT_VERSION.to_le_bytes());
    t.serialize_compressed(&mut bytes).unwrap();
    assert!(matches!(
        Transcript::from_bytes(&bytes),
        Err(CeremonyError::Encoding(_))
    ));

    // A compressed G1 x-coordinate with no point on the curve.
    let t = phase1_only(1);
    let good = t.to_bytes().unwrap();
    let one = G1Affine::generator();
    let mut enc = Vec::new();
    one.serialize_compressed(&mut enc).unwrap();
    // Find tau_g1[0] (the generator) in the encoding and replace its x by one with no y.
    let at = good
        .windows(enc.len())
        .position(|w| w == enc.as_slice())
        .unwrap();
    let mut bad = good.clone();
    let mut xv = ark_bn254::Fq::from(2u64);
    loop {
        let mut e = Vec::new();
        xv.serialize_compressed(&mut e).unwrap();
        if G1Affine::get_point_from_x_unchecked(xv, true).is_none() {
            bad[at..at + e.len()].copy_from_slice(&e);
            break;
        }
        xv += ark_bn254::Fq::one();
    }
    assert!(matches!(
        Transcript::from_bytes(&bad),
        Err(CeremonyError::Encoding(_))
    ));
}
