//! Rule: which relays one conversation uses — the destination relay (where the recipient's
//! queue lives), the sending proxy (the relay the sender connects to, which forwards to the
//! destination so that it never sees the sender's IP) and a fallback destination — from
//! what the directories agree on ([`consensus`](super::consensus)). (DESIGN.md §3: "pick
//! relays by latency and score with **different operators** for the hops of one
//! conversation"; issue 14: "falling back to configured core relays".)
//!
//! ```text
//! eligible    = the agreed relays flagged Running
//! latency_ms  = the client's own measured round trip to the relay, else the directories'
//!               agreed p50, else unmeasured (the client's own is what it will get; the
//!               directories' is from their network position)
//! score       = 0.40 × 100 / (100 + latency_ms)        0 when unmeasured
//!             + 0.30 × uptime                          weighted fractional uptime, [0, 1]
//!             + 0.10 × Stable + 0.10 × Fast            1 when the flag holds
//!             + 0.10 × (region = the preferred one)    only with a preference
//! ranking     = by score, highest first, ties by fingerprint
//! destination = uniformly at random among the first k of the ranking
//! proxy       = uniformly at random among the first k of the ranking of another operator
//!               than the destination's
//! fallback    = the best of a third operator, else the destination operator's next best
//!               relay; never the proxy's operator, so it can replace the destination
//! fewer than two operators eligible → the configured core relays (destination at random,
//!               the proxy of another operator when one is configured), and the choice says so
//! ```
//!
//! The 100 ms in the latency term is the latency that guarantees the Fast flag
//! ([`LATENCY_GUARANTEES_FAST_MS`]): a relay that fast gets half the term, and each
//! doubling beyond costs less. Drawing among the top `k` rather than taking the best keeps
//! every client from crowding onto the same relay and makes a client's choice less
//! predictable to a relay that wants to be chosen; the randomness comes in as an [`Rng`], so
//! with a seeded one the choice is reproducible. The rule reads no clock.

use super::consensus::{sane, AgreedRelay};
use super::measure::LATENCY_GUARANTEES_FAST_MS;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many of the best relays a role is drawn among, unless the caller says otherwise.
pub const DEFAULT_TOP_K: usize = 3;

const W_LATENCY: f64 = 0.40;
const W_UPTIME: f64 = 0.30;
const W_FLAG: f64 = 0.10;
const W_REGION: f64 = 0.10;

/// A relay the client is configured with, used when the directories give too little.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreRelay {
    pub fingerprint: String,
    /// `smpx://fingerprint@host:port`.
    pub address: String,
    pub operator_id: String,
}

/// What a choice is made from.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The agreed view (or a cached one).
    pub relays: &'a [AgreedRelay],
    /// The client's own measured round trips, milliseconds, by fingerprint.
    pub own_rtt_ms: &'a BTreeMap<String, u32>,
    /// A region to prefer (a bonus, not a filter).
    pub region: Option<&'a str>,
    pub core_relays: &'a [CoreRelay],
    /// How many of the best a role is drawn among (at least 1).
    pub top_k: usize,
}

/// Where a relay's latency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencySource {
    /// The client measured it.
    Own,
    /// The directories' agreed median.
    Directories,
    Unmeasured,
}

/// A relay's score and each weighted term of it (they add up to `total`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub latency_ms: Option<u32>,
    pub latency_source: LatencySource,
    pub latency: f64,
    pub uptime: f64,
    pub stable: f64,
    pub fast: f64,
    pub region: f64,
    pub total: f64,
}

/// A relay as chosen for a role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    pub fingerprint: String,
    pub address: String,
    pub operator_id: String,
    /// `None` for a core relay (the directories did not vouch for it).
    pub score: Option<Score>,
    /// Its place (from 1) in the ranking of every eligible relay (a core relay: in the
    /// configured list).
    pub rank: usize,
    /// How many candidates it was drawn among (the first `k` of its role's ranking: every
    /// eligible relay for the destination, those of another operator for the proxy).
    pub drawn_among: usize,
}

