//! # smpx-os — the clock, randomness and durable files, once
//!
//! The core never reads a clock or writes a file: callers pass `now` in. Everything above it
//! that must (services, the wallet, the relay, the CLI) reads time through [`Clock`] and
//! writes files through [`fs::write_atomic`], so tests can move time and every file on disk
//! follows one durability rule. Random bytes come from one [`Entropy`] ([`OsEntropy`], or a
//! [`SeededEntropy`] in tests). Dependencies are `std` and `rand_core`/`rand_chacha` only, so
//! any crate can use it.

pub mod clock;
pub mod fs;
pub mod rng;

pub use clock::{Clock, ManualClock, SystemClock};
pub use rng::{Entropy, EntropyRng, OsEntropy, Rng010, Rng09, SeededEntropy};
