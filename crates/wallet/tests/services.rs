//! v0.2 redemption against the real services: the CLI's devnet (coordinator, issuer and
//! operator, each with its own SQLite database, on loopback sockets) with a small MMR and a
//! local ceremony, driven by the wallet library as `smpx wallet` drives it. (The wallet's
//! logic against every misbehaviour is in `flows.rs`, against stand-ins.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_cli::devnet::{Devnet, DevnetOptions, OPERATOR_ID};
use smpx_core::api::{LedgerTotalsResponse, Payment};
use smpx_core::{rotation, ErrorCode};
use smpx_http::ApiClient;
use smpx_wallet::{
    LocalState, MmrChoice, RedeemOptions, RedeemProgress, VoucherRecord, Wallet, WalletError,
};
use std::sync::Mutex;
use std::time::Duration;

async fn devnet(dir: &std::path::Path) -> Devnet {
    let mut opts = DevnetOptions::new(dir);
    opts.params = Some(smpx_core::NetworkParams {
        mmr_levels: 3,
        ..DevnetOptions::default_params()
    });
    // Shared with the other crates' tests: the ceremony is made once per machine (and
    // verified whenever it is used).
    opts.ceremony_cache = std::env::temp_dir().join("smpx-test-cache").join("smpx");
    opts.progress = false;
    Devnet::start(opts).await.unwrap()
}

async fn published(w: &Wallet, net: &Devnet, denomination: u64) -> VoucherRecord {
    let v = w
        .buy(
            &net.coordinator_url,
            &net.issuer_url,
            denomination,
            Payment::Devnet,
        )
        .await
        .unwrap();
    w.publish(&net.coordinator_url, v.id, Duration::ZERO)
        .await
        .unwrap()
}

async fn totals(net: &Devnet) -> LedgerTotalsResponse {
    ApiClient::new(&net.coordinator_url)
        .get("/v1/ledger/totals")
        .await
        .unwrap()
}

fn with(mmr: MmrChoice, update_path: bool) -> RedeemOptions {
    RedeemOptions {
        mmr,
        update_path,
        ..RedeemOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_redemptions_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("net")).await;
    let (w, _) = Wallet::create(&dir.path().join("w.db"), "pw")
        .await
        .unwrap();
    let p: smpx_core::api::ParamsResponse = ApiClient::new(&net.coordinator_url)
        .get("/v1/params")
        .await
        .unwrap();
    let open = rotation::open_mmrs(&p.params, p.now);

    let a = published(&w, &net, 10).await;
    let b = published(&w, &net, 1).await;
    let c = published(&w, &net, 100).await;
    let d = published(&w, &net, 10).await;
    // The publish receipt carried a path per open MMR.
    let paths = w.paths(a.id).await.unwrap();
    assert_eq!(paths.iter().map(|p| p.mmr.id).collect::<Vec<_>>(), open);

    // The default: protocol 2, older MMR, path updated to the latest root.
    let seen = Mutex::new(Vec::new());
    let credit = w
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            a.id,
            &RedeemOptions::default(),
            &|p| seen.lock().unwrap().push(p),
        )
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);
    assert_eq!(credit.operator_id, OPERATOR_ID);
    assert_eq!(credit.credited.0, 10_000_000);
    let cr = &credit.receipt["body"]["coordinator_receipt"]["body"];
    assert_eq!(cr["mmr_id"], open[0]);
    assert!(cr["nullifier"].is_string());
    assert_eq!(w.voucher(a.id).await.unwrap().state, LocalState::Redeemed);
    let seen = seen.into_inner().unwrap();
    assert!(seen.contains(&RedeemProgress::FetchingKeys));
    assert!(seen.contains(&RedeemProgress::DownloadingLeaves {
        mmr_id: open[0],
        done: 4,
        total: 4
    }));
    assert!(seen.contains(&RedeemProgress::Proving));

    // Without the update: the receipt's path and its old root.
    let credit = w
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            b.id,
            &with(MmrChoice::Older, false),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);

    // The newer MMR (the same as the older in an MMR's first period).
    let credit = w
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            c.id,
            &with(MmrChoice::Newer, true),
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(
        credit.receipt["body"]["coordinator_receipt"]["body"]["mmr_id"],
        *open.last().unwrap()
    );

    // The ledger conserves value and counts the three redemptions; d stays live.
    let t = totals(&net).await;
    assert!(t.conserved);
    assert_eq!(t.totals.redeemed.0, 111_000_000);
    assert_eq!(t.totals.live.0, 10_000_000);
    assert_eq!(w.voucher(d.id).await.unwrap().state, LocalState::Published);
    net.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_is_redeemed_once_whatever_the_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("net")).await;
    let (a, phrase) = Wallet::create(&dir.path().join("a.db"), "pw")
        .await
        .unwrap();
    let v1 = published(&a, &net, 10).await;
    let v2 = published(&a, &net, 10).await;
    let v3 = published(&a, &net, 10).await;
    // A second copy of the wallet, from the phrase: it redeems the same vouchers again.
    let b = Wallet::restore(&dir.path().join("b.db"), "pw", &phrase)
        .await
        .unwrap();
    b.recover(&net.coordinator_url, 3, &|_| {}).await.unwrap();
    let in_b = |c: &str| {
        let c = c.to_owned();
        let b = &b;
        async move {
            b.vouchers()
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.commitment == c)
                .unwrap()
                .id
        }
    };
    let already = |r: Result<_, WalletError>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    };

    // 2 then 2.
    a.redeem(&net.coordinator_url, &net.operator_url, v1.id)
        .await
        .unwrap();
    let id = in_b(&v1.commitment).await;
    already(b.redeem(&net.coordinator_url, &net.operator_url, id).await);
    assert_eq!(b.voucher(id).await.unwrap().state, LocalState::Redeemed);

    // 1 then 2.
    a.redeem_with(
        &net.coordinator_url,
        &net.operator_url,
        v2.id,
        &RedeemOptions::v1(),
        &|_| {},
    )
    .await
    .unwrap();
    let id = in_b(&v2.commitment).await;
    already(b.redeem(&net.coordinator_url, &net.operator_url, id).await);

    // 2 (by the restored copy, which has no receipt path and finds its leaf among all the
    // leaves) then 1.
    let id = in_b(&v3.commitment).await;
    assert!(b.paths(id).await.unwrap().is_empty());
    b.redeem(&net.coordinator_url, &net.operator_url, id)
        .await
        .unwrap();
    already(
        a.redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            v3.id,
            &RedeemOptions::v1(),
            &|_| {},
        )
        .await,
    );

    let t = totals(&net).await;
    assert!(t.conserved);
    assert_eq!(t.totals.redeemed.0, 30_000_000);
    net.stop().await.unwrap();
}
