//! Rule: an operator's revenue share from its trust evaluation. (Seed 000: "operators that
//! confirmed their identity to the network will receive a much higher revenue share than
//! anonymous ones … the other two factors … how long the operator was available on the
//! network and servers' availability uptime"; seed 001: "up to 70%".)
//!
//! ```text
//! share_bps = cap_bps × identity × tenure × uptime          (rounded down, in basis points)
//!   identity = 1 for a verified legal identity, 1/2 for an anonymous operator
//!   tenure   = 1/2 + 1/2 × min(1, time on the network / 180 days)
//!   uptime   = the mean weighted fractional uptime of the operator's counted relays
//!              (not on probation, not beyond the per-subnet limit), to the nearest basis
//!              point; 0 with none
//! ```
//!
//! So a verified operator a year on the network whose relays were up 99.5% of the time gets
//! 99.5% of the cap (69.65% of 70%); the same operator anonymous gets half that; a new
//! verified operator half again. Each factor is computed in basis points and the product in
//! integers, so anyone re-deriving a share statement gets the same number.

use serde::{Deserialize, Serialize};

/// Basis points in one.
pub const ONE: u64 = 10_000;
/// Time on the network after which tenure no longer raises the share.
pub const FULL_TENURE_SECS: u64 = 180 * 86_400;
/// The identity factor of an operator without a verified identity.
pub const ANONYMOUS_BPS: u64 = 5_000;

/// What a trust evaluation of one operator is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// A directory-trusted attestation of the operator's legal identity is on record.
    pub verified_identity: bool,
    /// Seconds since the operator's first relay was first seen.
    pub time_on_network_secs: u64,
    /// Weighted fractional uptime of each counted relay, in `[0, 1]`.
    pub relay_uptimes: Vec<f64>,
}

/// Each factor of the product, in basis points, and the share — what a share statement
/// publishes, so the arithmetic can be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub identity_bps: u64,
    pub tenure_bps: u64,
    pub uptime_bps: u64,
    pub cap_bps: u64,
    pub share_bps: u64,
}

/// The share of an operator under `cap_bps` (the coordinator's maximum, e.g. 7000).
pub fn share(e: &Evaluation, cap_bps: u32) -> Share {
    let identity_bps = if e.verified_identity {
        ONE
    } else {
        ANONYMOUS_BPS
    };
    let tenure_bps =
        ONE / 2 + (ONE / 2) * e.time_on_network_secs.min(FULL_TENURE_SECS) / FULL_TENURE_SECS;
    let uptime_bps = if e.relay_uptimes.is_empty() {
        0
    } else {
        let mean = e
            .relay_uptimes
            .iter()
            .map(|u| {
                if u.is_finite() {
                    u.clamp(0.0, 1.0)
                } else {
                    0.0
                }
            })
            .sum::<f64>()
            / e.relay_uptimes.len() as f64;
        // To the nearest basis point (0.995 is 9949.999… in binary).
        ((mean * ONE as f64).round() as u64).min(ONE)
    };
    let cap = u64::from(cap_bps).min(ONE);
    let share_bps = cap * identity_bps * tenure_bps * uptime_bps / (ONE * ONE * ONE);
    Share {
        identity_bps,
        tenure_bps,
        uptime_bps,
        cap_bps: cap,
        share_bps,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn eval(verified: bool, days: u64, uptimes: &[f64]) -> Evaluation {
        Evaluation {
            verified_identity: verified,
            time_on_network_secs: days * DAY,
            relay_uptimes: uptimes.to_vec(),
        }
    }

    #[test]
    fn shares_by_hand() {
        // Verified, a year on, 99.5%: 7000 × 1 × 1 × 0.995 = 6965.
        assert_eq!(share(&eval(true, 365, &[0.995]), 7000).share_bps, 6965);
        // Anonymous: half.
        assert_eq!(share(&eval(false, 365, &[0.995]), 7000).share_bps, 3482);
        // New (0 days): tenure 1/2.
        let s = share(&eval(true, 0, &[1.0]), 7000);
        assert_eq!((s.tenure_bps, s.share_bps), (5000, 3500));
        // 90 days: tenure 3/4.
        assert_eq!(share(&eval(true, 90, &[1.0]), 7000).tenure_bps, 7500);
        // Mean over relays: (1 + 0.5) / 2.
        assert_eq!(share(&eval(true, 365, &[1.0, 0.5]), 7000).uptime_bps, 7500);
        // No counted relay, nothing.
        assert_eq!(share(&eval(true, 365, &[]), 7000).share_bps, 0);
        // Nonsense uptimes count as 0 or 1, never beyond.
        let s = share(&eval(true, 365, &[f64::NAN, 2.0]), 7000);
        assert_eq!(s.uptime_bps, 5000);
    }

    proptest! {
        #[test]
        fn the_share_never_exceeds_the_cap_and_rises_with_each_factor(
            verified in any::<bool>(),
            days in 0u64..2_000,
            more_days in 0u64..400,
            up in proptest::collection::vec(0.0f64..=1.0, 1..6),
            raise in 0.0f64..=1.0,
            cap in 0u32..=10_000,
        ) {
            let base = eval(verified, days, &up);
            let s = share(&base, cap);
            prop_assert!(s.share_bps <= u64::from(cap));
            // Verified ≥ anonymous; longer ≥ shorter; more uptime ≥ less.
            prop_assert!(share(&eval(true, days, &up), cap).share_bps >= share(&eval(false, days, &up), cap).share_bps);
            prop_assert!(share(&eval(verified, days + more_days, &up), cap).share_bps >= s.share_bps);
            let mut better = up.clone();
            better[0] = better[0].max(raise);
            prop_assert!(share(&eval(verified, days, &better), cap).share_bps >= s.share_bps);
        }
    }
}
