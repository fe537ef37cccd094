//! Registration, heartbeats and withdrawal against the real service, on both backends.

use crate::support::{code, sign_request, Dir, Relay};
use serde_json::{json, Value};
use smpx_core::crypto::sign::SigningKey;
use smpx_core::directory::wire::MAX_TEXT_LEN;
use smpx_core::rules::pow;
use smpx_testkit::{both, Backend};

both!(
    a_relay_registers_is_listed_and_updates,
    forged_signatures_are_refused,
    proof_of_work_must_be_enough_fresh_and_unspent,
    a_relay_cannot_claim_another_fingerprint,
    a_subnet_flood_is_rate_limited_and_its_excess_not_counted,
    malformed_and_oversized_registrations_are_typed,
    heartbeats_must_be_known_signed_and_new,
    a_withdrawn_relay_is_not_published,
    tables_hold_only_published_data,
);

async fn a_relay_registers_is_listed_and_updates(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let (s, v) = d.register(&r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["created"], true);
    assert_eq!(v["fingerprint"], r.fingerprint());
    let (s, list) = d.get("/v1/relays").await;
    assert_eq!(s, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let relay = &list[0];
    assert_eq!(relay["address"], r.address());
    assert_eq!(relay["operator_id"], "op-1");
    assert_eq!(relay["status"], "unprobed");
    assert_eq!(relay["counted"], true);
    assert_eq!(relay["flags"], json!(["probation"]));
    // Only what the operator chose is published: two metadata fields, nothing else.
    assert_eq!(
        relay["metadata"],
        json!({"source_code": "https://example.org/smpx", "country": "DE"})
    );
    assert_eq!(relay["info"]["units_per_gb_month"], 250_000);
    // The same operator registers again (new region): updated, same age.
    d.clock.advance(60);
    let (challenge, difficulty) = d.challenge().await;
    let mut body = r.body(&challenge, d.clock_now());
    body.region = "us-east".into();
    let (s, v) = d
        .post(
            "/v1/relays",
            &serde_json::to_value(r.request(&body, difficulty)).unwrap(),
        )
        .await;
    assert_eq!((s, &v["created"]), (200, &json!(false)), "{v}");
    let (_, one) = d.get(&format!("/v1/relays/{}", r.fingerprint())).await;
    assert_eq!(one["relay"]["region"], "us-east");
    assert_eq!(one["relay"]["age_secs"], 60);
    let (s, op) = d.get("/v1/operators/op-1").await;
    assert_eq!(s, 200);
    assert_eq!(op["relays"], json!([r.fingerprint()]));
    assert_eq!(op["verified_identity"], false);
    let (s, v) = d.get("/v1/operators/op-9").await;
    assert_eq!((s, code(&v)), (404, "unknown_operator"));
    let (s, v) = d.get("/v1/relays/nope").await;
    assert_eq!((s, code(&v)), (404, "unknown_relay"));
}

async fn forged_signatures_are_refused(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let other = Relay::new("op-1", 2, "192.0.2.11");
    let (challenge, difficulty) = d.challenge().await;
    let body = r.body(&challenge, d.clock_now());
    let payload = body.payload().unwrap();
    // Signed by another relay's CA key.
    let forged_ca = sign_request(
        other.dir.path(),
        &r.operator,
        payload.clone(),
        &challenge,
        difficulty,
    );
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&forged_ca).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("CA"));
    // Signed by an operator key other than the one in the body.
    let forged_op = sign_request(
        r.dir.path(),
        &other.operator,
        payload.clone(),
        &challenge,
        difficulty,
    );
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&forged_op).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("operator"));
    // Neither spent the challenge: the genuine one still registers.
    let good = r.request(&body, difficulty);
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&good).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn proof_of_work_must_be_enough_fresh_and_unspent(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let (challenge, difficulty) = d.challenge().await;
    assert_eq!(difficulty, 4);
    let body = r.body(&challenge, d.clock_now());
    let mut req = r.request(&body, difficulty);
    // Too little work: a nonce that does not reach the difficulty.
    let payload = req.registration.clone();
    let weak = (0u64..)
        .find(|n| pow::check(challenge.as_bytes(), payload.as_bytes(), *n, difficulty).is_err())
        .unwrap();
    let good_nonce = req.nonce;
    req.nonce = weak;
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_proof_of_work"), "{v}");
    // A challenge the directory never gave.
    let made_up = r.request(&r.body(&"ab".repeat(16), d.clock_now()), difficulty);
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&made_up).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_proof_of_work"), "{v}");
    // The genuine one, then the same again: the challenge is spent.
    req.nonce = good_nonce;
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_proof_of_work"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("spent"));
    // A stale challenge: handed out, then its ten minutes pass.
    let (challenge, _) = d.challenge().await;
    d.clock.advance(601);
    let late = r.request(&r.body(&challenge, d.clock_now()), difficulty);
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&late).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "bad_proof_of_work"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
}

