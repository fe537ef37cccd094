//! Rule: what a directory concludes from probing a relay — weighted fractional uptime and
//! weighted mean time between failures as Tor's directory authorities compute them
//! (`rephist.c`), latency percentiles, and the flags with the thresholds they were judged by.
//! (DESIGN.md §3 "Directory"; issue: the relay directory.)
//!
//! **Runs and downtimes.** A relay is observed up or down at instants (each probe). A *run*
//! starts at the first "up" after a "down" (or the first observation) and ends at the next
//! "down". Every ended run adds weight 1 to the run count and its length to the run length
//! and to the uptime; every ended downtime adds its length to the observed time. Every
//! [`DISCOUNT_INTERVAL`] (12 h, aligned to the unix epoch so every relay is discounted at
//! the same instants) all four sums are multiplied by [`DISCOUNT`] (0.95): a run that just
//! ended counts twice as much as one that ended a week ago.
//!
//! - weighted MTBF = (run length + the current run) / (run count + 1 if in a run);
//! - weighted fractional uptime (WFU) = (uptime + the current run) / (observed time + the
//!   current run or downtime), in `[0, 1]`.
//!
//! Everything is a pure function of the observations and `now`.

use serde::{Deserialize, Serialize};

/// Factor applied to old history every [`DISCOUNT_INTERVAL`].
pub const DISCOUNT: f64 = 0.95;
/// 12 hours.
pub const DISCOUNT_INTERVAL: u64 = 12 * 60 * 60;
/// Below this total run weight a relay's MTBF is 0 (it is forgotten, about half a year after
/// its last run).
pub const EPSILON: f64 = 0.0001;

/// The stability history of one relay: four discounted sums and the open run or downtime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    /// The current run's start, when the relay is up.
    pub run_started: Option<u64>,
    /// The current downtime's start, when the relay is down.
    pub down_since: Option<u64>,
    /// Sum of ended runs' lengths (seconds), discounted.
    pub weighted_run_length: f64,
    /// Number of ended runs, discounted.
    pub total_run_weights: f64,
    /// Seconds up, discounted.
    pub weighted_uptime: f64,
    /// Seconds observed (up or down), discounted.
    pub total_weighted_time: f64,
    /// The discount interval (`t / DISCOUNT_INTERVAL`) the sums were last discounted in.
    pub discounted_in: u64,
    /// The latest instant observed; earlier observations (out of order) count as now.
    pub last_seen: u64,
}

impl Stability {
    /// Applies the discounts due by `now`: one factor of [`DISCOUNT`] per interval boundary
    /// crossed since the last time.
    pub fn discount(&mut self, now: u64) {
        let interval = now / DISCOUNT_INTERVAL;
        if self.discounted_in == 0 && self.last_seen == 0 {
            // Nothing observed yet: start counting from here.
            self.discounted_in = interval;
            return;
        }
        if interval <= self.discounted_in {
            return;
        }
        let steps = (interval - self.discounted_in).min(i32::MAX as u64) as i32;
        let alpha = DISCOUNT.powi(steps);
        self.weighted_run_length *= alpha;
        self.total_run_weights *= alpha;
        self.weighted_uptime *= alpha;
        self.total_weighted_time *= alpha;
        self.discounted_in = interval;
    }

    /// Records a probe at `at`: the relay was reachable (`up`) or not.
    pub fn observe(&mut self, up: bool, at: u64) {
        let at = at.max(self.last_seen);
        self.discount(at);
        self.last_seen = at;
        if up {
            if let Some(down) = self.down_since.take() {
                self.total_weighted_time += (at - down) as f64;
            }
            self.run_started.get_or_insert(at);
        } else {
            if let Some(start) = self.run_started.take() {
                let run = (at - start) as f64;
                self.total_run_weights += 1.0;
                self.weighted_run_length += run;
                self.weighted_uptime += run;
                self.total_weighted_time += run;
            }
            self.down_since.get_or_insert(at);
        }
    }

    /// This history as it will be at `now` (discounted, nothing observed since).
    fn at(&self, now: u64) -> (Stability, u64) {
        let mut s = self.clone();
        let now = now.max(s.last_seen);
        s.discount(now);
        (s, now)
    }

    /// Weighted mean time between failures at `now`, seconds.
    pub fn mtbf(&self, now: u64) -> f64 {
        let (s, now) = self.at(now);
        let mut total = s.weighted_run_length;
        let mut weights = s.total_run_weights;
        if let Some(start) = s.run_started {
            total += (now - start) as f64;
            weights += 1.0;
        }
        if weights < EPSILON {
            0.0
        } else {
            total / weights
        }
    }

