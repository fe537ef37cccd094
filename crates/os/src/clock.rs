//! Time. Services read it once per request through a [`Clock`] and pass `now` down to the
//! rules; tests use [`ManualClock`] to jump across key periods and expiry. This is the only
//! module of the workspace that calls `SystemTime::now`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Unix seconds.
    fn now(&self) -> u64;

    /// The same instant as a [`SystemTime`] (certificate validity, file times).
    fn now_system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.now())
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Unix milliseconds, for the few places that need finer time than [`Clock::now`]
    /// (message timestamps). A clock set before 1970 reads as 0.
    pub fn now_millis(&self) -> u64 {
        since_epoch().as_millis().try_into().unwrap_or(u64::MAX)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        since_epoch().as_secs()
    }

    fn now_system_time(&self) -> SystemTime {
        SystemTime::now()
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// A clock that only moves when told to. Cloning shares the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(now: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(now)))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        assert_eq!(c.now(), 1_000);
        c.advance(86_400);
        assert_eq!(shared.now(), 87_400);
        shared.set(5);
        assert_eq!(c.now(), 5);
        assert_eq!(c.now_system_time(), UNIX_EPOCH + Duration::from_secs(5));
    }

    #[test]
    fn the_system_clock_agrees_with_itself_in_seconds_and_millis() {
        let c = SystemClock;
        let secs = c.now();
        let millis = c.now_millis();
        // Well after 2020 and the two readings within a few seconds of each other.
        assert!(secs > 1_577_836_800);
        assert!(millis / 1000 >= secs && millis / 1000 - secs < 5);
    }
}