/// Where the choice comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The directories' agreed view.
    Agreed,
    /// The configured core relays: the agreed view had fewer than two operators running.
    CoreRelays,
}

/// A relay left out of the choice, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub fingerprint: String,
    pub operator_id: String,
    pub reason: String,
}

/// The relays for one conversation, with the reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub source: Source,
    pub destination: Pick,
    pub proxy: Pick,
    /// A relay to move the queue to if the destination fails; of another operator than the
    /// proxy.
    pub fallback: Option<Pick>,
    /// Whether the proxy's and the destination's operators differ (always, from the agreed
    /// view; core relays of one operator cannot give it).
    pub distinct_operators: bool,
    /// Running relays in the agreed view, and their operators.
    pub eligible: usize,
    pub operators: usize,
    /// The agreed relays left out (not Running).
    pub excluded: Vec<Excluded>,
    /// What a user should know about this choice.
    pub notes: Vec<String>,
}

/// Why no choice can be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error(
        "fewer than two operators run relays the directories agree on, and no core relays are configured"
    )]
    NoRelays,
}

/// The score of `r` under `req`.
pub fn score(r: &AgreedRelay, req: &Request<'_>) -> Score {
    let (latency_ms, latency_source) = match req.own_rtt_ms.get(&r.fingerprint) {
        Some(&ms) => (Some(ms), LatencySource::Own),
        None => match r.latency_p50_ms {
            Some(ms) => (Some(ms), LatencySource::Directories),
            None => (None, LatencySource::Unmeasured),
        },
    };
    let reference = f64::from(LATENCY_GUARANTEES_FAST_MS);
    let latency = latency_ms.map_or(0.0, |ms| {
        W_LATENCY * reference / (reference + f64::from(ms))
    });
    let uptime = W_UPTIME * sane(r.uptime, 1.0);
    let flag = |name: &str| if r.has(name) { W_FLAG } else { 0.0 };
    let (stable, fast) = (flag("stable"), flag("fast"));
    let region = match req.region {
        Some(want) if r.region.as_deref() == Some(want) => W_REGION,
        _ => 0.0,
    };
    Score {
        latency_ms,
        latency_source,
        latency,
        uptime,
        stable,
        fast,
        region,
        total: latency + uptime + stable + fast + region,
    }
}

/// The relays for one conversation (see the module's rule).
pub fn choose<R: Rng + ?Sized>(req: &Request<'_>, rng: &mut R) -> Result<Choice, ChoiceError> {
    let top_k = req.top_k.max(1);
    let mut excluded = Vec::new();
    let mut ranked: Vec<(Score, &AgreedRelay)> = Vec::new();
    for r in req.relays {
        if r.has("running") {
            ranked.push((score(r, req), r));
        } else {
            let votes = r.flag_votes.get("running").copied().unwrap_or(0);
            excluded.push(Excluded {
                fingerprint: r.fingerprint.clone(),
                operator_id: r.operator_id.clone(),
                reason: format!(
                    "not running: {votes} of the {} directories listing it say running",
                    r.listed_by
                ),
            });
        }
    }
    ranked.sort_by(|a, b| {
        b.0.total
            .total_cmp(&a.0.total)
            .then_with(|| a.1.fingerprint.cmp(&b.1.fingerprint))
    });
    let operators: BTreeSet<&str> = ranked.iter().map(|(_, r)| r.operator_id.as_str()).collect();
    let mut notes = Vec::new();
    if let Some(want) = req.region {
        if !ranked
            .iter()
            .any(|(_, r)| r.region.as_deref() == Some(want))
        {
            notes.push(format!("no running relay is in region {want}"));
        }
    }
    let (source, destination, proxy, fallback) = if operators.len() < 2 {
        notes.push(format!(
            "{} operator(s) run relays the directories agree on, fewer than two: using the \
             configured core relays, which the directories did not vouch for",
            operators.len()
        ));
        let (destination, proxy, fallback, more) = from_core(req.core_relays, rng)?;
        notes.extend(more);
        (Source::CoreRelays, destination, proxy, fallback)
    } else {
        let (destination, proxy, fallback) = from_agreed(&ranked, top_k, rng);
        if fallback.is_none() {
            notes.push(
                "no fallback: no other relay runs that is not of the proxy's operator".to_string(),
            );
        }
        (Source::Agreed, destination, proxy, fallback)
    };
    Ok(Choice {
        source,
        distinct_operators: destination.operator_id != proxy.operator_id,
        destination,
        proxy,
        fallback,
        eligible: ranked.len(),
        operators: operators.len(),
        excluded,
        notes,
    })
}

