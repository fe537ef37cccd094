//! The storage suite, run against SQLite and PostgreSQL alike. Every test is instantiated
//! twice by `both!`; PostgreSQL must be reachable (see `smpx_store::scratch`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_core::api::VoucherState;
use smpx_core::ledger::{self, Totals};
use smpx_core::Amount;
use smpx_store::coordinator::*;
use smpx_store::issuer::*;
use smpx_store::operator::*;
use smpx_store::scratch::{self, Which};
use smpx_store::Db;

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Which::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Which::Postgres).await } )* }
    };
}

both!(
    publish_is_unique_and_charges_once,
    limit_and_whitelist_refuse_without_writing,
    redemption_states_and_idempotent_retry,
    racing_redemptions_exactly_one_wins,
    racing_publishes_respect_the_limit,
    expiry_releases_only_expired_live_vouchers,
    migrations_are_idempotent,
    topup_code_sells_exactly_once,
    operator_records_are_idempotent,
);

async fn db(which: Which) -> (Db, Option<tempfile::TempDir>) {
    let (url, guard) = scratch::database(which).await.unwrap();
    (Db::connect(&url).await.unwrap(), guard)
}

const D10: Amount = Amount(10_000_000);

async fn coordinator(which: Which, limit: Amount) -> (CoordinatorStore, Option<tempfile::TempDir>) {
    let (db, g) = db(which).await;
    let s = CoordinatorStore::open(db).await.unwrap();
    s.add_issuer("iss", &[1; 32], limit, 0).await.unwrap();
    s.add_operator("op", &[2; 32], 6000, 0).await.unwrap();
    s.add_operator("op2", &[3; 32], 7000, 0).await.unwrap();
    s.insert_key(&KeyRow {
        key_id: [9; 32],
        issuer_id: "iss".into(),
        denomination: 10,
        period: 0,
        public_key: vec![1, 2, 3],
        registered_at: 0,
    })
    .await
    .unwrap();
    (s, g)
}

fn voucher(c: u8, published_at: u64, expires_at: u64) -> NewVoucher {
    NewVoucher {
        commitment: [c; 32],
        denomination: 10,
        value: D10,
        issuer_id: "iss".into(),
        key_id: [9; 32],
        published_at,
        expires_at,
    }
}

fn redemption(c: u8, op: &str, digest: u8, now: u64) -> NewRedemption<'_> {
    NewRedemption {
        commitment: [c; 32],
        denomination: 10,
        operator_id: op,
        envelope_digest: [digest; 32],
        now,
        postings: ledger::redeem(op, D10, 6000),
        receipt: format!("receipt-{op}-{digest}"),
    }
}

async fn replayed(s: &CoordinatorStore) -> Totals {
    let entries = s.entries(0, 1000).await.unwrap();
    let t = Totals::replay(&entries).unwrap();
    let published = s.totals().await.unwrap();
    assert_eq!(t, published.totals, "SQL totals and the replayed log agree");
    assert!(published.conserved);
    t
}

