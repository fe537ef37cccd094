//! Probing through the `Prober` trait under a manual clock: flags, flapping, history across
//! a restart, attestations and share statements.

use crate::support::{code, Dir, Relay, T0};
use serde_json::{json, Value};
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::wire::attest;
use smpx_core::directory::{check_statement, period_start, ShareStatement};
use smpx_core::receipt::Signed;
use smpx_core::rules::measure::PROBATION_SECS;
use smpx_testkit::{both, Backend};

both!(
    a_flapping_relay_loses_mtbf_and_stable,
    a_restart_keeps_the_history,
    attestations_count_only_from_trusted_keys,
    share_statements_verify_and_rederive,
    a_new_operator_is_stated_once_measured_with_its_relays_on_probation,
);

const HOUR: u64 = 3600;

/// A round probes every relay, `probe_concurrency` (3 in the test config) at a time: probes
/// wait at a barrier of 3, so fewer at once would never finish and more would be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_probes_everyone_with_bounded_concurrency() {
    let d = Dir::start(Backend::Sqlite).await;
    let relays: Vec<Relay> = (0..6)
        .map(|i| Relay::new(&format!("op-{i}"), i + 1, &format!("10.{i}.0.1")))
        .collect();
    for r in &relays {
        assert_eq!(d.register(r).await.0, 200);
    }
    *d.prober.gate.lock().unwrap() = Some(std::sync::Arc::new(tokio::sync::Barrier::new(3)));
    let n = tokio::time::timeout(std::time::Duration::from_secs(60), d.probe_round())
        .await
        .expect("the round stalled: fewer than 3 probes ran at once");
    assert_eq!(n, 6);
    assert_eq!(*d.prober.probed.lock().unwrap(), 6);
    assert_eq!(d.prober.in_flight.lock().unwrap().1, 3);
    let (_, list) = d.get("/v1/relays?status=running").await;
    assert_eq!(list.as_array().unwrap().len(), 6);
}

