//! Cross-check against `ark-groth16`'s own QAP reduction: with known secrets, the
//! ceremony's key must be exactly the key `Groth16`'s generator formula gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ark_bn254::{Fr, G1Affine, G2Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{Field, One};
use ark_groth16::r1cs_to_qap::{LibsnarkReduction, R1CSToQAP};
use ark_poly::GeneralEvaluationDomain;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, LinearCombination,
    OptimizationGoal, SynthesisError, SynthesisMode, Variable,
};

use crate::beacon::Contributor;
use crate::phase1::{self, Accumulator};
use crate::phase2::{self, DeltaKey, R1cs};
use crate::progress::Silent;

/// The integration tests' demo circuit (x·y = z, …); its assignments are not needed here.
#[path = "../tests/it/demo.rs"]
#[allow(dead_code)]
mod demo;
use demo::Demo;

/// Long columns with large coefficients (like Poseidon's): 40 constraints
/// `(Σ_k c_{i,k}·x_k + d_i) · (x_i + e_i·x_0) = y_i`, so the x columns and the constant
/// column take the multi-scalar-multiplication path.
struct Dense;

impl ConstraintSynthesizer<Fr> for Dense {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let missing = || Err(SynthesisError::AssignmentMissing);
        let big =
            |i: u64| Fr::from(i).pow([3u64]) * Fr::from(0x1234_5678_9abc_def1u64) + Fr::from(i);
        let x: Vec<Variable> = (0..4)
            .map(|_| cs.new_witness_variable(missing))
            .collect::<Result<_, _>>()?;
        let out = cs.new_input_variable(missing)?;
        for i in 0..40u64 {
            let y = cs.new_witness_variable(missing)?;
            let mut a: Vec<(Fr, Variable)> = (0..4u64)
                .map(|k| (big(i * 7 + k + 2), x[k as usize]))
                .collect();
            a.push((big(i + 1000), Variable::One));
            let b = [(Fr::one(), x[(i % 4) as usize]), (big(i + 77), out)];
            cs.enforce_r1cs_constraint(
                || LinearCombination::from_sum_coeff_vars(&a),
                || LinearCombination::from_sum_coeff_vars(&b),
                || LinearCombination::from_sum_coeff_vars(&[(big(i + 5), y)]),
            )?;
        }
        Ok(())
    }
}

fn setup_cs<C: ConstraintSynthesizer<Fr>>(circuit: C) -> ConstraintSystemRef<Fr> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    circuit.generate_constraints(cs.clone()).unwrap();
    cs.finalize();
    cs
}

#[test]
fn key_matches_groth16_generator_formula() {
    check_against_formula(Demo::blank, 4);
}

#[test]
fn key_matches_formula_on_long_columns() {
    check_against_formula(|| Dense, 6);
}

fn check_against_formula<C: ConstraintSynthesizer<Fr>>(circuit: impl Fn() -> C, power: u32) {
    let (tau, alpha, beta, delta) = (
        Fr::from(123_456_789u64),
        Fr::from(987_654_321u64),
        Fr::from(55_555u64),
        Fr::from(31_337u64),
    );
    let start = phase1::start_hash(power);
    let acc0 = Accumulator::initial(power).unwrap();
    let secrets = phase1::Secrets::fixed(tau, alpha, beta);
    let c1 = phase1::contribute(
        &acc0,
        &start,
        Contributor::participant("t").unwrap(),
        &secrets,
        &Silent,
    );
    let tick = crate::progress::Tick::new(&Silent, crate::Stage::PreparePhase2, 1);
    phase1::verify_contribution(&acc0, &start, &c1, power, &tick).unwrap();

    let r1cs = R1cs::synthesize(circuit()).unwrap();
    let mut pk = phase2::initial_key(&r1cs, &c1.accumulator, &Silent).unwrap();
    phase2::verify_initial_key(&r1cs, &c1.accumulator, &pk, &Silent).unwrap();
    // An initial key for other secrets (here: the starting accumulator) is refused.
    let other = phase2::initial_key(&r1cs, &acc0, &Silent).unwrap();
    assert!(phase2::verify_initial_key(&r1cs, &c1.accumulator, &other, &Silent).is_err());
    let initial = DeltaKey::of(&pk);
    let c2 = phase2::contribute(
        &initial,
        &start,
        Contributor::participant("t").unwrap(),
        &phase2::DeltaSecret::fixed(delta),
        &Silent,
    );
    phase2::verify_contribution(&initial, &start, &c2, &tick).unwrap();
    c2.key.apply_to(&mut pk);

    let cs = setup_cs(circuit());
    let ni = cs.num_instance_variables();
    let (a, b, c, zt, _, m_raw) = LibsnarkReduction::instance_map_with_evaluation::<
        Fr,
        GeneralEvaluationDomain<Fr>,
    >(cs, &tau)
    .unwrap();
    let e1 = |s: Fr| (G1Affine::generator() * s).into_affine();
    let e2 = |s: Fr| (G2Affine::generator() * s).into_affine();
    let dinv = delta.inverse().unwrap();

    assert_eq!(pk.vk.alpha_g1, e1(alpha));
    assert_eq!(pk.vk.beta_g2, e2(beta));
    assert_eq!(pk.beta_g1, e1(beta));
    assert_eq!(pk.vk.gamma_g2, G2Affine::generator());
    assert_eq!(pk.delta_g1, e1(delta));
    assert_eq!(pk.vk.delta_g2, e2(delta));
    assert_eq!(pk.a_query, a.iter().map(|s| e1(*s)).collect::<Vec<_>>());
    assert_eq!(pk.b_g1_query, b.iter().map(|s| e1(*s)).collect::<Vec<_>>());
    assert_eq!(pk.b_g2_query, b.iter().map(|s| e2(*s)).collect::<Vec<_>>());
    let abc: Vec<Fr> = (0..a.len())
        .map(|i| beta * a[i] + alpha * b[i] + c[i])
        .collect();
    assert_eq!(
        pk.vk.gamma_abc_g1,
        abc[..ni].iter().map(|s| e1(*s)).collect::<Vec<_>>()
    );
    assert_eq!(
        pk.l_query,
        abc[ni..].iter().map(|s| e1(*s * dinv)).collect::<Vec<_>>()
    );
    let h = LibsnarkReduction::h_query_scalars::<Fr, GeneralEvaluationDomain<Fr>>(
        m_raw - 1,
        tau,
        zt,
        dinv,
    )
    .unwrap();
    assert_eq!(pk.h_query, h.iter().map(|s| e1(*s)).collect::<Vec<_>>());
}
