//! The issuer's OpenAPI document is exactly as strict as the issuer (issue 12): each body is
//! judged by an independent JSON Schema validator against `/openapi.json` and sent to the real
//! service ([`smpx_testkit::schema`]).

use serde_json::{json, Value};
use smpx_core::api::MAX_TOPUP_CODES;
use smpx_core::crypto::b64;
use smpx_testkit::net::Network;
use smpx_testkit::schema::Document;
use smpx_testkit::Backend;

#[tokio::test]
async fn the_document_is_as_strict_as_the_issuer() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let doc = Document::fetch(&net.issuer_url).await.unwrap();
    let denomination = net.params().denominations[0];

    // POST /v1/purchases: an unknown key, so it fails for what it means once its shape is right.
    let t = "/v1/purchases";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    let purchase = json!({
        "denomination": denomination,
        "key_id": "ab".repeat(32),
        "blinded_message": b64::encode(&[5; 256]),
        "payment": {"method": "devnet"},
    });
    let mut allowed = vec![purchase.clone()];
    let mut refused = Vec::new();
    for (field, value) in [
        ("denomination", json!(denomination as f64)),
        ("denomination", json!(u64::MAX)), // unsupported_denomination
        ("key_id", json!("AB".repeat(32))),
        (
            "payment",
            json!({"method": "topup_code", "code": "ABCD-EFGH"}),
        ),
        // serde reads a unit variant whatever else its object holds, and the document says so
        ("payment", json!({"method": "devnet", "note": 1})),
    ] {
        let mut body = purchase.clone();
        body[field] = value;
        allowed.push(body);
    }
    for (field, value) in [
        ("denomination", json!(10.5)),
        ("denomination", json!(-10)),
        ("key_id", json!("ab".repeat(33))),
        ("key_id", json!(7)),
        ("blinded_message", json!("AAAA=")),
        ("blinded_message", json!("a+b/")),
        ("payment", json!({"method": "cash"})),
        ("payment", json!({"method": "topup_code"})),
        ("payment", json!({"method": "topup_code", "code": 7})),
        ("payment", json!({"code": "ABCD"})),
        (
            "payment",
            json!({"method": "topup_code", "code": "x", "extra": 1}),
        ),
        ("extra", json!(null)),
    ] {
        let mut body = purchase.clone();
        body[field] = value;
        refused.push(body);
    }
    let mut missing = purchase.clone();
    missing.as_object_mut().unwrap().remove("payment");
    refused.push(missing);
    for body in allowed {
        check(body, true).await.unwrap();
    }
    for body in refused {
        check(body, false).await.unwrap();
    }

    // POST /v1/admin/topup-codes
    let t = "/v1/admin/topup-codes";
    let admin = Some(net.issuer_admin_token.as_str());
    let check = |body: Value, allowed: bool| doc.body(t, t, admin, body, allowed);
    for body in [
        json!({"denomination": denomination, "count": 1}),
        json!({"denomination": denomination, "count": 1.0}),
        json!({"denomination": u64::MAX, "count": MAX_TOPUP_CODES}), // unsupported_denomination
    ] {
        check(body, true).await.unwrap();
    }
    for body in [
        json!({"denomination": denomination, "count": 0}),
        json!({"denomination": denomination, "count": MAX_TOPUP_CODES + 1}),
        json!({"denomination": denomination, "count": 2.5}),
        json!({"denomination": denomination, "count": 1u64 << 32}),
        json!({"denomination": denomination}),
        json!({"denomination": denomination, "count": 1, "batch": "x"}),
    ] {
        check(body, false).await.unwrap();
    }
    net.stop().await.unwrap();
}