async fn a_relay_cannot_claim_another_fingerprint(b: Backend) {
    let d = Dir::start(b).await;
    let a = Relay::new("op-1", 1, "192.0.2.10");
    let thief = Relay::new("op-2", 2, "198.51.100.7");
    let (s, _) = d.register(&a).await;
    assert_eq!(s, 200);
    // The thief's own CA certificate and signature, under a's fingerprint.
    let (challenge, difficulty) = d.challenge().await;
    let mut body = thief.body(&challenge, d.clock_now());
    body.address = a.address();
    let (s, v) = d
        .post(
            "/v1/relays",
            &serde_json::to_value(thief.request(&body, difficulty)).unwrap(),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("fingerprint"));
    // With a's CA key (leaked, or a's operator changing hands) under another operator id: the
    // fingerprint stays with its first operator.
    let mut body = a.body(&challenge, d.clock_now());
    body.operator_id = "op-2".into();
    body.operator_key = thief.operator.verifying_key();
    let payload = body.payload().unwrap();
    let req = sign_request(
        a.dir.path(),
        &thief.operator,
        payload,
        &challenge,
        difficulty,
    );
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!((s, code(&v)), (409, "fingerprint_taken"), "{v}");
    // op-1's id with another key is not op-1.
    let (challenge, difficulty) = d.challenge().await;
    let mut body = a.body(&challenge, d.clock_now());
    body.operator_key = thief.operator.verifying_key();
    let req = sign_request(
        a.dir.path(),
        &thief.operator,
        body.payload().unwrap(),
        &challenge,
        difficulty,
    );
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
}

async fn a_subnet_flood_is_rate_limited_and_its_excess_not_counted(b: Backend) {
    let d = Dir::start(b).await;
    // Five registrations per subnet per hour (the test config); two relays per /24 count.
    let flood: Vec<Relay> = (0..6)
        .map(|i| Relay::new("op-1", 1, &format!("203.0.113.{}", 10 + i)))
        .collect();
    for (i, r) in flood.iter().enumerate() {
        d.clock.advance(1);
        let (s, v) = d.register(r).await;
        if i < 5 {
            assert_eq!(s, 200, "{i}: {v}");
        } else {
            assert_eq!((s, code(&v)), (429, "rate_limited"), "{v}");
        }
    }
    // Another subnet is not limited by this one.
    let elsewhere = Relay::new("op-2", 2, "[2001:db8:1::5]");
    assert_eq!(d.register(&elsewhere).await.0, 200);
    let (_, list) = d.get("/v1/relays?operator=op-1").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 5);
    let counted: Vec<&Value> = list.iter().filter(|r| r["counted"] == true).collect();
    assert_eq!(counted.len(), 2);
    // The first two registered count; the excess is listed and says why.
    let firsts = [flood[0].fingerprint(), flood[1].fingerprint()];
    for r in list {
        let first = firsts.contains(&r["fingerprint"].as_str().unwrap().to_owned());
        assert_eq!(r["counted"] == true, first, "{r}");
        if !first {
            assert!(r["counted_reason"]
                .as_str()
                .unwrap()
                .contains("203.0.113.0/24"));
        }
    }
    // An hour later the subnet may register again.
    d.clock.advance(3600);
    assert_eq!(d.register(&flood[5]).await.0, 200);
}