    /// Weighted fractional uptime at `now`, in `[0, 1]`; 0 for a relay never observed, 1 for
    /// one observed up only just now (a first probe that succeeded), 0 if down then.
    pub fn wfu(&self, now: u64) -> f64 {
        let (s, now) = self.at(now);
        let mut up = s.weighted_uptime;
        let mut total = s.total_weighted_time;
        if let Some(start) = s.run_started {
            let run = (now - start) as f64;
            up += run;
            total += run;
        } else if let Some(down) = s.down_since {
            total += (now - down) as f64;
        }
        if total <= 0.0 {
            // Observed only at this instant: up all the (no) time seen so far if in a run
            // — what the ratio tends to — else nothing.
            if s.run_started.is_some() {
                1.0
            } else {
                0.0
            }
        } else {
            (up / total).clamp(0.0, 1.0)
        }
    }

    /// How long the relay has been up without interruption at `now` (0 when down).
    pub fn uptime(&self, now: u64) -> u64 {
        self.run_started
            .map_or(0, |start| now.max(self.last_seen) - start)
    }
}

/// The quantile `permille`/1000 of `samples` (500: the median, 990: p99) by the nearest-rank
/// method; `None` when empty.
pub fn percentile(samples: &[u32], permille: u32) -> Option<u32> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    // rank = ceil(permille/1000 · n), at least 1.
    let rank = (u64::from(permille.min(1000)) * n).div_ceil(1000).max(1);
    Some(sorted[(rank - 1) as usize])
}

// ---------------------------------------------------------------------------------------------
// Flags

/// A relay with MTBF of at least this is Stable whatever the others' (Tor: 5 days).
pub const MTBF_GUARANTEES_STABLE: f64 = 5.0 * 86_400.0;
/// A relay with a median latency of at most this is Fast whatever the others'.
pub const LATENCY_GUARANTEES_FAST_MS: u32 = 100;
/// A relay newer than this on the directory is on probation (limited weight).
pub const PROBATION_SECS: u64 = 7 * 86_400;
/// A relay is Running if its latest probe, at most this old, reached it.
pub const RUNNING_FRESH_SECS: u64 = 45 * 60;

/// What the flags are computed from, per relay.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// When the directory first saw it.
    pub first_seen: u64,
    /// The latest probe: when, and whether the full round trip succeeded.
    pub last_probe: Option<(u64, bool)>,
    pub stability: Stability,
    /// Recent round-trip latencies of successful probes, milliseconds.
    pub latencies_ms: Vec<u32>,
}

/// The thresholds flags were judged by, published next to them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Stable: MTBF at least this (seconds): the median MTBF of the running relays, at most
    /// [`MTBF_GUARANTEES_STABLE`].
    pub stable_mtbf_secs: f64,
    /// Fast: median latency at most this (ms): the 7/8 quantile of running relays' median
    /// latencies (the slowest eighth is not Fast), at least [`LATENCY_GUARANTEES_FAST_MS`].
    pub fast_latency_ms: u32,
    pub probation_secs: u64,
    pub running_fresh_secs: u64,
}

/// A relay's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    pub running: bool,
    pub stable: bool,
    pub fast: bool,
    pub probation: bool,
}

/// Whether the relay answered its latest probe, recently enough.
pub fn is_running(r: &Summary, now: u64) -> bool {
    matches!(r.last_probe, Some((at, true)) if now.saturating_sub(at) <= RUNNING_FRESH_SECS)
}

/// The thresholds over all relays at `now` (Tor's rule: from the running relays).
pub fn thresholds(relays: &[Summary], now: u64) -> Thresholds {
    let running: Vec<&Summary> = relays.iter().filter(|r| is_running(r, now)).collect();
    let mut mtbfs: Vec<f64> = running.iter().map(|r| r.stability.mtbf(now)).collect();
    mtbfs.sort_by(f64::total_cmp);
    let median_mtbf = if mtbfs.is_empty() {
        MTBF_GUARANTEES_STABLE
    } else {
        mtbfs[(mtbfs.len() - 1) / 2]
    };
    let p50s: Vec<u32> = running
        .iter()
        .filter_map(|r| percentile(&r.latencies_ms, 500))
        .collect();
    let fast = percentile(&p50s, 875).map_or(LATENCY_GUARANTEES_FAST_MS, |q| q);
    Thresholds {
        stable_mtbf_secs: median_mtbf.min(MTBF_GUARANTEES_STABLE),
        fast_latency_ms: fast.max(LATENCY_GUARANTEES_FAST_MS),
        probation_secs: PROBATION_SECS,
        running_fresh_secs: RUNNING_FRESH_SECS,
    }
}

