//! Wallet errors, worded for the person running the wallet. None carries secret material.

use crate::model::LocalState;
use smpx_core::crypto::CryptoError;
use smpx_http::ClientError;
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
