//! Rule: how long the wallet waits before publishing a bought voucher.
//! (DESIGN.md §2, the money path: "… random delay …" between buying and publishing.)
//!
//! The issuer sees when a voucher is bought, the coordinator when it is published; if the
//! two instants were close, they could be joined to link a buyer to a commitment. So a
//! wallet publishes at a uniformly random time after buying, in two forms:
//!
//! - **Scheduled** ([`Schedule`], what a wallet does by default): at purchase the wallet
//!   draws an instant uniformly in [`DEFAULT_WINDOW`] (1 to 12 hours after it), never later
//!   than [`DEADLINE_MARGIN`] before the key's publish deadline, and stores it; a later sync
//!   publishes every voucher that is due ([`due_now`]), in random order, so purchases of one
//!   key are not published in the order they were bought. A window may be narrowed but not
//!   below [`MIN_FLOOR`] (ten minutes); publishing at once takes an explicit
//!   [`Schedule::NoDelay`].
//! - **In-process** ([`PublishDelay`]): a caller that stays running waits a random time of up
//!   to [`DEFAULT_MAX`] itself, or opts out by saying so ([`PublishDelay::Immediately`] or
//!   an exact [`Duration`]).
//!
//! The randomness is passed in so a test (or a program with its own source) decides where it
//! comes from; `now` is passed in as the purchase time.

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

// ---------------------------------------------------------------------------------------------
// Scheduled publishing (what `smpx wallet buy` and `smpx wallet sync` do)

/// The default window of a scheduled publish: uniformly between one and twelve hours after
/// the purchase. Wide, so that the many purchases an issuer sees in a day and the publishes
/// the coordinator sees interleave.
pub const DEFAULT_WINDOW: PublishWindow = PublishWindow {
    min: Duration::from_secs(60 * 60),
    max: Duration::from_secs(12 * 60 * 60),
};

/// The shortest scheduled delay a caller may ask for without opting out explicitly
/// ([`Schedule::NoDelay`]): ten minutes.
pub const MIN_FLOOR: Duration = Duration::from_secs(10 * 60);

/// How long before its key's publish deadline a scheduled voucher is published at the
/// latest, whatever was drawn: a publish that misses the deadline loses the voucher.
pub const DEADLINE_MARGIN: u64 = 60 * 60;

/// When to publish a bought voucher, relative to its purchase: a uniformly random instant in
/// `[min, max]`, at second granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishWindow {
    pub min: Duration,
    pub max: Duration,
}

impl Default for PublishWindow {
    fn default() -> Self {
        DEFAULT_WINDOW
    }
}

/// A scheduling policy: a random instant in a window, or at once (the caller gives up hiding
/// the purchase time, and says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Window(PublishWindow),
    NoDelay,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Window(DEFAULT_WINDOW)
    }
}

/// A window that cannot be used: explains what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadWindow {
    #[error("a publish delay of at least {asked_secs} s is too short: at least {} s ({} minutes) hides the purchase time; opt out explicitly (--no-delay) to publish at once", MIN_FLOOR.as_secs(), MIN_FLOOR.as_secs() / 60)]
    TooShort { asked_secs: u64 },
    #[error(transparent)]
    TooLong(#[from] DelayTooLong),
    #[error("the shortest publish delay ({min_secs} s) is longer than the longest ({max_secs} s)")]
    Inverted { min_secs: u64, max_secs: u64 },
}

impl PublishWindow {
    /// A window from bounds in seconds, checked: `MIN_FLOOR ≤ min ≤ max ≤ LIMIT`.
    pub fn from_secs(min_secs: u64, max_secs: u64) -> Result<PublishWindow, BadWindow> {
        PublishWindow {
            min: Duration::from_secs(min_secs),
            max: Duration::from_secs(max_secs),
        }
        .check()
    }

    /// Checks the bounds of a window built by hand.
    pub fn check(self) -> Result<PublishWindow, BadWindow> {
        let (min_secs, max_secs) = (self.min.as_secs(), self.max.as_secs());
        if self.min < MIN_FLOOR {
            return Err(BadWindow::TooShort {
                asked_secs: min_secs,
            });
        }
        if self.max > LIMIT {
            return Err(DelayTooLong {
                asked_secs: max_secs,
            }
            .into());
        }
        if self.min > self.max {
            return Err(BadWindow::Inverted { min_secs, max_secs });
        }
        Ok(self)
    }
}

impl Schedule {
    /// Checks a window's bounds; [`Schedule::NoDelay`] is always allowed.
    pub fn check(self) -> Result<Schedule, BadWindow> {
        match self {
            Schedule::Window(w) => Ok(Schedule::Window(w.check()?)),
            Schedule::NoDelay => Ok(Schedule::NoDelay),
        }
    }

    /// The instant (unix seconds) to publish a voucher bought at `bought_at`: drawn
    /// uniformly from the window, but never later than [`DEADLINE_MARGIN`] before the key's
    /// `deadline` (nor before the purchase). [`Schedule::NoDelay`]: `bought_at`.
    pub fn due_at<R: Rng + ?Sized>(
        self,
        bought_at: u64,
        deadline: Option<u64>,
        rng: &mut R,
    ) -> u64 {
        let drawn = match self {
            Schedule::NoDelay => return bought_at,
            Schedule::Window(w) => {
                let (lo, hi) = (w.min.as_secs(), w.max.as_secs().max(w.min.as_secs()));
                bought_at.saturating_add(rng.gen_range(lo..=hi))
            }
        };
        match deadline {
            Some(d) => drawn.min(d.saturating_sub(DEADLINE_MARGIN)).max(bought_at),
            None => drawn,
        }
    }
}

