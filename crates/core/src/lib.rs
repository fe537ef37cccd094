//! # smpx-core — the protocol core
//!
//! Everything in smpx that *decides* lives here, as pure code: wire types, stable error codes,
//! network parameters, issuer key periods, voucher expiry, the double-entry ledger rules and
//! the cryptographic compositions (voucher secrets and commitments, RSA blind signatures,
//! the HPKE redemption envelope, signed receipts), and the building blocks of a directory's
//! transparency log ([`tlog`]: Merkle proofs, signed checkpoints, cosignatures).
//!
//! Every decision a service or the wallet takes is a rule in [`rules`] (one module per
//! role), shaped `decide(request, snapshot, now) -> decision`.
//!
//! This crate does no IO and never reads the clock: every function that depends on time takes
//! `now` (unix seconds) as an argument, so services, the wallet and tests drive it alike.
//! Services (`smpx-coordinator`, `smpx-issuer`, `smpx-operator`) and the wallet wrap it with
//! storage and HTTP.

pub mod amount;
pub mod api;
pub mod credits;
pub mod crypto;
pub mod directory;
pub mod error;
pub mod issuance;
pub mod keys;
pub mod ledger;
pub mod mmr;
pub mod params;
pub mod receipt;
pub mod redemption;
pub mod rotation;
pub mod rules;
pub mod schema;
pub mod tlog;

pub use amount::Amount;
pub use error::{ErrorCode, ProtocolError};
pub use params::NetworkParams;

/// Unix time in seconds. The core never reads a clock; callers pass this in.
pub type UnixTime = u64;

/// Unix seconds as `2027-01-15 08:00 UTC`, as pages and commands show a time (the proleptic
/// Gregorian calendar; days from the epoch to a civil date as in Howard Hinnant's
/// `civil_from_days`).
pub fn utc(t: UnixTime) -> String {
    let days = t / 86_400;
    let (h, m) = (t % 86_400 / 3_600, t % 3_600 / 60);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02} UTC")
}

/// Seconds in a day, for parameters expressed in days.
pub const DAY: u64 = 86_400;
