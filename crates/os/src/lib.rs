//! # smpx-os — the clock and durable files, once
//!
//! The core never reads a clock or writes a file: callers pass `now` in. Everything above it
//! that must (services, the wallet, the relay, the CLI) reads time through [`Clock`] and
//! writes files through [`fs::write_atomic`], so tests can move time and every file on disk
//! follows one durability rule. No dependencies beyond `std`, so any crate can use it.

pub mod clock;
pub mod fs;

pub use clock::{Clock, ManualClock, SystemClock};
