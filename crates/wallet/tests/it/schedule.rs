//! Scheduled publishing against the real services: a purchase is published only once its
//! drawn time has come, by a sync, and the coordinator's receipts are checked as for any
//! publish.

use smpx_core::api::{Payment, VoucherStatus};
use smpx_http::{ApiClient, Clock, ManualClock, SystemClock};
use smpx_testkit::net::Network;
use smpx_testkit::Backend;
use smpx_wallet::{LocalState, WalletError};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bought_vouchers_are_published_by_the_sync_after_their_time() {
    let net = Network::start(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let w = crate::support::new_wallet(&dir)
        .await
        .with_clock(Arc::new(clock.clone()));
    let c = &net.coordinator_url;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let v = w
            .buy(c, &net.issuer_url, 10, Payment::Devnet)
            .await
            .unwrap();
        assert!(v.publish_due_at.unwrap() > clock.now());
        ids.push(v.id);
    }
    // Not yet: nothing is sent to the coordinator.
    let sync = w.publish_due(c).await.unwrap();
    assert!(sync.published.is_empty() && sync.failed.is_empty());
    assert_eq!(sync.scheduled.len(), 3);
    let e = w.publish_if_due(c, ids[0]).await.unwrap_err();
    assert!(matches!(e, WalletError::NotDueYet { .. }), "{e}");
    let api = ApiClient::new(c);
    for v in w.vouchers().await.unwrap() {
        let status: Result<VoucherStatus, _> =
            api.get(&format!("/v1/vouchers/{}", v.commitment)).await;
        assert!(status.is_err(), "voucher {} published too early", v.id);
    }

    // Twelve hours on, all three are due: one sync publishes them.
    clock.advance(12 * 3600 + 1);
    let sync = w.publish_due(c).await.unwrap();
    assert!(sync.failed.is_empty(), "{:?}", sync.failed);
    assert!(sync.scheduled.is_empty());
    let mut published: Vec<i64> = sync.published.iter().map(|v| v.id).collect();
    published.sort_unstable();
    assert_eq!(published, ids);
    for v in w.vouchers().await.unwrap() {
        assert_eq!(v.state, LocalState::Published);
        let status: VoucherStatus = api
            .get(&format!("/v1/vouchers/{}", v.commitment))
            .await
            .unwrap();
        assert_eq!(status.denomination, 10);
    }
    // Nothing left: a second sync does nothing.
    let sync = w.publish_due(c).await.unwrap();
    assert!(sync.published.is_empty() && sync.scheduled.is_empty());
    net.stop().await.unwrap();
}
