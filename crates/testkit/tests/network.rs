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
