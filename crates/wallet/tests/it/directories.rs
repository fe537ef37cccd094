//! The wallet's view of the relays from three real directories (`smpx_testkit::directory`:
//! the real directory on loopback, its probes scripted): a lying minority is ignored, one
//! directory down changes nothing, all down leaves the cached view, and an expired cache
//! leaves the core relays.

use rand::rngs::StdRng;
use rand::SeedableRng;
use smpx_core::rules::choice::Source;
use smpx_testkit::directory::{RelayListing, TestDirectory};
use smpx_testkit::Backend;
use smpx_wallet::directories::{self, Directories, Preferences, ViewSource, VIEW_VALIDITY_SECS};
use std::collections::BTreeMap;

const T0: u64 = 1_800_000_000;
const ROUND: u64 = 600;

fn fingerprints(view: &directories::View) -> Vec<String> {
    let mut f: Vec<String> = view
        .relays()
        .iter()
        .map(|r| r.fingerprint.clone())
        .collect();
    f.sort();
    f
}

/// The uptime the directory at `url` lists for `fingerprint`.
async fn uptime_of(url: &str, fingerprint: &str) -> f64 {
    let listed: Vec<serde_json::Value> = reqwest::get(format!("{url}/v1/relays"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = listed
        .iter()
        .find(|r| r["fingerprint"] == fingerprint)
        .unwrap();
    entry["uptime"].as_f64().unwrap()
}

#[tokio::test]
async fn a_lying_minority_is_ignored_and_outages_fall_back_to_the_cache_then_core_relays() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = |name: &str, op: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        RelayListing::create(&dir, op, &format!("{name}.example"), "eu").unwrap()
    };
    let (a, b, c, extra) = (
        relay("a", "A"),
        relay("b", "B"),
        relay("c", "C"),
        relay("x", "X"),
    );
    let mut dirs = Vec::new();
    for name in ["d1", "d2", "d3"] {
        let d = TestDirectory::start(Backend::Sqlite, name, T0)
            .await
            .unwrap();
        for r in [&a, &b, &c] {
            d.register(r).await.unwrap();
        }
        dirs.push(d);
    }
    // The honest two find c down; the third lies that it is up, and lists a relay of its
    // own that no other directory knows.
    for d in &dirs[..2] {
        d.prober.set(&c.fingerprint(), false, 0);
    }
    dirs[2].register(&extra).await.unwrap();
    for d in &dirs {
        d.probe_rounds(3, ROUND).await.unwrap();
    }
    let now = T0 + 3 * ROUND;
    let urls: Vec<String> = dirs.iter().map(|d| d.url.clone()).collect();
    let cache = tmp.path().join("view.json");
    let client = Directories::new(&urls, Some(cache.clone()));

    let view = client.view(now).await;
    assert_eq!(view.source, ViewSource::Directories);
    assert_eq!(view.answered.len(), 3);
    let agreed = view.agreed.as_ref().unwrap();
    let mut abc = vec![a.fingerprint(), b.fingerprint(), c.fingerprint()];
    abc.sort();
    assert_eq!(fingerprints(&view), abc, "the extra relay is not kept");
    assert_eq!(agreed.dropped.len(), 1);
    assert_eq!(agreed.dropped[0].fingerprint, extra.fingerprint());
    assert_eq!(agreed.dropped[0].listed_by, 1);
    let agreed_c = agreed
        .relays
        .iter()
        .find(|r| r.fingerprint == c.fingerprint())
        .unwrap();
    assert!(
        !agreed_c.has("running"),
        "one directory of three says running"
    );
    assert_eq!(agreed_c.flag_votes.get("running"), Some(&1));
    // The number is the honest directories': the liar's higher uptime is not the median.
    let honest_c = uptime_of(&urls[0], &c.fingerprint()).await;
    assert_eq!(agreed_c.uptime, honest_c);
    let liar_c = uptime_of(&urls[2], &c.fingerprint()).await;
    assert!(liar_c > agreed_c.uptime);

    // The choice never takes c or the extra relay, and its hops are of two operators.
    let none = BTreeMap::new();
    for seed in 0..10 {
        let choice = directories::choose(
            &view,
            &none,
            &Preferences::default(),
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
        assert_eq!(choice.source, Source::Agreed);
        assert_ne!(choice.destination.operator_id, choice.proxy.operator_id);
        for p in [&choice.destination, &choice.proxy] {
            assert!([a.fingerprint(), b.fingerprint()].contains(&p.fingerprint));
        }
        assert!(choice
            .excluded
            .iter()
            .any(|e| e.fingerprint == c.fingerprint()));
    }

    // The liar down: two of three still agree.
    dirs[2].stop().await.unwrap();
    let later = now + 60;
    let view = client.view(later).await;
    assert_eq!(view.source, ViewSource::Directories);
    let mut honest_two = urls[..2].to_vec();
    honest_two.sort();
    assert_eq!(view.answered, honest_two);
    assert_eq!(view.unreachable.len(), 1);
    assert_eq!(view.unreachable[0].directory, urls[2]);
    assert_eq!(fingerprints(&view), abc);

    // All down: the view cached a moment ago, until it expires.
    dirs[0].stop().await.unwrap();
    dirs[1].stop().await.unwrap();
    let view = client.view(later + 3600).await;
    assert_eq!(view.source, ViewSource::Cache);
    assert_eq!(view.fetched_at, Some(later));
    assert_eq!(view.valid_until, Some(later + VIEW_VALIDITY_SECS));
    assert_eq!(view.unreachable.len(), 3);
    assert_eq!(fingerprints(&view), abc);
    let choice = directories::choose(
        &view,
        &none,
        &Preferences::default(),
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    assert_eq!(choice.source, Source::Agreed);

    // A cache is only taken for the directories that agreed on it.
    let other = Directories::new(&urls[..2], Some(cache.clone()));
    let view = other.view(later + 3600).await;
    assert_eq!(view.source, ViewSource::CoreRelays);
    assert!(
        view.notes.iter().any(|n| n.contains("other directories")),
        "{:?}",
        view.notes
    );

    // Expired: the core relays.
    let view = client.view(later + VIEW_VALIDITY_SECS).await;
    assert_eq!(view.source, ViewSource::CoreRelays);
    assert!(view.agreed.is_none());
    assert!(
        view.notes.iter().any(|n| n.contains("expired")),
        "{:?}",
        view.notes
    );
    let core = [
        directories::core_relay(&a.address.to_string()).unwrap(),
        directories::core_relay(&format!("core-b={}", b.address)).unwrap(),
    ];
    assert_eq!(core[0].operator_id, "a.example");
    assert_eq!(core[1].operator_id, "core-b");
    let prefs = Preferences {
        core_relays: &core,
        ..Preferences::default()
    };
    let choice = directories::choose(&view, &none, &prefs, &mut StdRng::seed_from_u64(2)).unwrap();
    assert_eq!(choice.source, Source::CoreRelays);
    assert!(choice.distinct_operators);
    assert!(directories::choose(
        &view,
        &none,
        &Preferences::default(),
        &mut StdRng::seed_from_u64(2)
    )
    .is_err());
    assert!(directories::core_relay("not an address").is_err());
}
