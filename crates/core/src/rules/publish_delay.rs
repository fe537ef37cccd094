//! Rule: how long the wallet waits before publishing a bought voucher.
//! (DESIGN.md §2, the money path: "… random delay …" between buying and publishing.)
//!
//! The issuer sees when a voucher is bought, the coordinator when it is published; if the
//! two instants were close, they could be joined to link a buyer to a commitment. So a
//! wallet waits a uniformly random time before publishing. The default is a random delay
//! of up to [`DEFAULT_MAX`]; a caller opts out only by saying so
//! ([`PublishDelay::Immediately`] or an exact [`Duration`]). The randomness is passed in so a
//! test (or a program with its own source) decides where it comes from.

use rand::Rng;
use std::time::Duration;

/// The default upper bound of the random delay.
pub const DEFAULT_MAX: Duration = Duration::from_secs(10 * 60);

/// The longest delay a caller may ask for. A voucher must be published within `2M` of its
/// key period's start (two key periods, days), so longer waits only lose vouchers.
pub const LIMIT: Duration = Duration::from_secs(30 * crate::DAY);

/// How long to wait before publishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishDelay {
    /// Publish at once: the caller gives up hiding the purchase time.
    Immediately,
    /// Wait exactly this long (tests, or a caller that chose its own time).
    Exactly(Duration),
    /// Wait a uniformly random time in `[0, max)`, at millisecond granularity.
    UpTo(Duration),
}

impl Default for PublishDelay {
    /// A random delay of up to [`DEFAULT_MAX`].
    fn default() -> Self {
        PublishDelay::UpTo(DEFAULT_MAX)
    }
}

impl From<Duration> for PublishDelay {
    /// An exact delay; `Duration::ZERO` is [`PublishDelay::Immediately`].
    fn from(d: Duration) -> Self {
        if d.is_zero() {
            PublishDelay::Immediately
        } else {
            PublishDelay::Exactly(d)
        }
    }
}

/// The delay asked for is longer than [`LIMIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a publish delay of {asked_secs} s is too long: at most {} s ({} days), since a voucher must be published within its key's window", LIMIT.as_secs(), LIMIT.as_secs() / crate::DAY)]
pub struct DelayTooLong {
    pub asked_secs: u64,
}

impl PublishDelay {
    /// The delay a user asks for as "a random wait of up to `max_secs` seconds"; 0 means
    /// publish at once.
    pub fn up_to_secs(max_secs: u64) -> Result<PublishDelay, DelayTooLong> {
        if max_secs == 0 {
            return Ok(PublishDelay::Immediately);
        }
        if max_secs > LIMIT.as_secs() {
            return Err(DelayTooLong {
                asked_secs: max_secs,
            });
        }
        Ok(PublishDelay::UpTo(Duration::from_secs(max_secs)))
    }

    /// Checks the bound of a delay built by hand.
    pub fn check(self) -> Result<PublishDelay, DelayTooLong> {
        match self {
            PublishDelay::Exactly(d) | PublishDelay::UpTo(d) if d > LIMIT => Err(DelayTooLong {
                asked_secs: d.as_secs(),
            }),
            ok => Ok(ok),
        }
    }

    /// The wait, drawn from `rng` when random. Never longer than the bound (and strictly
    /// shorter for [`PublishDelay::UpTo`]).
    pub fn choose<R: Rng + ?Sized>(self, rng: &mut R) -> Duration {
        match self {
            PublishDelay::Immediately => Duration::ZERO,
            PublishDelay::Exactly(d) => d,
            PublishDelay::UpTo(max) => {
                // Saturates instead of overflowing; bounds beyond u64 milliseconds are
                // refused by `check` long before.
                let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
                if max_ms == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(rng.gen_range(0..max_ms))
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_default_is_a_random_delay() {
        assert_eq!(PublishDelay::default(), PublishDelay::UpTo(DEFAULT_MAX));
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..20)
            .map(|_| PublishDelay::default().choose(&mut rng))
            .collect();
        assert!(draws.iter().all(|d| *d < DEFAULT_MAX));
        assert!(
            draws.windows(2).any(|w| w[0] != w[1]),
            "not random: {draws:?}"
        );
    }

    #[test]
    fn opting_out_is_explicit() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            PublishDelay::from(Duration::ZERO),
            PublishDelay::Immediately
        );
        assert_eq!(PublishDelay::Immediately.choose(&mut rng), Duration::ZERO);
        let ten = Duration::from_millis(10);
        assert_eq!(PublishDelay::from(ten).choose(&mut rng), ten);
        assert_eq!(
            PublishDelay::up_to_secs(0).unwrap(),
            PublishDelay::Immediately
        );
    }

    #[test]
    fn absurd_bounds_are_refused_not_overflowed() {
        // `max_delay * 1000` used to overflow here.
        let e = PublishDelay::up_to_secs(u64::MAX).unwrap_err();
        assert_eq!(e.asked_secs, u64::MAX);
        assert!(e.to_string().contains("at most 2592000 s (30 days)"), "{e}");
        assert!(PublishDelay::up_to_secs(LIMIT.as_secs()).is_ok());
        assert!(PublishDelay::up_to_secs(LIMIT.as_secs() + 1).is_err());
        assert!(PublishDelay::UpTo(Duration::MAX).check().is_err());
        assert!(PublishDelay::Exactly(LIMIT).check().is_ok());
        // Even unchecked, a huge bound draws without panicking.
        let mut rng = StdRng::seed_from_u64(2);
        let _ = PublishDelay::UpTo(Duration::MAX).choose(&mut rng);
    }

    #[test]
    fn a_bound_below_a_millisecond_waits_nothing() {
        let mut rng = StdRng::seed_from_u64(3);
        let tiny = PublishDelay::UpTo(Duration::from_micros(999));
        assert_eq!(tiny.choose(&mut rng), Duration::ZERO);
    }

    proptest! {
        /// The delay is always within its bounds: `[0, max)` for a random delay.
        #[test]
        fn the_delay_is_within_bounds(max_secs in 1u64..=LIMIT.as_secs(), seed in any::<u64>()) {
            let delay = PublishDelay::up_to_secs(max_secs).unwrap();
            let d = delay.choose(&mut StdRng::seed_from_u64(seed));
            prop_assert!(d < Duration::from_secs(max_secs));
        }
    }
}
