//! # smpx-wallet — the community owner's side of vouchers (v0.1 and v0.2)
//!
//! This crate owns the wallet: the recovery phrase and the voucher secrets derived from it,
//! the local record of every voucher and of the credits received for it, and the client side
//! of the money path (DESIGN.md §2) against the three services:
//!
//! | step | calls | local state |
//! |---|---|---|
//! | [`Wallet::buy`] / [`Wallet::resume_buy`] | issuer `GET /v1/info`, coordinator `GET /v1/params` and `GET /v1/issuer-keys`, issuer `POST /v1/purchases` | `buying` → `bought` ([`Wallet::abandon_buy`] drops a stuck one) |
//! | [`Wallet::publish`] | coordinator `POST /v1/vouchers` (and `GET /v1/vouchers/{C}` to confirm a lost answer) | `bought` → `published`; the receipt's MMR paths are kept |
//! | [`Wallet::redeem`] / [`Wallet::redeem_with`] | operator `GET /v1/info`, coordinator `GET /v1/params`; protocol 2 also `GET /v1/zk` (and once `GET /v1/zk/transcript`), `GET /v1/mmrs/{id}/checkpoint` and `/leaves`; operator `POST /v1/redeem` | `published` → `redeemed` |
//! | [`Wallet::refresh`] | coordinator `GET /v1/vouchers/{C}` | → `redeemed` / `expired` |
//! | [`Wallet::recover`] | coordinator `GET /v1/vouchers/{C}` for each derived `C` | adds found vouchers |
//! | (redemption, with credits) | operator `GET /v1/keys` (once per keyset: the id must commit to the keys), outputs on `POST /v1/redeem` | NUT-13 counters reserved, the outputs kept with the request; tokens (DLEQ-checked) `unspent` |
//! | [`Wallet::credit_balance`] / [`Wallet::credit_tokens`] | — | per operator: unspent, pending, expired, spent |
//! | [`Wallet::spend_credits`] | operator `GET /v1/info`, `GET /v1/keys`, `POST /v1/swap` (and `POST /v1/checkstate` when refused as spent) | inputs `unspent` → `pending` → `spent`, change `unspent` |
//! | [`Wallet::collect_credits`] | operator `GET /v1/swap/{id}` (or the identical `POST /v1/swap` if unknown there) | pending spends → done (change) or cancelled (inputs back) |
//! | [`Wallet::restore_credits`] | operator `GET /v1/keysets`, `GET /v1/keys/{id}`, `POST /v1/restore` in batches, `POST /v1/checkstate` | adds unspent tokens found from the seed; counters moved past them |
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
//!   per secret. Only what listing needs (commitments, denominations, states, times, ids)
//!   and public MMR data (the receipt paths, cached leaves and signed checkpoints) are stored
//!   in the clear; a pending protocol-2 proof is sealed too (its nullifier would link the
//!   voucher to its public redemption). Secrets are never logged and their `Debug` output is
//!   redacted.
//!
//! ## Redeeming: protocol 2 (zero knowledge) by default
//!
//! [`Wallet::redeem`] proves, with a Groth16 proof (`smpx-zk`), that it knows the secret of
//! *some* voucher in one of the coordinator's MMRs, and reveals only the nullifier, the MMR,
//! the denomination and the operator; [`RedeemOptions`] chooses protocol 1 (the sealed
//! envelope of v0.1, which shows the coordinator the voucher), the MMR and the path update.
//!
//! * **Which MMR** ([`MmrChoice`]): a voucher is appended to the one or two MMRs open when it
//!   is published. The older (default) has the larger anonymity set; the newer is accepted
//!   for longer. An MMR that no longer accepts redemptions
//!   (`smpx_core::rotation::mmr_accepts_redemptions`, at the coordinator's `now`) is skipped;
//!   when neither does, [`WalletError::NoRedeemableMmr`].
//! * **Updating the path without revealing the leaf** (default): the wallet **downloads
//!   every leaf of the chosen MMR** — `N` leaves × 32 bytes, e.g. 32 MB for a million
//!   vouchers — and the latest signed checkpoint, rebuilds the MMR, and checks the
//!   checkpoint's signature (`CHECKPOINT_DOMAIN`, the coordinator's receipt key) and root.
//!   Leaves are cached in the wallet file, so later updates fetch only the new ones; the
//!   cache always holds exactly the leaves of the last verified checkpoint, which is kept to
//!   detect a coordinator showing different histories ([`WalletError::ForkedView`], with both
//!   signed checkpoints as evidence). The wallet finds its leaf locally (the index in its
//!   receipt, checked against its commitment: [`WalletError::LeafMismatch`]), and proves
//!   against the checkpoint's root. Nothing it asks depends on which voucher it redeems: any
//!   wallet redeeming through that MMR asks the same. Building the MMR costs about a third of
//!   a Poseidon hash per new leaf.
//! * **Without the update** ([`RedeemOptions::update_path`] `= false`): the path from the
//!   publish receipt is used as is, against the root right after the voucher's append.
//!   Nothing is downloaded, but that root's size is public: the anonymity set is only the
//!   vouchers appended before this one, and the coordinator learns roughly when it was
//!   published (it can match the size to its publication log). Recovered vouchers have no
//!   receipt path and always update.
//! * **Keys**: the proving key comes from the coordinator's ceremony transcript, downloaded
//!   once, checked against the announced SHA-256 ([`WalletError::TranscriptMismatch`]),
//!   re-verified from scratch (`smpx_zk::ceremony::verified_keys`,
//!   [`WalletError::TranscriptInvalid`]) and against the announced verifying key, then cached
//!   next to the wallet file in `zk-keys/<transcript sha256>.pk`. A coordinator without keys
//!   is [`WalletError::ZkUnavailable`].
//! * Long steps report through a [`RedeemProgress`] callback; proving and transcript
//!   verification run on the blocking thread pool.
//!
//! The proof is stored (sealed) before it is sent and re-sent on a retry, like a v0.1
//! envelope. One voucher is redeemed once across protocols: the coordinator records the
//! nullifier of v0.1 redemptions too. After a protocol-2 redemption the coordinator's
//! status of the voucher stays `live` (it cannot tell which voucher it was), so a wallet
//! restored from the phrase sees it published until a redemption attempt is refused as
//! `already_redeemed`.
//!
//! ## Operator credits
//!
//! A redemption at an operator that issues credits pays the credited amount (the voucher's
//! value) as blind-signed tokens of that operator: Cashu's NUT-00 with NUT-12 DLEQ proofs, one
//! keyset per day, power-of-two amounts, secrets from the recovery phrase (NUT-13). Spending is
//! a NUT-03 swap whose change comes back as new tokens; the swap endpoint charges no price, so
//! the amount paid is what the change leaves to the operator (the relay ties capacity to that
//! same request). See [`credits`] for what the wallet checks, how a lost answer is collected,
//! how two copies of one wallet fare, and how credits are restored from the phrase. An operator
//! without credit endpoints still works: the credit is its signed receipt only
//! ([`CreditRecord::issued`] is zero).
//!
//! Module map: [`Wallet`] (flows and opening), [`model`] (records and the state machine),
//! [`vault`] (encryption at rest), `db` (the SQLite schema and its migrations), `zk` (MMR
//! choice, leaf cache and checkpoints, keys, proving), [`credits`] (operator credits, with
//! their tables in `credit_db`), [`chat`] (contacts and end-to-end encrypted messages through
//! relays), [`directories`] (the relay directories' agreed view and a conversation's relays),
//! [`error`].

pub mod chat;
mod credit_db;
pub mod credits;
mod db;
pub mod directories;
pub mod error;
pub mod model;
pub mod relay_pay;
pub mod vault;
mod wallet;
mod zk;

pub use chat::{Chat, ChatError, ChatMessage, Contact, ContactState, Invitation, Received};
pub use credits::{
    CollectReport, CreditSpend, CreditToken, OperatorCredits, RestoreOptions, RestoreReport,
    TokenState,
};
pub use error::{Action, WalletError};
pub use model::{
    Balance, CreditRecord, LocalState, Scheduled, StateTotal, SyncFailure, SyncReport,
    VoucherRecord,
};
pub use smpx_core::rules::anonymity::{AnonymitySet, MmrSet};
pub use smpx_core::rules::publish_delay::{PublishDelay, PublishWindow, Schedule};
pub use vault::KdfParams;
pub use wallet::{KeyCrowd, Payment, Wallet};
pub use zk::{MmrChoice, Protocol, RedeemOptions, RedeemProgress};

#[cfg(test)]
mod tests;
