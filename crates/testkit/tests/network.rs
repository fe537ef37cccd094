//! The test network itself: every service answers, and a restarted service keeps its port,
//! its keys and its data, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_core::api::{OperatorServiceInfo, ParamsResponse};
use smpx_http::ApiClient;
use smpx_testkit::net::{Network, Service, OPERATOR_ID};
use smpx_testkit::{both, Backend};

both!(services_answer_and_restart_on_their_data);

async fn services_answer_and_restart_on_their_data(backend: Backend) {
    let mut net = Network::start(backend).await.unwrap();
    let params: ParamsResponse = ApiClient::new(&net.coordinator_url)
        .get("/v1/params")
        .await
        .unwrap();
    let info: OperatorServiceInfo = ApiClient::new(&net.operator_url)
        .get("/v1/info")
        .await
        .unwrap();
    assert_eq!(info.operator_id, OPERATOR_ID);
    let issuer: serde_json::Value = ApiClient::new(&net.issuer_url)
        .get("/v1/info")
        .await
        .unwrap();
    assert!(issuer.is_object());

    let urls = (
        net.coordinator_url.clone(),
        net.issuer_url.clone(),
        net.operator_url.clone(),
    );
    for s in [Service::Coordinator, Service::Issuer, Service::Operator] {
        net.restart(s).await.unwrap();
    }
    assert_eq!(
        (
            net.coordinator_url.clone(),
            net.issuer_url.clone(),
            net.operator_url.clone()
        ),
        urls
    );
    let again: ParamsResponse = ApiClient::new(&net.coordinator_url)
        .get("/v1/params")
        .await
        .unwrap();
    assert_eq!(
        again.receipt_key, params.receipt_key,
        "keys survive a restart"
    );
    let info: OperatorServiceInfo = ApiClient::new(&net.operator_url)
        .get("/v1/info")
        .await
        .unwrap();
    assert_eq!(info.operator_id, OPERATOR_ID);
    // A second start of a running service is refused.
    assert!(net.start_service(Service::Operator).await.is_err());
    net.stop().await.unwrap();
}

/// The proxy's rules: a `next` rule applies once, an `all` rule until `clear`, and every
/// exchange is recorded as the client saw it.
#[tokio::test]
async fn the_proxy_refuses_rewrites_and_records() {
    use smpx_core::ErrorCode;
    use smpx_testkit::proxy::Proxy;
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let p = Proxy::start(&net.coordinator_url).await.unwrap();
    let client = ApiClient::new(p.url());
    let get = || async { client.get::<ParamsResponse>("/v1/params").await };

    p.refuse_next("GET", "/v1/params", ErrorCode::UpstreamUnavailable);
    let e = get().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UpstreamUnavailable), "{e}");
    let real = get().await.unwrap();

    p.rewrite_all("GET", "/v1/params", |s| {
        let mut v: serde_json::Value = serde_json::from_slice(&s.answer).unwrap();
        v["now"] = 7.into();
        (s.status, serde_json::to_vec(&v).unwrap())
    });
    assert_eq!(get().await.unwrap().now, 7);
    assert_eq!(get().await.unwrap().now, 7);
    p.clear();
    assert_ne!(get().await.unwrap().now, 7);

    p.lose_next("GET", "/v1/params");
    assert!(get().await.is_err());
    let seen = p.exchanges("GET", "/v1/params");
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    let refused = ErrorCode::UpstreamUnavailable.http_status();
    assert_eq!(statuses, [refused, 200, 200, 200, 200, 502]);
    assert_eq!(
        serde_json::from_slice::<ParamsResponse>(&seen[1].answer)
            .unwrap()
            .receipt_key,
        real.receipt_key
    );
    // The key a test signs lies with is the one the coordinator announces.
    let key = net.receipt_key(Service::Coordinator).unwrap();
    assert_eq!(key.verifying_key(), real.receipt_key);
}
