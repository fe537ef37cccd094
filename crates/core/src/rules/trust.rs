//! Rule: an operator's revenue share from its trust evaluation. (Seed 000: "operators that
//! confirmed their identity to the network will receive a much higher revenue share than
//! anonymous ones … the other two factors … how long the operator was available on the
//! network and servers' availability uptime"; seed 001: "up to 70%".)
//!
//! ```text
//! share_bps = cap_bps × identity × tenure × uptime          (rounded down, in basis points)
//!   identity = 1 for a verified legal identity, 1/2 for an anonymous operator
//!   tenure   = 1/2 + 1/2 × min(1, time on the network / 180 days)
//!   uptime   = the mean, over the operator's relays within the per-subnet limit, of each
//!              relay's weighted fractional uptime — halved for a relay still on
//!              probation (limited weight until it has history) — to the nearest basis
//!              point; 0 with none
//! ```
//!
//! So a verified operator a year on the network whose relays were up 99.5% of the time gets
//! 99.5% of the cap (69.65% of 70%); the same operator anonymous gets half that; a new
//! verified operator half again, and while its relays are on probation half again (a
//! verified operator's first relay, up all its first day: 7000 × 1 × ½ × ½ = 1750). Each factor is computed in basis points and the product in
//! integers, so anyone re-deriving a share statement gets the same number.

use serde::{Deserialize, Serialize};

/// Basis points in one.
pub const ONE: u64 = 10_000;
/// Time on the network after which tenure no longer raises the share.
pub const FULL_TENURE_SECS: u64 = 180 * 86_400;
/// The identity factor of an operator without a verified identity.
pub const ANONYMOUS_BPS: u64 = 5_000;
/// What a relay on probation counts for: this fraction of its uptime.
pub const PROBATION_BPS: u64 = 5_000;

/// What a trust evaluation of one operator is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// A directory-trusted attestation of the operator's legal identity is on record.
    pub verified_identity: bool,
    /// Seconds since the operator's first relay was first seen.
    pub time_on_network_secs: u64,
    /// Weighted fractional uptime of each counted relay past probation, in `[0, 1]`.
    pub relay_uptimes: Vec<f64>,
    /// Weighted fractional uptime of each counted relay still on probation, in `[0, 1]`
    /// (absent when there is none, so statements without any read and sign as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probation_uptimes: Vec<f64>,
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
    let relays = e.relay_uptimes.len() + e.probation_uptimes.len();
    let uptime_bps = if relays == 0 {
        0
    } else {
        let sane = |u: &f64| {
            if u.is_finite() {
                u.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let probation = PROBATION_BPS as f64 / ONE as f64;
        let mean = (e.relay_uptimes.iter().map(sane).sum::<f64>()
            + e.probation_uptimes.iter().map(sane).sum::<f64>() * probation)
            / relays as f64;
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
            probation_uptimes: Vec::new(),
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
        // A verified operator's first relay, on probation, up all day: 7000 × 1 × ½ × ½.
        let new = Evaluation {
            probation_uptimes: vec![1.0],
            ..eval(true, 0, &[])
        };
        let s = share(&new, 7000);
        assert_eq!(
            (s.tenure_bps, s.uptime_bps, s.share_bps),
            (5000, 5000, 1750)
        );
        // One relay past probation at 90%, one on probation at 100%: (0.9 + 0.5) / 2.
        let mixed = Evaluation {
            probation_uptimes: vec![1.0],
            ..eval(true, 365, &[0.9])
        };
        assert_eq!(share(&mixed, 7000).uptime_bps, 7000);
    }

    #[test]
    fn an_evaluation_without_probation_relays_serialises_as_before() {
        let e = eval(true, 1, &[0.5]);
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains("probation"), "{text}");
        let back: Evaluation = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
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
            // A relay leaving probation with the same uptime never lowers the share.
            let on_probation = Evaluation {
                relay_uptimes: up[1..].to_vec(),
                probation_uptimes: up[..1].to_vec(),
                ..base.clone()
            };
            prop_assert!(share(&on_probation, cap).share_bps <= s.share_bps);
        }
    }
}
