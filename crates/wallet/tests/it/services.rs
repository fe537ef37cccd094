//! v0.2 redemption against the real services: the test kit's network (coordinator, issuer
//! and operator, each with its own SQLite database, on loopback sockets) with a small MMR and
//! a local ceremony, driven by the wallet library as `smpx wallet` drives it. (The wallet
//! against services that refuse, lose answers or lie is in `flows.rs`.)

use crate::support::id_of;
use smpx_core::api::{
    CheckStateRequest, CheckStateResponse, LedgerTotalsResponse, Payment, TokenState as AtOperator,
};
use smpx_core::credits::Point;
use smpx_core::Amount;
use smpx_core::{rotation, ErrorCode};
use smpx_http::ApiClient;
use smpx_testkit::net::{Network, OPERATOR_ID};
use smpx_testkit::Backend;
use smpx_wallet::{
    CreditRecord, KdfParams, LocalState, MmrChoice, Protocol, RedeemOptions, RedeemProgress,
    RestoreOptions, TokenState, VoucherRecord, Wallet, WalletError,
};
use std::sync::Mutex;
use std::time::Duration;

async fn devnet() -> Network {
    Network::start(Backend::Sqlite).await.unwrap()
}

async fn published(w: &Wallet, net: &Network, denomination: u64) -> VoucherRecord {
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

async fn totals(net: &Network) -> LedgerTotalsResponse {
    ApiClient::new(&net.coordinator_url)
        .get("/v1/ledger/totals")
        .await
        .unwrap()
}

/// `redeem_with` on the network's coordinator and operator, progress unwatched.
async fn redeem(
    w: &Wallet,
    net: &Network,
    id: i64,
    options: &RedeemOptions,
) -> Result<CreditRecord, WalletError> {
    let (c, o) = (&net.coordinator_url, &net.operator_url);
    w.redeem_with(c, o, id, options, &|_| {}).await
}

fn with(mmr: MmrChoice, update_path: bool) -> RedeemOptions {
    RedeemOptions {
        mmr,
        update_path,
        // A test network's anonymity sets are tiny; a real wallet refuses below 100.
        accept_anonymity: Some(1),
        ..RedeemOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_redemptions_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet().await;
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
            &with(MmrChoice::Older, true),
            &|p| seen.lock().unwrap().push(p),
        )
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);
    assert_eq!(credit.operator_id, OPERATOR_ID);
    assert_eq!(credit.credited.0, 10_000_000);
    // Paid in credit tokens too (protocol 2 as protocol 1).
    assert_eq!(credit.issued, credit.credited);
    let cr = credit
        .signed_receipt()
        .unwrap()
        .body
        .coordinator_receipt
        .body;
    assert_eq!(cr.mmr_id, Some(open[0]));
    assert!(cr.nullifier.is_some());
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
    let credit = redeem(&w, &net, b.id, &with(MmrChoice::Older, false))
        .await
        .unwrap();
    assert_eq!(credit.protocol, 2);

    // The newer MMR (the same as the older in an MMR's first period).
    let credit = redeem(&w, &net, c.id, &with(MmrChoice::Newer, true))
        .await
        .unwrap();
    assert_eq!(
        credit
            .signed_receipt()
            .unwrap()
            .body
            .coordinator_receipt
            .body
            .mmr_id,
        Some(*open.last().unwrap())
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
    let net = devnet().await;
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
    let already = |r: Result<_, WalletError>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::AlreadyRedeemed), "{e}");
    };

    // 2 then 2.
    a.redeem_with(
        &net.coordinator_url,
        &net.operator_url,
        v1.id,
        &with(MmrChoice::Older, true),
        &|_| {},
    )
    .await
    .unwrap();
    let id = id_of(&b, &v1.commitment).await;
    already(
        b.redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            id,
            &with(MmrChoice::Older, true),
            &|_| {},
        )
        .await,
    );
    assert_eq!(b.voucher(id).await.unwrap().state, LocalState::Redeemed);

    // 1 then 2.
    redeem(&a, &net, v2.id, &RedeemOptions::v1()).await.unwrap();
    let id = id_of(&b, &v2.commitment).await;
    already(
        b.redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            id,
            &with(MmrChoice::Older, true),
            &|_| {},
        )
        .await,
    );

    // 2 (by the restored copy, which has no receipt path and finds its leaf among all the
    // leaves) then 1.
    let id = id_of(&b, &v3.commitment).await;
    assert!(b.paths(id).await.unwrap().is_empty());
    b.redeem_with(
        &net.coordinator_url,
        &net.operator_url,
        id,
        &with(MmrChoice::Older, true),
        &|_| {},
    )
    .await
    .unwrap();
    already(redeem(&a, &net, v3.id, &RedeemOptions::v1()).await);

    let t = totals(&net).await;
    assert!(t.conserved);
    assert_eq!(t.totals.redeemed.0, 30_000_000);
    net.stop().await.unwrap();
}