async fn malformed_and_oversized_registrations_are_typed(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let (challenge, difficulty) = d.challenge().await;
    let send = |body: smpx_core::directory::wire::Registration| {
        let req = serde_json::to_value(r.request(&body, difficulty)).unwrap();
        let d = &d;
        async move { d.post("/v1/relays", &req).await }
    };
    let mut long = r.body(&challenge, d.clock_now());
    long.metadata.admin_contact = Some("a".repeat(MAX_TEXT_LEN + 1));
    let (s, v) = send(long).await;
    assert_eq!((s, code(&v)), (400, "invalid_request"), "{v}");
    let mut control = r.body(&challenge, d.clock_now());
    control.metadata.hosting = Some("line\nbreak".into());
    assert_eq!(code(&send(control).await.1), "invalid_request");
    let mut big_info = r.body(&challenge, d.clock_now());
    big_info.info.insert("x".into(), json!("y".repeat(9000)));
    assert_eq!(code(&send(big_info).await.1), "invalid_request");
    let mut address = r.body(&challenge, d.clock_now());
    address.address = "smpx://nope@host".into();
    assert_eq!(code(&send(address).await.1), "invalid_request");
    let mut skewed = r.body(&challenge, d.clock_now());
    skewed.timestamp -= 3600;
    assert_eq!(code(&send(skewed).await.1), "invalid_request");
    // A payload with a field the directory does not know.
    let mut v = serde_json::to_value(r.body(&challenge, d.clock_now())).unwrap();
    v["metadata"]["email"] = json!("someone@example.org");
    let req = sign_request(
        r.dir.path(),
        &r.operator,
        v.to_string(),
        &challenge,
        difficulty,
    );
    let (s, v) = d
        .post("/v1/relays", &serde_json::to_value(&req).unwrap())
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_request"), "{v}");
    // Not the request's shape; over the body limit.
    let (s, v) = d.post("/v1/relays", &json!({"registration": "{}"})).await;
    assert_eq!((s, code(&v)), (400, "invalid_request"));
    let (s, v) = d
        .post(
            "/v1/relays",
            &json!({"registration": "x".repeat(70_000), "nonce": 0}),
        )
        .await;
    assert_eq!((s, code(&v)), (413, "body_too_large"));
    // None of that spent the challenge.
    assert_eq!(send(r.body(&challenge, d.clock_now())).await.0, 200);
}

async fn heartbeats_must_be_known_signed_and_new(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let path = format!("/v1/relays/{}/heartbeat", r.fingerprint());
    let now = d.clock_now();
    let (s, v) = d.post(&path, &r.heartbeat(1, now)).await;
    assert_eq!((s, code(&v)), (404, "unknown_relay"));
    assert_eq!(d.register(&r).await.0, 200);
    let (s, v) = d.post(&path, &r.heartbeat(1, now)).await;
    assert_eq!((s, &v["seq"]), (200, &json!(1)), "{v}");
    // The same again, and an older one.
    let (s, v) = d.post(&path, &r.heartbeat(1, now)).await;
    assert_eq!((s, code(&v)), (409, "stale_heartbeat"));
    let (s, v) = d.post(&path, &r.heartbeat(0, now)).await;
    assert_eq!((s, code(&v)), (409, "stale_heartbeat"));
    // One from far in the past.
    let (s, v) = d.post(&path, &r.heartbeat(5, now - 3600)).await;
    assert_eq!((s, code(&v)), (409, "stale_heartbeat"));
    // Signed by someone else.
    let impostor = SigningKey::from_bytes(&[9; 32]);
    let (s, v) = d.post(&path, &r.heartbeat_by(&impostor, 7, now)).await;
    assert_eq!((s, code(&v)), (400, "bad_signature"), "{v}");
    d.clock.advance(60);
    let (s, _) = d.post(&path, &r.heartbeat(2, now + 60)).await;
    assert_eq!(s, 200);
    let (_, one) = d.get(&format!("/v1/relays/{}", r.fingerprint())).await;
    assert_eq!(one["relay"]["last_heartbeat_at"], now + 60);
    // The body must name the path's relay.
    let other = Relay::new("op-1", 1, "192.0.2.11");
    assert_eq!(d.register(&other).await.0, 200);
    let (s, v) = d.post(&path, &other.heartbeat(3, now + 60)).await;
    assert_eq!((s, code(&v)), (400, "invalid_request"), "{v}");
}

