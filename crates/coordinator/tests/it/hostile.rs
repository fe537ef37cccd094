//! The coordinator's answers to hostile input over real HTTP: numbers beyond int64 in paths
//! and queries, unparsable path segments, and credentials checked before bodies. Each answer
//! is the documented JSON error, never a 500 or plain text.

use smpx_core::ErrorCode;
use smpx_testkit::net::Network;
use smpx_testkit::Backend;

const TOO_LARGE: &str = "9223372036854775808"; // 2^63

/// Status and error code of a raw request (asserting the body is the JSON error shape).
async fn answer(req: reqwest::RequestBuilder) -> (u16, ErrorCode) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let json = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = resp.text().await.unwrap();
    assert!(json, "{status}: not JSON: {body}");
    let parsed: smpx_core::api::ErrorBody =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{status}: {body}: {e}"));
    (status, parsed.error.code)
}

#[tokio::test]
async fn numbers_beyond_int64_and_unparsable_segments_are_400_not_500() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", net.coordinator_url);
    // Bounds are checked before the MMR is looked up, so any id shows them.
    let open = 1;
    let paths = [
        format!("/v1/mmrs/{TOO_LARGE}"),
        format!("/v1/mmrs/{TOO_LARGE}/leaves"),
        format!("/v1/mmrs/{TOO_LARGE}/checkpoint"),
        format!("/v1/mmrs/{TOO_LARGE}/consistency?from=1&to=2"),
        format!("/v1/mmrs/{open}/checkpoint?size={TOO_LARGE}"),
        format!("/v1/mmrs/{open}/leaves?from={TOO_LARGE}"),
        format!("/v1/ledger/entries?after={TOO_LARGE}"),
        format!("/v1/issuer-keys?denomination={TOO_LARGE}"),
        "/v1/mmrs/x".to_owned(),
        "/v1/mmrs/18446744073709551616".to_owned(),
        "/v1/issuers/%FF".to_owned(),
    ];
    for p in &paths {
        assert_eq!(
            answer(http.get(url(p))).await,
            (400, ErrorCode::InvalidRequest),
            "{p}"
        );
    }
    // The largest int64 is a number like any other: nothing has it.
    assert_eq!(
        answer(http.get(url("/v1/mmrs/9223372036854775807"))).await,
        (404, ErrorCode::UnknownMmr)
    );
    net.stop().await.unwrap();
}

#[tokio::test]
async fn credentials_are_checked_before_bodies() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", net.coordinator_url);
    let bad = "{\"not\": \"this\"}";
    for p in [
        "/v1/admin/issuers",
        "/v1/admin/issuers/issuer-1/limit",
        "/v1/admin/operators",
        "/v1/issuer-keys",
        "/v1/redemptions",
    ] {
        let req = http
            .post(url(p))
            .header("content-type", "application/json")
            .body(bad);
        assert_eq!(
            answer(req).await,
            (401, ErrorCode::Unauthorized),
            "{p} without a credential"
        );
    }
    // With the admin token the same body is what is wrong.
    let req = http
        .post(url("/v1/admin/issuers"))
        .bearer_auth(&net.admin_token)
        .header("content-type", "application/json")
        .body(bad);
    assert_eq!(answer(req).await, (400, ErrorCode::InvalidRequest));
    net.stop().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_lists_the_refusals_above() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", net.coordinator_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect()
    };
    for (path, method, wanted) in [
        (
            "/v1/admin/issuers",
            "post",
            &["200", "400", "401", "408", "409", "413", "415"][..],
        ),
        ("/v1/admin/operators", "post", &["401", "409", "415"]),
        ("/v1/redemptions", "post", &["401", "415"]),
        ("/v1/vouchers", "post", &["400", "413", "415"]),
        ("/v1/mmrs/{id}", "get", &["400", "404", "414", "431"]),
        ("/v1/ledger/entries", "get", &["400"]),
    ] {
        let got = statuses(path, method);
        for w in wanted {
            assert!(
                got.iter().any(|g| g == w),
                "{method} {path} documents {w}: {got:?}"
            );
        }
    }
    net.stop().await.unwrap();
}
