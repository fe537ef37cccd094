//! Rule: whether the wallet redeems a voucher with the anonymity set it would get.
//! (DESIGN.md §2 v0.2, "users can wait until the anonymity set is big enough for their
//! requirements".)
//!
//! A v0.2 proof reveals the MMR and the denomination, so the coordinator cannot tell the
//! redeemed voucher apart from the other vouchers of that denomination in that MMR — the
//! anonymity set. Below [`DEFAULT_MIN`] (or the caller's own minimum) the wallet refuses
//! unless the caller explicitly accepts a smaller set; the refusal carries both MMRs' sets
//! and expiries, so the caller can choose the other MMR, accept, or wait. A v0.1
//! redemption's set is [`V1_SET`]: the coordinator sees which voucher it is.

use crate::UnixTime;
use serde::{Deserialize, Serialize};

/// The smallest anonymity set a wallet redeems with unless told otherwise.
pub const DEFAULT_MIN: u64 = 100;

/// A v0.1 redemption's anonymity set: the coordinator sees the commitment.
pub const V1_SET: u64 = 1;

/// Under this many vouchers published under one issuer key, a purchase stands out: the
/// issuer's sales and the coordinator's publications of that key can be joined.
pub const SMALL_KEY_CROWD: u64 = DEFAULT_MIN;

/// The anonymity set of a redemption against one MMR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmrSet {
    pub mmr_id: u64,
    /// Vouchers the coordinator cannot tell the redeemed one apart from (itself included).
    pub size: u64,
    /// `false` when `size` is only an upper bound: without a path update the set is the
    /// vouchers of this denomination appended before this one, which the coordinator does
    /// not publish; the wallet counts every voucher before it and the MMR's count of its
    /// denomination, and takes the smaller.
    pub exact: bool,
    /// When the MMR stops accepting redemptions.
    pub expires_at: UnixTime,
}

/// The sets of the MMR a redemption would use and of the voucher's other MMR, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnonymitySet {
    pub chosen: MmrSet,
    /// The other MMR the voucher is in and that still accepts redemptions (older: a larger
    /// set, earlier expiry; newer: later expiry).
    pub other: Option<MmrSet>,
}

/// What the caller asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Refuse below this set (default [`DEFAULT_MIN`]).
    pub min: u64,
    /// The caller accepts a set of at least this many: lowers `min` to it, never raises it.
    pub accept: Option<u64>,
}

impl Default for Requirement {
    fn default() -> Self {
        Requirement {
            min: DEFAULT_MIN,
            accept: None,
        }
    }
}

impl Requirement {
    /// The smallest set this requirement redeems with.
    pub fn threshold(&self) -> u64 {
        self.accept.map_or(self.min, |a| a.min(self.min))
    }
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The chosen MMR's set is below `threshold`.
    Refuse {
        set: AnonymitySet,
        threshold: u64,
    },
}

/// Whether to redeem with `set`.
pub fn decide(set: &AnonymitySet, req: &Requirement) -> Decision {
    let threshold = req.threshold();
    if set.chosen.size >= threshold {
        Decision::Allow
    } else {
        Decision::Refuse {
            set: *set,
            threshold,
        }
    }
}

/// The set of a redemption against an MMR that holds `denomination_count` vouchers of the
/// voucher's denomination: all of them after a path update; without one, at most those up
/// to the voucher's own leaf (`leaf_index`, 0-based) — an upper bound (see [`MmrSet::exact`]).
pub fn mmr_set(
    mmr_id: u64,
    denomination_count: u64,
    expires_at: UnixTime,
    updated: bool,
    leaf_index: Option<u64>,
) -> MmrSet {
    match (updated, leaf_index) {
        (false, Some(i)) => MmrSet {
            mmr_id,
            size: denomination_count.min(i.saturating_add(1)),
            exact: false,
            expires_at,
        },
        _ => MmrSet {
            mmr_id,
            size: denomination_count,
            exact: true,
            expires_at,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(size: u64, other: Option<u64>) -> AnonymitySet {
        AnonymitySet {
            chosen: MmrSet {
                mmr_id: 3,
                size,
                exact: true,
                expires_at: 2000,
            },
            other: other.map(|size| MmrSet {
                mmr_id: 4,
                size,
                exact: true,
                expires_at: 3000,
            }),
        }
    }

    #[test]
    fn refuses_below_the_threshold_unless_the_caller_accepts_the_set() {
        let default = Requirement::default();
        let cases: &[(u64, Requirement, bool)] = &[
            (100, default, true),
            (99, default, false),
            (0, default, false),
            (
                5,
                Requirement {
                    accept: Some(5),
                    ..default
                },
                true,
            ),
            (
                4,
                Requirement {
                    accept: Some(5),
                    ..default
                },
                false,
            ),
            // Accepting a larger set than the minimum does not raise the minimum.
            (
                150,
                Requirement {
                    accept: Some(500),
                    ..default
                },
                true,
            ),
            (
                10,
                Requirement {
                    min: 10,
                    accept: None,
                },
                true,
            ),
            (
                9,
                Requirement {
                    min: 10,
                    accept: None,
                },
                false,
            ),
            (
                0,
                Requirement {
                    min: 0,
                    accept: None,
                },
                true,
            ),
        ];
        for &(size, req, allowed) in cases {
            let d = decide(&set(size, Some(1000)), &req);
            assert_eq!(d == Decision::Allow, allowed, "size {size}, {req:?}");
        }
    }

    #[test]
    fn a_refusal_carries_both_sets_and_the_threshold() {
        let s = set(2, Some(1));
        assert_eq!(
            decide(&s, &Requirement::default()),
            Decision::Refuse {
                set: s,
                threshold: DEFAULT_MIN
            }
        );
    }

    #[test]
    fn without_an_update_the_set_is_bounded_by_the_leaf_position() {
        let m = mmr_set(2, 50, 9, false, Some(9));
        assert_eq!((m.size, m.exact), (10, false));
        // The denomination's count bounds it too.
        assert_eq!(mmr_set(2, 3, 9, false, Some(9)).size, 3);
        let m = mmr_set(2, 50, 9, true, Some(9));
        assert_eq!((m.size, m.exact), (50, true));
        assert_eq!(mmr_set(2, 50, 9, false, None).size, 50);
    }

    proptest! {
        #[test]
        fn a_larger_set_never_turns_allow_into_refuse(
            size in 0u64..1000, more in 0u64..1000, min in 0u64..300,
            accept in proptest::option::of(0u64..300), other in proptest::option::of(0u64..1000),
        ) {
            let req = Requirement { min, accept };
            if decide(&set(size, other), &req) == Decision::Allow {
                prop_assert_eq!(decide(&set(size + more, other), &req), Decision::Allow);
            }
        }

        #[test]
        fn accepting_never_refuses_what_the_minimum_allows(
            size in 0u64..1000, min in 0u64..300, accept in 0u64..300,
        ) {
            if decide(&set(size, None), &Requirement { min, accept: None }) == Decision::Allow {
                prop_assert_eq!(
                    decide(&set(size, None), &Requirement { min, accept: Some(accept) }),
                    Decision::Allow
                );
            }
        }
    }
}