/// Destination, proxy and fallback from the ranking (at least two operators in it).
fn from_agreed<R: Rng + ?Sized>(
    ranked: &[(Score, &AgreedRelay)],
    top_k: usize,
    rng: &mut R,
) -> (Pick, Pick, Option<Pick>) {
    let pick = |i: usize, drawn_among: usize| {
        let (s, r) = &ranked[i];
        Pick {
            fingerprint: r.fingerprint.clone(),
            address: r.address.clone(),
            operator_id: r.operator_id.clone(),
            score: Some(*s),
            rank: i + 1,
            drawn_among,
        }
    };
    let mut draw = |candidates: Vec<usize>| {
        let among = candidates.len().min(top_k);
        pick(candidates[rng.gen_range(0..among)], among)
    };
    let destination = draw((0..ranked.len()).collect());
    let proxy = draw(
        (0..ranked.len())
            .filter(|&i| ranked[i].1.operator_id != destination.operator_id)
            .collect(),
    );
    let fallback = ranked
        .iter()
        .position(|(_, r)| {
            r.operator_id != destination.operator_id && r.operator_id != proxy.operator_id
        })
        .or_else(|| {
            ranked.iter().position(|(_, r)| {
                r.operator_id == destination.operator_id && r.fingerprint != destination.fingerprint
            })
        })
        .map(|i| pick(i, 1));
    (destination, proxy, fallback)
}

type CorePicks = (Pick, Pick, Option<Pick>, Vec<String>);