async fn relay_view(d: &Dir, r: &Relay) -> Value {
    let (s, v) = d.get(&format!("/v1/relays/{}", r.fingerprint())).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn a_flapping_relay_loses_mtbf_and_stable(b: Backend) {
    let d = Dir::start(b).await;
    let relays: Vec<Relay> = (0..3)
        .map(|i| Relay::new(&format!("op-{i}"), i + 1, &format!("10.{i}.0.1")))
        .collect();
    for r in &relays {
        assert_eq!(d.register(r).await.0, 200);
    }
    // Two days up, probed hourly: every relay Running and Stable (MTBF ≥ the median).
    for _ in 0..48 {
        assert_eq!(d.probe_round().await, 3);
        d.clock.advance(HOUR);
    }
    d.probe_round().await;
    let flapper = &relays[2];
    let before = relay_view(&d, flapper).await;
    assert!(
        before["relay"]["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("stable")),
        "{before}"
    );
    assert_eq!(before["relay"]["status"], "running");
    let mtbf_before = before["relay"]["mtbf_secs"].as_f64().unwrap();
    assert!(mtbf_before >= 47.0 * HOUR as f64);
    // Then the third relay answers TLS but drops queue traffic every other hour.
    for k in 0..24 {
        d.clock.advance(HOUR);
        d.prober.set(&flapper.fingerprint(), k % 2 == 1, 35);
        d.probe_round().await;
    }
    let after = relay_view(&d, flapper).await;
    let mtbf_after = after["relay"]["mtbf_secs"].as_f64().unwrap();
    assert!(
        mtbf_after < mtbf_before / 4.0,
        "{mtbf_before} → {mtbf_after}"
    );
    let flags = after["relay"]["flags"].as_array().unwrap();
    assert!(
        flags.contains(&json!("running")) && !flags.contains(&json!("stable")),
        "{after}"
    );
    assert!(
        after["relay"]["uptime"].as_f64().unwrap() < before["relay"]["uptime"].as_f64().unwrap()
    );
    // Its history shows the failures with their stage.
    let history = after["history"].as_array().unwrap();
    assert!(history
        .iter()
        .any(|o| o["up"] == false && o["stage"] == "tls"));
    // The steady ones kept Stable; the filter finds them.
    let (_, stable) = d.get("/v1/relays?flag=stable").await;
    let stable: Vec<&str> = stable
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(stable.len(), 2);
    assert!(!stable.contains(&flapper.fingerprint().as_str()));
    // Down on its latest probe: not Running, and `status=down` lists it.
    d.clock.advance(HOUR);
    d.prober.set(&flapper.fingerprint(), false, 0);
    d.probe_round().await;
    let (_, down) = d.get("/v1/relays?status=down").await;
    assert_eq!(down.as_array().unwrap().len(), 1);
    assert_eq!(down[0]["fingerprint"], flapper.fingerprint());
    let (_, t) = d.get("/v1/thresholds").await;
    assert_eq!(t["subnet_limit"], 2);
    assert!(t["stable_mtbf_secs"].as_f64().unwrap() > mtbf_after);
    let (s, v) = d.get("/v1/relays?flag=shiny").await;
    assert_eq!((s, code(&v)), (400, "invalid_request"));
}

async fn a_restart_keeps_the_history(b: Backend) {
    let mut d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    for k in 0..10 {
        d.prober.set(&r.fingerprint(), k != 4, 10 + k as u32);
        d.probe_round().await;
        d.clock.advance(HOUR);
    }
    let before = relay_view(&d, &r).await;
    d.restart().await;
    let after = relay_view(&d, &r).await;
    assert_eq!(before, after);
    assert_eq!(after["history"].as_array().unwrap().len(), 10);
    // Measurement continues from the stored state: one more good hour raises the uptime.
    d.clock.advance(HOUR);
    d.prober.set(&r.fingerprint(), true, 12);
    d.probe_round().await;
    let later = relay_view(&d, &r).await;
    assert_eq!(later["history"].as_array().unwrap().len(), 11);
    assert!(
        later["relay"]["uptime"].as_f64().unwrap() > after["relay"]["uptime"].as_f64().unwrap()
    );
}

async fn attestations_count_only_from_trusted_keys(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    let path = "/v1/operators/op-1/attestations";
    let untrusted = SigningKey::from_bytes(&[0x55; 32]);
    let a = attest(
        &untrusted,
        r.operator.verifying_key(),
        "Example GmbH",
        "DE",
        T0,
    )
    .unwrap();
    let (s, v) = d.post(path, &serde_json::to_value(&a).unwrap()).await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    // A trusted attester, but for another key.
    let wrong = attest(
        &d.attester,
        untrusted.verifying_key(),
        "Example GmbH",
        "DE",
        T0,
    )
    .unwrap();
    let (s, v) = d.post(path, &serde_json::to_value(&wrong).unwrap()).await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    let (s, v) = d
        .post(
            "/v1/operators/op-9/attestations",
            &serde_json::to_value(&a).unwrap(),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "unknown_operator"));
    let (_, op) = d.get("/v1/operators/op-1").await;
    assert_eq!(
        (op["verified_identity"].clone(), op["attestations"].clone()),
        (json!(false), json!([]))
    );
    let good = attest(
        &d.attester,
        r.operator.verifying_key(),
        "Example GmbH",
        "DE",
        T0,
    )
    .unwrap();
    let (s, v) = d.post(path, &serde_json::to_value(&good).unwrap()).await;
    assert_eq!(s, 200, "{v}");
    let (_, op) = d.get("/v1/operators/op-1").await;
    assert_eq!(op["verified_identity"], true);
    assert_eq!(op["attestations"][0]["legal_name"], "Example GmbH");
    assert_eq!(
        op["attestations"][0]["attester"],
        d.attester.verifying_key().to_hex()
    );
}

async fn share_statements_verify_and_rederive(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    let (s, v) = d.get("/v1/statements?operator=op-1").await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    // Eight days, probed every six hours, down once: past probation, uptime below 1.
    let mut k = 0;
    while d.clock_now() < T0 + PROBATION_SECS + 86_400 {
        d.prober.set(&r.fingerprint(), k != 3, 20);
        d.probe_round().await;
        d.clock.advance(6 * HOUR);
        k += 1;
    }
    d.probe_round().await;
    let issued = smpx_directory::view::issue_statements(&d.state)
        .await
        .unwrap();
    assert_eq!(issued, 1);
    // Issuing again in the same period changes nothing.
    assert_eq!(
        smpx_directory::view::issue_statements(&d.state)
            .await
            .unwrap(),
        0
    );
    let (s, v) = d.get("/v1/statements?operator=op-1").await;
    assert_eq!(s, 200, "{v}");
    let signed: Signed<ShareStatement> = serde_json::from_value(v).unwrap();
    let key = d.state.statement_key();
    let body = check_statement(&signed, &[key]).unwrap();
    assert!(body.rederive());
    assert_eq!(body.directory, "test-directory");
    assert_eq!(body.operator_id, "op-1");
    assert_eq!(body.period_start, period_start(d.clock_now()));
    assert!(!body.evaluation.verified_identity);
    assert_eq!(body.share.identity_bps, 5000);
    assert_eq!(body.evaluation.time_on_network_secs, d.clock_now() - T0);
    let (_, view) = d.get(&format!("/v1/relays/{}", r.fingerprint())).await;
    assert_eq!(
        body.evaluation.relay_uptimes,
        vec![view["relay"]["uptime"].as_f64().unwrap()]
    );
    assert!(body.evaluation.relay_uptimes[0] < 1.0 && body.evaluation.relay_uptimes[0] > 0.9);
    assert!(body.share.share_bps > 0 && body.share.share_bps < 7000 / 2);
    // Another directory's key is not trusted.
    assert!(check_statement(&signed, &[SigningKey::from_bytes(&[1; 32]).verifying_key()]).is_err());
    // By period.
    let (s, list) = d
        .get(&format!("/v1/statements/{}", body.period_start))
        .await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, empty) = d.get("/v1/statements/86400").await;
    assert_eq!(empty, json!([]));
    // With an attested identity, the next period's statement doubles the identity factor.
    let good = attest(
        &d.attester,
        r.operator.verifying_key(),
        "Example GmbH",
        "DE",
        d.clock_now(),
    )
    .unwrap();
    assert_eq!(
        d.post(
            "/v1/operators/op-1/attestations",
            &serde_json::to_value(&good).unwrap()
        )
        .await
        .0,
        200
    );
    d.clock.advance(86_400);
    d.probe_round().await;
    assert_eq!(
        smpx_directory::view::issue_statements(&d.state)
            .await
            .unwrap(),
        1
    );
    let (_, v) = d.get("/v1/statements?operator=op-1").await;
    let signed: Signed<ShareStatement> = serde_json::from_value(v).unwrap();
    let next = check_statement(&signed, &[key]).unwrap();
    assert!(next.evaluation.verified_identity);
    assert_eq!(next.share.identity_bps, 10_000);
    assert!(next.period_start > body.period_start);
    let (_, op) = d.get("/v1/operators/op-1").await;
    assert_eq!(op["statement"], serde_json::to_value(&signed).unwrap());
}

/// No statement before anything was measured (it would stand all period at 0); after one
/// probe round, the new relay counts at half its uptime: anonymous × new × probation.
async fn a_new_operator_is_stated_once_measured_with_its_relays_on_probation(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    let issue = || smpx_directory::view::issue_statements(&d.state);
    assert_eq!(issue().await.unwrap(), 0);
    let (s, _) = d.get("/v1/statements?operator=op-1").await;
    assert_eq!(s, 404);

    d.probe_round().await;
    assert_eq!(issue().await.unwrap(), 1);
    let (_, v) = d.get("/v1/statements?operator=op-1").await;
    let signed: Signed<ShareStatement> = serde_json::from_value(v).unwrap();
    let body = check_statement(&signed, &[d.state.statement_key()]).unwrap();
    assert!(body.rederive());
    assert!(body.evaluation.relay_uptimes.is_empty());
    assert_eq!(body.evaluation.probation_uptimes, vec![1.0]);
    let sh = body.share;
    assert_eq!(
        (sh.identity_bps, sh.tenure_bps, sh.uptime_bps, sh.share_bps),
        (5000, 5000, 5000, 875)
    );
}
