//! The redemption circuit: "I know `s` whose commitment `Poseidon(s, d)` is a leaf of the MMR
//! with this root, and `N = Poseidon(NULLIFIER_DOMAIN, s)`", bound to an operator and fee.
//!
//! Public inputs, in this order: MMR `root`, nullifier `N`, `denomination` `d`, `binding`.
//! Private: `s`, the root's header (MMR id, levels, size), the position digit (2 bits) and the three other children at
//! each of the `L − 1` levels, the `3L` peak slots and a one-hot selector of the slot the leaf
//! climbs to (see `smpx_core::mmr` for the root).
//!
//! Constraints:
//! 1. `N == Poseidon(NULLIFIER_DOMAIN, s)`; `leaf = Poseidon(s, d)`.
//! 2. `cur_0 = leaf`; at level `j`, the two digit bits place `cur_j` among the three siblings
//!    (a 4-way multiplexer, 7 constraints) and `cur_{j+1} = Poseidon(children)`. Levels above
//!    the leaf's peak hash padding and are never compared.
//! 3. One-hot selector `sel` over the slots; `Σ_k sel_k·(cur_{⌊k/3⌋} − slot_k) = 0`: the value
//!    climbed to height `h` equals the chosen slot of height `h` (an empty slot is 0, which no
//!    Poseidon output reaches).
//! 4. `root == chain(header, slot_0, …)` — every slot is hashed, so which mountain
//!    the leaf is in stays hidden.
//! 5. `binding² = binding'`: the binding (operator and fee, see [`crate::binding_hash`]) takes
//!    part in a constraint, so changing it invalidates the proof (Tornado / Semaphore style).

use ark_ff::AdditiveGroup;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::fp::FpVar;
use ark_r1cs_std::fields::FieldVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
use smpx_core::crypto::{Fr, VoucherSecret, NULLIFIER_DOMAIN};
use smpx_core::mmr::{CircuitPath, ARITY, ROOT_FIRST_CHUNK, ROOT_NEXT_CHUNK, SLOTS_PER_HEIGHT};

use crate::poseidon::poseidon;

/// The public inputs of a redemption proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedeemPublic {
    /// The MMR root the leaf is proven against.
    pub root: Fr,
    /// `N = Poseidon(NULLIFIER_DOMAIN, s)`.
    pub nullifier: Fr,
    /// The voucher's denomination `d` (`C = Poseidon(s, d)`).
    pub denomination: u64,
    /// [`crate::binding_hash`] of the redeeming operator and fee.
    pub binding: Fr,
}

impl RedeemPublic {
    /// The field elements in the circuit's order: root, nullifier, denomination, binding.
    pub fn to_field_elements(&self) -> [Fr; 4] {
        [
            self.root,
            self.nullifier,
            Fr::from(self.denomination),
            self.binding,
        ]
    }
}

/// The private inputs of a redemption proof.
#[derive(Clone, Debug)]
pub struct RedeemWitness {
    /// The voucher secret `s`.
    pub secret: VoucherSecret,
    /// The leaf's membership proof laid out for the circuit
    /// (`smpx_core::mmr::Proof::circuit_path`).
    pub path: CircuitPath,
}

/// The redemption circuit for an MMR with `levels` levels. Without values (`None`) it is the
/// shape used for setup and constraint counting.
#[derive(Clone, Debug)]
pub struct RedeemCircuit {
    /// The MMR's levels `L` (capacity `4^L − 1`).
    pub levels: u32,
    /// Public inputs (`None` at setup).
    pub public: Option<RedeemPublic>,
    /// Private inputs (`None` at setup).
    pub witness: Option<RedeemWitness>,
}

fn missing() -> SynthesisError {
    SynthesisError::AssignmentMissing
}

/// Children of a node: `cur` placed at the digit `b0 + 2·b1` among the three `others`.
fn place(
    cur: &FpVar<Fr>,
    others: &[FpVar<Fr>; 3],
    b0: &Boolean<Fr>,
    b1: &Boolean<Fr>,
) -> Result<[FpVar<Fr>; ARITY], SynthesisError> {
    let [s0, s1, s2] = others;
    let (b0, b1) = (FpVar::from(b0.clone()), FpVar::from(b1.clone()));
    let e3 = &b0 * &b1;
    let e1 = &b0 - &e3;
    let e2 = &b1 - &e3;
    let e0 = FpVar::one() - &b0 - &b1 + &e3;
    Ok([
        s0 + &e0 * (cur - s0),
        s1 + &e0 * (s0 - s1) + &e1 * (cur - s1),
        s2 + (&e0 + &e1) * (s1 - s2) + &e2 * (cur - s2),
        s2 + &e3 * (cur - s2),
    ])
}

