//! circom Poseidon (BN254, x^5) as an R1CS gadget, with exactly `light-poseidon`'s constants.
//!
//! The native hash (`smpx_core::crypto::poseidon2`, `smpx_core::mmr`) is `light-poseidon`'s
//! `new_circom`; this gadget reads the same round constants and MDS matrices from
//! `light_poseidon::parameters::bn254_x5` and runs the same permutation: state
//! `[0, inputs…]`, `R_F/2` full rounds, `R_P` partial rounds (S-box on the first element
//! only), `R_F/2` full rounds, each round = add round constants, S-box `x^5`, MDS; output
//! `state[0]`. (arkworks' own Poseidon sponge uses other constants and another state layout
//! and must not be used for values that are also computed natively.)
//!
//! Cost: an S-box is 3 constraints (`x²`, `x⁴`, `x⁵`); round constants and the MDS are linear
//! and free. The state is kept as flat linear combinations of the S-box outputs (not as chains
//! of arkworks' symbolic combinations, whose inlining at `finalize` cost over a second for the
//! redemption circuit). Width `t = n + 1` costs `3·(R_F·t + R_P)` constraints minus the S-boxes of the
//! constant first element in round 1: 240 for 2 inputs, 297 for 4, 504 for 12.

use std::sync::OnceLock;

use ark_ff::{AdditiveGroup, Field};
use ark_r1cs_std::fields::fp::{AllocatedFp, FpVar};
use ark_r1cs_std::GR1CSVar;
use ark_relations::gr1cs::{ConstraintSystemRef, LinearCombination, SynthesisError, Variable};
use light_poseidon::parameters::bn254_x5::get_poseidon_parameters;
use light_poseidon::{PoseidonHasher, PoseidonParameters};
use smpx_core::crypto::Fr;

/// Most inputs one circom Poseidon call takes.
pub const MAX_INPUTS: usize = 12;

/// Parameters for 1..=12 inputs (index = inputs − 1), loaded once.
fn all_params() -> &'static [Option<PoseidonParameters<Fr>>] {
    static PARAMS: OnceLock<Vec<Option<PoseidonParameters<Fr>>>> = OnceLock::new();
    PARAMS.get_or_init(|| {
        (1..=MAX_INPUTS)
            .map(|n| get_poseidon_parameters::<Fr>((n + 1) as u8).ok())
            .collect()
    })
}

/// The circom parameters for `n` inputs.
pub fn params(n: usize) -> Result<&'static PoseidonParameters<Fr>, SynthesisError> {
    n.checked_sub(1)
        .and_then(|i| all_params().get(i))
        .and_then(Option::as_ref)
        .ok_or(SynthesisError::Unsatisfiable)
}

/// A state element: a linear combination of circuit variables (kept flat, sorted and merged,
/// so the constraint system never has to inline chains of symbolic combinations) and its
/// value when known (not at setup). When the system builds no matrices (witness generation
/// for a prover that has them already), only values are tracked.
struct Cell {
    lc: LinearCombination<Fr>,
    value: Option<Fr>,
    constant: bool,
}

/// Whether linear combinations are built (setup, or proving without precomputed matrices).
#[derive(Clone, Copy)]
struct Mode {
    lcs: bool,
}

impl Cell {
    fn constant(mode: Mode, c: Fr) -> Self {
        Self {
            lc: if mode.lcs {
                LinearCombination::from((c, Variable::One))
            } else {
                LinearCombination::zero()
            },
            value: Some(c),
            constant: true,
        }
    }

    fn of(mode: Mode, x: &FpVar<Fr>) -> Self {
        match x {
            FpVar::Constant(c) => Self::constant(mode, *c),
            FpVar::Var(a) => Self {
                lc: if mode.lcs {
                    LinearCombination::from(a.variable)
                } else {
                    LinearCombination::zero()
                },
                value: a.value().ok(),
                constant: false,
            },
        }
    }

    fn add_constant(&mut self, mode: Mode, c: Fr) {
        if mode.lcs {
            self.lc += (c, Variable::One);
        }
        self.value = self.value.map(|v| v + c);
    }
}

/// `x^5` in 3 constraints: `x·x = x2`, `x2·x2 = x4`, `x4·x = x5` (free for a constant).
fn sbox(cs: &ConstraintSystemRef<Fr>, mode: Mode, x: &Cell) -> Result<Cell, SynthesisError> {
    let v2 = x.value.map(|v| v.square());
    let v4 = v2.map(|v| v.square());
    let v5 = v4.zip(x.value).map(|(a, b)| a * b);
    if x.constant {
        let c = v5.ok_or(SynthesisError::AssignmentMissing)?;
        return Ok(Cell::constant(mode, c));
    }
    let step = |a: &LinearCombination<Fr>, b: &LinearCombination<Fr>, value: Option<Fr>| {
        let out = cs.new_witness_variable(|| value.ok_or(SynthesisError::AssignmentMissing))?;
        if !mode.lcs {
            return Ok(LinearCombination::zero());
        }
        cs.enforce_r1cs_constraint(|| a.clone(), || b.clone(), || LinearCombination::from(out))?;
        Ok::<_, SynthesisError>(LinearCombination::from(out))
    };
    let x2 = step(&x.lc, &x.lc, v2)?;
    let x4 = step(&x2, &x2, v4)?;
    let x5 = step(&x4, &x.lc, v5)?;
    Ok(Cell {
        lc: x5,
        value: v5,
        constant: false,
    })
}

