//! Rule: what a client keeps of the views of the 2–3 directories it is configured with, and
//! which share a coordinator takes from its trusted directories' statements — Tor's
//! consensus rule (dir-spec §3.8: a relay is listed, and a flag set, when more than half of
//! the authorities say so; numbers are the low median). (Issue 14: "uses only relays and
//! flags that more than half of them report, numbers by the low median … The coordinator
//! takes shares by the same rule.")
//!
//! ```text
//! needed(n)        = ⌊n / 2⌋ + 1     more than half of the n *configured* directories
//! relay kept       ⇔ ≥ needed(configured) directories list its fingerprint with one same
//!                    (address, operator); those are its "listers", the others' entries for
//!                    it are ignored
//! flag f holds     ⇔ more than half of its listers set f
//! region           = the region more than half of its listers give, else unknown
//! uptime, MTBF     = low median of the listers' numbers
//! latency p50, p99 = high median of the listers' measurements, when more than half of
//!                    them measured it; else unmeasured
//! share_bps        = low median of the statements of the trusted directories, when
//!                    ≥ needed(trusted) of them stated one; else no statement-based share
//!                    (the coordinator pays the administrator's number, `Source::Admin`)
//! low median of n values sorted ascending  v[0..n) = v[(n - 1) / 2]
//! high median                               = v[n / 2]        (equal when n is odd)
//! ```
//!
//! **Why count the configured directories, not those that answered.** If a majority of those
//! that answered were enough, an attacker who can make two honest directories unreachable
//! (a DoS, a censoring network) turns the one directory left — perhaps its own — into the
//! whole majority. Counting the configured ones, an outage can only make the view smaller,
//! never let a minority speak for the rest. With 3 configured and 1 down, 2 of 3 is still a
//! majority, but then the two that answered must both list a relay. With fewer than
//! `needed` answering nothing is agreed ([`Agreed::quorum`] is false) and the caller uses
//! its cached signed view, then its configured core relays.
//!
//! **Why the high median for latency.** The median's point is that an even split (2 of 3
//! answering, or 4 configured) never favours the relay. For uptime, MTBF and shares more is
//! better, so the cautious middle is the low one (Tor's bandwidths are the same kind); for
//! latency less is better, so the cautious middle is the high one: a lying directory among
//! two cannot make its relay look faster than the honest one measured. Every agreed number
//! lies between the lowest and the highest reported.
//!
//! Directories not configured are ignored, each configured directory counts once (its first
//! view), and within a view a fingerprint counts once (its first entry). Non-finite or
//! out-of-range numbers are taken as the worst value (uptime and MTBF 0).

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// What one directory says about one relay: its `RelayView` as far as agreement needs it (a
/// `/v1/relays` entry deserializes into it, the other fields ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub fingerprint: String,
    /// `smpx://fingerprint@host:port`.
    pub address: String,
    pub operator_id: String,
    pub region: String,
    /// `running`, `stable`, `fast`, `probation`, and whatever a newer directory adds.
    pub flags: BTreeSet<String>,
    /// Weighted fractional uptime, in [0, 1].
    pub uptime: f64,
    /// Weighted mean time between failures, seconds.
    pub mtbf_secs: f64,
    pub latency_p50_ms: Option<u32>,
    pub latency_p99_ms: Option<u32>,
}

/// One directory's answer: every relay it lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryView {
    /// The directory as the client's configuration names it (its key or URL).
    pub directory: String,
    pub relays: Vec<Report>,
}

/// One relay as the majority sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgreedRelay {
    pub fingerprint: String,
    pub address: String,
    pub operator_id: String,
    /// `None` when no region is given by more than half of the listers.
    pub region: Option<String>,
    /// The flags more than half of the listers set.
    pub flags: BTreeSet<String>,
    pub uptime: f64,
    pub mtbf_secs: f64,
    pub latency_p50_ms: Option<u32>,
    pub latency_p99_ms: Option<u32>,
    /// How many directories listed it with this address and operator.
    pub listed_by: usize,
    /// For every flag any lister set, how many of them set it (held or not), so a client
    /// can say why a flag holds or not.
    pub flag_votes: BTreeMap<String, usize>,
}

impl AgreedRelay {
    /// Whether the agreed flags include `flag`.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }
}

/// A fingerprint some directory listed that no majority agrees on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub fingerprint: String,
    /// The most directories that agreed on one address and operator for it.
    pub listed_by: usize,
    /// How many different (address, operator) pairs were given for it.
    pub variants: usize,
}

