//! MMR rotation and conservative release of expired value (seed 003, "Adding MMR Rotation").
//!
//! A new MMR starts every `T` (`mmr_period_secs`): MMR `k` starts at `epoch + k·T` and takes
//! appends for `2T`, so at any time two MMRs are open and every voucher is appended to both
//! (only one during the very first period). The user redeems against either: the older one
//! has the larger anonymity set, the newer one the later expiry. An MMR's roots are accepted
//! until `start + 2T + voucher_expiry`: no voucher appended to it is younger than its close,
//! so no voucher loses more than its own expiry.
//!
//! ## Releasing expired value without knowing which vouchers were redeemed
//!
//! Under v0.2 the coordinator sees only (nullifier, MMR, denomination, operator) at
//! redemption: it cannot tell which voucher was redeemed. It still releases expired value
//! conservatively — never value that can still be redeemed:
//!
//! * a voucher's **group** is the newest MMR it was appended to; a voucher of group `g` can be
//!   redeemed only through MMRs `g − 1` and `g`, so once every MMR `≤ g` has expired it is dead;
//! * when every MMR up to `k` has expired, `V(≤ k) − R(≤ k)` is dead value, where `V(≤ k)` is
//!   the value of groups `≤ k` and `R(≤ k)` the value redeemed *through* MMRs `≤ k`. `R(≤ k)`
//!   may include vouchers of group `k + 1` redeemed through `k`, so this under-counts the dead
//!   value — it is conservative — and it catches up when MMR `k + 1` expires;
//! * the cumulative release is the maximum of that bound over time, so it never decreases.
//!
//! Per denomination the same holds; the functions here are per-denomination-agnostic and take
//! values in units.

use crate::{NetworkParams, UnixTime};
use serde::{Deserialize, Serialize};

/// Start of MMR `k`.
pub fn mmr_start(params: &NetworkParams, k: u64) -> UnixTime {
    params
        .epoch
        .saturating_add(k.saturating_mul(params.mmr_period_secs))
}

/// End (exclusive) of MMR `k`'s append window: `start + 2T`.
pub fn mmr_closes_at(params: &NetworkParams, k: u64) -> UnixTime {
    mmr_start(params, k).saturating_add(params.mmr_period_secs.saturating_mul(2))
}

/// When MMR `k`'s roots stop being accepted: its close plus the voucher expiry.
pub fn mmr_expires_at(params: &NetworkParams, k: u64) -> UnixTime {
    mmr_closes_at(params, k).saturating_add(params.voucher_expiry_secs)
}

/// The MMRs a voucher published at `now` is appended to: oldest first, one or two ids.
pub fn open_mmrs(params: &NetworkParams, now: UnixTime) -> Vec<u64> {
    let k = now.saturating_sub(params.epoch) / params.mmr_period_secs.max(1);
    if k == 0 {
        vec![0]
    } else {
        vec![k - 1, k]
    }
}

/// May a proof against a root of MMR `k` be accepted at `now`?
pub fn mmr_accepts_redemptions(params: &NetworkParams, k: u64, now: UnixTime) -> bool {
    now >= mmr_start(params, k) && now < mmr_expires_at(params, k)
}

/// Per-MMR figures the coordinator keeps for release accounting (units, one denomination or
/// all together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmrBook {
    /// Value of vouchers whose newest MMR is this one.
    pub group_value: u64,
    /// Value redeemed through this MMR's roots.
    pub redeemed_via: u64,
}

/// The cumulative value that may be released once every MMR `≤ last_expired` has expired,
/// given the books of MMRs `0..=last_expired` (index = MMR id) and what was released so far.
/// Never decreases and never exceeds the value that can no longer be redeemed.
pub fn releasable(books: &[MmrBook], already_released: u64) -> u64 {
    let (v, r) = books.iter().fold((0u128, 0u128), |(v, r), b| {
        (
            v + u128::from(b.group_value),
            r + u128::from(b.redeemed_via),
        )
    });
    let bound = u64::try_from(v.saturating_sub(r)).unwrap_or(u64::MAX);
    bound.max(already_released)
}

/// The highest `k` such that every MMR `0..=k` has expired at `now`, if any.
pub fn last_expired_prefix(params: &NetworkParams, now: UnixTime) -> Option<u64> {
    // Expiry times increase with k, so the prefix is all k with expires_at(k) <= now.
    if now < mmr_expires_at(params, 0) {
        return None;
    }
    let span = params.mmr_period_secs.max(1);
    let k = (now - mmr_expires_at(params, 0)) / span;
    Some(k)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> NetworkParams {
        NetworkParams {
            epoch: 1000,
            mmr_period_secs: 100,
            voucher_expiry_secs: 1000,
            ..NetworkParams::default()
        }
    }

    #[test]
    fn two_mmrs_open_after_the_first_period() {
        let p = params();
        assert_eq!(open_mmrs(&p, 1000), vec![0]);
        assert_eq!(open_mmrs(&p, 1099), vec![0]);
        assert_eq!(open_mmrs(&p, 1100), vec![0, 1]);
        assert_eq!(open_mmrs(&p, 1250), vec![1, 2]);
        // Every open MMR is within its append window.
        for now in [1000, 1150, 1299, 1300, 5000] {
            for k in open_mmrs(&p, now) {
                assert!(mmr_start(&p, k) <= now && now < mmr_closes_at(&p, k));
            }
        }
    }

    #[test]
    fn expiry_prefix_and_acceptance() {
        let p = params();
        assert_eq!(mmr_expires_at(&p, 0), 1000 + 200 + 1000);
        assert_eq!(last_expired_prefix(&p, 2199), None);
        assert_eq!(last_expired_prefix(&p, 2200), Some(0));
        assert_eq!(last_expired_prefix(&p, 2300), Some(1));
        assert!(mmr_accepts_redemptions(&p, 0, 2199));
        assert!(!mmr_accepts_redemptions(&p, 0, 2200));
        assert!(mmr_accepts_redemptions(&p, 1, 2200));
    }

    proptest! {
        /// Simulate vouchers in groups, redeemed through either of their MMRs; after each
        /// MMR expires, the release never exceeds the value that can no longer be redeemed,
        /// and once everything expired it equals everything unredeemed.
        #[test]
        fn release_is_conservative_and_catches_up(
            vouchers in proptest::collection::vec((1usize..6, 1u64..100, 0u8..3), 1..60)
        ) {
            // (group g in 1..6, value, fate: 0 = never redeemed, 1 = via g-1, 2 = via g)
            let n_mmrs = 6;
            let mut books = vec![MmrBook::default(); n_mmrs];
            for &(g, v, fate) in &vouchers {
                books[g].group_value += v;
                match fate {
                    1 => books[g - 1].redeemed_via += v,
                    2 => books[g].redeemed_via += v,
                    _ => {}
                }
            }
            let mut released = 0;
            for k in 0..n_mmrs {
                released = releasable(&books[..=k], released);
                // Dead value once MMRs 0..=k expired: vouchers of groups <= k never redeemed.
                let dead: u64 = vouchers.iter().filter(|&&(g, _, f)| g <= k && f == 0).map(|&(_, v, _)| v).sum();
                prop_assert!(released <= dead, "released {released} > dead {dead} at k={k}");
            }
            let unredeemed: u64 = vouchers.iter().filter(|&&(_, _, f)| f == 0).map(|&(_, v, _)| v).sum();
            prop_assert_eq!(released, unredeemed);
        }
    }
}
