//! Typed errors: which contribution failed, and why.

use std::fmt;

use crate::hash::Digest;

/// The two phases of the ceremony.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Powers of tau: circuit-independent secrets τ, α, β.
    One,
    /// Circuit-specific secret δ.
    Two,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::One => "1",
            Phase::Two => "2",
        })
    }
}

/// A contributor's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Secret {
    /// τ, the evaluation point (phase 1).
    Tau,
    /// α (phase 1).
    Alpha,
    /// β (phase 1).
    Beta,
    /// δ (phase 2).
    Delta,
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Tau => "tau",
            Secret::Alpha => "alpha",
            Secret::Beta => "beta",
            Secret::Delta => "delta",
        })
    }
}

/// A vector or element of the accumulator (phase 1) or of the δ-dependent key (phase 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    /// `[τ^i]₁`.
    TauG1,
    /// `[τ^i]₂`.
    TauG2,
    /// `[α·τ^i]₁`.
    AlphaTauG1,
    /// `[β·τ^i]₁`.
    BetaTauG1,
    /// `[β]₂`.
    BetaG2,
    /// `[δ]₁` / `[δ]₂`.
    Delta,
    /// The H query `[τ^i·Z(τ)/δ]₁`.
    HQuery,
    /// The L query `[(β·a_i(τ) + α·b_i(τ) + c_i(τ))/δ]₁`.
    LQuery,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::TauG1 => "tau_g1",
            Element::TauG2 => "tau_g2",
            Element::AlphaTauG1 => "alpha_tau_g1",
            Element::BetaTauG1 => "beta_tau_g1",
            Element::BetaG2 => "beta_g2",
            Element::Delta => "delta",
            Element::HQuery => "h_query",
            Element::LQuery => "l_query",
        })
    }
}

/// Why one contribution was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The recorded contribution hash is not the hash of its content chained to the
    /// previous contribution's hash (altered after the fact, or built on another state).
    #[error("its hash does not match its content and the previous contribution")]
    HashMismatch,
    /// Vector lengths or fixed generators differ from what the ceremony's size requires.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// No proof of knowledge of the contributor's secrets.
    #[error("it carries no proof of knowledge of its secrets")]
    MissingProof,
    /// The proof of knowledge for this secret does not verify against the previous state.
    #[error("the proof of knowledge of {0} does not verify")]
    InvalidProof(Secret),
    /// The new state is exactly the previous one: nothing was contributed.
    #[error("it reuses the previous state unchanged")]
    ReusedAccumulator,
    /// The element this secret scales is unchanged (the secret is 1).
    #[error("{0} was not changed")]
    SecretNotApplied(Secret),
    /// The element this secret scales is the identity (the secret is 0).
    #[error("{0} was set to zero")]
    Degenerate(Secret),
    /// A pairing check failed: this vector or element is not consistently formed.
    #[error("{0} is not consistent with the rest (pairing check failed)")]
    Inconsistent(Element),
    /// A beacon contribution whose secrets are not the ones the beacon derives.
    #[error("the beacon's {0} does not follow from the beacon value")]
    BeaconMismatch(Secret),
    /// A contribution recorded after the beacon closed the phase.
    #[error("it comes after the beacon that closed the phase")]
    AfterBeacon,
}

impl Fault {
    /// A stable code for logs and APIs.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::HashMismatch => "hash_mismatch",
            Fault::Malformed(_) => "malformed",
            Fault::MissingProof => "missing_proof",
            Fault::InvalidProof(_) => "invalid_proof",
            Fault::ReusedAccumulator => "reused_accumulator",
            Fault::SecretNotApplied(_) => "secret_not_applied",
            Fault::Degenerate(_) => "degenerate",
            Fault::Inconsistent(_) => "inconsistent",
            Fault::BeaconMismatch(_) => "beacon_mismatch",
            Fault::AfterBeacon => "after_beacon",
        }
    }
}

