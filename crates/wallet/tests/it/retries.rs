//! The wallet's retry paths against the real services, behind a proxy that loses answers:
//! the service carried the request out, the wallet never heard, and its retry (or a refresh)
//! must end where the service is, without doing anything twice.

use smpx_core::api::Payment;
use smpx_core::Amount;
use smpx_testkit::net::Network;
use smpx_testkit::proxy::Proxy;
use smpx_testkit::Backend;
use smpx_wallet::{LocalState, RedeemOptions, Wallet, WalletError};
use std::time::Duration;

async fn wallet(dir: &tempfile::TempDir) -> Wallet {
    crate::support::new_wallet(dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_publish_answer_is_confirmed_on_retry_and_by_refresh() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let coordinator = Proxy::start(&net.coordinator_url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = wallet(&dir).await;
    let a = w
        .buy(coordinator.url(), &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();
    let b = w
        .buy(coordinator.url(), &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();

    coordinator.lose_next("POST", "/v1/vouchers");
    assert!(w
        .publish(coordinator.url(), a.id, Duration::ZERO)
        .await
        .is_err());
    assert_eq!(w.voucher(a.id).await.unwrap().state, LocalState::Bought);
    // Retry: the coordinator says already_published, the wallet confirms and records it.
    let a = w
        .publish(coordinator.url(), a.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(a.state, LocalState::Published);
    assert!(a.expires_at.is_some());

    coordinator.lose_next("POST", "/v1/vouchers");
    assert!(w
        .publish(coordinator.url(), b.id, Duration::ZERO)
        .await
        .is_err());
    let changed = w.refresh(coordinator.url()).await.unwrap();
    assert_eq!(
        changed.iter().map(|v| (v.id, v.state)).collect::<Vec<_>>(),
        vec![(b.id, LocalState::Published)]
    );
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_redeem_answer_resends_the_same_envelope() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let operator = Proxy::start(&net.operator_url).await.unwrap();
    let c = &net.coordinator_url;
    let dir = tempfile::tempdir().unwrap();
    let w = wallet(&dir).await;
    let v = w
        .buy(c, &net.issuer_url, 10, Payment::Devnet)
        .await
        .unwrap();
    w.publish(c, v.id, Duration::ZERO).await.unwrap();

    operator.lose_next("POST", "/v1/redeem");
    assert!(w
        .redeem_with(c, operator.url(), v.id, &RedeemOptions::v1(), &|_| {})
        .await
        .is_err());
    assert_eq!(w.voucher(v.id).await.unwrap().state, LocalState::Published);
    // The coordinator already counts it redeemed; refresh says so, and the retry still gets
    // the receipt because it re-sends the identical envelope.
    let changed = w.refresh(c).await.unwrap();
    assert_eq!(changed[0].state, LocalState::Redeemed);
    let credit = w
        .redeem_with(c, operator.url(), v.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap();
    assert_eq!(credit.credited, Amount::from_credits(10).unwrap());
    let envelopes: Vec<serde_json::Value> = operator
        .bodies("POST", "/v1/redeem")
        .iter()
        .map(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap()["envelope"].clone())
        .collect();
    assert_eq!(envelopes.len(), 2);
    assert!(envelopes[0].is_object());
    assert_eq!(
        envelopes[0], envelopes[1],
        "the retry must re-send the same envelope"
    );
    // Now it is done for good.
    let e = w
        .redeem_with(c, operator.url(), v.id, &RedeemOptions::v1(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, WalletError::InvalidState { .. }), "{e}");
    assert_eq!(w.credits().await.unwrap().len(), 1);
    net.stop().await.unwrap();
}
