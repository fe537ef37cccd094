//! Queries answered from the held snapshot: the pick of Running relays of distinct
//! operators in a region, and the snapshot following every write through the directory.

use crate::support::{code, Dir, Relay};
use serde_json::Value;
use smpx_testkit::{both, Backend};

both!(
    a_pick_is_running_relays_of_distinct_operators_in_the_region,
    a_pick_with_a_bad_count_or_no_region_is_refused,
    reads_follow_writes_and_the_clock,
);

fn fingerprints(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_pick_is_running_relays_of_distinct_operators_in_the_region(b: Backend) {
    let d = Dir::start(b).await;
    // op-a has two relays in eu (the faster one is its pick), op-b and op-c one each, op-d
    // one that is down, op-e one in another region.
    let a_slow = Relay::new("op-a", 1, "10.1.0.1");
    let a_fast = Relay::new("op-a", 1, "10.2.0.1");
    let b1 = Relay::new("op-b", 2, "10.3.0.1");
    let c1 = Relay::new("op-c", 3, "10.4.0.1");
    let d1 = Relay::new("op-d", 4, "10.5.0.1");
    let e1 = Relay::new("op-e", 5, "10.6.0.1");
    let regions = ["eu", "eu", "eu", "eu", "eu", "us"];
    for (r, region) in [&a_slow, &a_fast, &b1, &c1, &d1, &e1]
        .into_iter()
        .zip(regions)
    {
        let (s, v) = d.register_in(r, region).await;
        assert_eq!(s, 200, "{v}");
    }
    for (r, up, ms) in [
        (&a_slow, true, 50),
        (&a_fast, true, 5),
        (&b1, true, 30),
        (&c1, true, 40),
        (&d1, false, 0),
        (&e1, true, 1),
    ] {
        d.prober.set(&r.fingerprint(), up, ms);
    }
    d.probe_round().await;

    let (s, v) = d.get("/v1/relays/pick?region=eu&count=3").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        fingerprints(&v),
        [a_fast.fingerprint(), b1.fingerprint(), c1.fingerprint()],
        "best first, one per operator: {v}"
    );
    // The answer is the relays as `/v1/relays` shows them.
    let (_, listed) = d.get(&format!("/v1/relays/{}", b1.fingerprint())).await;
    assert_eq!(v[1], listed["relay"]);
    // Default count 3; more than there are operators running gives what there is.
    let (_, dflt) = d.get("/v1/relays/pick?region=eu").await;
    assert_eq!(fingerprints(&dflt), fingerprints(&v));
    let (_, all) = d.get("/v1/relays/pick?region=eu&count=10").await;
    assert_eq!(all.as_array().unwrap().len(), 3, "op-d is down: {all}");
    let (_, us) = d.get("/v1/relays/pick?region=us&count=3").await;
    assert_eq!(fingerprints(&us), [e1.fingerprint()]);
    let (s, none) = d.get("/v1/relays/pick?region=nowhere").await;
    assert_eq!((s, none), (200, serde_json::json!([])));
}

async fn a_pick_with_a_bad_count_or_no_region_is_refused(b: Backend) {
    let d = Dir::start(b).await;
    for q in [
        "region=eu&count=0",
        "region=eu&count=17",
        "region=eu&count=x",
        "count=3",
        "region=eu&extra=1",
    ] {
        let (s, v) = d.get(&format!("/v1/relays/pick?{q}")).await;
        assert_eq!((s, code(&v)), (400, "invalid_request"), "{q}: {v}");
    }
    let (_, doc) = d.get("/openapi.json").await;
    assert!(doc["paths"]["/v1/relays/pick"]["get"].is_object(), "{doc}");
}

async fn reads_follow_writes_and_the_clock(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    let (_, v) = d.get("/v1/relays").await;
    assert_eq!(v[0]["status"], "unprobed", "{v}");
    // A probe round through the directory is seen at once.
    d.probe_round().await;
    let (_, v) = d.get("/v1/relays").await;
    assert_eq!(v[0]["status"], "running", "{v}");
    // A heartbeat too.
    let (s, hb) = d
        .post(
            &format!("/v1/relays/{}/heartbeat", r.fingerprint()),
            &r.heartbeat(1, d.clock_now()),
        )
        .await;
    assert_eq!(s, 200, "{hb}");
    let (_, v) = d.get("/v1/relays").await;
    assert_eq!(v[0]["last_heartbeat_at"], d.clock_now(), "{v}");
    // Within a probe interval with no writes the held snapshot is served (its instant is
    // published as the thresholds' `evaluated_at`); past it, the relays have aged.
    let at = d.clock_now();
    d.clock.advance(599);
    let (_, t) = d.get("/v1/thresholds").await;
    assert_eq!(t["evaluated_at"], at, "{t}");
    d.clock.advance(1);
    let (_, t) = d.get("/v1/thresholds").await;
    assert_eq!(t["evaluated_at"], at + 600, "{t}");
    let (_, v) = d.get("/v1/relays").await;
    assert_eq!(v[0]["age_secs"], 600, "{v}");
    // A withdrawal removes the relay from every read.
    let (s, w) = d
        .post(
            &format!("/v1/relays/{}/withdraw", r.fingerprint()),
            &r.withdrawal(d.clock_now()),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    let (_, v) = d.get("/v1/relays").await;
    assert_eq!(v, serde_json::json!([]));
    let (_, p) = d.get("/v1/relays/pick?region=eu").await;
    assert_eq!(p, serde_json::json!([]));
    let (_, op) = d.get("/v1/operators/op-1").await;
    assert_eq!(op["relays"], serde_json::json!([]), "{op}");
}
