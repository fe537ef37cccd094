//! Issuer key periods (seed 003, "Adding Voucher Expiry").
//!
//! Issuers rotate their blind-signing keys every `M` seconds: key period `k` starts at
//! `epoch + k·M`. A voucher signed under period `k`'s key must be published before
//! `start(k) + 2M`, which bounds how long a bought-but-unpublished voucher stays usable and
//! lets the coordinator forget old keys. An issuer may register keys only for the current and
//! the next period, so it cannot stockpile keys that single out a buyer later.

use crate::error::{err, ErrorCode, ProtocolError};
use crate::{NetworkParams, UnixTime};

/// The key period that contains `now` (0 before the epoch).
pub fn period_at(params: &NetworkParams, now: UnixTime) -> u64 {
    now.saturating_sub(params.epoch) / params.key_period_secs
}

/// Start of key period `period`.
pub fn period_start(params: &NetworkParams, period: u64) -> UnixTime {
    params
        .epoch
        .saturating_add(period.saturating_mul(params.key_period_secs))
}

/// The last instant (exclusive) at which a voucher signed in `period` may be published.
pub fn publish_deadline(params: &NetworkParams, period: u64) -> UnixTime {
    period_start(params, period).saturating_add(params.publish_window_secs)
}

/// May a voucher signed under a key of `period` be published at `now`?
pub fn check_publishable(
    params: &NetworkParams,
    period: u64,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    let start = period_start(params, period);
    if now < start {
        return Err(err(
            ErrorCode::KeyNotValid,
            format!("key period {period} starts at {start}; it is not in use yet"),
        ));
    }
    let deadline = publish_deadline(params, period);
    if now >= deadline {
        return Err(err(
            ErrorCode::KeyNotValid,
            format!("vouchers of key period {period} had to be published before {deadline}"),
        ));
    }
    Ok(())
}

/// May an issuer register a key for `period` at `now`? Only the current and next periods.
pub fn check_registrable(
    params: &NetworkParams,
    period: u64,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    let current = period_at(params, now);
    if period == current || period == current + 1 {
        Ok(())
    } else {
        Err(err(
            ErrorCode::KeyRegistrationRejected,
            format!(
                "keys may be registered for period {current} or {} only",
                current + 1
            ),
        ))
    }
}

/// Is a key of `period` the one an issuer should sign with at `now`?
/// Issuers sign only with the current period's key so that a buyer's voucher gets the full
/// publish window and all buyers of one period share one key.
pub fn is_signing_period(params: &NetworkParams, period: u64, now: UnixTime) -> bool {
    period == period_at(params, now) && now >= params.epoch
}

/// When a voucher published at `published_at` expires (the same period for everyone).
pub fn voucher_expires_at(params: &NetworkParams, published_at: UnixTime) -> UnixTime {
    published_at.saturating_add(params.voucher_expiry_secs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> NetworkParams {
        NetworkParams {
            epoch: 1000,
            key_period_secs: 100,
            publish_window_secs: 200,
            ..NetworkParams::default()
        }
    }

    #[test]
    fn publish_window_is_2m_from_period_start() {
        let p = params();
        assert_eq!(period_start(&p, 3), 1300);
        assert!(check_publishable(&p, 3, 1299).is_err(), "before the period");
        assert!(check_publishable(&p, 3, 1300).is_ok());
        assert!(check_publishable(&p, 3, 1499).is_ok());
        let e = check_publishable(&p, 3, 1500).unwrap_err();
        assert_eq!(e.code, ErrorCode::KeyNotValid);
    }

    #[test]
    fn only_current_and_next_period_registrable() {
        let p = params();
        let now = 1350; // period 3
        assert!(check_registrable(&p, 3, now).is_ok());
        assert!(check_registrable(&p, 4, now).is_ok());
        assert!(check_registrable(&p, 2, now).is_err());
        assert!(check_registrable(&p, 5, now).is_err());
    }

    proptest! {
        #[test]
        fn now_is_inside_its_own_period(now in 1000u64..10_000_000) {
            let p = params();
            let k = period_at(&p, now);
            prop_assert!(period_start(&p, k) <= now);
            prop_assert!(now < period_start(&p, k + 1));
            prop_assert!(check_publishable(&p, k, now).is_ok());
            prop_assert!(is_signing_period(&p, k, now));
        }
    }
}