async fn publish_is_unique_and_charges_once(which: Which) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    assert_eq!(
        s.publish(&voucher(1, 10, 100)).await.unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(
        s.publish(&voucher(1, 11, 100)).await.unwrap(),
        PublishOutcome::AlreadyPublished
    );
    let i = s.issuer("iss").await.unwrap().unwrap();
    assert_eq!(i.info.published, D10, "the limit is charged once");
    assert_eq!(s.entries(0, 100).await.unwrap().len(), 1);
    let v = s.voucher(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((v.state, v.published_at), (VoucherState::Live, 10));
    assert_eq!(replayed(&s).await.live, D10);
}

async fn limit_and_whitelist_refuse_without_writing(which: Which) {
    let (s, _g) = coordinator(which, Amount(15_000_000)).await;
    assert_eq!(
        s.publish(&voucher(1, 0, 100)).await.unwrap(),
        PublishOutcome::Published
    );
    assert_eq!(
        s.publish(&voucher(2, 0, 100)).await.unwrap(),
        PublishOutcome::LimitExceeded
    );
    assert!(
        s.voucher(&[2; 32]).await.unwrap().is_none(),
        "nothing half-written"
    );
    assert!(s.set_issuer_active("iss", false).await.unwrap());
    s.set_issuer_limit("iss", Amount(1_000_000_000))
        .await
        .unwrap();
    assert_eq!(
        s.publish(&voucher(3, 0, 100)).await.unwrap(),
        PublishOutcome::IssuerInactive
    );
    assert!(s.voucher(&[3; 32]).await.unwrap().is_none());
    assert_eq!(s.entries(0, 100).await.unwrap().len(), 1);
    assert_eq!(s.issuer("iss").await.unwrap().unwrap().info.published, D10);
}

async fn redemption_states_and_idempotent_retry(which: Which) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    s.publish(&voucher(1, 0, 100)).await.unwrap();
    assert_eq!(
        s.redeem(&redemption(7, "op", 1, 5)).await.unwrap(),
        RedeemOutcome::Unknown
    );
    assert_eq!(
        s.redeem(&redemption(1, "op", 1, 5)).await.unwrap(),
        RedeemOutcome::Redeemed
    );
    // The same envelope from the same operator: the stored receipt, no second payment.
    assert_eq!(
        s.redeem(&redemption(1, "op", 1, 6)).await.unwrap(),
        RedeemOutcome::Replay("receipt-op-1".into())
    );
    assert_eq!(
        s.redeem(&redemption(1, "op", 2, 6)).await.unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    assert_eq!(
        s.redeem(&redemption(1, "op2", 1, 6)).await.unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    let t = replayed(&s).await;
    assert_eq!(t.redeemed, D10);
    assert_eq!(t.paid_to_operators, Amount(6_000_000));
    assert_eq!(t.live, Amount::ZERO);
    let ops = s.operators().await.unwrap();
    assert_eq!(
        ops.iter().find(|o| o.id == "op").unwrap().earned,
        Amount(6_000_000)
    );
}

async fn racing_redemptions_exactly_one_wins(which: Which) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    s.publish(&voucher(1, 0, 100)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let op = if i % 2 == 0 { "op" } else { "op2" };
            s.redeem(&redemption(1, op, 100 + i, 5)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() == RedeemOutcome::Redeemed {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    let t = replayed(&s).await;
    assert_eq!(t.redeemed, D10, "paid exactly once");
}

async fn racing_publishes_respect_the_limit(which: Which) {
    let (s, _g) = coordinator(which, Amount(50_000_000)).await;
    let mut tasks = Vec::new();
    for c in 0..12u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.publish(&voucher(c, 0, 100)).await.unwrap()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            PublishOutcome::Published => ok += 1,
            PublishOutcome::LimitExceeded => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 5, "exactly the limit's worth is published");
    assert_eq!(replayed(&s).await.published, Amount(50_000_000));
    assert_eq!(
        s.issuer("iss").await.unwrap().unwrap().info.published,
        Amount(50_000_000)
    );
}

async fn expiry_releases_only_expired_live_vouchers(which: Which) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    s.publish(&voucher(1, 0, 100)).await.unwrap();
    s.publish(&voucher(2, 0, 100)).await.unwrap();
    s.publish(&voucher(3, 50, 150)).await.unwrap();
    s.redeem(&redemption(1, "op", 1, 10)).await.unwrap();
    assert_eq!(s.release_expired(99).await.unwrap(), (0, Amount::ZERO));
    // Voucher 2 expired at 100: refused, then released.
    assert_eq!(
        s.redeem(&redemption(2, "op", 2, 100)).await.unwrap(),
        RedeemOutcome::Expired
    );
    assert_eq!(s.release_expired(100).await.unwrap(), (1, D10));
    assert_eq!(
        s.release_expired(100).await.unwrap(),
        (0, Amount::ZERO),
        "released once"
    );
    assert_eq!(
        s.redeem(&redemption(2, "op", 2, 101)).await.unwrap(),
        RedeemOutcome::Expired
    );
    assert_eq!(
        s.voucher(&[2; 32]).await.unwrap().unwrap().state,
        VoucherState::Released
    );
    let t = replayed(&s).await;
    assert_eq!(
        (t.published, t.redeemed, t.released, t.live),
        (Amount(30_000_000), D10, D10, D10)
    );
}

async fn migrations_are_idempotent(which: Which) {
    let (db, _g) = db(which).await;
    let a = CoordinatorStore::open(db.clone()).await.unwrap();
    a.add_issuer("iss", &[1; 32], D10, 0).await.unwrap();
    let b = CoordinatorStore::open(db.clone()).await.unwrap();
    assert!(
        b.issuer("iss").await.unwrap().is_some(),
        "reopening keeps the data"
    );
    IssuerStore::open(db.clone()).await.unwrap();
    OperatorStore::open(db).await.unwrap();
}

async fn topup_code_sells_exactly_once(which: Which) {
    let (db, _g) = db(which).await;
    let s = IssuerStore::open(db).await.unwrap();
    s.insert_codes("b1", 10, &[[5; 32]], 0).await.unwrap();
    let sale = |blinded: u8| NewSale {
        at: 1,
        denomination: 10,
        value: D10,
        key_id: [9; 32],
        blinded_hash: [blinded; 32],
        payment: SalePayment::TopupCode { code_hash: [5; 32] },
        limit: Amount(1_000_000_000),
    };
    let mut tasks = Vec::new();
    for b in 0..8u8 {
        let s = s.clone();
        let sale = sale(b);
        tasks.push(tokio::spawn(async move { s.sell(&sale).await.unwrap() }));
    }
    let mut sold = 0;
    for t in tasks {
        match t.await.unwrap() {
            SaleOutcome::Sold => sold += 1,
            SaleOutcome::CodeRejected => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sold, 1);
    assert_eq!(s.sold().await.unwrap(), D10);
    assert_eq!(s.code_counts().await.unwrap(), (0, 1));
    // Limit: the devnet backend still obeys it.
    let mut devnet = sale(99);
    devnet.payment = SalePayment::Devnet;
    devnet.limit = Amount(15_000_000);
    assert_eq!(s.sell(&devnet).await.unwrap(), SaleOutcome::LimitExceeded);
    // A wrong-denomination code is rejected.
    s.insert_codes("b2", 100, &[[6; 32]], 0).await.unwrap();
    let mut wrong = sale(1);
    wrong.payment = SalePayment::TopupCode { code_hash: [6; 32] };
    assert_eq!(s.sell(&wrong).await.unwrap(), SaleOutcome::CodeRejected);
}

async fn operator_records_are_idempotent(which: Which) {
    let (db, _g) = db(which).await;
    let s = OperatorStore::open(db).await.unwrap();
    let r = |receipt: &str| NewOperatorRedemption {
        envelope_digest: [1; 32],
        denomination: 10,
        credited_units: D10.0,
        operator_units: 6_000_000,
        at: 1,
        receipt: receipt.into(),
    };
    assert_eq!(s.record(&r("first")).await.unwrap(), "first");
    assert_eq!(
        s.record(&r("second")).await.unwrap(),
        "first",
        "the first receipt stands"
    );
    assert_eq!(s.summary().await.unwrap(), (1, D10.0, 6_000_000));
}
