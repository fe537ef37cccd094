//! The transparency log against the real service, on both backends, checked the way a
//! client checks it: with nothing but `smpx_core::tlog` and the directory's statement key.

use crate::support::{code, Dir, Relay};
use serde_json::Value;
use smpx_core::tlog::merkle::leaf_hash;
use smpx_core::tlog::{Checkpoint, Hash, KeyType, VerifierKey};
use smpx_testkit::{both, Backend};

both!(
    every_kind_is_logged_and_proven,
    out_of_range_positions_are_typed,
    concurrent_registrations_take_dense_distinct_indices,
    a_restart_keeps_the_log_and_the_next_checkpoint_extends_it,
);

/// The log's verifier key as a client derives it: the origin and the statement key it
/// already pins.
fn log_key(d: &Dir) -> (String, VerifierKey) {
    let public = d.state.statement_key().0;
    let origin = format!("test-directory/{}", hex::encode(&public[..8]));
    assert_eq!(d.state.log().origin(), origin);
    let key = VerifierKey::new(&origin, KeyType::Ed25519, public).unwrap();
    assert_eq!(key, d.state.log().verifier_key());
    (origin, key)
}

/// `GET /v1/log/checkpoint`, opened with the log's key.
async fn checkpoint(d: &Dir) -> (Checkpoint, String) {
    let r = d
        .http
        .get(format!("{}/v1/log/checkpoint", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    let (origin, key) = log_key(d);
    let (c, _) = Checkpoint::open(text.as_bytes(), &origin, &key).unwrap();
    (c, text)
}

fn hashes(v: &Value) -> Vec<Hash> {
    v["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

async fn entries(d: &Dir, start: u64, end: u64) -> Vec<Value> {
    let (s, v) = d
        .get(&format!("/v1/log/entries?start={start}&end={end}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

/// The leaf a client computes from an entry it was served.
fn leaf_of(entry: &Value) -> Hash {
    let data = format!(
        "{}\n{}",
        entry["kind"].as_str().unwrap(),
        entry["body"].as_str().unwrap()
    );
    let leaf = leaf_hash(data.as_bytes());
    assert_eq!(entry["leaf_hash"], hex::encode(leaf));
    leaf
}

/// Checks every entry below `c.size()` is included in `c`.
async fn check_all_included(d: &Dir, c: &Checkpoint) -> Vec<Value> {
    let all = entries(d, 0, c.size()).await;
    assert_eq!(all.len() as u64, c.size());
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["index"], i as u64);
        let (s, v) = d
            .get(&format!(
                "/v1/log/proof/inclusion?index={i}&size={}",
                c.size()
            ))
            .await;
        assert_eq!(s, 200, "{v}");
        c.verify_inclusion(i as u64, &leaf_of(e), &hashes(&v))
            .unwrap();
        // Another entry's leaf does not pass for this one.
        let wrong = leaf_hash(b"registration\n{}");
        assert!(c.verify_inclusion(i as u64, &wrong, &hashes(&v)).is_err());
    }
    all
}

async fn consistency(d: &Dir, old: &Checkpoint, new: &Checkpoint) {
    let (s, v) = d
        .get(&format!(
            "/v1/log/proof/consistency?from={}&to={}",
            old.size(),
            new.size()
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    old.verify_extended_by(new, &hashes(&v)).unwrap();
}

async fn every_kind_is_logged_and_proven(b: Backend) {
    let d = Dir::start(b).await;
    // An empty log has a checkpoint too: size 0, the empty tree.
    let (empty, _) = checkpoint(&d).await;
    assert_eq!(empty.size(), 0);
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    d.clock.advance(600);
    let round = smpx_directory::probe::round(&d.state).await;
    assert_eq!(round.issued, Some(1), "one statement for op-1");
    let (before, _) = checkpoint(&d).await;
    // The round signed this checkpoint already: registration, snapshot, statement.
    assert_eq!(
        d.state
            .store()
            .latest_checkpoint()
            .await
            .unwrap()
            .unwrap()
            .size,
        3
    );
    let kinds: Vec<_> = check_all_included(&d, &before)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["registration", "snapshot", "statement"]);
    consistency(&d, &empty, &before).await;

    d.clock.advance(5);
    let (s, v) = d
        .post(
            &format!("/v1/relays/{}/withdraw", r.fingerprint()),
            &r.withdrawal(d.clock_now()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (after, _) = checkpoint(&d).await;
    assert_eq!(after.size(), 4);
    let all = check_all_included(&d, &after).await;
    consistency(&d, &before, &after).await;
    consistency(&d, &after, &after).await;

    // The bodies are what was signed and published.
    // The registration as accepted: both signatures and the work check again.
    let registration: smpx_core::directory::wire::RegistrationRequest =
        serde_json::from_str(all[0]["body"].as_str().unwrap()).unwrap();
    let checked =
        smpx_directory::verify::check_registration(&registration, d.clock_now() - 605, 4).unwrap();
    assert_eq!(checked.address.to_string(), r.address());
    let snapshot: Value = serde_json::from_str(all[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(snapshot["relays"][0]["fingerprint"], r.fingerprint());
    assert_eq!(snapshot["relays"][0]["status"], "running");
    assert_eq!(snapshot["at"], d.clock_now() - 5);
    let statements = d
        .state
        .store()
        .statements(Some("op-1"), None, 10)
        .await
        .unwrap();
    assert_eq!(all[2]["body"], statements[0]);
    let withdrawal: Value = serde_json::from_str(all[3]["body"].as_str().unwrap()).unwrap();
    assert_eq!(withdrawal, r.withdrawal(d.clock_now()));
    assert_eq!(all[3]["kind"], "withdrawal");
}

async fn out_of_range_positions_are_typed(b: Backend) {
    let d = Dir::start(b).await;
    for (host, seed) in [("192.0.2.1", 1), ("198.51.100.1", 2)] {
        let r = Relay::new(&format!("op-{seed}"), seed, host);
        assert_eq!(d.register(&r).await.0, 200);
    }
    for (path, status, want) in [
        ("/v1/log/entries?start=2&end=3", 400, "invalid_request"),
        ("/v1/log/entries?start=1&end=1", 400, "invalid_request"),
        (
            "/v1/log/proof/inclusion?index=2&size=2",
            400,
            "invalid_request",
        ),
        ("/v1/log/proof/inclusion?index=0&size=3", 404, "not_found"),
        (
            "/v1/log/proof/consistency?from=2&to=1",
            400,
            "invalid_request",
        ),
        ("/v1/log/proof/consistency?from=1&to=3", 404, "not_found"),
        (
            "/v1/log/proof/inclusion?index=-1&size=2",
            400,
            "invalid_request",
        ),
    ] {
        let (s, v) = d.get(path).await;
        assert_eq!((s, code(&v)), (status, want), "{path}: {v}");
    }
    // Pages are clamped to the log.
    assert_eq!(entries(&d, 1, 100).await.len(), 1);
    let (s, v) = d.get("/v1/log/proof/consistency?from=0&to=2").await;
    assert_eq!((s, hashes(&v).len()), (200, 0));
}

async fn concurrent_registrations_take_dense_distinct_indices(b: Backend) {
    let d = Dir::start(b).await;
    let n = 8u64;
    let mut requests = Vec::new();
    for i in 0..n {
        let r = Relay::new(&format!("op-{i}"), i as u8 + 1, &format!("203.0.{i}.7"));
        let (challenge, difficulty) = d.challenge().await;
        requests.push(r.request(&r.body(&challenge, d.clock_now()), difficulty));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for req in requests {
        let (http, url) = (d.http.clone(), format!("{}/v1/relays", d.url));
        tasks.spawn(async move { http.post(url).json(&req).send().await.unwrap().status() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap().as_u16(), 200);
    }
    assert_eq!(d.state.store().log_size().await.unwrap(), n);
    let (c, _) = checkpoint(&d).await;
    assert_eq!(c.size(), n);
    let all = check_all_included(&d, &c).await;
    let mut fingerprints: Vec<String> = all
        .iter()
        .map(|e| {
            assert_eq!(e["kind"], "registration");
            let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
            body.to_string()
        })
        .collect();
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(
        fingerprints.len() as u64,
        n,
        "each registration logged once"
    );
}

async fn a_restart_keeps_the_log_and_the_next_checkpoint_extends_it(b: Backend) {
    let mut d = Dir::start(b).await;
    assert_eq!(d.register(&Relay::new("op-1", 1, "192.0.2.1")).await.0, 200);
    let (first, first_text) = checkpoint(&d).await;
    d.restart().await;
    let (again, again_text) = checkpoint(&d).await;
    assert_eq!(
        again_text, first_text,
        "the same latest checkpoint after a restart"
    );
    assert_eq!(again, first);
    assert_eq!(
        d.register(&Relay::new("op-2", 2, "198.51.100.1")).await.0,
        200
    );
    let (next, _) = checkpoint(&d).await;
    assert_eq!(next.size(), 2);
    assert!(!next.conflicts_with(&first));
    consistency(&d, &first, &next).await;
    check_all_included(&d, &next).await;
}
