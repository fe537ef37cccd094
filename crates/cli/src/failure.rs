//! How `smpx` ends when a command fails: the message once, an exit code that says what kind
//! of failure it was, and under `--json` the error as `{"error": {"code", "message"}}` on
//! standard output (README, "Errors and exit codes").

use smpx_http::ClientError;

/// Something on this machine: a wallet file, a path, an argument the command refused.
pub const EXIT_LOCAL: u8 = 1;
/// The command line did not parse (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// A service could not be reached, or answered something that is not its API.
pub const EXIT_NETWORK: u8 = 3;
/// A service refused the request with a typed error (its code is the JSON `code`).
pub const EXIT_REFUSED: u8 = 4;

/// A failed command, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: u8,
    /// The service's error code when it refused; else `unreachable`, `bad_answer` or `local`.
    pub code: String,
    pub message: String,
    /// What the error carries beyond its message, under `--json` (a refused anonymity set:
    /// both MMRs' sets and the threshold).
    pub details: Option<serde_json::Value>,
}

/// The code of a v0.2 redemption the wallet refused for its anonymity set.
pub const ANONYMITY_TOO_SMALL: &str = "anonymity_set_too_small";

impl Failure {
    /// Classifies `e` by the first service error in its chain of causes.
    pub fn of(e: &anyhow::Error) -> Failure {
        let client = e.chain().find_map(|c| c.downcast_ref::<ClientError>());
        let (exit, code) = match client {
            Some(ClientError::Api { code, .. }) => (EXIT_REFUSED, code.as_str()),
            Some(ClientError::Transport { .. }) => (EXIT_NETWORK, "unreachable"),
            Some(ClientError::Decode { .. }) => (EXIT_NETWORK, "bad_answer"),
            None => (EXIT_LOCAL, "local"),
        };
        let refused_set = e.chain().find_map(|c| match c.downcast_ref() {
            Some(smpx_wallet::WalletError::AnonymityTooSmall {
                id, set, threshold, ..
            }) => {
                Some(serde_json::json!({"voucher": id, "anonymity": set, "threshold": threshold}))
            }
            _ => None,
        });
        if let Some(details) = refused_set {
            // Decided on this machine: a local error, with the sets to choose from.
            return Failure {
                exit: EXIT_LOCAL,
                code: ANONYMITY_TOO_SMALL.to_owned(),
                message: message(e),
                details: Some(details),
            };
        }
        Failure {
            exit,
            code: code.to_owned(),
            message: message(e),
            details: None,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            error["details"] = d.clone();
        }
        serde_json::json!({ "error": error })
    }
}

/// The error and its causes, each said once: a cause whose text the message already holds
/// (a wrapper that prints its source, as most do) is left out.
pub fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use smpx_http::ErrorCode;

    /// A wrapper that prints its source, as `WalletError::Service` does.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrapper(#[from] ClientError);

    fn refused() -> ClientError {
        ClientError::Api {
            url: "http://127.0.0.1:7400/v1/vouchers".into(),
            status: 502,
            code: ErrorCode::UpstreamUnavailable,
            message: "the coordinator is not reachable".into(),
        }
    }

    #[test]
    fn a_cause_the_message_already_holds_is_said_once() {
        let e = anyhow::Error::new(Wrapper(refused())).context("publishing voucher 3");
        let m = message(&e);
        assert_eq!(
            m,
            "publishing voucher 3: http://127.0.0.1:7400/v1/vouchers: upstream_unavailable (502): the coordinator is not reachable"
        );
        assert_eq!(m.matches("upstream_unavailable").count(), 1);
    }

    #[test]
    fn each_kind_has_its_exit_code_and_json_code() {
        let f = Failure::of(&anyhow::Error::new(Wrapper(refused())));
        assert_eq!(
            (f.exit, f.code.as_str()),
            (EXIT_REFUSED, "upstream_unavailable")
        );
        assert_eq!(f.json()["error"]["code"], "upstream_unavailable");
        let down = ClientError::Transport {
            url: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        };
        let f = Failure::of(&anyhow::Error::new(down).context("reading the ledger"));
        assert_eq!((f.exit, f.code.as_str()), (EXIT_NETWORK, "unreachable"));
        let f = Failure::of(&anyhow::anyhow!("no voucher with id 9 in this wallet"));
        assert_eq!((f.exit, f.code.as_str()), (EXIT_LOCAL, "local"));
        assert_ne!(EXIT_USAGE, EXIT_LOCAL);
    }

    #[test]
    fn a_refused_anonymity_set_is_local_and_carries_both_sets() {
        use smpx_core::rules::anonymity::{AnonymitySet, MmrSet};
        let m = |mmr_id, size| MmrSet {
            mmr_id,
            size,
            exact: true,
            expires_at: 0,
        };
        let e = smpx_wallet::WalletError::AnonymityTooSmall {
            id: 4,
            denomination: 10,
            set: AnonymitySet {
                chosen: m(0, 7),
                other: Some(m(1, 2)),
            },
            threshold: 100,
            updated: true,
            now: 0,
        };
        let f = Failure::of(&anyhow::Error::new(e).context("redeeming voucher 4"));
        assert_eq!((f.exit, f.code.as_str()), (EXIT_LOCAL, ANONYMITY_TOO_SMALL));
        assert!(f.message.contains("MMR 0 holds 7") && f.message.contains("MMR 1 holds 2"));
        let j = f.json();
        assert_eq!(j["error"]["details"]["anonymity"]["chosen"]["size"], 7);
        assert_eq!(j["error"]["details"]["anonymity"]["other"]["size"], 2);
    }
}