/// The vouchers to publish at `now`, in the order to publish them: those due (`due_at ≤
/// now`), shuffled with `rng` so that purchases of one key are not published in the order
/// they were bought.
pub fn due_now<T: Clone, R: Rng + ?Sized>(scheduled: &[(T, u64)], now: u64, rng: &mut R) -> Vec<T> {
    use rand::seq::SliceRandom;
    let mut due: Vec<T> = scheduled
        .iter()
        .filter(|(_, at)| *at <= now)
        .map(|(t, _)| t.clone())
        .collect();
    due.shuffle(rng);
    due
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

    #[test]
    fn a_schedule_falls_in_its_window_and_varies() {
        let mut rng = StdRng::seed_from_u64(11);
        let bought = 1_000_000;
        let due: Vec<u64> = (0..50)
            .map(|_| Schedule::default().due_at(bought, None, &mut rng))
            .collect();
        let (lo, hi) = (
            bought + DEFAULT_WINDOW.min.as_secs(),
            bought + DEFAULT_WINDOW.max.as_secs(),
        );
        assert!(due.iter().all(|d| (lo..=hi).contains(d)), "{due:?}");
        // Spread over hours, not bunched: the draws span more than half the window.
        let span = due.iter().max().unwrap() - due.iter().min().unwrap();
        assert!(span > (hi - lo) / 2, "span {span} of {due:?}");
    }

    #[test]
    fn a_schedule_never_passes_the_key_deadline() {
        let mut rng = StdRng::seed_from_u64(12);
        let bought = 1_000_000;
        // Two hours left: whatever is drawn, publish an hour before the deadline.
        let deadline = bought + 2 * 60 * 60;
        for _ in 0..20 {
            let d = Schedule::default().due_at(bought, Some(deadline), &mut rng);
            assert!(d <= deadline - DEADLINE_MARGIN && d >= bought, "{d}");
        }
        // Less than the margin left: at once, not in the past.
        assert_eq!(
            Schedule::default().due_at(bought, Some(bought + 60), &mut rng),
            bought
        );
        assert_eq!(Schedule::NoDelay.due_at(bought, None, &mut rng), bought);
    }

    #[test]
    fn short_windows_need_an_explicit_opt_out() {
        assert_eq!(
            PublishWindow::from_secs(60, 3600).unwrap_err(),
            BadWindow::TooShort { asked_secs: 60 }
        );
        assert!(PublishWindow::from_secs(60, 3600)
            .unwrap_err()
            .to_string()
            .contains("--no-delay"));
        assert!(PublishWindow::from_secs(MIN_FLOOR.as_secs(), MIN_FLOOR.as_secs()).is_ok());
        assert_eq!(
            PublishWindow::from_secs(7200, 3600).unwrap_err(),
            BadWindow::Inverted {
                min_secs: 7200,
                max_secs: 3600
            }
        );
        assert!(matches!(
            PublishWindow::from_secs(3600, LIMIT.as_secs() + 1),
            Err(BadWindow::TooLong(_))
        ));
        assert_eq!(Schedule::NoDelay.check(), Ok(Schedule::NoDelay));
        assert!(Schedule::Window(PublishWindow {
            min: Duration::ZERO,
            max: Duration::ZERO
        })
        .check()
        .is_err());
    }

    #[test]
    fn only_due_vouchers_are_published_and_not_in_purchase_order() {
        let scheduled: Vec<(u32, u64)> = (0..8).map(|i| (i, 100)).chain([(99, 500)]).collect();
        let mut rng = StdRng::seed_from_u64(5);
        assert!(due_now(&scheduled, 99, &mut rng).is_empty());
        let orders: Vec<Vec<u32>> = (0..10)
            .map(|_| due_now(&scheduled, 100, &mut rng))
            .collect();
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        }
        assert!(
            orders.iter().any(|o| *o != (0..8).collect::<Vec<_>>()),
            "always in purchase order: {orders:?}"
        );
        assert!(due_now(&scheduled, 500, &mut rng).contains(&99));
    }

    proptest! {
        /// Whatever the window, deadline and draw: never before the purchase, never after
        /// the window, never later than the margin before the deadline when there is room.
        #[test]
        fn a_schedule_is_within_bounds(
            min in MIN_FLOOR.as_secs()..=LIMIT.as_secs(),
            extra in 0u64..=86_400,
            bought in 0u64..=4_000_000_000,
            left in proptest::option::of(0u64..=LIMIT.as_secs()),
            seed in any::<u64>(),
        ) {
            let max = (min + extra).min(LIMIT.as_secs());
            let w = PublishWindow::from_secs(min.min(max), max).unwrap();
            let deadline = left.map(|l| bought + l);
            let d = Schedule::Window(w).due_at(bought, deadline, &mut StdRng::seed_from_u64(seed));
            prop_assert!(d >= bought && d <= bought + max);
            if let Some(dl) = deadline {
                prop_assert!(d <= dl.saturating_sub(DEADLINE_MARGIN).max(bought));
            }
        }
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
