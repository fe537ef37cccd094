//! Rule: does the public ledger check out? (DESIGN.md §2 "Accounting with nothing linkable"
//! and "Pool and clearing": `published = redeemed + live + released`, reproducible from the
//! public log; expired value released conservatively.)
//!
//! An auditor fetches the coordinator's published totals, replays the public log itself
//! ([`crate::ledger::Totals::replay`]) and recomputes from the MMR books how much expired value
//! could have been released ([`crate::rotation::releasable`]). The ledger checks out when the
//! replay agrees with what is published, value is conserved by both, and no more was
//! released than the books prove dead.

use crate::api::LedgerTotalsResponse;
use crate::ledger::Totals;
use serde::{Deserialize, Serialize};

/// The v0.2 release check: what the MMR books allow against what was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCheck {
    /// Released by the books so far (units).
    pub released: u64,
    /// The most the books allow: the largest `Σ group − Σ redeemed-through` over the
    /// prefixes of MMRs that have all expired (units).
    pub allowed: u64,
}

impl ReleaseCheck {
    /// Never released value that could still be redeemed.
    pub fn conservative(&self) -> bool {
        self.released <= self.allowed
    }
}

/// The auditor's findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The totals replayed from the log are the published ones.
    pub replay_agrees: bool,
    /// Value is conserved, in the replay and by the coordinator's own count (which also
    /// checks the live vouchers against the pool), and the two agree.
    pub conservation_holds: bool,
    /// No more was released than the MMR books allow.
    pub release_conservative: bool,
}

impl Verdict {
    /// The ledger checks out.
    pub fn ok(&self) -> bool {
        self.conservation_holds && self.release_conservative
    }
}

/// Judges the published totals against the auditor's replay and release check.
pub fn audit(
    published: &LedgerTotalsResponse,
    replayed: &Totals,
    release: ReleaseCheck,
) -> Verdict {
    let replay_agrees = *replayed == published.totals;
    Verdict {
        replay_agrees,
        conservation_holds: replay_agrees && published.conserved && replayed.is_conserved(),
        release_conservative: release.conservative(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Amount;
    use proptest::prelude::*;

    fn totals(published: u64, redeemed: u64, live: u64, released: u64, to_ops: u64) -> Totals {
        Totals {
            published: Amount(published),
            redeemed: Amount(redeemed),
            live: Amount(live),
            released: Amount(released),
            paid_to_operators: Amount(to_ops),
            network_fund: Amount((redeemed + released).saturating_sub(to_ops)),
        }
    }

    fn published(t: &Totals, conserved: bool) -> LedgerTotalsResponse {
        LedgerTotalsResponse {
            totals: t.clone(),
            unredeemed_value: t.live,
            unreleased_voucher_count: 0,
            v2_redemption_count: 0,
            entries: 0,
            conserved,
        }
    }

    const FINE: ReleaseCheck = ReleaseCheck {
        released: 5,
        allowed: 5,
    };

    #[test]
    fn a_conserving_ledger_checks_out() {
        let t = totals(100, 30, 60, 10, 20);
        let v = audit(&published(&t, true), &t, FINE);
        assert!(v.replay_agrees && v.conservation_holds && v.release_conservative);
        assert!(v.ok());
    }

    #[test]
    fn a_replay_that_disagrees_breaks_conservation() {
        let t = totals(100, 30, 60, 10, 20);
        let other = totals(100, 30, 70, 0, 20);
        let v = audit(&published(&t, true), &other, FINE);
        assert!(!v.replay_agrees && !v.conservation_holds && !v.ok());
    }

    #[test]
    fn the_coordinators_own_count_must_agree() {
        // Its live vouchers do not add up to the pool, though the log conserves.
        let t = totals(100, 30, 60, 10, 20);
        let v = audit(&published(&t, false), &t, FINE);
        assert!(v.replay_agrees && !v.conservation_holds && !v.ok());
    }

    #[test]
    fn releasing_too_much_fails_even_when_value_is_conserved() {
        let t = totals(100, 30, 60, 10, 20);
        let greedy = ReleaseCheck {
            released: 11,
            allowed: 10,
        };
        let v = audit(&published(&t, true), &t, greedy);
        assert!(v.conservation_holds && !v.release_conservative && !v.ok());
    }

    proptest! {
        /// The verdict is "ok" iff conservation holds (both counts, in agreement) and the
        /// release is conservative.
        #[test]
        fn ok_iff_conserved_and_conservative(
            published_v in 0u64..1000, redeemed in 0u64..1000, live in 0u64..1000,
            released in 0u64..1000, to_ops in 0u64..1000, coordinator_says in any::<bool>(),
            released_by_books in 0u64..100, allowed in 0u64..100, agree in any::<bool>(),
        ) {
            let t = totals(published_v, redeemed, live, released, to_ops);
            let replayed = if agree { t.clone() } else { Totals { live: Amount(live + 1), ..t.clone() } };
            let release = ReleaseCheck { released: released_by_books, allowed };
            let v = audit(&published(&t, coordinator_says), &replayed, release);
            let conserved = published_v == redeemed + live + released
                && redeemed + released == to_ops + t.network_fund.0;
            prop_assert_eq!(
                v.ok(),
                agree && coordinator_says && conserved && released_by_books <= allowed
            );
        }
    }
}
