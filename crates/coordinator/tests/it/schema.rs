//! The coordinator's OpenAPI document is exactly as strict as the coordinator (issue 12): every
//! body and parameter below is judged by an independent JSON Schema validator against
//! `/openapi.json` and sent to the real service ([`smpx_testkit::schema`]). What the document
//! refuses is refused with 400; what it allows is never refused for its shape.

use serde_json::{json, Value};
use smpx_core::api::{CredentialResponse, IssuerKeyInfo, MAX_LIMIT_CREDITS};
use smpx_core::crypto::b64;
use smpx_testkit::net::Network;
use smpx_testkit::schema::{redemption_payloads, with, Document, GetCase};
use smpx_testkit::Backend;

/// The BN254 modulus `p` (not a field element) and `p − 1` (the largest one).
const P: &str = "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001";
const P_MINUS_1: &str = "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000000";

#[tokio::test]
async fn the_document_is_as_strict_as_the_coordinator() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let doc = Document::fetch(&net.coordinator_url).await.unwrap();
    let admin = Some(net.admin_token.as_str());
    let denomination = net.params().denominations[0];

    // Credentials of a fresh issuer and operator, so the bodies behind them are read.
    let admin_client =
        smpx_http::ApiClient::new(&net.coordinator_url).with_token(net.admin_token.clone());
    let mut credentials = Vec::new();
    for (path, body) in [
        (
            "/v1/admin/issuers",
            json!({"id": "schema-issuer", "limit_credits": 10}),
        ),
        (
            "/v1/admin/operators",
            json!({"id": "schema-operator", "share_bps": 5000}),
        ),
    ] {
        let added: CredentialResponse = admin_client.post(path, &body).await.unwrap();
        credentials.push(added.token);
    }
    let [issuer, operator] = <[String; 2]>::try_from(credentials).unwrap();

    // POST /v1/vouchers
    let publish = json!({
        "commitment": "01".repeat(32),
        "denomination": denomination,
        "key_id": "ab".repeat(32),
        "signature": {"signature": b64::encode(&[7; 256]), "msg_randomizer": "cd".repeat(32)},
    });
    let t = "/v1/vouchers";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    check(publish.clone(), true).await.unwrap();
    for (field, value) in [
        ("/denomination", json!(denomination as f64)), // 10.0 is the integer 10
        ("/commitment", json!(P_MINUS_1)),
        ("/key_id", json!("AB".repeat(32))),
        // unsupported_denomination: a refusal of what it means, not of its shape
        ("/denomination", json!(u64::MAX)),
        ("/signature/extra", json!(1)), // the signature object is open
    ] {
        check(with(&publish, field, Some(value)), true)
            .await
            .unwrap();
    }
    for (field, value) in [
        ("/denomination", Some(json!(10.5))),
        ("/denomination", Some(json!(-1))),
        ("/denomination", Some(json!("10"))),
        ("/denomination", None),
        ("/commitment", Some(json!(P))),
        ("/commitment", Some(json!("01".repeat(31)))),
        ("/key_id", Some(json!("ab".repeat(31)))),
        ("/key_id", Some(json!("zz".repeat(32)))),
        ("/signature/signature", Some(json!("AA=="))),
        ("/signature/msg_randomizer", Some(json!("CD".repeat(32)))),
        ("/signature", Some(json!({}))),
        ("/extra", Some(json!(1))),
    ] {
        check(with(&publish, field, value), false).await.unwrap();
    }

    // POST /v1/redemptions (operator credential)
    let t = "/v1/redemptions";
    let token = Some(operator.as_str());
    let check = |body: Value, allowed: bool| doc.body(t, t, token, body, allowed);
    let (envelope, zk) = redemption_payloads(denomination);
    let v1 = json!({"version": 1, "envelope": envelope});
    let v2 = json!({"version": 2, "zk": zk});
    for body in [
        v1.clone(),
        v2.clone(),
        with(&v1, "/zk", Some(Value::Null)),
        with(&v2, "/envelope", Some(Value::Null)),
        with(&v1, "/version", Some(json!(1.0))),
        with(&v2, "/zk/fee", None),
        with(&v2, "/zk/mmr_id", Some(json!(u64::MAX))), // no such MMR
    ] {
        check(body, true).await.unwrap();
    }
    for body in [
        with(&v1, "/version", Some(json!(0))),
        with(&v1, "/version", Some(json!(3))),
        with(&v1, "/version", Some(json!(1.5))),
        with(&v1, "/version", None),
        with(&v1, "/zk", Some(zk.clone())),
        with(&v2, "/envelope", Some(envelope.clone())),
        with(&v1, "/envelope", None),
        json!({"version": 2, "envelope": envelope}),
        json!({"version": 1, "zk": zk}),
        with(&v2, "/zk/fee", Some(json!(1))),
        with(&v2, "/zk/proof", Some(json!(b64::encode(&[0; 127])))),
        with(&v2, "/zk/root", Some(json!(P))),
        with(&v2, "/zk/mmr_id", Some(json!(-1))),
        with(&v2, "/zk/extra", Some(json!(1))),
        with(&v1, "/envelope/enc", Some(json!("not base64"))),
        with(&v1, "/extra", Some(json!(1))),
    ] {
        check(body, false).await.unwrap();
    }

    // POST /v1/issuer-keys (issuer credential): a real key, so only the shape is at stake.
    let keys: Vec<IssuerKeyInfo> = smpx_http::ApiClient::new(&net.coordinator_url)
        .get("/v1/issuer-keys")
        .await
        .unwrap();
    let key = keys.first().expect("the issuer registered its keys");
    // A period and denomination the rules accept, so the key itself is read.
    let (period, denomination, key) = (key.period, key.denomination, &key.public_key);
    let t = "/v1/issuer-keys";
    let token = Some(issuer.as_str());
    let check = |body: Value, allowed: bool| doc.body(t, t, token, body, allowed);
    let register = json!({"denomination": denomination, "period": period, "public_key": key});
    check(register.clone(), true).await.unwrap();
    for period in [json!(period as f64), json!(u64::MAX)] {
        check(with(&register, "/period", Some(period)), true)
            .await
            .unwrap();
    }
    for (field, value) in [
        ("/public_key", Some(json!("not+base64/"))),
        ("/public_key", Some(json!(format!("{key}=")))),
        ("/period", Some(json!(-1))),
        ("/denomination", Some(json!(1.5))),
        ("/public_key", None),
        ("/extra", Some(json!(1))),
    ] {
        check(with(&register, field, value), false).await.unwrap();
    }

    // Admin calls.
    let t = "/v1/admin/issuers";
    let check = |body: Value, allowed: bool| doc.body(t, t, admin, body, allowed);
    let add = json!({"id": "schema-b", "limit_credits": MAX_LIMIT_CREDITS});
    check(add.clone(), true).await.unwrap();
    check(json!({"id": "c".repeat(64), "limit_credits": 1.0}), true)
        .await
        .unwrap();
    for (field, value) in [
        ("/id", Some(json!(""))),
        ("/id", Some(json!("Upper"))),
        ("/id", Some(json!("c".repeat(65)))),
        ("/limit_credits", Some(json!(MAX_LIMIT_CREDITS + 1))),
        ("/limit_credits", Some(json!(0.5))),
        ("/limit_credits", None),
        ("/extra", Some(json!(true))),
    ] {
        check(with(&add, field, value), false).await.unwrap();
    }
    let (t, p) = (
        "/v1/admin/issuers/{id}/limit",
        "/v1/admin/issuers/schema-b/limit",
    );
    let check = |body: Value, allowed: bool| doc.body(t, p, admin, body, allowed);
    check(json!({"limit_credits": 5.0}), true).await.unwrap();
    check(json!({"limit_credits": MAX_LIMIT_CREDITS + 1}), false)
        .await
        .unwrap();
    check(json!({}), false).await.unwrap();
    let (t, p) = (
        "/v1/admin/issuers/{id}/active",
        "/v1/admin/issuers/schema-b/active",
    );
    let check = |body: Value, allowed: bool| doc.body(t, p, admin, body, allowed);
    check(json!({"active": false}), true).await.unwrap();
    check(json!({"active": "no"}), false).await.unwrap();
    check(json!({"active": true, "why": "x"}), false)
        .await
        .unwrap();
    let t = "/v1/admin/operators";
    let check = |body: Value, allowed: bool| doc.body(t, t, admin, body, allowed);
    check(json!({"id": "schema-c", "share_bps": 1000.0}), true)
        .await
        .unwrap();
    // Above the network's maximum is `share_too_high`, a refusal of what it means.
    check(json!({"id": "schema-d", "share_bps": 10000}), true)
        .await
        .unwrap();
    for body in [
        json!({"id": "schema-e", "share_bps": 10001}),
        json!({"id": "schema-e", "share_bps": 1u64 << 32}),
        json!({"id": "schema-e", "share_bps": -1}),
        json!({"id": "schema e", "share_bps": 1}),
        json!({"id": "schema-e"}),
    ] {
        check(body, false).await.unwrap();
    }
    let (t, p) = (
        "/v1/admin/operators/{id}/share",
        "/v1/admin/operators/schema-c/share",
    );
    let check = |body: Value, allowed: bool| doc.body(t, p, admin, body, allowed);
    check(json!({"share_bps": 0}), true).await.unwrap();
    check(json!({"share_bps": 1u64 << 32}), false)
        .await
        .unwrap();

    // POST /v1/share-statements (public: the signature authenticates). This network trusts
    // no directory, so a well-formed statement is refused for what it means.
    let t = "/v1/share-statements";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    let evaluation = smpx_core::rules::trust::Evaluation {
        verified_identity: true,
        time_on_network_secs: 0,
        relay_uptimes: vec![1.0],
        probation_uptimes: Vec::new(),
    };
    let statement =
        smpx_core::directory::ShareStatement::new("dir", "schema-operator", evaluation, 7000, 0)
            .sign(&smpx_core::crypto::sign::SigningKey::from_bytes(&[3; 32]))
            .unwrap();
    let statement = serde_json::to_value(&statement).unwrap();
    check(statement.clone(), true).await.unwrap();
    for (field, value) in [
        ("/signer", Some(json!("zz"))),
        ("/signature", Some(json!(7))),
        ("/payload", None),
        ("/signer", None),
    ] {
        check(with(&statement, field, value), false).await.unwrap();
    }

    // Parameters: above 2^63 − 1 is refused wherever a number is looked up or stored.
    // (boon compares numbers as f64, which cannot tell 2^63 from 2^63 − 1; `hostile.rs` sends
    // the server 2^63 itself.)
    let too_large = u64::MAX.to_string();
    let max = i64::MAX.to_string();
    let (entries, keys, leaves) = (
        "/v1/ledger/entries",
        "/v1/issuer-keys",
        "/v1/mmrs/{id}/leaves",
    );
    let (checkpoint, consistency) = ("/v1/mmrs/{id}/checkpoint", "/v1/mmrs/{id}/consistency");
    let voucher = "/v1/vouchers/{commitment}";
    let mmr_max = format!("/v1/mmrs/{max}");
    let mmr_too_large = format!("/v1/mmrs/{too_large}");
    let voucher_p = format!("/v1/vouchers/{P}");
    let voucher_p_1 = format!("/v1/vouchers/{P_MINUS_1}");
    let cases: Vec<GetCase> = vec![
        (
            entries,
            entries,
            vec![("after", &max), ("limit", "0")],
            true,
        ),
        (entries, entries, vec![("limit", "4294967295")], true),
        (entries, entries, vec![("after", &too_large)], false),
        (entries, entries, vec![("limit", "4294967296")], false),
        (entries, entries, vec![("limit", "-1")], false),
        (
            keys,
            keys,
            vec![("issuer", "anyone"), ("denomination", "1")],
            true,
        ),
        (keys, keys, vec![("denomination", "x")], false),
        (keys, keys, vec![("denomination", &too_large)], false),
        ("/v1/mmrs/{id}", &mmr_max, vec![("id", &max)], true),
        (
            "/v1/mmrs/{id}",
            &mmr_too_large,
            vec![("id", &too_large)],
            false,
        ),
        (
            leaves,
            "/v1/mmrs/1/leaves",
            vec![("from", &too_large)],
            false,
        ),
        (
            checkpoint,
            "/v1/mmrs/1/checkpoint",
            vec![("size", &too_large)],
            false,
        ),
        (
            consistency,
            "/v1/mmrs/1/consistency",
            vec![("from", "0"), ("to", &too_large)],
            false,
        ),
        (voucher, &voucher_p_1, vec![("commitment", P_MINUS_1)], true),
        (voucher, &voucher_p, vec![("commitment", P)], false),
        (
            voucher,
            "/v1/vouchers/0a",
            vec![("commitment", "0a")],
            false,
        ),
    ];
    for (template, path, params, allowed) in cases {
        doc.get(template, path, &params, allowed).await.unwrap();
    }
    net.stop().await.unwrap();
}
