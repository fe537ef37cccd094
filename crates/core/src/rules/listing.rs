//! Rule: which of a directory's relays count toward their operator's weight, and which a
//! client picks. (Issue 13: "At most N relays per IPv4 /24 or IPv6 /48 count toward weight
//! (the excess is listed and marked, not silently dropped)"; "k Running relays of distinct
//! operators in region X".)
//!
//! **Subnets.** A relay's subnet is its IPv4 address's /24 or its IPv6 address's /48 — the
//! blocks one hosting customer usually gets, so a Sybil with many addresses in one rack
//! counts as at most `limit` relays. A relay named by a DNS name is its own group under that
//! name (the directory does not resolve names it is given). Within a subnet the relays that
//! registered first count (ties by fingerprint), so a newcomer cannot push out an incumbent.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// Default number of relays per subnet that count.
pub const DEFAULT_SUBNET_LIMIT: usize = 2;

/// The subnet a relay host belongs to: `v4:a.b.c.0/24`, `v6:xxxx:xxxx:xxxx::/48`, or
/// `dns:<name>`.
pub fn subnet_of(host: &str) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            let o = ip.octets();
            format!("v4:{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("v6:{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => format!("dns:{}", bare.to_ascii_lowercase()),
    }
}

/// One relay as the subnet rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed<'a> {
    pub fingerprint: &'a str,
    pub subnet: &'a str,
    pub registered_at: u64,
}

/// Whether a relay counts toward weight, and why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counted {
    pub counted: bool,
    /// Why not (`subnet_limit`), when not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// For each relay (in the order given), whether it counts: the first `limit` of each subnet
/// by registration time, then fingerprint.
pub fn count_by_subnet(relays: &[Placed<'_>], limit: usize) -> Vec<Counted> {
    let mut order: Vec<usize> = (0..relays.len()).collect();
    order.sort_by(|&a, &b| {
        (relays[a].registered_at, relays[a].fingerprint)
            .cmp(&(relays[b].registered_at, relays[b].fingerprint))
    });
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = vec![
        Counted {
            counted: true,
            reason: None
        };
        relays.len()
    ];
    for i in order {
        let n = seen.entry(relays[i].subnet).or_insert(0);
        *n += 1;
        if *n > limit {
            out[i] = Counted {
                counted: false,
                reason: Some(format!(
                    "subnet_limit: more than {limit} relays in {}",
                    relays[i].subnet
                )),
            };
        }
    }
    out
}

/// What the client's pick sees of a relay.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub fingerprint: &'a str,
    pub operator_id: &'a str,
    pub region: &'a str,
    pub running: bool,
    /// Median latency, when measured.
    pub latency_p50_ms: Option<u32>,
    pub wfu: f64,
}

/// Up to `k` Running relays in `region`, of pairwise distinct operators: for each operator
/// its best relay (lowest median latency, then highest uptime, then fingerprint), and the
/// best `k` of those in that order. Fewer than `k` when there are not enough operators.
pub fn pick_distinct_operators<'a>(
    relays: &[Candidate<'a>],
    region: &str,
    k: usize,
) -> Vec<&'a str> {
    let key = |c: &Candidate<'a>| (c.latency_p50_ms.unwrap_or(u32::MAX), -c.wfu, c.fingerprint);
    let mut best: HashMap<&str, &Candidate<'a>> = HashMap::new();
    for c in relays.iter().filter(|c| c.running && c.region == region) {
        let slot = best.entry(c.operator_id).or_insert(c);
        if key(c).partial_cmp(&key(slot)) == Some(std::cmp::Ordering::Less) {
            *slot = c;
        }
    }
    let mut chosen: Vec<&Candidate<'a>> = best.into_values().collect();
    chosen.sort_by(|a, b| {
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut operators = HashSet::new();
    chosen
        .into_iter()
        .filter(|c| operators.insert(c.operator_id))
        .take(k)
        .map(|c| c.fingerprint)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_slash_24_and_slash_48() {
        assert_eq!(subnet_of("192.0.2.77"), "v4:192.0.2.0/24");
        assert_eq!(subnet_of("[2001:db8:aa:bb::1]"), "v6:2001:db8:aa::/48");
        assert_eq!(subnet_of("2001:db8:aa:cc::9"), "v6:2001:db8:aa::/48");
        assert_eq!(subnet_of("Relay.Example"), "dns:relay.example");
    }

    #[test]
    fn the_excess_of_a_subnet_is_marked_oldest_first() {
        let p = |f: &'static str, s: &'static str, at| Placed {
            fingerprint: f,
            subnet: s,
            registered_at: at,
        };
        let relays = [
            p("d", "a", 4),
            p("a", "a", 1),
            p("c", "b", 1),
            p("b", "a", 1),
        ];
        let c = count_by_subnet(&relays, 2);
        let counted: Vec<bool> = c.iter().map(|c| c.counted).collect();
        // In subnet a: "a" and "b" (registered at 1) count, "d" (at 4) does not.
        assert_eq!(counted, vec![false, true, true, true]);
        assert!(c[0].reason.as_deref().unwrap().starts_with("subnet_limit"));
        assert!(count_by_subnet(&relays, 0).iter().all(|c| !c.counted));
    }

    #[test]
    fn picks_are_running_in_region_and_of_distinct_operators() {
        let c = |f, op, region, running, lat| Candidate {
            fingerprint: f,
            operator_id: op,
            region,
            running,
            latency_p50_ms: lat,
            wfu: 0.9,
        };
        let relays = [
            c("a1", "A", "eu", true, Some(50)),
            c("a2", "A", "eu", true, Some(10)),
            c("b1", "B", "eu", true, Some(30)),
            c("c1", "C", "eu", false, Some(1)),
            c("d1", "D", "us", true, Some(1)),
            c("e1", "E", "eu", true, None),
        ];
        assert_eq!(
            pick_distinct_operators(&relays, "eu", 3),
            vec!["a2", "b1", "e1"]
        );
        assert_eq!(pick_distinct_operators(&relays, "eu", 1), vec!["a2"]);
        assert!(pick_distinct_operators(&relays, "ap", 3).is_empty());
    }
}
