//! The directory's OpenAPI document is exactly as strict as the directory
//! ([`smpx_testkit::schema`]).

use crate::support::{Dir, Relay};
use serde_json::json;
use smpx_testkit::schema::{with, Document};
use smpx_testkit::Backend;

#[tokio::test]
async fn the_document_is_as_strict_as_the_directory() {
    let d = Dir::start(Backend::Sqlite).await;
    let doc = Document::fetch(&d.url).await.unwrap();
    let r = Relay::new("op-1", 1, "192.0.2.10");
    let t = "/v1/relays";
    let (challenge, difficulty) = d.challenge().await;
    let good =
        serde_json::to_value(r.request(&r.body(&challenge, d.clock_now()), difficulty)).unwrap();
    let answer = doc.body(t, t, None, good.clone(), true).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    for body in [
        with(&good, "/extra", Some(json!(1))),
        with(&good, "/nonce", None),
        with(&good, "/nonce", Some(json!(-1))),
        with(&good, "/nonce", Some(json!("7"))),
        with(&good, "/ca_signature", Some(json!(5))),
        with(&good, "/registration", Some(json!({}))),
        json!([]),
    ] {
        doc.body(t, t, None, body, false).await.unwrap();
    }
    for case in [
        (
            "/v1/relays",
            "/v1/relays",
            vec![("status", "running")],
            true,
        ),
        (
            "/v1/relays",
            "/v1/relays",
            vec![("status", "sleeping")],
            false,
        ),
        (
            "/v1/relays",
            "/v1/relays",
            vec![("flag", "stable"), ("region", "eu")],
            true,
        ),
        ("/v1/relays", "/v1/relays", vec![("flag", "shiny")], false),
        ("/v1/relays", "/v1/relays", vec![("operator", "op-1")], true),
        (
            "/v1/statements",
            "/v1/statements",
            vec![("operator", "op-1")],
            true,
        ),
    ] {
        doc.get(case.0, case.1, &case.2, case.3).await.unwrap();
    }
    // Path parameters: a period that is not a number.
    let t = "/v1/statements/{period_start}";
    doc.get(
        t,
        "/v1/statements/86400",
        &[("period_start", "86400")],
        true,
    )
    .await
    .unwrap();
    doc.get(t, "/v1/statements/x", &[("period_start", "x")], false)
        .await
        .unwrap();
    // Every operation documents its errors as the error body.
    let paths = doc.json()["paths"].as_object().unwrap();
    for p in [
        "/v1/pow",
        "/v1/relays",
        "/v1/relays/{fingerprint}/heartbeat",
        "/v1/relays/{fingerprint}/withdraw",
        "/v1/operators/{id}",
        "/v1/operators/{id}/attestations",
        "/v1/thresholds",
        "/v1/statements",
        "/v1/statements/{period_start}",
        "/v1/relays/{fingerprint}",
    ] {
        assert!(paths.contains_key(p), "{p}");
    }
}