/// What the configured directories agree on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreed {
    /// How many distinct directories are configured.
    pub configured: usize,
    /// The configured directories that answered, sorted.
    pub answered: Vec<String>,
    /// Listers a relay needs: more than half of `configured`.
    pub needed: usize,
    /// Whether enough directories answered for anything to be agreed.
    pub quorum: bool,
    /// The relays kept, by fingerprint.
    pub relays: Vec<AgreedRelay>,
    /// The relays listed somewhere but not kept, by fingerprint.
    pub dropped: Vec<Dropped>,
}

/// More than half of `n`.
pub fn needed(n: usize) -> usize {
    n / 2 + 1
}

fn median_by<T: Copy>(mut v: Vec<T>, cmp: fn(&T, &T) -> Ordering, high: bool) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(cmp);
    let i = if high { v.len() / 2 } else { (v.len() - 1) / 2 };
    Some(v[i])
}

/// The low median: the lower of the two middle values for an even count; `None` for none.
pub fn low_median<T: Copy + Ord>(values: &[T]) -> Option<T> {
    median_by(values.to_vec(), T::cmp, false)
}

/// The high median: the higher of the two middle values for an even count.
pub fn high_median<T: Copy + Ord>(values: &[T]) -> Option<T> {
    median_by(values.to_vec(), T::cmp, true)
}

fn low_median_f64(values: Vec<f64>) -> f64 {
    median_by(values, f64::total_cmp, false).unwrap_or(0.0)
}

/// `x` within `[0, max]`; a non-finite number is the worst value, 0.
pub(crate) fn sane(x: f64, max: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, max)
    } else {
        0.0
    }
}

/// An optional measurement: the high median when more than half of the listers gave one.
fn measured(listers: &[&Report], get: fn(&Report) -> Option<u32>) -> Option<u32> {
    let given: Vec<u32> = listers.iter().filter_map(|r| get(r)).collect();
    if given.len() >= needed(listers.len()) {
        high_median(&given)
    } else {
        None
    }
}

fn agree_on(listers: &[&Report]) -> AgreedRelay {
    let first = listers[0];
    let mut flag_votes: BTreeMap<String, usize> = BTreeMap::new();
    let mut regions: BTreeMap<&str, usize> = BTreeMap::new();
    for r in listers {
        for f in &r.flags {
            *flag_votes.entry(f.clone()).or_default() += 1;
        }
        *regions.entry(r.region.as_str()).or_default() += 1;
    }
    let majority = needed(listers.len());
    AgreedRelay {
        fingerprint: first.fingerprint.clone(),
        address: first.address.clone(),
        operator_id: first.operator_id.clone(),
        region: regions
            .into_iter()
            .find(|&(_, n)| n >= majority)
            .map(|(r, _)| r.to_string()),
        flags: flag_votes
            .iter()
            .filter(|&(_, &n)| n >= majority)
            .map(|(f, _)| f.clone())
            .collect(),
        uptime: low_median_f64(listers.iter().map(|r| sane(r.uptime, 1.0)).collect()),
        mtbf_secs: low_median_f64(
            listers
                .iter()
                .map(|r| sane(r.mtbf_secs, f64::MAX))
                .collect(),
        ),
        latency_p50_ms: measured(listers, |r| r.latency_p50_ms),
        latency_p99_ms: measured(listers, |r| r.latency_p99_ms),
        listed_by: listers.len(),
        flag_votes,
    }
}

/// What the `configured` directories agree on, from the `views` of those that answered.
pub fn agree<S: AsRef<str>>(configured: &[S], views: &[DirectoryView]) -> Agreed {
    let configured: BTreeSet<&str> = configured.iter().map(AsRef::as_ref).collect();
    let need = needed(configured.len());
    let mut answered: BTreeSet<&str> = BTreeSet::new();
    // fingerprint → (address, operator) → the reports saying so, one per directory.
    let mut claims: BTreeMap<&str, BTreeMap<(&str, &str), Vec<&Report>>> = BTreeMap::new();
    for view in views {
        if !configured.contains(view.directory.as_str()) || !answered.insert(&view.directory) {
            continue;
        }
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for r in view.relays.iter().filter(|r| seen.insert(&r.fingerprint)) {
            claims
                .entry(&r.fingerprint)
                .or_default()
                .entry((&r.address, &r.operator_id))
                .or_default()
                .push(r);
        }
    }
    let mut relays = Vec::new();
    let mut dropped = Vec::new();
    for (fingerprint, variants) in claims {
        // More than half of the configured directories can back at most one variant.
        let best = variants
            .values()
            .max_by_key(|v| v.len())
            .map_or(0, Vec::len);
        match variants.values().find(|v| v.len() >= need) {
            Some(listers) => relays.push(agree_on(listers)),
            None => dropped.push(Dropped {
                fingerprint: fingerprint.to_string(),
                listed_by: best,
                variants: variants.len(),
            }),
        }
    }
    Agreed {
        configured: configured.len(),
        quorum: !configured.is_empty() && answered.len() >= need,
        answered: answered.into_iter().map(str::to_string).collect(),
        needed: need,
        relays,
        dropped,
    }
}

