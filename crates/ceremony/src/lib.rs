//! # smpx-ceremony — a verifiable multi-party trusted setup for Groth16 on BN254
//!
//! Groth16 keys embed secrets (τ, α, β, δ — the "toxic waste"); whoever knows them can
//! forge proofs. This crate computes the keys in a ceremony where each participant
//! multiplies fresh secrets into the previous state and proves they did so; the keys are
//! safe if **any one** participant destroyed their secrets. Everything is recorded in a
//! [`Transcript`] that anyone can recheck with [`verify_transcript`].
//!
//! * **Phase 1 — powers of tau** (circuit-independent, [`phase1`]): the accumulator holds
//!   `[τ^i]₁, [τ^i]₂, [α·τ^i]₁, [β·τ^i]₁, [β]₂`. Each contribution multiplies in fresh
//!   `(τ_k, α_k, β_k)` and proves knowledge of each with a Schnorr proof bound to the
//!   transcript hash; pairing checks (batched by random linear combinations) establish that
//!   the whole accumulator is consistently formed from the new secrets.
//! * **Phase 2 — δ** (per circuit, [`phase2`]): the circuit's initial key (δ = 1) is derived
//!   deterministically from the accumulator (Lagrange basis in the exponent, then the QAP
//!   query vectors). Each contribution multiplies δ by a fresh `d`, divides the H and L
//!   queries by `d`, and proves knowledge of `d`.
//! * **Beacon**: each phase may be closed (phase 2 must be) by a contribution whose secrets
//!   are derived from a public random [`Beacon`] (iterated SHA-256), so anyone can
//!   recompute it.
//!
//! The CLI maps onto the library as: `start` → [`Transcript::new`]; `contribute` →
//! [`Transcript::contribute`] (prints the returned hash); phase 2 begins with
//! [`Transcript::begin_phase2`]; `finalize` → [`Transcript::finalize`]; `verify` →
//! [`verify_transcript`]. Transcripts are read and written with [`Transcript::read_from`] /
//! [`Transcript::write_to`]. Long steps report through a [`Progress`] callback.

pub mod beacon;
pub mod error;
mod group;
mod hash;
pub mod phase1;
pub mod phase2;
pub mod pok;
pub mod progress;
mod transcript;

pub use ark_bn254::Bn254;
pub use ark_groth16::{ProvingKey, VerifyingKey};
pub use beacon::{Beacon, Contributor};
pub use error::{CeremonyError, Element, Fault, Phase, Secret};
pub use hash::Digest;
pub use progress::{Progress, Silent, Stage};
pub use transcript::{
    verify_transcript, verify_transcript_silent, ContributionInfo, State, Transcript,
    FORMAT_VERSION, MAGIC,
};

/// Largest supported powers-of-tau size: `2^28` (BN254's scalar field has 2-adicity 28).
pub const MAX_POWER: u32 = 28;

#[cfg(test)]
mod tests;
