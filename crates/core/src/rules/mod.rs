//! # Rules: every decision a service or the wallet takes, as a pure function
//!
//! Each module here is one role's rule, shaped `decide(request, snapshot, now) -> decision`:
//! the caller loads what the rule needs (a key row, a root, the operator's share), calls the
//! rule, and stores or answers with what it decided. No rule does IO or reads a clock, so
//! each is unit-tested without HTTP or a database. What must hold under concurrency (no
//! double spend, issuing limits, one publication per commitment) stays enforced by the
//! stores' transactions; a rule only turns the store's answer into the protocol's.
//!
//! | module | decides | DESIGN.md |
//! |---|---|---|
//! | [`publish`] | whether the coordinator accepts a publication (and a key registration) | §2 v0.1, Rotation |
//! | [`redeem`] | whether the coordinator accepts a v0.1 or v0.2 redemption, and the split | §2 v0.1, v0.2, Pool |
//! | [`sale`] | the issuer's sale, step by step (retry, signing period, limit, payment) | §2 v0.1 |
//! | [`operator_redeem`] | the operator's redemption saga and when it issues credits | §2 Operator credits |
//! | [`publish_delay`] | when the wallet publishes a bought voucher (scheduled, in random order) | §2 money path ("random delay") |
//! | [`audit`] | whether the public ledger checks out | §2 Accounting, Pool and clearing |
//! | [`share_audit`] | whether each redemption was cleared at the share its statement gives | §3 Directory, §2 Pool and clearing |
//! | [`zk_startup`] | whether a coordinator serves v0.2 redemption at start | §2 v0.2 (ceremony) |
//! | [`anonymity`] | whether the wallet redeems with the anonymity set it would get | §2 v0.2 (unlinkability) |
//! | [`measure`] | a relay's weighted uptime and MTBF (Tor's rephist), latency percentiles, flags and their thresholds | §3 Directory |
//! | [`pow`] | whether a directory registration carries enough proof of work | §3 Directory |
//! | [`consensus`] | what a client keeps of several directories' views (a majority lists it), and the share a coordinator takes from several statements | §3 Directory |
//! | [`choice`] | which relays a conversation uses: a sending proxy and a destination relay of different operators, by latency and score | §3 Directory |
//! | [`trust`] | an operator's revenue share from identity, time on the network and uptime | §3 Directory, seeds 000/001 |

pub mod anonymity;
pub mod audit;
pub mod choice;
pub mod consensus;
pub mod listing;
pub mod measure;
pub mod operator_redeem;
pub mod pow;
pub mod publish;
pub mod publish_delay;
pub mod redeem;
pub mod sale;
pub mod share_audit;
pub mod trust;
pub mod zk_startup;

use crate::error::{err, ErrorCode, ProtocolError};

/// A key id on the wire: 64 hex characters (SHA-256 of the key's SubjectPublicKeyInfo).
pub fn parse_key_id(s: &str) -> Result<[u8; 32], ProtocolError> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            err(
                ErrorCode::InvalidRequest,
                "key_id must be 64 hex characters",
            )
        })
}

/// The network's value of `denomination`, or the refusal every service gives.
pub fn voucher_value(
    params: &crate::NetworkParams,
    denomination: u64,
) -> Result<crate::Amount, ProtocolError> {
    params.voucher_value(denomination).ok_or_else(|| {
        err(
            ErrorCode::UnsupportedDenomination,
            "the network does not issue this denomination",
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::NetworkParams;

    /// Small numbers so boundaries are easy to read: key period M = 100 s, publish window
    /// 2M = 200 s, MMR period T = 50 s, voucher expiry 1000 s, epoch 1000.
    pub(crate) fn params() -> NetworkParams {
        NetworkParams {
            epoch: 1000,
            key_period_secs: 100,
            publish_window_secs: 200,
            mmr_period_secs: 50,
            voucher_expiry_secs: 1000,
            ..NetworkParams::default()
        }
    }

    #[test]
    fn key_ids_are_64_hex_characters() {
        assert_eq!(parse_key_id(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert_eq!(
                parse_key_id(bad).unwrap_err().code,
                ErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn only_network_denominations_have_a_value() {
        let p = params();
        assert!(voucher_value(&p, p.denominations[0]).is_ok());
        assert_eq!(
            voucher_value(&p, 7).unwrap_err().code,
            ErrorCode::UnsupportedDenomination
        );
    }
}
