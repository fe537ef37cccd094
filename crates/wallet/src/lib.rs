//! # smpx-wallet — the community owner's side of v0.1 vouchers
//!
//! This crate owns the wallet: the recovery phrase and the voucher secrets derived from it,
//! the local record of every voucher and of the credits received for it, and the client side
//! of the money path (DESIGN.md §2) against the three services:
//!
//! | step | calls | local state |
//! |---|---|---|
//! | [`Wallet::buy`] / [`Wallet::resume_buy`] | issuer `GET /v1/info`, coordinator `GET /v1/params` and `GET /v1/issuer-keys`, issuer `POST /v1/purchases` | `buying` → `bought` ([`Wallet::abandon_buy`] drops a stuck one) |
//! | [`Wallet::publish`] | coordinator `POST /v1/vouchers` (and `GET /v1/vouchers/{C}` to confirm a lost answer) | `bought` → `published` |
//! | [`Wallet::redeem`] | operator `GET /v1/info`, coordinator `GET /v1/params`, operator `POST /v1/redeem` | `published` → `redeemed` |
//! | [`Wallet::refresh`] | coordinator `GET /v1/vouchers/{C}` | → `redeemed` / `expired` |
//! | [`Wallet::recover`] | coordinator `GET /v1/vouchers/{C}` for each derived `C` | adds found vouchers |
//!
//! ## What it guarantees
//!
//! * **No secret reuse.** Voucher `i` uses `s_i = seed.voucher_secret(i)`; the index is
//!   reserved and committed to disk before `s_i` is derived, so a crash burns an index at
//!   worst and never hands one secret to two vouchers.
//! * **No trust in one party's word.** The issuer's key comes from the coordinator's registry
//!   (an issuer-chosen key could tag the buyer); the issuer's signature is verified when
//!   unblinded; publish and redemption receipts are verified under the keys the coordinator
//!   and the operator publish, and matched against the request (commitment, denomination,
//!   operator, envelope digest) before anything is recorded.
//! * **Retries are safe.** State that a retry needs (blinded message and blinding state, the
//!   sealed redemption envelope) is stored before the call, and retries re-send identical
//!   requests, which the services treat as idempotent.
//! * **Secrets encrypted at rest** ([`vault`]): Argon2id from the passphrase, XChaCha20-Poly1305
//!   per secret. Only what listing needs (commitments, denominations, states, times, ids) is
//!   stored in the clear. Secrets are never logged and their `Debug` output is redacted.
//!
//! Module map: [`Wallet`] (flows and opening), [`model`] (records and the state machine),
//! [`vault`] (encryption at rest), `db` (the SQLite schema), [`error`].

mod db;
pub mod error;
pub mod model;
pub mod vault;
mod wallet;

pub use error::{Action, WalletError};
pub use model::{Balance, CreditRecord, LocalState, StateTotal, VoucherRecord};
pub use vault::KdfParams;
pub use wallet::{Payment, Wallet};

#[cfg(test)]
mod tests;
