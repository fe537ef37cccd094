//! # smpx-cli — the `smpx` command and the devnet
//!
//! [`devnet`] starts a coordinator, an issuer and an operator on loopback with embedded
//! storage (or PostgreSQL), wired together: the issuer whitelisted, the operator registered,
//! keys published. `smpx devnet` runs it until Ctrl-C; `smpx demo` runs the whole voucher
//! lifecycle against a fresh one; the integration tests drive it directly. [`ceremony`] is
//! `smpx ceremony …`, the multi-party setup of the v0.2 redemption circuit's keys.
//! [`failure`] is how a failed command ends: message, exit code, JSON. [`directory`] is
//! `smpx directory …` (a relay directory), `smpx relays` (what one lists) and `smpx relays
//! choose` (a conversation's relays from what several agree on).

pub mod anonymity;
pub mod audit;
pub mod ceremony;
pub mod demo;
pub mod devnet;
pub mod directory;
pub mod failure;
pub mod relay;
