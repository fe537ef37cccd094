//! The demo circuit of the ceremony's tests, one definition for both: the integration tests
//! (`mod demo`) and the unit tests (`src/tests.rs`, by path).

use ark_bn254::Fr;
use ark_ff::One;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError, Variable,
};

/// x·y = z (public), (x + y)² = t, 3t + 5x − 2 = out (public), (2x − y)·y = u.
#[derive(Clone)]
pub(crate) struct Demo {
    x: Option<Fr>,
    y: Option<Fr>,
}

impl Demo {
    pub(crate) fn blank() -> Self {
        Demo { x: None, y: None }
    }

    pub(crate) fn with(x: u64, y: u64) -> (Self, Vec<Fr>) {
        let (x, y) = (Fr::from(x), Fr::from(y));
        let t = (x + y) * (x + y);
        let public = vec![
            x * y,
            Fr::from(3u64) * t + Fr::from(5u64) * x - Fr::from(2u64),
        ];
        (
            Demo {
                x: Some(x),
                y: Some(y),
            },
            public,
        )
    }
}

impl ConstraintSynthesizer<Fr> for Demo {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let v = |o: Option<Fr>| o.ok_or(SynthesisError::AssignmentMissing);
        let (xv, yv) = (self.x, self.y);
        let x = cs.new_witness_variable(|| v(xv))?;
        let y = cs.new_witness_variable(|| v(yv))?;
        let z = cs.new_input_variable(|| Ok(v(xv)? * v(yv)?))?;
        let t = cs.new_witness_variable(|| Ok((v(xv)? + v(yv)?) * (v(xv)? + v(yv)?)))?;
        let out = cs.new_input_variable(|| {
            let t = (v(xv)? + v(yv)?) * (v(xv)? + v(yv)?);
            Ok(Fr::from(3u64) * t + Fr::from(5u64) * v(xv)? - Fr::from(2u64))
        })?;
        let u = cs.new_witness_variable(|| Ok((Fr::from(2u64) * v(xv)? - v(yv)?) * v(yv)?))?;
        let lc = |terms: &[(Fr, Variable)]| LinearCombination::from_sum_coeff_vars(terms);
        let one = Fr::one();
        cs.enforce_r1cs_constraint(|| lc(&[(one, x)]), || lc(&[(one, y)]), || lc(&[(one, z)]))?;
        cs.enforce_r1cs_constraint(
            || lc(&[(one, x), (one, y)]),
            || lc(&[(one, x), (one, y)]),
            || lc(&[(one, t)]),
        )?;
        cs.enforce_r1cs_constraint(
            || {
                lc(&[
                    (Fr::from(3u64), t),
                    (Fr::from(5u64), x),
                    (-Fr::from(2u64), Variable::One),
                ])
            },
            || lc(&[(one, Variable::One)]),
            || lc(&[(one, out)]),
        )?;
        cs.enforce_r1cs_constraint(
            || lc(&[(Fr::from(2u64), x), (-one, y)]),
            || lc(&[(one, y)]),
            || lc(&[(one, u)]),
        )?;
        Ok(())
    }
}
