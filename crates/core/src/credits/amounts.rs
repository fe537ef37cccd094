//! Power-of-two denominations.
//!
//! Every token is worth `2^i` units for some `i < orders` (the keyset has one key per
//! denomination). Any amount is paid with its binary decomposition, so a wallet holds at most
//! one token of each denomination after a swap, and the operator sees only denominations.

use crate::Amount;

/// Is `amount` a power of two (a possible token value)?
pub fn is_denomination(amount: Amount) -> bool {
    amount.0.is_power_of_two()
}

/// `i` for `amount = 2^i`, or `None` if `amount` is not a power of two.
pub fn order_of(amount: Amount) -> Option<u8> {
    if is_denomination(amount) {
        u8::try_from(amount.0.trailing_zeros()).ok()
    } else {
        None
    }
}

/// Splits `amount` into power-of-two denominations below `2^orders`, smallest first.
///
/// The result is the binary decomposition of `amount`, except that whatever is above the
/// largest denomination `2^(orders−1)` is paid in repeated largest denominations. `orders` is
/// clamped to `1..=64`. The parts always add up to `amount`; `split(0)` is empty. The number
/// of parts is at most `orders − 1 + amount / 2^(orders−1)`: callers bound `amount` (a wallet
/// splits what it owns, and keysets have 40 denominations by default).
pub fn split(amount: Amount, orders: u8) -> Vec<Amount> {
    let top = orders.clamp(1, 64) - 1;
    let largest = 1u64 << top;
    // The bits below 2^top are their own decomposition; the rest is paid in `largest` pieces.
    let (count_largest, rest) = (amount.0 >> top, amount.0 & (largest - 1));
    let mut parts: Vec<Amount> = (0..top)
        .map(|i| 1u64 << i)
        .filter(|bit| rest & bit != 0)
        .map(Amount)
        .collect();
    parts.extend((0..count_largest).map(|_| Amount(largest)));
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(parts: &[Amount]) -> u64 {
        parts.iter().map(|a| a.0).sum()
    }

    #[test]
    fn credits_split_examples() {
        assert_eq!(split(Amount(0), 40), vec![]);
        assert_eq!(split(Amount(1), 40), vec![Amount(1)]);
        assert_eq!(split(Amount(13), 40), vec![Amount(1), Amount(4), Amount(8)]);
        // 100 credits = 10^8 units: 12 tokens, largest 2^26.
        let hundred = split(Amount::from_credits(100).unwrap(), 40);
        assert_eq!(hundred.len(), 12);
        assert_eq!(hundred.last(), Some(&Amount(1 << 26)));
        // Above the largest denomination: repeated largest pieces.
        assert_eq!(
            split(Amount(8 + 8 + 3), 4),
            vec![Amount(1), Amount(2), Amount(8), Amount(8)]
        );
        assert_eq!(split(Amount(u64::MAX), 64).len(), 64);
        assert_eq!(split(Amount(u64::MAX), 64).last(), Some(&Amount(1 << 63)));
        assert_eq!(split(Amount(5), 0), vec![Amount(1); 5]);
    }

    #[test]
    fn credits_denominations() {
        assert!(!is_denomination(Amount(0)));
        assert!(is_denomination(Amount(1)));
        assert!(!is_denomination(Amount(3)));
        assert!(is_denomination(Amount(1 << 63)));
        assert_eq!(order_of(Amount(1 << 39)), Some(39));
        assert_eq!(order_of(Amount(6)), None);
    }

    proptest! {
        #[test]
        fn credits_split_adds_up_in_denominations(amount in 0u64..(1 << 48), orders in 1u8..=64) {
            prop_assume!(amount >> (orders - 1) <= 4096);
            let parts = split(Amount(amount), orders);
            prop_assert_eq!(sum(&parts), amount);
            for p in &parts {
                prop_assert!(is_denomination(*p));
                prop_assert!(order_of(*p).unwrap() < orders);
            }
            prop_assert!(parts.windows(2).all(|w| w[0] <= w[1]));
            if orders >= 49 {
                prop_assert_eq!(parts.len() as u32, amount.count_ones());
            }
        }
    }
}