/// The operator's view (NUT-07) of tokens, by their `Y`.
async fn at_operator(net: &Network, ys: &[String]) -> Vec<AtOperator> {
    let r: CheckStateResponse = ApiClient::new(&net.operator_url)
        .post(
            "/v1/checkstate",
            &CheckStateRequest {
                ys: ys.iter().map(|y| Point::from_hex(y).unwrap()).collect(),
            },
        )
        .await
        .unwrap();
    r.states.into_iter().map(|s| s.state).collect()
}

async fn unspent(w: &Wallet) -> Amount {
    w.balance()
        .await
        .unwrap()
        .credit_tokens
        .get(OPERATOR_ID)
        .copied()
        .unwrap_or(Amount::ZERO)
}

/// Operator credits end to end, as a user relies on them: a redemption pays the credited
/// amount in tokens; a spend leaves the right change and the operator reports its inputs
/// spent; a spend whose answer is lost is collected; a wallet restored from the phrase finds
/// the same unspent credits; two copies spending the same tokens: one wins, the other gets a
/// typed error and marks them spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_issued_spent_collected_restored_and_double_spent() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet().await;
    let (w, phrase) = Wallet::create_with(
        &dir.path().join("w.db"),
        "pw",
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();

    // Redemption (protocol 1: no proving needed here) issues tokens for the credited amount.
    let v = published(&w, &net, 10).await;
    let credit = w
        .redeem_with(
            &net.coordinator_url,
            &net.operator_url,
            v.id,
            &RedeemOptions {
                protocol: Protocol::V1,
                ..RedeemOptions::default()
            },
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(credit.credited, Amount(10_000_000));
    assert_eq!(credit.issued, credit.credited);
    let tokens = w.credit_tokens(None).await.unwrap();
    assert_eq!(tokens.len(), 10_000_000u64.count_ones() as usize);
    assert!(tokens.iter().all(|t| t.amount.0.is_power_of_two()
        && t.state == TokenState::Unspent
        && t.origin == "redeem"
        && t.voucher_id == Some(v.id)));
    assert_eq!(
        tokens.iter().map(|t| t.amount.0).sum::<u64>(),
        credit.credited.0
    );
    assert_eq!(unspent(&w).await, Amount(10_000_000));
    let b = w.credit_balance().await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].operator_id, OPERATOR_ID);
    assert_eq!(b[0].unspent, Amount(10_000_000));
    let ys: Vec<String> = tokens.iter().map(|t| t.y.clone()).collect();
    assert!(at_operator(&net, &ys)
        .await
        .iter()
        .all(|s| *s == AtOperator::Unspent));

    // Spend 2.5 credits: change = inputs − 2.5, the operator says the inputs are spent.
    let s = w
        .spend_credits(&net.operator_url, Amount(2_500_000))
        .await
        .unwrap();
    assert_eq!(s.paid, Amount(2_500_000));
    assert_eq!(s.change.0, s.inputs.0 - 2_500_000);
    assert_eq!(s.balance, Amount(7_500_000));
    assert_eq!(unspent(&w).await, Amount(7_500_000));
    let after = w.credit_tokens(None).await.unwrap();
    let spent: Vec<String> = after
        .iter()
        .filter(|t| t.state == TokenState::Spent)
        .map(|t| t.y.clone())
        .collect();
    assert_eq!(spent.len(), s.input_tokens);
    assert!(at_operator(&net, &spent)
        .await
        .iter()
        .all(|s| *s == AtOperator::Spent));
    let change: u64 = after
        .iter()
        .filter(|t| t.origin == "change")
        .map(|t| t.amount.0)
        .sum();
    assert_eq!(change, s.change.0);
    // More than is held: a typed error, nothing sent.
    assert!(matches!(
        w.spend_credits(&net.operator_url, Amount(8_000_000)).await,
        Err(WalletError::InsufficientCredits { .. })
    ));

    // A spend whose answer is lost stays pending, then is collected.
    let lossy = smpx_testkit::proxy::Proxy::start(&net.operator_url)
        .await
        .unwrap();
    lossy.lose_all("POST", "/v1/swap");
    let lost = w.spend_credits(lossy.url(), Amount(1_000_000)).await;
    assert!(
        matches!(lost, Err(WalletError::SpendPending { .. })),
        "{lost:?}"
    );
    let b = w.credit_balance().await.unwrap();
    assert!(b[0].pending.0 > 0);
    assert!(b[0].unspent.0 < 6_500_000);
    let collected = w.collect_credits(&net.operator_url).await.unwrap();
    assert_eq!(collected.completed, 1);
    assert_eq!(collected.pending, 0);
    assert_eq!(unspent(&w).await, Amount(6_500_000));
    assert_eq!(w.credit_balance().await.unwrap()[0].pending, Amount::ZERO);
    // Nothing more to collect.
    assert_eq!(
        w.collect_credits(&net.operator_url).await.unwrap(),
        Default::default()
    );

    // A fresh wallet from the same phrase finds the same unspent credits.
    let copy = Wallet::restore_with(
        &dir.path().join("copy.db"),
        "pw2",
        &phrase,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let r = copy
        .restore_credits(
            &net.operator_url,
            RestoreOptions {
                batch: 10,
                empty_batches: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.balance, Amount(6_500_000));
    assert_eq!(unspent(&copy).await, Amount(6_500_000));
    assert!(r.spent > 0);
    let mine: std::collections::BTreeSet<String> = w
        .credit_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.state == TokenState::Unspent)
        .map(|t| t.y)
        .collect();
    let restored: std::collections::BTreeSet<String> = copy
        .credit_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.y)
        .collect();
    assert_eq!(mine, restored);
    // Restoring again adds nothing.
    let again = copy
        .restore_credits(
            &net.operator_url,
            RestoreOptions {
                batch: 10,
                empty_batches: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.restored, 0);
    assert_eq!(again.balance, Amount(6_500_000));

    // Both copies spend the same tokens at once: exactly one wins.
    let (a, b) = tokio::join!(
        w.spend_credits(&net.operator_url, Amount(1_000_000)),
        copy.spend_credits(&net.operator_url, Amount(2_000_000)),
    );
    let (winner, loser, lost) = match (a, b) {
        (Ok(_), Err(e)) => (&w, &copy, e),
        (Err(e), Ok(_)) => (&copy, &w, e),
        other => panic!("expected exactly one spend to win: {other:?}"),
    };
    let WalletError::CreditsAlreadySpent { tokens, value, .. } = lost else {
        panic!("expected CreditsAlreadySpent, got {lost:?}");
    };
    assert!(tokens > 0);
    // The loser marked them spent: its balance dropped by their value, and what it still
    // holds is unspent at the operator.
    assert_eq!(unspent(loser).await.0, 6_500_000 - value.0);
    let held: Vec<String> = loser
        .credit_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.state == TokenState::Unspent)
        .map(|t| t.y)
        .collect();
    assert!(at_operator(&net, &held)
        .await
        .iter()
        .all(|s| *s == AtOperator::Unspent));
    assert!(unspent(winner).await.0 < 6_500_000);
    net.stop().await.unwrap();
}