/// One relay's flags under `t` at `now`.
pub fn flags(r: &Summary, t: &Thresholds, now: u64) -> Flags {
    let running = is_running(r, now);
    Flags {
        running,
        stable: running && r.stability.mtbf(now) >= t.stable_mtbf_secs,
        fast: running && percentile(&r.latencies_ms, 500).is_some_and(|p| p <= t.fast_latency_ms),
        probation: now.saturating_sub(r.first_seen) < t.probation_secs,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: u64 = 3600;
    /// An instant on a discount boundary, so hand computations start there.
    const T0: u64 = 1_000 * DISCOUNT_INTERVAL;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn one_run_then_a_downtime_by_hand() {
        let mut s = Stability::default();
        s.observe(true, T0);
        // Up 4 h so far, no run ended: MTBF is the current run, WFU 1.
        assert!(close(s.mtbf(T0 + 4 * H), 4.0 * H as f64));
        assert!(close(s.wfu(T0 + 4 * H), 1.0));
        assert_eq!(s.uptime(T0 + 4 * H), 4 * H);
        s.observe(false, T0 + 6 * H);
        // One run of 6 h ended; down 2 h more: WFU 6/8, MTBF 6 h, uptime 0.
        assert!(close(s.wfu(T0 + 8 * H), 0.75));
        assert!(close(s.mtbf(T0 + 8 * H), 6.0 * H as f64));
        assert_eq!(s.uptime(T0 + 8 * H), 0);
        s.observe(true, T0 + 8 * H);
        // Up again 2 h: up 6+2 of 10 h; runs: 6 h ended, 2 h current → MTBF 4 h.
        assert!(close(s.wfu(T0 + 10 * H), 0.8));
        assert!(close(s.mtbf(T0 + 10 * H), 4.0 * H as f64));
    }

    #[test]
    fn history_is_discounted_every_twelve_hours() {
        let mut s = Stability::default();
        s.observe(true, T0);
        s.observe(false, T0 + 10 * H); // run of 10 h, ended before the boundary
        s.observe(true, T0 + 11 * H); // after 1 h down
                                      // Past one boundary (T0 + 12 h): the old 10 h up and 11 h observed are ×0.95; the
                                      // current run (since T0 + 11 h) is not.
        let now = T0 + 13 * H;
        let up = 10.0 * H as f64 * DISCOUNT + 2.0 * H as f64;
        let total = 11.0 * H as f64 * DISCOUNT + 2.0 * H as f64;
        assert!(close(s.wfu(now), up / total), "{}", s.wfu(now));
        let mtbf = (10.0 * H as f64 * DISCOUNT + 2.0 * H as f64) / (DISCOUNT + 1.0);
        assert!(close(s.mtbf(now), mtbf));
        // Three boundaries later, the same at a smaller weight.
        let mut later = s.clone();
        later.discount(T0 + 48 * H);
        assert!(close(
            later.total_weighted_time,
            11.0 * H as f64 * DISCOUNT.powi(4)
        ));
    }

    #[test]
    fn a_flapping_relay_loses_mtbf_but_not_much_wfu() {
        let mut steady = Stability::default();
        steady.observe(true, T0);
        let mut flapping = Stability::default();
        for k in 0..48 {
            // Up 59 min, down 1 min, every hour.
            flapping.observe(true, T0 + k * H);
            flapping.observe(false, T0 + k * H + 59 * 60);
        }
        let now = T0 + 48 * H;
        flapping.observe(true, now);
        assert!(flapping.mtbf(now) < H as f64);
        assert!(steady.mtbf(now) >= 48.0 * H as f64);
        assert!(flapping.wfu(now) > 0.98 - 1e-9 && flapping.wfu(now) < 1.0);
    }

    #[test]
    fn nothing_observed_is_zero_and_late_observations_count_as_now() {
        let s = Stability::default();
        assert_eq!((s.mtbf(T0), s.wfu(T0), s.uptime(T0)), (0.0, 0.0, 0));
        let mut s = Stability::default();
        s.observe(true, T0 + 10);
        s.observe(false, T0); // out of order: taken as T0 + 10
        assert_eq!(s.total_run_weights, 1.0);
        assert_eq!(s.weighted_run_length, 0.0);
        // A first probe just now: up is 1, down is 0, with no time observed either way.
        let mut up = Stability::default();
        up.observe(true, T0);
        assert_eq!(up.wfu(T0), 1.0);
        let mut down = Stability::default();
        down.observe(false, T0);
        assert_eq!(down.wfu(T0), 0.0);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&[], 500), None);
        assert_eq!(percentile(&[7], 990), Some(7));
        let v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile(&v, 500), Some(50));
        assert_eq!(percentile(&v, 990), Some(99));
        assert_eq!(percentile(&v, 1000), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[10, 20, 30, 40], 500), Some(20));
        // 7/8 of 3 samples: rank ceil(2.625) = 3.
        assert_eq!(percentile(&[40, 450, 90], 875), Some(450));
    }

    fn relay(first_seen: u64, probe: Option<(u64, bool)>, up_since: u64, lat: &[u32]) -> Summary {
        let mut stability = Stability::default();
        stability.observe(true, up_since);
        Summary {
            first_seen,
            last_probe: probe,
            stability,
            latencies_ms: lat.to_vec(),
        }
    }

    #[test]
    fn flags_against_published_thresholds() {
        let now = T0 + 30 * 86_400;
        let relays = vec![
            // Up 20 days, fast, old.
            relay(T0, Some((now - 60, true)), now - 20 * 86_400, &[30, 40, 50]),
            // Up 1 day, slow, old.
            relay(T0, Some((now - 60, true)), now - 86_400, &[400, 500, 450]),
            // Up 10 days, new on this directory.
            relay(
                now - 86_400,
                Some((now - 60, true)),
                now - 10 * 86_400,
                &[90],
            ),
            // Its last probe failed.
            relay(T0, Some((now - 60, false)), now - 20 * 86_400, &[20]),
        ];
        let t = thresholds(&relays, now);
        // Running MTBFs: 20 d, 1 d, 10 d → median 10 d, capped at 5 d.
        assert_eq!(t.stable_mtbf_secs, MTBF_GUARANTEES_STABLE);
        // Running p50s 40, 450, 90 → 7/8 quantile 450.
        assert_eq!(t.fast_latency_ms, 450);
        let f: Vec<Flags> = relays.iter().map(|r| flags(r, &t, now)).collect();
        assert_eq!(
            f[0],
            Flags {
                running: true,
                stable: true,
                fast: true,
                probation: false
            }
        );
        assert!(f[1].running && !f[1].stable && f[1].fast);
        assert!(f[2].running && f[2].stable && f[2].probation);
        assert_eq!(
            f[3],
            Flags {
                running: false,
                stable: false,
                fast: false,
                probation: false
            }
        );
        // A stale success is not Running either.
        let stale = relay(T0, Some((now - RUNNING_FRESH_SECS - 1, true)), T0, &[10]);
        assert!(!flags(&stale, &t, now).running);
    }

    /// A history of observations: (seconds since the previous one, up?).
    fn history() -> impl Strategy<Value = Vec<(u64, bool)>> {
        proptest::collection::vec((0u64..3 * 86_400, any::<bool>()), 0..40)
    }

    fn replay(h: &[(u64, bool)]) -> (Stability, u64) {
        let mut s = Stability::default();
        let mut t = T0;
        for &(dt, up) in h {
            t += dt;
            s.observe(up, t);
        }
        (s, t)
    }

    proptest! {
        #[test]
        fn uptime_is_a_fraction_and_mtbf_is_not_negative(h in history(), later in 0u64..86_400 * 30) {
            let (s, t) = replay(&h);
            let w = s.wfu(t + later);
            prop_assert!((0.0..=1.0).contains(&w));
            prop_assert!(s.mtbf(t + later) >= 0.0);
        }

        /// Turning any one "up" observation into "down" never raises the uptime.
        #[test]
        fn more_downtime_never_raises_the_uptime(h in history(), pick in any::<proptest::sample::Index>(), later in 0u64..86_400) {
            prop_assume!(!h.is_empty());
            let i = pick.index(h.len());
            let mut worse = h.clone();
            worse[i].1 = false;
            let (a, t) = replay(&h);
            let (b, _) = replay(&worse);
            prop_assert!(b.wfu(t + later) <= a.wfu(t + later) + 1e-12);
        }
    }
}
