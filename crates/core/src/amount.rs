//! Money amounts. Everything is counted in integer *units* so that splitting a redemption
//! between an operator and the network fund is exact: 1 credit = 1,000,000 units.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Units in one credit (1 credit ≈ 1 USD at launch).
pub const UNITS_PER_CREDIT: u64 = 1_000_000;

/// An amount of credits, in units. Serialized as a plain integer number of units.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// The value of a voucher of `denomination` whole credits, or `None` on overflow.
    pub fn from_credits(credits: u64) -> Option<Amount> {
        credits.checked_mul(UNITS_PER_CREDIT).map(Amount)
    }

    pub fn units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    /// Credits with six decimals, e.g. `10.700000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.0 / UNITS_PER_CREDIT,
            self.0 % UNITS_PER_CREDIT
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_credits_with_six_decimals() {
        assert_eq!(Amount(10_700_000).to_string(), "10.700000");
        assert_eq!(Amount(1).to_string(), "0.000001");
    }

    #[test]
    fn from_credits_overflow_is_none() {
        assert_eq!(Amount::from_credits(u64::MAX), None);
        assert_eq!(Amount::from_credits(100), Some(Amount(100_000_000)));
    }
}
