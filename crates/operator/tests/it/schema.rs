//! The operator's OpenAPI document is exactly as strict as the operator (issue 12): each body
//! and parameter is judged by an independent JSON Schema validator against `/openapi.json` and
//! sent to the real service ([`smpx_testkit::schema`]).

use serde_json::{json, Value};
use smpx_testkit::net::Network;
use smpx_testkit::schema::{redemption_payloads, with, Document, GetCase};
use smpx_testkit::Backend;

/// The secp256k1 generator, compressed: a point on the curve.
const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
/// A version-0 keyset id that the operator does not have.
const KEYSET: &str = "00882760bfa2eb41";

#[tokio::test]
async fn the_document_is_as_strict_as_the_operator() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let doc = Document::fetch(&net.operator_url).await.unwrap();
    let denomination = net.params().denominations[0];
    let output = json!({"amount": 1, "id": KEYSET, "B_": G});
    let proof = json!({"amount": 1, "id": KEYSET, "secret": "5a".repeat(32), "C": G});
    let dleq = json!({"e": "01".repeat(32), "s": "02".repeat(32), "r": "03".repeat(32)});

    // POST /v1/redeem: as the coordinator's /v1/redemptions, plus `outputs`.
    let t = "/v1/redeem";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    let (envelope, zk) = redemption_payloads(denomination);
    let v1 = json!({"version": 1, "envelope": envelope});
    let v2 = json!({"version": 2, "zk": zk});
    for body in [
        v1.clone(),
        v2.clone(),
        with(&v1, "/outputs", Some(json!([output]))),
        with(&v2, "/outputs", Some(Value::Null)),
        with(&v1, "/version", Some(json!(1.0))),
        with(
            &v1,
            "/outputs",
            Some(json!([with(&output, "/amount", Some(json!(3)))])),
        ), // invalid_amount
    ] {
        check(body, true).await.unwrap();
    }
    for body in [
        with(&v1, "/version", Some(json!(0))),
        with(&v1, "/version", Some(json!(2))),
        with(&v1, "/zk", Some(zk.clone())),
        json!({"version": 1}),
        with(&v1, "/outputs", Some(json!([]))),
        with(
            &v1,
            "/outputs",
            Some(json!([with(&output, "/amount", Some(json!(0)))])),
        ),
        with(
            &v1,
            "/outputs",
            Some(json!([with(&output, "/id", Some(json!("01ab")))])),
        ),
        with(
            &v1,
            "/outputs",
            Some(json!([with(&output, "/B_", Some(json!(G.to_uppercase())))])),
        ),
        with(
            &v1,
            "/outputs",
            Some(json!([with(&output, "/extra", Some(json!(1)))])),
        ),
        with(&v2, "/zk/fee", Some(json!(5))),
        with(&v1, "/extra", Some(json!(1))),
    ] {
        check(body, false).await.unwrap();
    }

    // POST /v1/swap
    let t = "/v1/swap";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    let swap = json!({"inputs": [proof], "outputs": []});
    for body in [
        swap.clone(),
        with(&swap, "/outputs", Some(json!([output]))),
        json!({"inputs": [with(&proof, "/dleq", Some(dleq.clone()))], "outputs": []}),
        json!({"inputs": [with(&proof, "/amount", Some(json!(8.0)))], "outputs": []}),
    ] {
        check(body, true).await.unwrap();
    }
    for body in [
        json!({"inputs": [], "outputs": []}),
        json!({"inputs": [proof]}),
        with(&swap, "/extra", Some(json!(1))),
        json!({"inputs": [with(&proof, "/secret", Some(json!("5A".repeat(32))))], "outputs": []}),
        json!({"inputs": [with(&proof, "/secret", Some(json!("anything")))], "outputs": []}),
        json!({"inputs": [with(&proof, "/C", Some(json!(format!("04{}", &G[2..]))))], "outputs": []}),
        json!({"inputs": [with(&proof, "/amount", Some(json!(0)))], "outputs": []}),
        json!({"inputs": [with(&proof, "/amount", Some(json!(1.5)))], "outputs": []}),
        json!({"inputs": [with(&proof, "/dleq", Some(json!({})))], "outputs": []}),
        json!({"inputs": [with(&proof, "/witness", Some(json!("{}")))], "outputs": []}),
    ] {
        check(body, false).await.unwrap();
    }

    // POST /v1/checkstate and /v1/restore
    let t = "/v1/checkstate";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    check(json!({"Ys": []}), true).await.unwrap();
    check(json!({"Ys": [G]}), true).await.unwrap();
    check(json!({"Ys": [G.to_uppercase()]}), false)
        .await
        .unwrap();
    check(json!({"Ys": [&G[..64]]}), false).await.unwrap();
    check(json!({"ys": [G]}), false).await.unwrap();
    let t = "/v1/restore";
    let check = |body: Value, allowed: bool| doc.body(t, t, None, body, allowed);
    check(json!({"outputs": []}), true).await.unwrap();
    check(json!({"outputs": [output]}), true).await.unwrap();
    check(json!({"outputs": [output], "signatures": []}), false)
        .await
        .unwrap();
    check(json!({}), false).await.unwrap();

    // Path parameters.
    let id = "ab".repeat(32);
    let keys = format!("/v1/keys/{KEYSET}");
    let upper = format!("/v1/swap/{}", id.to_uppercase());
    let swap_id = format!("/v1/swap/{id}");
    let cases: Vec<GetCase> = vec![
        (
            "/v1/keys/{keyset_id}",
            &keys,
            vec![("keyset_id", KEYSET)],
            true,
        ),
        (
            "/v1/keys/{keyset_id}",
            "/v1/keys/zz",
            vec![("keyset_id", "zz")],
            false,
        ),
        (
            "/v1/keys/{keyset_id}",
            "/v1/keys/02ab",
            vec![("keyset_id", "02ab")],
            false,
        ),
        ("/v1/swap/{id}", &swap_id, vec![("id", &id)], true),
        ("/v1/swap/{id}", &upper, vec![("id", &upper[9..])], false),
        ("/v1/swap/{id}", "/v1/swap/ab", vec![("id", "ab")], false),
    ];
    for (template, path, params, allowed) in cases {
        doc.get(template, path, &params, allowed).await.unwrap();
    }
    net.stop().await.unwrap();
}
