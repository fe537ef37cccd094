//! Network parameters: the numbers every party must agree on. The coordinator publishes them
//! at `GET /v1/params`; wallets and issuers read them from there.

use crate::{Amount, UnixTime, DAY};
use serde::{Deserialize, Serialize};

/// Parameters fixed for the whole network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkParams {
    /// Voucher denominations, in whole credits.
    pub denominations: Vec<u64>,
    /// Start of key period 0 (unix seconds). Period `k` starts at `epoch + k * key_period_secs`.
    pub epoch: UnixTime,
    /// `M`: issuers rotate their signing keys every `M` seconds.
    pub key_period_secs: u64,
    /// A voucher signed under a key must be published within this many seconds of the
    /// key period's start (`2M`).
    pub publish_window_secs: u64,
    /// Vouchers expire this long after publishing; the same for everyone.
    pub voucher_expiry_secs: u64,
    /// Upper bound on an operator's revenue share, in basis points (7000 = 70%).
    pub max_operator_share_bps: u32,
    /// Redemption protocol versions the coordinator accepts (1 = HPKE envelope, 2 = zero-
    /// knowledge proof; 2 only while it has verified ceremony keys).
    pub protocol_versions: Vec<u32>,
    /// `T`: a new MMR of published commitments starts every `T` seconds and takes appends for
    /// `2T` (v0.2).
    #[serde(default = "default_mmr_period")]
    pub mmr_period_secs: u64,
    /// MMR levels `L`: capacity `4^L − 1` leaves (16 ≈ 2^32), see `smpx_core::mmr`.
    #[serde(default = "default_mmr_levels")]
    pub mmr_levels: u32,
}

fn default_mmr_period() -> u64 {
    30 * DAY
}

fn default_mmr_levels() -> u32 {
    16
}

impl Default for NetworkParams {
    fn default() -> Self {
        let m = 30 * DAY;
        NetworkParams {
            denominations: vec![1, 10, 100],
            epoch: 1_767_225_600, // 2026-01-01T00:00:00Z
            key_period_secs: m,
            publish_window_secs: 2 * m,
            voucher_expiry_secs: 365 * DAY,
            max_operator_share_bps: 7000,
            protocol_versions: vec![1, 2],
            mmr_period_secs: default_mmr_period(),
            mmr_levels: default_mmr_levels(),
        }
    }
}

impl NetworkParams {
    /// Checks the parameters are internally consistent.
    pub fn validate(&self) -> Result<(), String> {
        if self.denominations.is_empty() {
            return Err("at least one denomination is needed".into());
        }
        if self
            .denominations
            .iter()
            .any(|&d| d == 0 || Amount::from_credits(d).is_none())
        {
            return Err("denominations must be positive and fit in units".into());
        }
        if self.key_period_secs == 0 {
            return Err("key_period_secs must be positive".into());
        }
        if self.publish_window_secs < self.key_period_secs {
            return Err("publish_window_secs must cover at least one key period".into());
        }
        if self.voucher_expiry_secs == 0 {
            return Err("voucher_expiry_secs must be positive".into());
        }
        if self.mmr_period_secs == 0 {
            return Err("mmr_period_secs must be positive".into());
        }
        if !(1..=31).contains(&self.mmr_levels) {
            return Err("mmr_levels must be between 1 and 31".into());
        }
        if self.max_operator_share_bps > 10_000 {
            return Err("max_operator_share_bps is at most 10000".into());
        }
        Ok(())
    }

    pub fn is_denomination(&self, denomination: u64) -> bool {
        self.denominations.contains(&denomination)
    }

    /// The value of one voucher of `denomination`, if the network issues it.
    pub fn voucher_value(&self, denomination: u64) -> Option<Amount> {
        if self.is_denomination(denomination) {
            Amount::from_credits(denomination)
        } else {
            None
        }
    }
}