/// Everything that can go wrong in a ceremony.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// One contribution is invalid. `index` counts from 0 within its phase; `hash` is the
    /// hash the contribution claims.
    #[error("phase {phase} contribution #{index} ({hash}) is invalid: {fault}")]
    InvalidContribution {
        /// Phase of the contribution.
        phase: Phase,
        /// Position in that phase, from 0.
        index: usize,
        /// The contribution's recorded hash.
        hash: Digest,
        /// What is wrong with it.
        fault: Fault,
    },
    /// The powers of tau size is outside what the curve and this crate support.
    #[error("unsupported powers-of-tau size 2^{0} (supported: 2^1 to 2^{max})", max = crate::MAX_POWER)]
    UnsupportedPower(u32),
    /// The circuit needs a larger evaluation domain than phase 1 provides.
    #[error("the circuit needs an evaluation domain of {needed} but phase 1 supports {available}")]
    CircuitTooLarge {
        /// Domain size the circuit needs.
        needed: usize,
        /// Largest domain phase 1 supports.
        available: usize,
    },
    /// The circuit could not be synthesised.
    #[error("circuit synthesis failed: {0}")]
    Synthesis(#[from] ark_relations::gr1cs::SynthesisError),
    /// The circuit uses constraint types other than R1CS, which Groth16 cannot prove.
    #[error("the circuit has non-R1CS constraints ({0}); Groth16 needs plain R1CS")]
    UnsupportedConstraints(String),
    /// Phase 2 of the transcript was prepared for another circuit.
    #[error("phase 2 was prepared for circuit {recorded}, not this circuit ({actual})")]
    CircuitMismatch {
        /// Digest recorded in the transcript.
        recorded: Digest,
        /// Digest of the circuit given.
        actual: Digest,
    },
    /// Phase 2's recorded initial key does not follow from phase 1 and the circuit (the
    /// part named is wrong).
    #[error("phase 2's initial key does not follow from phase 1 and the circuit: {0}")]
    InitialKeyMismatch(&'static str),
    /// The operation does not fit the ceremony's current state.
    #[error("cannot {action}: {state}")]
    WrongState {
        /// What was attempted.
        action: &'static str,
        /// Why it cannot be done now.
        state: &'static str,
    },
    /// A phase has no contribution from a participant (only a beacon, or nothing): its
    /// secrets would be public.
    #[error("phase {0} has no contribution from a participant")]
    NoParticipant(Phase),
    /// The ceremony has not been finalised with a random beacon.
    #[error("the ceremony is not finalised with a random beacon")]
    NotFinalized,
    /// A beacon value or iteration count that cannot be used.
    #[error("invalid beacon: {0}")]
    InvalidBeacon(&'static str),
    /// A contributor name that cannot be recorded.
    #[error("invalid contributor name: {0}")]
    InvalidName(&'static str),
    /// The transcript bytes are not a valid encoding (bad magic/version, truncated, points
    /// not on the curve or not in the prime-order subgroup).
    #[error("malformed transcript encoding: {0}")]
    Encoding(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl CeremonyError {
    /// A stable code for logs and APIs (`ceremony.<what>`; for invalid contributions the
    /// fault's code).
    pub fn code(&self) -> &'static str {
        match self {
            CeremonyError::InvalidContribution { fault, .. } => match fault {
                Fault::HashMismatch => "ceremony.hash_mismatch",
                Fault::Malformed(_) => "ceremony.malformed_contribution",
                Fault::MissingProof => "ceremony.missing_proof",
                Fault::InvalidProof(_) => "ceremony.invalid_proof",
                Fault::ReusedAccumulator => "ceremony.reused_accumulator",
                Fault::SecretNotApplied(_) => "ceremony.secret_not_applied",
                Fault::Degenerate(_) => "ceremony.degenerate",
                Fault::Inconsistent(_) => "ceremony.inconsistent",
                Fault::BeaconMismatch(_) => "ceremony.beacon_mismatch",
                Fault::AfterBeacon => "ceremony.after_beacon",
            },
            CeremonyError::UnsupportedPower(_) => "ceremony.unsupported_power",
            CeremonyError::CircuitTooLarge { .. } => "ceremony.circuit_too_large",
            CeremonyError::Synthesis(_) => "ceremony.synthesis",
            CeremonyError::UnsupportedConstraints(_) => "ceremony.unsupported_constraints",
            CeremonyError::CircuitMismatch { .. } => "ceremony.circuit_mismatch",
            CeremonyError::InitialKeyMismatch(_) => "ceremony.initial_key_mismatch",
            CeremonyError::WrongState { .. } => "ceremony.wrong_state",
            CeremonyError::NoParticipant(_) => "ceremony.no_participant",
            CeremonyError::NotFinalized => "ceremony.not_finalized",
            CeremonyError::InvalidBeacon(_) => "ceremony.invalid_beacon",
            CeremonyError::InvalidName(_) => "ceremony.invalid_name",
            CeremonyError::Encoding(_) => "ceremony.encoding",
            CeremonyError::Io(_) => "ceremony.io",
        }
    }

    /// The fault, if this error is about one contribution.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            CeremonyError::InvalidContribution { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

impl From<ark_serialize::SerializationError> for CeremonyError {
    fn from(e: ark_serialize::SerializationError) -> Self {
        CeremonyError::Encoding(e.to_string())
    }
}
