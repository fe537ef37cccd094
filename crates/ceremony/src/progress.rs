//! Progress reporting for the long steps (contributing, verifying, preparing phase 2,
//! iterating the beacon hash).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Phase;

/// What a long-running step is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Multiplying a contributor's secrets into the accumulator (phase 1) or the
    /// δ-dependent key elements (phase 2). Units: group elements scaled.
    Contribute(Phase),
    /// Checking contribution `index` (0-based) of a phase. Units: checks performed.
    Verify(Phase, usize),
    /// Deriving the circuit's initial proving key from the powers of tau (Lagrange basis in
    /// the exponent, then the query vectors). Units: sub-steps.
    PreparePhase2,
    /// Checking a recorded initial phase-2 key against phase 1 and the circuit. Units:
    /// sub-steps.
    VerifyPhase2Start,
    /// Iterating the beacon hash. Units: hash iterations.
    Beacon,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Contribute(p) => write!(f, "phase {p}: contributing"),
            Stage::Verify(p, i) => write!(f, "phase {p}: verifying contribution #{i}"),
            Stage::PreparePhase2 => f.write_str("preparing phase 2 for the circuit"),
            Stage::VerifyPhase2Start => f.write_str("checking phase 2's initial key"),
            Stage::Beacon => f.write_str("iterating the beacon hash"),
        }
    }
}

/// Receives progress reports: `done` out of `total` units of `stage`. May be called from
/// worker threads, and many times a second; implementations should be cheap.
pub trait Progress: Sync {
    /// One report.
    fn report(&self, stage: Stage, done: u64, total: u64);
}

impl<F: Fn(Stage, u64, u64) + Sync> Progress for F {
    fn report(&self, stage: Stage, done: u64, total: u64) {
        self(stage, done, total)
    }
}

/// Ignores every report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn report(&self, _: Stage, _: u64, _: u64) {}
}

/// A counter for one stage, shared by the threads doing its work.
pub(crate) struct Tick<'a> {
    progress: &'a dyn Progress,
    stage: Stage,
    total: u64,
    done: AtomicU64,
}

impl<'a> Tick<'a> {
    pub(crate) fn new(progress: &'a dyn Progress, stage: Stage, total: u64) -> Self {
        progress.report(stage, 0, total);
        Tick {
            progress,
            stage,
            total,
            done: AtomicU64::new(0),
        }
    }

    pub(crate) fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        self.progress
            .report(self.stage, done.min(self.total), self.total);
    }
}
