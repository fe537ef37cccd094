//! The JSON answers of INFO, PAY and USAGE: what a relay charges, what a payment bought, and
//! what a channel uses.
//!
//! These ride inside binary responses ([`crate::Response::Info`], [`crate::Response::Paid`],
//! [`crate::Response::Usage`]) as JSON, so that prices and billing fields can grow without a
//! new protocol version. The server fills them in; the client and the wallet read them.

use serde::{Deserialize, Serialize};
use smpx_core::api::SwapId;
use smpx_core::credits::BlindSignature;
use smpx_core::UnixTime;

/// INFO's answer: who is paid here and what capacity costs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// The operator's credit service (keys, change); `None`: this relay takes no payments.
    pub operator_url: Option<String>,
    /// Undelivered messages a free queue holds.
    pub free_quota: u32,
    /// Days an undelivered message is kept.
    pub retention_days: u64,
    /// Undelivered messages a paid queue holds.
    pub paid_quota: u32,
    /// Credit units for one paid queue for 30 days.
    pub units_per_queue_month: u64,
    pub channel_free_active_receivers: u64,
    pub channel_free_storage_bytes: u64,
    pub channel_units_per_receiver_month: u64,
    pub channel_units_per_gb_month: u64,
    pub channel_inactive_after_days: u64,
}

/// What a PAY bought.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bought {
    /// A queue's paid quota, until `paid_until` (Unix seconds).
    Queue { quota: u32, paid_until: u64 },
    /// A channel's prepaid balance after the payment, credit units.
    Channel { balance_units: i64 },
}

/// PAY's answer (JSON in [`crate::Response::Paid`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PayAnswer {
    /// Paid: the change's blind signatures (in the order of the request's outputs) and what
    /// was bought.
    Paid {
        swap_id: SwapId,
        paid_units: u64,
        signatures: Vec<BlindSignature>,
        bought: Bought,
    },
    /// The operator refused the tokens: nothing was paid and nothing bought.
    Refused {
        swap_id: SwapId,
        status: u16,
        code: smpx_core::ErrorCode,
        message: String,
    },
    /// The operator has not decided yet: what was bought is provisioned meanwhile and is
    /// cancelled if the spend is; collect the change from the operator (`GET /v1/swap/{id}`).
    Pending {
        swap_id: SwapId,
        paid_units: u64,
        message: String,
        bought: Bought,
    },
}

/// USAGE's answer (JSON): what the channel uses and owes now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelUsageReport {
    /// Member queues.
    pub members: u64,
    /// Members active (SUB, GET or ACK) within the relay's inactivity window.
    pub active_receivers: u64,
    /// Bytes of undelivered posts held in the member queues.
    pub stored_bytes: u64,
    /// Prepaid credit units left (below 0: POST is refused while the price is above 0).
    pub balance_units: i64,
    /// What the channel costs per 30 days for this usage (0: within the free allowance).
    pub monthly_units: u64,
    /// Until when usage has been charged (unix seconds).
    pub billed_until: UnixTime,
}