async fn a_withdrawn_relay_is_not_published(b: Backend) {
    let d = Dir::start(b).await;
    let r = Relay::new("op-1", 1, "192.0.2.10");
    assert_eq!(d.register(&r).await.0, 200);
    let old = r.withdrawal(d.clock_now());
    let path = format!("/v1/relays/{}/withdraw", r.fingerprint());
    // Only the operator may withdraw.
    let impostor = SigningKey::from_bytes(&[9; 32]);
    let (s, v) = d
        .post(&path, &r.withdrawal_by(&impostor, d.clock_now()))
        .await;
    assert_eq!((s, code(&v)), (400, "bad_signature"));
    let (s, v) = d.post(&path, &old).await;
    assert_eq!(s, 200, "{v}");
    let (_, list) = d.get("/v1/relays").await;
    assert_eq!(list, json!([]));
    let (s, v) = d.post(&path, &old).await;
    assert_eq!((s, code(&v)), (404, "unknown_relay"));
    let hb = format!("/v1/relays/{}/heartbeat", r.fingerprint());
    let (s, v) = d.post(&hb, &r.heartbeat(1, d.clock_now())).await;
    assert_eq!((s, code(&v)), (404, "unknown_relay"));
    // Registered again, it is back; the old withdrawal replayed does not take it off.
    d.clock.advance(10);
    assert_eq!(d.register(&r).await.1["created"], false);
    let (s, v) = d.post(&path, &old).await;
    assert_eq!((s, code(&v)), (409, "stale_heartbeat"), "{v}");
    let (_, list) = d.get("/v1/relays").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// The directory's database holds what operators published, what the probes found and what
/// the directory signed — no table or column about anyone using the relays.
async fn tables_hold_only_published_data(b: Backend) {
    let d = Dir::start(b).await;
    let pool = d.state.store().db().pool().clone();
    let sql = match b {
        Backend::Sqlite => "SELECT m.name || '.' || p.name AS col FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name LIKE 'directory_%' ORDER BY m.name, p.cid",
        Backend::Postgres => "SELECT table_name || '.' || column_name AS col FROM information_schema.columns WHERE table_name LIKE 'directory_%' ORDER BY table_name, ordinal_position",
    };
    let rows = sqlx_rows(&pool, sql).await;
    let expected = [
        "directory_attestations.operator_id",
        "directory_attestations.attester",
        "directory_attestations.legal_name",
        "directory_attestations.country",
        "directory_attestations.issued_at",
        "directory_attestations.attestation",
        "directory_checkpoints.size",
        "directory_checkpoints.note",
        "directory_checkpoints.signed_at",
        "directory_challenges.challenge",
        "directory_challenges.issued_at",
        "directory_challenges.expires_at",
        "directory_challenges.used_at",
        "directory_log.idx",
        "directory_log.kind",
        "directory_log.body",
        "directory_log.leaf_hash",
        "directory_log.appended_at",
        "directory_log_head.id",
        "directory_log_head.size",
        "directory_observations.id",
        "directory_observations.fingerprint",
        "directory_observations.at",
        "directory_observations.up",
        "directory_observations.latency_ms",
        "directory_observations.stage",
        "directory_observations.detail",
        "directory_operators.operator_id",
        "directory_operators.operator_key",
        "directory_operators.first_seen",
        "directory_registrations.id",
        "directory_registrations.subnet",
        "directory_registrations.at",
        "directory_relays.fingerprint",
        "directory_relays.address",
        "directory_relays.subnet",
        "directory_relays.operator_id",
        "directory_relays.region",
        "directory_relays.info",
        "directory_relays.metadata",
        "directory_relays.registered_at",
        "directory_relays.updated_at",
        "directory_relays.withdrawn_at",
        "directory_relays.heartbeat_seq",
        "directory_relays.heartbeat_at",
        "directory_relays.stability",
        "directory_relays.last_probe_at",
        "directory_relays.last_probe_up",
        "directory_statements.operator_id",
        "directory_statements.period_start",
        "directory_statements.statement",
    ];
    let mut want: Vec<&str> = expected.to_vec();
    want.sort_unstable();
    let mut got: Vec<&str> = rows.iter().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, want);
}

async fn sqlx_rows(pool: &sqlx::AnyPool, sql: &str) -> Vec<String> {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("col").unwrap())
        .collect()
}