/// One trusted directory's statement of an operator's share for one period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stated<'a> {
    /// The directory's signing key as the coordinator trusts it (hex).
    pub directory: &'a str,
    pub share_bps: u64,
}

/// The share the coordinator takes for one operator and period, and how it came about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreedShare {
    /// The low median of the statements; `None` without a majority of trusted directories
    /// stating (the operator is then paid the administrator's number).
    pub share_bps: Option<u64>,
    /// Trusted directories that stated a share.
    pub stated: usize,
    /// Statements needed: more than half of the trusted directories.
    pub needed: usize,
    pub trusted: usize,
}

/// The share for one operator in one period from the `statements` of the `trusted`
/// directories (the caller passes each directory's newest statement for that period;
/// statements of untrusted directories, and a directory's repeats, are ignored).
pub fn agreed_share<S: AsRef<str>>(trusted: &[S], statements: &[Stated<'_>]) -> AgreedShare {
    let trusted: BTreeSet<&str> = trusted.iter().map(AsRef::as_ref).collect();
    let mut stated: BTreeSet<&str> = BTreeSet::new();
    let shares: Vec<u64> = statements
        .iter()
        .filter(|s| trusted.contains(s.directory) && stated.insert(s.directory))
        .map(|s| s.share_bps)
        .collect();
    let need = needed(trusted.len());
    AgreedShare {
        share_bps: if !trusted.is_empty() && shares.len() >= need {
            low_median(&shares)
        } else {
            None
        },
        stated: shares.len(),
        needed: need,
        trusted: trusted.len(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report(fp: &str, op: &str, flags: &[&str], uptime: f64, p50: Option<u32>) -> Report {
        Report {
            fingerprint: fp.into(),
            address: format!("smpx://{fp}@{fp}.example:5223"),
            operator_id: op.into(),
            region: "eu".into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            uptime,
            mtbf_secs: 86_400.0,
            latency_p50_ms: p50,
            latency_p99_ms: p50.map(|p| p * 3),
        }
    }

    fn view(dir: &str, relays: Vec<Report>) -> DirectoryView {
        DirectoryView {
            directory: dir.into(),
            relays,
        }
    }

    const DIRS: [&str; 3] = ["d1", "d2", "d3"];

    fn kept(a: &Agreed) -> Vec<&str> {
        a.relays.iter().map(|r| r.fingerprint.as_str()).collect()
    }

    #[test]
    fn a_report_reads_from_a_directory_listing_entry() {
        // A `/v1/relays` entry (the directory's RelayView) as it is served: the fields
        // agreement does not need are ignored, an unmeasured latency is null.
        let entry = serde_json::json!({
            "fingerprint": "r", "address": "smpx://r@r.example:5223", "operator_id": "A",
            "region": "eu", "status": "running", "flags": ["running", "stable"],
            "uptime": 0.99, "mtbf_secs": 86400.0, "current_run_secs": 600,
            "latency_p50_ms": 40, "latency_p99_ms": null, "age_secs": 100,
            "registered_at": 1, "counted": true, "counted_reason": null, "probation": false,
            "last_probe_at": 2, "last_heartbeat_at": 3, "metadata": {}, "info": null
        });
        let r: Report = serde_json::from_value(entry).unwrap();
        let mut want = report("r", "A", &["running", "stable"], 0.99, Some(40));
        want.latency_p99_ms = None;
        assert_eq!(r, want);
    }

    #[test]
    fn low_and_high_medians() {
        assert_eq!(low_median::<u64>(&[]), None);
        assert_eq!(low_median(&[7u64]), Some(7));
        assert_eq!(low_median(&[9u64, 1]), Some(1));
        assert_eq!(high_median(&[9u64, 1]), Some(9));
        assert_eq!(low_median(&[4u64, 1, 3, 2]), Some(2));
        assert_eq!(high_median(&[4u64, 1, 3, 2]), Some(3));
        assert_eq!(low_median(&[5u64, 1, 3]), Some(3));
        assert_eq!(high_median(&[5u64, 1, 3]), Some(3));
        assert_eq!(low_median_f64(vec![0.9, 0.1]), 0.1);
    }

    #[test]
    fn a_minority_lying_about_uptime_is_ignored() {
        for lie in [0.0, 1.0, f64::NAN, 7.0] {
            let a = agree(
                &DIRS,
                &[
                    view("d1", vec![report("r", "A", &["running"], 0.97, Some(40))]),
                    view("d2", vec![report("r", "A", &["running"], 0.95, Some(50))]),
                    view("d3", vec![report("r", "A", &["running"], lie, Some(1))]),
                ],
            );
            let r = &a.relays[0];
            assert!((0.95..=0.97).contains(&r.uptime), "{lie}: {}", r.uptime);
            assert_eq!(r.latency_p50_ms, Some(40));
            assert_eq!(r.listed_by, 3);
        }
    }

    #[test]
    fn a_relay_listed_by_one_of_three_is_dropped() {
        let a = agree(
            &DIRS,
            &[
                view("d1", vec![report("r", "A", &["running"], 0.9, None)]),
                view("d2", vec![]),
                view("d3", vec![]),
            ],
        );
        assert!(a.quorum);
        assert!(a.relays.is_empty());
        assert_eq!(
            a.dropped,
            vec![Dropped {
                fingerprint: "r".into(),
                listed_by: 1,
                variants: 1
            }]
        );
    }

    #[test]
    fn listers_must_agree_on_address_and_operator() {
        let mut moved = report("r", "A", &["running"], 0.9, None);
        moved.address = "smpx://r@elsewhere.example:5223".into();
        let mut other_op = report("r", "B", &["running"], 0.9, None);
        other_op.address = moved.address.clone();
        let a = agree(
            &DIRS,
            &[
                view("d1", vec![report("r", "A", &["running"], 0.9, None)]),
                view("d2", vec![moved.clone()]),
                view("d3", vec![other_op]),
            ],
        );
        assert!(a.relays.is_empty());
        assert_eq!(a.dropped[0].variants, 3);
        // Two of three giving the new address keep it, under that address.
        let a = agree(
            &DIRS,
            &[
                view("d1", vec![report("r", "A", &["running"], 0.9, None)]),
                view("d2", vec![moved.clone()]),
                view("d3", vec![moved.clone()]),
            ],
        );
        assert_eq!(a.relays[0].address, moved.address);
        assert_eq!(a.relays[0].listed_by, 2);
    }

    #[test]
    fn a_flag_set_by_two_of_three_holds_by_one_does_not() {
        let a = agree(
            &DIRS,
            &[
                view(
                    "d1",
                    vec![report("r", "A", &["running", "stable"], 0.9, None)],
                ),
                view(
                    "d2",
                    vec![report("r", "A", &["running", "fast"], 0.9, None)],
                ),
                view("d3", vec![report("r", "A", &["stable"], 0.9, None)]),
            ],
        );
        let r = &a.relays[0];
        assert_eq!(
            r.flags,
            ["running", "stable"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        assert_eq!(r.flag_votes["fast"], 1);
        assert_eq!(r.flag_votes["running"], 2);
        assert!(r.has("stable") && !r.has("fast"));
    }

    #[test]
    fn with_one_of_three_down_the_two_left_must_both_agree() {
        let views = [
            view(
                "d1",
                vec![
                    report("both", "A", &["running", "fast"], 0.99, Some(20)),
                    report("one", "B", &["running"], 0.99, Some(20)),
                ],
            ),
            view(
                "d3",
                vec![
                    report("both", "A", &["running"], 0.90, Some(80)),
                    report("elsewhere", "C", &["running"], 0.99, None),
                ],
            ),
        ];
        let a = agree(&DIRS, &views);
        assert!(a.quorum);
        assert_eq!(a.answered, vec!["d1", "d3"]);
        assert_eq!(kept(&a), vec!["both"]);
        let r = &a.relays[0];
        // Even counts: the cautious middle of each number, and 1 of 2 is no majority.
        assert_eq!(r.uptime, 0.90);
        assert_eq!(r.latency_p50_ms, Some(80));
        assert!(r.has("running") && !r.has("fast"));
        // With only one answering nothing is agreed: no quorum.
        let a = agree(&DIRS, &views[..1]);
        assert!(!a.quorum);
        assert!(a.relays.is_empty());
    }

    #[test]
    fn unconfigured_and_repeated_directories_do_not_count() {
        let r = || vec![report("r", "A", &["running"], 0.9, None)];
        let a = agree(
            &DIRS,
            &[view("d1", r()), view("d1", r()), view("intruder", r())],
        );
        assert!(a.relays.is_empty());
        assert_eq!(a.answered, vec!["d1"]);
        // A directory listing one fingerprint twice votes once.
        let twice = vec![
            report("r", "A", &["running"], 0.9, None),
            report("r", "A", &["running"], 0.9, None),
        ];
        let a = agree(&DIRS, &[view("d1", twice), view("d2", vec![])]);
        assert!(a.relays.is_empty());
        assert!(agree::<&str>(&[], &[view("d1", r())]).relays.is_empty());
    }

    #[test]
    fn a_latency_measured_by_a_minority_of_listers_is_unmeasured() {
        let a = agree(
            &DIRS,
            &[
                view("d1", vec![report("r", "A", &["running"], 0.9, Some(5))]),
                view("d2", vec![report("r", "A", &["running"], 0.9, None)]),
                view("d3", vec![report("r", "A", &["running"], 0.9, None)]),
            ],
        );
        assert_eq!(a.relays[0].latency_p50_ms, None);
        assert_eq!(a.relays[0].region.as_deref(), Some("eu"));
    }

    #[test]
    fn a_share_needs_a_majority_of_trusted_directories() {
        let st = |d, s| Stated {
            directory: d,
            share_bps: s,
        };
        let s = agreed_share(&DIRS, &[st("d1", 6000), st("d2", 6500), st("d3", 7000)]);
        assert_eq!(s.share_bps, Some(6500));
        // A minority lying high (or low) does not move it outside the honest ones.
        let s = agreed_share(&DIRS, &[st("d1", 6000), st("d2", 6100), st("d3", 10_000)]);
        assert_eq!(s.share_bps, Some(6100));
        // Two of three: the lower.
        let s = agreed_share(&DIRS, &[st("d1", 6000), st("d3", 7000)]);
        assert_eq!((s.share_bps, s.stated, s.needed), (Some(6000), 2, 2));
        // One of three, an untrusted one and a repeat: no statement-based share.
        let s = agreed_share(
            &DIRS,
            &[st("d1", 6000), st("d1", 7000), st("intruder", 7000)],
        );
        assert_eq!((s.share_bps, s.stated), (None, 1));
        assert_eq!(agreed_share::<&str>(&[], &[st("d1", 1)]).share_bps, None);
        // A single trusted directory is its own majority (today's behaviour).
        assert_eq!(agreed_share(&["d1"], &[st("d1", 42)]).share_bps, Some(42));
    }

    // Random views over a small world, so directories often overlap and disagree.
    const FLAGS: [&str; 3] = ["running", "stable", "fast"];

    fn arb_report() -> impl Strategy<Value = Report> {
        (
            0u8..5,
            0u8..2,
            0u8..2,
            proptest::collection::btree_set(0usize..3, 0..=3),
            0.0f64..=1.0,
            0.0f64..1e7,
            proptest::option::of(1u32..1000),
        )
            .prop_map(|(fp, addr, op, flags, uptime, mtbf, p50)| Report {
                fingerprint: format!("r{fp}"),
                address: format!("smpx://r{fp}@host{addr}:5223"),
                operator_id: format!("op{op}"),
                region: "eu".into(),
                flags: flags.into_iter().map(|i| FLAGS[i].to_string()).collect(),
                uptime,
                mtbf_secs: mtbf,
                latency_p50_ms: p50,
                latency_p99_ms: p50,
            })
    }

    fn arb_views(n: usize) -> impl Strategy<Value = Vec<DirectoryView>> {
        proptest::collection::vec(proptest::collection::vec(arb_report(), 0..8), n).prop_map(|vs| {
            vs.into_iter()
                .enumerate()
                .map(|(i, relays)| view(&format!("d{}", i + 1), relays))
                .collect()
        })
    }

    fn dirs(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("d{i}")).collect()
    }

    /// The listers' reports of a kept relay (a directory's first entry for it, as counted).
    fn listers<'a>(views: &'a [DirectoryView], r: &AgreedRelay) -> Vec<(&'a str, &'a Report)> {
        views
            .iter()
            .filter_map(|v| {
                let first = v.relays.iter().find(|x| x.fingerprint == r.fingerprint)?;
                (first.address == r.address && first.operator_id == r.operator_id)
                    .then_some((v.directory.as_str(), first))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn agreed_numbers_lie_between_the_reported_ones(n in 1usize..6, views in arb_views(5)) {
            let views = &views[..n];
            let a = agree(&dirs(n), views);
            for r in &a.relays {
                let ls = listers(views, r);
                prop_assert_eq!(ls.len(), r.listed_by);
                let ups: Vec<f64> = ls.iter().map(|(_, l)| l.uptime).collect();
                prop_assert!(ups.iter().any(|&u| u <= r.uptime) && ups.iter().any(|&u| u >= r.uptime));
                let mtbfs: Vec<f64> = ls.iter().map(|(_, l)| l.mtbf_secs).collect();
                prop_assert!(mtbfs.iter().any(|&u| u <= r.mtbf_secs) && mtbfs.iter().any(|&u| u >= r.mtbf_secs));
                if let Some(p) = r.latency_p50_ms {
                    let ps: Vec<u32> = ls.iter().filter_map(|(_, l)| l.latency_p50_ms).collect();
                    prop_assert!(ps.iter().min() <= Some(&p) && ps.iter().max() >= Some(&p));
                }
            }
        }

        #[test]
        fn a_directory_agreeing_with_the_majority_never_removes_a_relay_or_flag(
            n in 1usize..5,
            views in arb_views(4),
        ) {
            let mut views = views[..n].to_vec();
            let before = agree(&dirs(n), &views);
            let echo: Vec<Report> = before
                .relays
                .iter()
                .map(|r| Report {
                    fingerprint: r.fingerprint.clone(),
                    address: r.address.clone(),
                    operator_id: r.operator_id.clone(),
                    region: r.region.clone().unwrap_or_default(),
                    flags: r.flags.clone(),
                    uptime: r.uptime,
                    mtbf_secs: r.mtbf_secs,
                    latency_p50_ms: r.latency_p50_ms,
                    latency_p99_ms: r.latency_p99_ms,
                })
                .collect();
            views.push(view(&format!("d{}", n + 1), echo));
            let after = agree(&dirs(n + 1), &views);
            for r in &before.relays {
                let now = after.relays.iter().find(|x| x.fingerprint == r.fingerprint);
                prop_assert!(now.is_some(), "{} was removed", r.fingerprint);
                prop_assert!(r.flags.is_subset(&now.unwrap().flags));
            }
        }

        #[test]
        fn one_directory_of_three_never_adds_a_relay_or_flag_on_its_own(views in arb_views(3)) {
            let a = agree(&DIRS, &views);
            for r in &a.relays {
                let ls = listers(&views, r);
                for d in DIRS {
                    let others: Vec<&Report> =
                        ls.iter().filter(|(dir, _)| *dir != d).map(|(_, l)| *l).collect();
                    prop_assert!(!others.is_empty(), "{} listed by {d} alone", r.fingerprint);
                    for f in &r.flags {
                        prop_assert!(
                            others.iter().any(|l| l.flags.contains(f)),
                            "{f} on {} set by {d} alone", r.fingerprint
                        );
                    }
                }
            }
        }

        #[test]
        fn an_agreed_share_lies_between_the_statements(
            shares in proptest::collection::vec(0u64..=10_000, 0..6),
            n in 1usize..6,
        ) {
            let trusted = dirs(n);
            let names = dirs(6);
            let st: Vec<Stated<'_>> = shares
                .iter()
                .zip(&names)
                .map(|(&s, d)| Stated { directory: d, share_bps: s })
                .collect();
            let a = agreed_share(&trusted, &st);
            let counted: Vec<u64> = st.iter().filter(|s| trusted.iter().any(|t| t == s.directory)).map(|s| s.share_bps).collect();
            prop_assert_eq!(a.share_bps.is_some(), counted.len() > n / 2);
            if let Some(s) = a.share_bps {
                prop_assert!(counted.iter().min() <= Some(&s) && counted.iter().max() >= Some(&s));
            }
        }
    }
}