/// The root chain of `smpx_core::mmr` over circuit values.
fn chain(x: &[FpVar<Fr>]) -> Result<FpVar<Fr>, SynthesisError> {
    let first = x.len().min(ROOT_FIRST_CHUNK);
    let mut acc = poseidon(&x[..first])?;
    for chunk in x[first..].chunks(ROOT_NEXT_CHUNK) {
        let mut inputs = Vec::with_capacity(chunk.len() + 1);
        inputs.push(acc);
        inputs.extend_from_slice(chunk);
        acc = poseidon(&inputs)?;
    }
    Ok(acc)
}

impl ConstraintSynthesizer<Fr> for RedeemCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let levels = self.levels as usize;
        let path_len = levels.checked_sub(1).ok_or(SynthesisError::Unsatisfiable)?;
        let n_slots = SLOTS_PER_HEIGHT * levels;
        let public = self.public;
        let w = self.witness.as_ref();
        if let Some(w) = w {
            let p = &w.path;
            if p.digits.len() != path_len
                || p.siblings.len() != path_len
                || p.slots.len() != n_slots
                || p.slot >= n_slots
            {
                return Err(SynthesisError::Unsatisfiable);
            }
        }

        // Public inputs, in the documented order.
        let input = |f: fn(&RedeemPublic) -> Fr| {
            FpVar::new_input(cs.clone(), || public.as_ref().map(f).ok_or_else(missing))
        };
        let root = input(|p| p.root)?;
        let nullifier = input(|p| p.nullifier)?;
        let denomination = input(|p| Fr::from(p.denomination))?;
        let binding = input(|p| p.binding)?;

        let witness = |v: Option<Fr>| FpVar::new_witness(cs.clone(), || v.ok_or_else(missing));
        let s = witness(w.map(|w| w.secret.to_fr()))?;

        // 5. The binding takes part in a constraint.
        let _ = binding.square()?;

        // 1. Nullifier and leaf.
        let domain = FpVar::Constant(Fr::from(NULLIFIER_DOMAIN));
        poseidon(&[domain, s.clone()])?.enforce_equal(&nullifier)?;
        let mut cur = poseidon(&[s, denomination])?;

        // 2. Climb with hidden digits and siblings.
        let mut climbed = Vec::with_capacity(levels);
        climbed.push(cur.clone());
        for j in 0..path_len {
            let digit = w.map(|w| w.path.digits[j]);
            let bit = |mask: u8| {
                Boolean::new_witness(cs.clone(), || {
                    digit.map(|d| d & mask != 0).ok_or_else(missing)
                })
            };
            let (b0, b1) = (bit(1)?, bit(2)?);
            let sib = |i: usize| witness(w.map(|w| w.path.siblings[j][i]));
            let others = [sib(0)?, sib(1)?, sib(2)?];
            cur = poseidon(&place(&cur, &others, &b0, &b1)?)?;
            climbed.push(cur.clone());
        }

        // 3. The climbed value equals the selected slot of its height.
        let slots = (0..n_slots)
            .map(|k| witness(w.map(|w| w.path.slots[k])))
            .collect::<Result<Vec<_>, _>>()?;
        let mut one_hot = FpVar::Constant(Fr::ZERO);
        let mut difference = FpVar::Constant(Fr::ZERO);
        for (k, slot) in slots.iter().enumerate() {
            let sel = FpVar::from(Boolean::new_witness(cs.clone(), || {
                w.map(|w| w.path.slot == k).ok_or_else(missing)
            })?);
            difference += &sel * (&climbed[k / SLOTS_PER_HEIGHT] - slot);
            one_hot += sel;
        }
        one_hot.enforce_equal(&FpVar::one())?;
        difference.enforce_equal(&FpVar::Constant(Fr::ZERO))?;

        // 4. Every slot hashed into the root, after the header (MMR id, levels, size).
        let header = witness(w.map(|w| w.path.header))?;
        let mut x = Vec::with_capacity(1 + n_slots);
        x.push(header);
        x.extend(slots);
        chain(&x)?.enforce_equal(&root)?;
        Ok(())
    }
}