/// The destination at random among the core relays, the proxy at random among those of
/// another operator (else of any other relay, else the same one), the fallback the first
/// configured of neither, preferring another operator than the proxy's.
fn from_core<R: Rng + ?Sized>(core: &[CoreRelay], rng: &mut R) -> Result<CorePicks, ChoiceError> {
    if core.is_empty() {
        return Err(ChoiceError::NoRelays);
    }
    let pick = |i: usize, drawn_among: usize| Pick {
        fingerprint: core[i].fingerprint.clone(),
        address: core[i].address.clone(),
        operator_id: core[i].operator_id.clone(),
        score: None,
        rank: i + 1,
        drawn_among,
    };
    let mut notes = Vec::new();
    let d = rng.gen_range(0..core.len());
    let other_operator: Vec<usize> = (0..core.len())
        .filter(|&i| core[i].operator_id != core[d].operator_id)
        .collect();
    let other_relay: Vec<usize> = (0..core.len()).filter(|&i| i != d).collect();
    let pool = if !other_operator.is_empty() {
        other_operator
    } else if !other_relay.is_empty() {
        notes.push(format!(
            "the core relays are all of operator {}: the proxy and the destination share it",
            core[d].operator_id
        ));
        other_relay
    } else {
        notes.push("only one core relay: it is both the proxy and the destination".to_string());
        vec![d]
    };
    let p = pool[rng.gen_range(0..pool.len())];
    let rest = || (0..core.len()).filter(|&i| i != d && i != p);
    let f = rest()
        .find(|&i| core[i].operator_id != core[p].operator_id)
        .or_else(|| rest().next());
    Ok((
        pick(d, core.len()),
        pick(p, pool.len()),
        f.map(|i| pick(i, 1)),
        notes,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::float_cmp)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn relay(fp: &str, op: &str, flags: &[&str], uptime: f64, p50: Option<u32>) -> AgreedRelay {
        AgreedRelay {
            fingerprint: fp.into(),
            address: format!("smpx://{fp}@{fp}.example:5223"),
            operator_id: op.into(),
            region: Some("eu".into()),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            uptime,
            mtbf_secs: 86_400.0,
            latency_p50_ms: p50,
            latency_p99_ms: p50,
            listed_by: 3,
            flag_votes: flags.iter().map(|f| (f.to_string(), 3)).collect(),
        }
    }

    fn core(fp: &str, op: &str) -> CoreRelay {
        CoreRelay {
            fingerprint: fp.into(),
            address: format!("smpx://{fp}@core.example:5223"),
            operator_id: op.into(),
        }
    }

    fn request<'a>(
        relays: &'a [AgreedRelay],
        own: &'a BTreeMap<String, u32>,
        core_relays: &'a [CoreRelay],
        top_k: usize,
    ) -> Request<'a> {
        Request {
            relays,
            own_rtt_ms: own,
            region: None,
            core_relays,
            top_k,
        }
    }

    fn seeded(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    const R: &[&str] = &["running"];

    #[test]
    fn scores_by_hand() {
        let own = BTreeMap::new();
        let r = relay("a", "A", &["running", "stable", "fast"], 0.5, Some(100));
        let s = score(&r, &request(&[], &own, &[], 1));
        assert_eq!(s.latency_source, LatencySource::Directories);
        assert!((s.latency - 0.20).abs() < 1e-12);
        assert!((s.uptime - 0.15).abs() < 1e-12);
        assert_eq!((s.stable, s.fast, s.region), (0.10, 0.10, 0.0));
        assert!((s.total - 0.55).abs() < 1e-12);
        let mut req = request(&[], &own, &[], 1);
        req.region = Some("eu");
        assert_eq!(score(&r, &req).region, 0.10);
        let unmeasured = relay("b", "B", R, 1.0, None);
        let s = score(&unmeasured, &req);
        assert_eq!(
            (s.latency, s.latency_source),
            (0.0, LatencySource::Unmeasured)
        );
    }

    #[test]
    fn the_clients_own_round_trip_wins_over_the_directories() {
        let relays = [
            relay("near-for-dirs", "A", R, 0.9, Some(10)),
            relay("near-for-me", "B", R, 0.9, Some(300)),
            relay("third", "C", R, 0.9, Some(150)),
        ];
        let own: BTreeMap<String, u32> = [
            ("near-for-dirs".to_string(), 500),
            ("near-for-me".to_string(), 15),
        ]
        .into();
        let c = choose(&request(&relays, &own, &[], 1), &mut seeded(0)).unwrap();
        assert_eq!(c.destination.fingerprint, "near-for-me");
        let s = c.destination.score.unwrap();
        assert_eq!(
            (s.latency_ms, s.latency_source),
            (Some(15), LatencySource::Own)
        );
        // The proxy is the best of another operator: "third" (150 ms) beats 500 ms.
        assert_eq!(c.proxy.fingerprint, "third");
        assert_eq!(c.fallback.unwrap().fingerprint, "near-for-dirs");
    }

    #[test]
    fn the_proxy_is_of_another_operator_even_when_one_operator_has_the_best_relays() {
        let relays = [
            relay("a1", "A", R, 1.0, Some(5)),
            relay("a2", "A", R, 1.0, Some(6)),
            relay("a3", "A", R, 1.0, Some(7)),
            relay("b1", "B", R, 0.5, Some(400)),
        ];
        let own = BTreeMap::new();
        for seed in 0..20 {
            let c = choose(&request(&relays, &own, &[], 3), &mut seeded(seed)).unwrap();
            assert_eq!(c.source, Source::Agreed);
            assert!(c.distinct_operators);
            assert_ne!(c.destination.operator_id, c.proxy.operator_id);
            // The fallback replaces the destination, so it is never the proxy's operator.
            if let Some(f) = &c.fallback {
                assert_ne!(f.operator_id, c.proxy.operator_id);
                assert_ne!(f.fingerprint, c.destination.fingerprint);
            }
        }
    }

    #[test]
    fn relays_not_running_are_excluded_and_said_why() {
        let mut down = relay("down", "C", &["stable"], 1.0, Some(1));
        down.flag_votes.insert("running".into(), 1);
        let relays = [
            down,
            relay("a", "A", R, 0.9, Some(50)),
            relay("b", "B", R, 0.9, Some(60)),
        ];
        let own = BTreeMap::new();
        let c = choose(&request(&relays, &own, &[], 3), &mut seeded(1)).unwrap();
        assert_eq!((c.eligible, c.operators), (2, 2));
        assert_eq!(c.excluded.len(), 1);
        assert_eq!(c.excluded[0].fingerprint, "down");
        assert_eq!(
            c.excluded[0].reason,
            "not running: 1 of the 3 directories listing it say running"
        );
        let chosen = [&c.destination.fingerprint, &c.proxy.fingerprint];
        assert!(!chosen.contains(&&"down".to_string()));
        assert!(c.fallback.is_none());
        assert!(c.notes.iter().any(|n| n.starts_with("no fallback")));
    }

    #[test]
    fn with_fewer_than_two_operators_it_falls_back_to_core_relays_and_says_so() {
        let relays = [
            relay("a1", "A", R, 1.0, Some(5)),
            relay("a2", "A", R, 1.0, Some(5)),
            relay("b1", "B", &[], 1.0, Some(5)),
        ];
        let own = BTreeMap::new();
        let cores = [core("c1", "core-1"), core("c2", "core-2")];
        let c = choose(&request(&relays, &own, &cores, 3), &mut seeded(2)).unwrap();
        assert_eq!(c.source, Source::CoreRelays);
        assert!(c.distinct_operators);
        assert!(c.destination.score.is_none());
        let mut both = [
            c.destination.fingerprint.clone(),
            c.proxy.fingerprint.clone(),
        ];
        both.sort();
        assert_eq!(both, ["c1", "c2"]);
        assert!(c.notes.iter().any(|n| n.contains("core relays")));
        assert!(c.fallback.is_none());

        // One core operator: the choice says the hops share it.
        let cores = [core("c1", "core"), core("c2", "core"), core("c3", "core")];
        let c = choose(&request(&relays, &own, &cores, 3), &mut seeded(2)).unwrap();
        assert!(!c.distinct_operators);
        assert_ne!(c.destination.fingerprint, c.proxy.fingerprint);
        assert!(c.fallback.is_some());
        assert!(c.notes.iter().any(|n| n.contains("all of operator core")));
        // One core relay: both roles, said so.
        let c = choose(&request(&relays, &own, &cores[..1], 3), &mut seeded(2)).unwrap();
        assert_eq!(c.destination, c.proxy);
        assert!(c.notes.iter().any(|n| n.starts_with("only one core relay")));
        // None configured: a typed error.
        assert_eq!(
            choose(&request(&relays, &own, &[], 3), &mut seeded(2)),
            Err(ChoiceError::NoRelays)
        );
    }

    #[test]
    fn a_region_preference_is_a_bonus_and_a_missing_region_is_noted() {
        let mut us = relay("us", "B", R, 0.9, Some(50));
        us.region = Some("us".into());
        let relays = [relay("eu", "A", R, 0.9, Some(50)), us];
        let own = BTreeMap::new();
        let mut req = request(&relays, &own, &[], 1);
        req.region = Some("us");
        let c = choose(&req, &mut seeded(3)).unwrap();
        assert_eq!(c.destination.fingerprint, "us");
        req.region = Some("ap");
        let c = choose(&req, &mut seeded(3)).unwrap();
        assert_eq!(c.destination.fingerprint, "eu");
        assert!(c
            .notes
            .iter()
            .any(|n| n == "no running relay is in region ap"));
    }

    #[test]
    fn clients_spread_over_the_top_k() {
        let relays: Vec<AgreedRelay> = (0..6)
            .map(|i| relay(&format!("r{i}"), &format!("op{i}"), R, 0.9, Some(50 + i)))
            .collect();
        let own = BTreeMap::new();
        let picked: BTreeSet<String> = (0..50)
            .map(|seed| {
                let c = choose(&request(&relays, &own, &[], 3), &mut seeded(seed)).unwrap();
                assert!(c.destination.rank <= 3 && c.destination.drawn_among == 3);
                c.destination.fingerprint
            })
            .collect();
        assert_eq!(picked, ["r0", "r1", "r2"].map(String::from).into());
        // k = 1 is the best, whatever the seed.
        for seed in 0..5 {
            let c = choose(&request(&relays, &own, &[], 1), &mut seeded(seed)).unwrap();
            assert_eq!(
                (
                    c.destination.fingerprint.as_str(),
                    c.proxy.fingerprint.as_str()
                ),
                ("r0", "r1")
            );
        }
    }

    fn arb_relays() -> impl Strategy<Value = Vec<AgreedRelay>> {
        proptest::collection::vec(
            (
                0u8..4,
                any::<bool>(),
                any::<bool>(),
                0.0f64..=1.0,
                proptest::option::of(1u32..2000),
            ),
            0..12,
        )
        .prop_map(|rs| {
            rs.into_iter()
                .enumerate()
                .map(|(i, (op, running, stable, up, p50))| {
                    let mut flags = vec![];
                    if running {
                        flags.push("running");
                    }
                    if stable {
                        flags.push("stable");
                    }
                    relay(&format!("r{i}"), &format!("op{op}"), &flags, up, p50)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn hops_never_share_an_operator_and_are_running_unless_from_core(
            relays in arb_relays(),
            own in proptest::collection::btree_map("r[0-9]", 1u32..2000, 0..4),
            cores in proptest::collection::vec((0u8..3).prop_map(|o| format!("core-{o}")), 0..4),
            top_k in 0usize..5,
            seed in any::<u64>(),
        ) {
            let cores: Vec<CoreRelay> =
                cores.iter().enumerate().map(|(i, op)| core(&format!("c{i}"), op)).collect();
            let req = request(&relays, &own, &cores, top_k);
            let running_ops: BTreeSet<&str> = relays
                .iter()
                .filter(|r| r.has("running"))
                .map(|r| r.operator_id.as_str())
                .collect();
            match choose(&req, &mut seeded(seed)) {
                Err(ChoiceError::NoRelays) => {
                    prop_assert!(running_ops.len() < 2 && cores.is_empty());
                }
                Ok(c) => {
                    // With a seed, the same choice every time.
                    prop_assert_eq!(&choose(&req, &mut seeded(seed)).unwrap(), &c);
                    let by_fp = |p: &Pick| relays.iter().find(|r| r.fingerprint == p.fingerprint);
                    match c.source {
                        Source::Agreed => {
                            prop_assert!(running_ops.len() >= 2);
                            prop_assert!(c.distinct_operators);
                            prop_assert_ne!(&c.destination.operator_id, &c.proxy.operator_id);
                            for p in [Some(&c.destination), Some(&c.proxy), c.fallback.as_ref()]
                                .into_iter()
                                .flatten()
                            {
                                prop_assert!(by_fp(p).unwrap().has("running"));
                                prop_assert!(p.rank >= 1 && p.drawn_among <= top_k.max(1));
                            }
                            if let Some(f) = &c.fallback {
                                prop_assert_ne!(&f.operator_id, &c.proxy.operator_id);
                                prop_assert_ne!(&f.fingerprint, &c.destination.fingerprint);
                            }
                        }
                        Source::CoreRelays => {
                            prop_assert!(running_ops.len() < 2);
                            prop_assert!(c.notes.iter().any(|n| n.contains("core relays")));
                            let distinct_cores: BTreeSet<&str> =
                                cores.iter().map(|c| c.operator_id.as_str()).collect();
                            prop_assert_eq!(c.distinct_operators, distinct_cores.len() >= 2);
                            for p in [&c.destination, &c.proxy] {
                                prop_assert!(cores.iter().any(|k| k.fingerprint == p.fingerprint));
                                prop_assert!(p.score.is_none());
                            }
                        }
                    }
                    prop_assert_eq!(c.eligible + c.excluded.len(), relays.len());
                }
            }
        }
    }
}
