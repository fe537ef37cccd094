//! Wallet errors, worded for the person running the wallet. None carries secret material.

use crate::model::LocalState;
use smpx_core::api::Checkpoint;
use smpx_core::crypto::CryptoError;
use smpx_core::receipt::Signed;
use smpx_core::rules::anonymity::{AnonymitySet, MmrSet};
use smpx_http_client::ClientError;
use std::path::PathBuf;

/// What a wallet operation was asked to do, for [`WalletError::InvalidState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    ResumeBuy,
    AbandonBuy,
    Publish,
    Redeem,
}

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The passphrase does not open this wallet.
    #[error("wrong passphrase: it does not unlock this wallet")]
    WrongPassphrase,
    /// `create`/`restore` never replace a file.
    #[error("{} already exists; refusing to overwrite it (open it, or choose another path)", .0.display())]
    AlreadyExists(PathBuf),
    /// `open` on a path with no file.
    #[error("no wallet at {}", .0.display())]
    NoWallet(PathBuf),
    /// The file is a database but not an smpx wallet (or one from an unknown version).
    #[error("{} is not an smpx wallet: {reason}", path.display())]
    NotAWallet { path: PathBuf, reason: String },
    #[error("no voucher with id {0} in this wallet")]
    NotFound(i64),
    /// The voucher is in a state where this operation makes no sense.
    #[error("{}", invalid_state_message(*id, *state, *action))]
    InvalidState {
        id: i64,
        state: LocalState,
        action: Action,
    },
    /// A service refused the request or could not be reached.
    #[error("{0}")]
    Service(#[from] ClientError),
    /// A cryptographic step failed on local or received data (e.g. a bad recovery phrase).
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The wallet database failed.
    #[error("wallet database: {0}")]
    Store(#[from] sqlx::Error),
    #[error("wallet file: {0}")]
    Io(#[from] std::io::Error),
    /// Key-derivation parameters Argon2 does not accept (see [`crate::KdfParams`]).
    #[error("key-derivation parameters are not usable: {0}")]
    InvalidKdf(String),
    /// Stored data that cannot be what this wallet wrote.
    #[error("wallet data is damaged: {0}")]
    Corrupt(String),
    /// A receipt, key or signature from a service did not verify or does not match the
    /// request. Nothing was recorded from that answer.
    #[error("a service's answer did not verify: {0}")]
    Verification(String),
    /// A publish delay longer than a voucher can wait.
    #[error(transparent)]
    PublishDelay(#[from] smpx_core::rules::publish_delay::DelayTooLong),
    /// A publish window the wallet does not use (too short without opting out, too long,
    /// inverted).
    #[error(transparent)]
    PublishWindow(#[from] smpx_core::rules::publish_delay::BadWindow),
    /// `publish` asked for a voucher whose scheduled time has not come (the caller may
    /// reschedule it with `Schedule::NoDelay` to publish it now).
    #[error("voucher {id} is scheduled to be published at {due_at} (unix time); publishing it earlier lets the issuer and the coordinator match the purchase and the publication by time")]
    NotDueYet { id: i64, due_at: u64 },
    /// The network or the issuer does not offer this denomination.
    #[error("denomination {denomination} is not available here (available: {available:?})")]
    UnsupportedDenomination {
        denomination: u64,
        available: Vec<u64>,
    },
    /// The coordinator lists no key of this issuer for this denomination and the current key
    /// period, so a purchase now could not be published.
    #[error("the coordinator lists no current key of issuer {issuer:?} for denomination {denomination}; try again later or use another issuer")]
    NoIssuerKey { issuer: String, denomination: u64 },

    // v0.2 (zero-knowledge) redemption
    /// The coordinator does not offer v0.2 redemption (no ceremony keys, or protocol 2 not
    /// among its `protocol_versions`).
    #[error("the coordinator does not offer zero-knowledge (protocol 2) redemption: {reason}; protocol 1 still works, but shows the coordinator which voucher is redeemed")]
    ZkUnavailable { reason: String },
    /// None of the MMRs the voucher was appended to accepts redemptions any more.
    #[error("voucher {id} cannot be redeemed with protocol 2: none of its MMRs ({mmrs:?}) accepts redemptions any more")]
    NoRedeemableMmr { id: i64, mmrs: Vec<u64> },
    /// The chosen MMR holds fewer vouchers of this denomination than the caller requires
    /// ([`crate::RedeemOptions::min_anonymity`]) and the caller did not accept a set that
    /// small ([`crate::RedeemOptions::accept_anonymity`]). Nothing was downloaded, proven or
    /// sent; `set` holds both MMRs' sets and expiries, to choose the other MMR, accept, or
    /// wait.
    #[error("{}", anonymity_message(*id, *denomination, set, *threshold, *updated, *now))]
    AnonymityTooSmall {
        id: i64,
        denomination: u64,
        set: AnonymitySet,
        threshold: u64,
        /// Whether the path would be updated (else the sizes are upper bounds).
        updated: bool,
        /// The coordinator's time, to say how long each MMR is still accepted.
        now: u64,
    },
    /// Redeeming without a path update needs the path from the publish receipt, which this
    /// wallet does not have (a recovered voucher, or a publish whose answer was lost).
    #[error("voucher {id} has no stored membership path in MMR {mmr_id} (it was recovered, or its publish answer was lost): redeem it with the path update")]
    NoStoredPath { id: i64, mmr_id: u64 },
    /// The coordinator signed two checkpoints of one MMR that no single append-only history
    /// satisfies: it shows different people different MMRs (which could single out a
    /// redeemer). The two signed checkpoints are the evidence; nothing was redeemed.
    #[error("forked view of MMR {mmr_id}: the coordinator signed a root at size {} and a root at size {} that are not of one history; keep this evidence and do not redeem through this coordinator", .earlier.body.size, .later.body.size)]
    ForkedView {
        mmr_id: u64,
        earlier: Box<Signed<Checkpoint>>,
        later: Box<Signed<Checkpoint>>,
    },
    /// The MMR's leaves, verified against a signed checkpoint, do not hold this voucher's
    /// commitment where its path says (or anywhere, when `leaf_index` is `None`).
    #[error("{}", leaf_mismatch_message(*id, *mmr_id, *leaf_index))]
    LeafMismatch {
        id: i64,
        mmr_id: u64,
        leaf_index: Option<u64>,
    },
    /// The downloaded ceremony transcript does not hash to what the coordinator announced.
    #[error(
        "the ceremony transcript's SHA-256 is {actual}, but the coordinator announced {expected}"
    )]
    TranscriptMismatch { expected: String, actual: String },
    /// The ceremony transcript does not verify (or does not give the coordinator's key).
    #[error("the ceremony transcript does not verify: {0}")]
    TranscriptInvalid(String),
    /// Proving (or a proving key) failed locally.
    #[error("zero-knowledge proof: {0}")]
    Zk(#[from] smpx_zk::ZkError),

    // Operator credits
    /// The operator does not offer credits (no `GET /v1/keys`): an operator from before
    /// credits, which pays redemptions with a signed receipt only.
    #[error("operator {operator:?} does not offer credits")]
    NoCredits { operator: String },
    /// Not enough unspent credits at this operator; nothing was sent.
    #[error("not enough credits at operator {operator:?}: {needed} needed, {available} available")]
    InsufficientCredits {
        operator: String,
        needed: smpx_core::Amount,
        available: smpx_core::Amount,
    },
    /// The operator refused the spend because some of its tokens were already spent — by
    /// another copy of this wallet (a copied file, or a restore from the same phrase). Those
    /// tokens are now marked spent here; the others are unspent again, so retrying spends
    /// from what is left.
    #[error("{tokens} credit token(s) worth {value} at operator {operator:?} were already spent by another copy of this wallet; they are marked spent now")]
    CreditsAlreadySpent {
        operator: String,
        tokens: usize,
        value: smpx_core::Amount,
    },
    /// The spend was sent but its answer did not arrive (or the operator has not finished
    /// it): it stays pending, its tokens reserved. Collect it later
    /// ([`crate::Wallet::collect_credits`], `smpx wallet credits collect`).
    #[error("the credit spend {spend_id} at operator {operator:?} is pending ({reason}); collect it later with `smpx wallet credits collect`")]
    SpendPending {
        operator: String,
        spend_id: String,
        reason: String,
    },
    /// A relay could not be paid: it takes no payments, refused the request (a price above
    /// the amount offered, an unknown queue), or could not be reached before anything was
    /// sent.
    #[error("paying the relay: {0}")]
    RelayPayment(String),
}

fn anonymity_message(
    id: i64,
    denomination: u64,
    set: &AnonymitySet,
    threshold: u64,
    updated: bool,
    now: u64,
) -> String {
    let describe = |m: &MmrSet| {
        let bound = if m.exact { "" } else { "at most " };
        format!(
            "MMR {} holds {bound}{} (accepted {} more day(s))",
            m.mmr_id,
            m.size,
            m.expires_at.saturating_sub(now) / smpx_core::DAY
        )
    };
    let mut out = format!(
        "voucher {id}'s anonymity set is too small: {} voucher(s) of denomination {denomination}, fewer than {threshold}",
        describe(&set.chosen)
    );
    match &set.other {
        Some(o) => out.push_str(&format!("; its other {}", describe(o))),
        None => out.push_str("; it is in no other MMR that still accepts redemptions"),
    }
    if !updated {
        out.push_str(" — without the path update (--no-update) only vouchers published before it count, and the coordinator does not split those by denomination, so these are upper bounds");
    }
    out.push_str(". Choose: ");
    if let Some(o) = &set.other {
        let which = if o.mmr_id > set.chosen.mmr_id {
            "newer"
        } else {
            "older"
        };
        out.push_str(&format!("the other MMR (--mmr {which}), "));
    }
    if !updated {
        out.push_str("the path update (drop --no-update), ");
    }
    out.push_str(&format!(
        "accept this set (--accept-anonymity {}), or wait until more vouchers are published",
        set.chosen.size
    ));
    out
}

fn leaf_mismatch_message(id: i64, mmr_id: u64, leaf_index: Option<u64>) -> String {
    match leaf_index {
        Some(i) => format!(
            "leaf {i} of MMR {mmr_id} is not voucher {id}'s commitment, although its publish receipt put it there"
        ),
        None => format!("voucher {id}'s commitment is not among the leaves of MMR {mmr_id}"),
    }
}

fn invalid_state_message(id: i64, state: LocalState, action: Action) -> String {
    let why = match (action, state) {
        (Action::Redeem, LocalState::Buying) => {
            "its purchase has not completed; resume the purchase, then publish it first"
        }
        (Action::Redeem, LocalState::Bought) => "it is not published yet; publish it first",
        (Action::Redeem, LocalState::Redeemed) => "it is already redeemed",
        (Action::Redeem, LocalState::Expired) => "it has expired",
        (Action::Publish, LocalState::Buying) => {
            "its purchase has not completed; resume the purchase first"
        }
        (Action::Publish, LocalState::Published) => "it is already published",
        (Action::Publish, LocalState::Redeemed) => "it is already redeemed",
        (Action::Publish, LocalState::Expired) => "it has expired",
        (Action::ResumeBuy | Action::AbandonBuy, _) => "its purchase is already complete",
        _ => "the operation does not apply in this state",
    };
    let verb = match action {
        Action::ResumeBuy => "resume the purchase of",
        Action::AbandonBuy => "abandon the purchase of",
        Action::Publish => "publish",
        Action::Redeem => "redeem",
    };
    format!("cannot {verb} voucher {id} ({state}): {why}")
}

impl WalletError {
    /// The protocol error code, if a service answered with one.
    pub fn code(&self) -> Option<smpx_core::ErrorCode> {
        match self {
            WalletError::Service(e) => e.code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_state_messages_say_what_to_do() {
        let e = WalletError::InvalidState {
            id: 3,
            state: LocalState::Bought,
            action: Action::Redeem,
        };
        assert_eq!(
            e.to_string(),
            "cannot redeem voucher 3 (bought): it is not published yet; publish it first"
        );
        assert_eq!(
            WalletError::WrongPassphrase.to_string(),
            "wrong passphrase: it does not unlock this wallet"
        );
    }
}