fn mds(p: &PoseidonParameters<Fr>, mode: Mode, state: &[Cell]) -> Vec<Cell> {
    p.mds
        .iter()
        .map(|row| {
            let mut lc = LinearCombination::zero();
            let mut value = Some(Fr::ZERO);
            for (m, cell) in row.iter().zip(state) {
                if mode.lcs {
                    lc = lc + (*m, &cell.lc);
                }
                value = value.zip(cell.value).map(|(acc, v)| acc + *m * v);
            }
            Cell {
                lc,
                value,
                constant: state.iter().all(|c| c.constant),
            }
        })
        .collect()
}

/// circom `Poseidon(inputs)` constrained in the circuit; 1 to 12 inputs.
pub fn poseidon(inputs: &[FpVar<Fr>]) -> Result<FpVar<Fr>, SynthesisError> {
    let p = params(inputs.len())?;
    let cs = inputs.cs();
    if cs.is_none() {
        // All constants: hash natively.
        let values: Option<Vec<Fr>> = inputs.iter().map(|x| x.value().ok()).collect();
        let values = values.ok_or(SynthesisError::AssignmentMissing)?;
        let mut h = light_poseidon::Poseidon::<Fr>::new_circom(inputs.len())
            .map_err(|_| SynthesisError::Unsatisfiable)?;
        return h
            .hash(&values)
            .map(FpVar::Constant)
            .map_err(|_| SynthesisError::Unsatisfiable);
    }
    let mode = Mode {
        lcs: cs.should_construct_matrices(),
    };
    let t = p.width;
    let mut state: Vec<Cell> = Vec::with_capacity(t);
    state.push(Cell::constant(mode, Fr::ZERO));
    state.extend(inputs.iter().map(|x| Cell::of(mode, x)));
    let half = p.full_rounds / 2;
    let rounds = p.full_rounds + p.partial_rounds;
    for round in 0..rounds {
        for (i, cell) in state.iter_mut().enumerate() {
            cell.add_constant(mode, p.ark[round * t + i]);
        }
        if round < half || round >= half + p.partial_rounds {
            for cell in state.iter_mut() {
                *cell = sbox(&cs, mode, cell)?;
            }
        } else {
            state[0] = sbox(&cs, mode, &state[0])?;
        }
        state = mds(p, mode, &state);
    }
    let out = state.swap_remove(0);
    let variable = cs.new_lc(|| out.lc)?;
    Ok(FpVar::Var(AllocatedFp::new(out.value, variable, cs)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ark_r1cs_std::alloc::AllocVar;
    use ark_r1cs_std::GR1CSVar;
    use ark_relations::gr1cs::{ConstraintSystem, SynthesisMode};
    use light_poseidon::{Poseidon, PoseidonHasher};
    use smpx_core::crypto::FieldBytes;

    const POSEIDON_1_2: &str = "115cc0f5e7d690413df64c6b9662e9cf2a3617f2743245519e19607a4417189a";

    #[test]
    fn gadget_matches_circomlib_vector_and_native_for_every_width() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let one = FpVar::new_witness(cs.clone(), || Ok(Fr::from(1u64))).unwrap();
        let two = FpVar::new_witness(cs.clone(), || Ok(Fr::from(2u64))).unwrap();
        let h = poseidon(&[one, two]).unwrap();
        assert_eq!(
            FieldBytes::from_fr(&h.value().unwrap()).to_hex(),
            POSEIDON_1_2
        );
        assert!(cs.is_satisfied().unwrap());

        for n in 1..=MAX_INPUTS {
            let xs: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i * 7919 + 3)).collect();
            let native = Poseidon::<Fr>::new_circom(n).unwrap().hash(&xs).unwrap();
            let cs = ConstraintSystem::<Fr>::new_ref();
            let vars: Vec<_> = xs
                .iter()
                .map(|x| FpVar::new_witness(cs.clone(), || Ok(*x)).unwrap())
                .collect();
            let h = poseidon(&vars).unwrap();
            assert_eq!(h.value().unwrap(), native, "{n} inputs");
            assert!(cs.is_satisfied().unwrap());
        }
        assert!(params(0).is_err());
        assert!(params(13).is_err());
    }

    #[test]
    fn gadget_constraint_counts() {
        // Counted in setup mode (a prove-mode system without matrices counts nothing).
        for (n, expected) in [(2usize, 240usize), (4, 297), (5, 321), (12, 504)] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            cs.set_mode(SynthesisMode::Setup);
            let vars: Vec<_> = (0..n)
                .map(|_| FpVar::new_witness(cs.clone(), || Ok(Fr::ZERO)).unwrap())
                .collect();
            let _ = poseidon(&vars).unwrap();
            cs.finalize();
            assert_eq!(cs.num_constraints(), expected, "{n} inputs");
        }
    }
}
