//! The storage suite, run against SQLite and PostgreSQL alike. Every test is instantiated
//! twice by `both!`; PostgreSQL must be reachable (see `smpx_testdb`).

use smpx_core::api::VoucherState;
use smpx_core::ledger::{self, Totals};
use smpx_core::Amount;
use smpx_store::coordinator::*;
use smpx_store::issuer::*;
use smpx_store::operator::*;
use smpx_store::Db;
use smpx_testdb::{self as scratch, both, Backend};

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
    appends_record_every_root_across_processes,
    failed_appends_leave_no_trace,
    nullifiers_spend_once_across_versions,
    racing_zk_redemptions_exactly_one_wins,
    release_by_books_is_conservative,
    mmr_leaves_are_counted_by_denomination_and_key,
    share_statements_suspension_and_share_sources,
);

async fn db(which: Backend) -> (Db, Option<tempfile::TempDir>) {
    let (url, guard) = scratch::database(which).await.unwrap();
    (Db::connect(&url).await.unwrap(), guard)
}

const D10: Amount = Amount(10_000_000);

async fn coordinator(
    which: Backend,
    limit: Amount,
) -> (CoordinatorStore, Option<tempfile::TempDir>) {
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
        mmrs: vec![],
        levels: 3,
    }
}

/// A voucher appended to `mmrs` (its group is the last).
fn in_mmrs(c: u8, published_at: u64, mmrs: &[u64]) -> NewVoucher {
    NewVoucher {
        mmrs: mmrs.to_vec(),
        expires_at: u64::MAX / 4,
        ..voucher(c, published_at, 0)
    }
}

fn redemption(c: u8, op: &str, digest: u8, now: u64) -> NewRedemption<'_> {
    NewRedemption {
        commitment: [c; 32],
        nullifier: [c; 32],
        denomination: 10,
        value: D10,
        operator_id: op,
        envelope_digest: [digest; 32],
        now,
        postings: ledger::redeem(op, D10, 6000),
        share: ShareSource::Admin,
        share_bps: 6000,
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

async fn publish_is_unique_and_charges_once(which: Backend) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    assert_eq!(
        s.publish(&voucher(1, 10, 100)).await.unwrap(),
        PublishOutcome::Published(vec![])
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

async fn limit_and_whitelist_refuse_without_writing(which: Backend) {
    let (s, _g) = coordinator(which, Amount(15_000_000)).await;
    assert_eq!(
        s.publish(&voucher(1, 0, 100)).await.unwrap(),
        PublishOutcome::Published(vec![])
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

async fn redemption_states_and_idempotent_retry(which: Backend) {
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

async fn racing_redemptions_exactly_one_wins(which: Backend) {
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

async fn racing_publishes_respect_the_limit(which: Backend) {
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
            PublishOutcome::Published(_) => ok += 1,
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

async fn expiry_releases_only_expired_live_vouchers(which: Backend) {
    let (s, _g) = coordinator(which, Amount(100_000_000)).await;
    s.publish(&voucher(1, 0, 100)).await.unwrap();
    s.publish(&voucher(2, 0, 100)).await.unwrap();
    s.publish(&voucher(3, 50, 150)).await.unwrap();
    s.redeem(&redemption(1, "op", 1, 10)).await.unwrap();
    assert_eq!(
        s.release_expired(99, None).await.unwrap(),
        (0, Amount::ZERO)
    );
    // Voucher 2 expired at 100: refused, then released.
    assert_eq!(
        s.redeem(&redemption(2, "op", 2, 100)).await.unwrap(),
        RedeemOutcome::Expired
    );
    assert_eq!(s.release_expired(100, None).await.unwrap(), (1, D10));
    assert_eq!(
        s.release_expired(100, None).await.unwrap(),
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

async fn migrations_are_idempotent(which: Backend) {
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

async fn topup_code_sells_exactly_once(which: Backend) {
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

async fn operator_records_are_idempotent(which: Backend) {
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

// ---- v0.2: MMRs, nullifiers, books --------------------------------------------------------

use smpx_core::crypto::{FieldBytes, Fr};
use smpx_core::mmr::{self, Mmr, MmrParams};

fn leaf(c: u8) -> Fr {
    FieldBytes([c; 32]).to_fr().unwrap()
}

fn zk(n: u8, mmr_id: u64, op: &str, digest: u8, now: u64) -> NewZkRedemption<'_> {
    NewZkRedemption {
        nullifier: [n; 32],
        mmr_id,
        denomination: 10,
        value: D10,
        operator_id: op,
        request_digest: [digest; 32],
        now,
        postings: ledger::redeem(op, D10, 6000),
        share: ShareSource::Statement(format!("statement-{digest}")),
        share_bps: 6000,
        receipt: format!("zk-{op}-{digest}"),
    }
}

async fn appends_record_every_root_across_processes(which: Backend) {
    let (a, _g) = coordinator(which, Amount(1_000_000_000)).await;
    // A second store on the same database has its own MMR cache, like another process.
    let b = CoordinatorStore::open(a.db().clone()).await.unwrap();
    let mut expected = Mmr::new(MmrParams::new(1, 3).unwrap()).unwrap();
    for c in 1..=20u8 {
        let s = if c % 3 == 0 { &b } else { &a };
        let mmrs: &[u64] = if c <= 10 { &[0, 1] } else { &[1, 2] };
        let PublishOutcome::Published(app) = s.publish(&in_mmrs(c, c.into(), mmrs)).await.unwrap()
        else {
            panic!("not published")
        };
        assert_eq!(app.len(), 2);
        expected.append(leaf(c)).unwrap();
        let in1 = app.iter().find(|x| x.proof.mmr.id == 1).unwrap();
        assert_eq!(in1.root, expected.root(), "same root as a fresh MMR");
        assert_eq!(in1.proof.leaf_index, u64::from(c) - 1);
        mmr::verify(&in1.root, &leaf(c), &in1.proof).unwrap();
        let row = a.root_at(1, expected.size()).await.unwrap().unwrap();
        assert_eq!(
            (row.root, row.at),
            (FieldBytes::from_fr(&expected.root()), u64::from(c))
        );
    }
    let rows = a.mmrs().await.unwrap();
    let sizes: Vec<(u64, u64, Amount)> =
        rows.iter().map(|r| (r.id, r.size, r.group_value)).collect();
    assert_eq!(
        sizes,
        vec![
            (0, 10, Amount::ZERO),
            (1, 20, Amount(100_000_000)),
            (2, 10, Amount(100_000_000))
        ],
        "each voucher's value is booked to its newest MMR only"
    );
    assert_eq!(rows[1].root, Some(FieldBytes::from_fr(&expected.root())));
    let found = b
        .find_root(&FieldBytes::from_fr(&expected.root_at(7).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.mmr_id, found.size), (1, 7));
    assert!(a.find_root(&FieldBytes([5; 32])).await.unwrap().is_none());
    let leaves = a.mmr_leaves(1, 5, 3).await.unwrap();
    assert_eq!(
        leaves,
        vec![
            FieldBytes([6; 32]),
            FieldBytes([7; 32]),
            FieldBytes([8; 32])
        ]
    );
    for (store, from) in [(&a, 3), (&b, 0), (&b, 20)] {
        let cp = store.consistency_proof(1, from, 20).await.unwrap().unwrap();
        cp.verify(&expected.root_at(from).unwrap(), &expected.root())
            .unwrap();
    }
}

async fn failed_appends_leave_no_trace(which: Backend) {
    let (a, _g) = coordinator(which, Amount(1_000_000_000)).await;
    // Levels 1: capacity 3.
    let small = |c: u8, mmrs: &[u64]| NewVoucher {
        levels: 1,
        ..in_mmrs(c, 0, mmrs)
    };
    for c in 1..=3 {
        assert!(matches!(
            a.publish(&small(c, &[6])).await.unwrap(),
            PublishOutcome::Published(_)
        ));
    }
    // MMR 5 takes the leaf in memory, MMR 6 is full: all rolled back.
    assert_eq!(
        a.publish(&small(4, &[5, 6])).await.unwrap(),
        PublishOutcome::MmrFull
    );
    assert!(a.voucher(&[4; 32]).await.unwrap().is_none());
    assert_eq!(
        a.publish(&small(1, &[5])).await.unwrap(),
        PublishOutcome::AlreadyPublished
    );
    let PublishOutcome::Published(app) = a.publish(&small(5, &[5])).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        app[0].proof.leaf_index, 0,
        "the rolled-back leaf left no gap"
    );
    let fresh = Mmr::from_leaves(MmrParams::new(5, 1).unwrap(), [leaf(5)]).unwrap();
    assert_eq!(app[0].root, fresh.root());
    assert_eq!(
        a.issuer("iss").await.unwrap().unwrap().info.published,
        Amount(40_000_000)
    );
    assert!(replayed(&a).await.published == Amount(40_000_000));
}

async fn nullifiers_spend_once_across_versions(which: Backend) {
    let (s, _g) = coordinator(which, Amount(1_000_000_000)).await;
    for c in 1..=3 {
        s.publish(&in_mmrs(c, 0, &[0, 1])).await.unwrap();
    }
    // v0.1 redemption of voucher 1 spends its nullifier ([1; 32] in these fixtures).
    assert_eq!(
        s.redeem(&redemption(1, "op", 1, 5)).await.unwrap(),
        RedeemOutcome::Redeemed
    );
    assert_eq!(
        s.redeem_zk(&zk(1, 0, "op", 9, 6)).await.unwrap(),
        ZkRedeemOutcome::AlreadyRedeemed
    );
    // v0.2 redemption of another nullifier, then its retry and a second spender.
    for (req, want) in [
        (zk(2, 0, "op", 2, 7), ZkRedeemOutcome::Redeemed),
        (
            zk(2, 0, "op", 2, 8),
            ZkRedeemOutcome::Replay("zk-op-2".into()),
        ),
        (zk(2, 1, "op2", 2, 8), ZkRedeemOutcome::AlreadyRedeemed),
        (zk(2, 0, "op", 3, 8), ZkRedeemOutcome::AlreadyRedeemed),
    ] {
        assert_eq!(s.redeem_zk(&req).await.unwrap(), want, "{req:?}");
    }
    // And a v0.1 envelope for voucher 2 after its v0.2 redemption is refused, nothing written.
    assert_eq!(
        s.redeem(&redemption(2, "op", 4, 9)).await.unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    assert_eq!(
        s.voucher(&[2; 32]).await.unwrap().unwrap().state,
        VoucherState::Live
    );
    assert!(s.nullifier_spent(&[2; 32]).await.unwrap());
    assert!(!s.nullifier_spent(&[3; 32]).await.unwrap());
    let rows = s.mmrs().await.unwrap();
    // Voucher 1 (group 1) by v0.1 is booked to its group; nullifier 2 through MMR 0.
    assert_eq!((rows[0].redeemed_via, rows[1].redeemed_via), (D10, D10));
    let t = replayed(&s).await;
    assert_eq!((t.redeemed, t.live), (Amount(20_000_000), D10));
}

async fn racing_zk_redemptions_exactly_one_wins(which: Backend) {
    let (a, _g) = coordinator(which, Amount(1_000_000_000)).await;
    let b = CoordinatorStore::open(a.db().clone()).await.unwrap();
    a.publish(&in_mmrs(1, 0, &[0])).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let op = if i % 4 < 2 { "op" } else { "op2" };
            s.redeem_zk(&zk(7, 0, op, 100 + i, 5)).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() == ZkRedeemOutcome::Redeemed {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(replayed(&a).await.redeemed, D10, "paid exactly once");
}

async fn release_by_books_is_conservative(which: Backend) {
    let (s, _g) = coordinator(which, Amount(1_000_000_000)).await;
    // Groups: voucher 1 → 0; 2, 3 → 1 (also in 0); 4 → 2 (also in 1).
    s.publish(&in_mmrs(1, 0, &[0])).await.unwrap();
    s.publish(&in_mmrs(2, 0, &[0, 1])).await.unwrap();
    s.publish(&in_mmrs(3, 0, &[0, 1])).await.unwrap();
    s.publish(&in_mmrs(4, 0, &[1, 2])).await.unwrap();
    // Two redemptions through MMR 0 (which ones, the coordinator cannot tell: here 2 and 3).
    s.redeem_zk(&zk(2, 0, "op", 1, 1)).await.unwrap();
    s.redeem_zk(&zk(3, 0, "op", 2, 1)).await.unwrap();
    assert_eq!(
        s.release_expired(10, None).await.unwrap(),
        (0, Amount::ZERO)
    );
    // MMR 0 expired: its group holds 10, but 20 went through it — nothing provably dead.
    let (_, v) = s.release_expired(10, Some(0)).await.unwrap();
    assert_eq!(v, Amount::ZERO);
    // MMRs 0 and 1 expired: groups 0+1 hold 30, 20 redeemed through 0 and 1: 10 is dead
    // (voucher 1 — it can no longer be redeemed anywhere).
    let (_, v) = s.release_expired(11, Some(1)).await.unwrap();
    assert_eq!(v, D10);
    assert_eq!(
        s.release_expired(12, Some(1)).await.unwrap().1,
        Amount::ZERO,
        "once"
    );
    // Voucher 4 is redeemed through MMR 2; once it expired nothing more is releasable.
    s.redeem_zk(&zk(4, 2, "op", 3, 13)).await.unwrap();
    assert_eq!(
        s.release_expired(14, Some(2)).await.unwrap().1,
        Amount::ZERO
    );
    assert_eq!(s.released_by_books().await.unwrap(), D10);
    let t = replayed(&s).await;
    assert_eq!(
        (t.published, t.redeemed, t.released, t.live),
        (Amount(40_000_000), Amount(30_000_000), D10, Amount::ZERO)
    );
}

/// The public counts behind the wallet's anonymity-set guard: an MMR's leaves by
/// denomination (a voucher in two MMRs counts in both), and publications per issuer key.
async fn mmr_leaves_are_counted_by_denomination_and_key(which: Backend) {
    let (a, _g) = coordinator(which, Amount(1_000_000_000)).await;
    // Another process on the same database keeps its own tally.
    let b = CoordinatorStore::open(a.db().clone()).await.unwrap();
    a.insert_key(&KeyRow {
        key_id: [8; 32],
        issuer_id: "iss".into(),
        denomination: 1,
        period: 0,
        public_key: vec![4, 5, 6],
        registered_at: 0,
    })
    .await
    .unwrap();
    let one = |c: u8, mmrs: &[u64]| NewVoucher {
        denomination: 1,
        value: Amount(1_000_000),
        key_id: [8; 32],
        ..in_mmrs(c, c.into(), mmrs)
    };
    for c in 1..=3u8 {
        a.publish(&in_mmrs(c, c.into(), &[0, 1])).await.unwrap();
    }
    a.publish(&one(4, &[0, 1])).await.unwrap();
    let counts = |s: CoordinatorStore, id: u64| async move {
        let size = s.mmr(id).await.unwrap().map_or(0, |r| r.size);
        s.denomination_counts(id, size).await.unwrap()
    };
    assert_eq!(counts(a.clone(), 0).await, vec![(1, 1), (10, 3)]);
    // More leaves, one of them published by the other process: only those are counted anew.
    b.publish(&one(5, &[0, 1])).await.unwrap();
    a.publish(&one(6, &[1, 2])).await.unwrap();
    assert_eq!(counts(a.clone(), 0).await, vec![(1, 2), (10, 3)]);
    assert_eq!(counts(b.clone(), 0).await, vec![(1, 2), (10, 3)]);
    assert_eq!(
        counts(a.clone(), 1).await,
        vec![(1, 3), (10, 3)],
        "in both MMRs"
    );
    assert_eq!(counts(a.clone(), 2).await, vec![(1, 1)]);
    // An older size than already counted is counted as of that size.
    assert_eq!(a.denomination_counts(1, 2).await.unwrap(), vec![(10, 2)]);
    assert_eq!(a.denomination_counts(7, 0).await.unwrap(), vec![]);

    let all = a.published_per_key(None, None).await.unwrap();
    assert_eq!((all[&[9; 32]], all[&[8; 32]]), (3, 3));
    let tens = a.published_per_key(Some("iss"), Some(10)).await.unwrap();
    assert_eq!(tens.into_iter().collect::<Vec<_>>(), vec![([9; 32], 3)]);
    assert!(a
        .published_per_key(Some("other"), None)
        .await
        .unwrap()
        .is_empty());
}

fn statement(digest: &str, period_start: u64, evaluated_at: u64, share_bps: u32) -> StatementRow {
    StatementRow {
        digest: digest.into(),
        operator_id: "op".into(),
        period_start,
        period_end: period_start + 100,
        evaluated_at,
        share_bps,
        signer: "ab".repeat(32),
        statement: format!("{{\"statement\":\"{digest}\"}}"),
        received_at: evaluated_at,
    }
}

/// Statements are kept by digest (once), the newest by period then evaluation, the one in
/// force by its period; a suspension is a flag on the operator; each redemption's ledger
/// entries carry where its share came from, and no other entry does.
async fn share_statements_suspension_and_share_sources(which: Backend) {
    let (s, _g) = coordinator(which, Amount(1_000_000_000)).await;
    assert_eq!(s.newest_statement("op").await.unwrap(), None);
    let today = statement("d1", 1000, 1000, 5000);
    let later = statement("d2", 1000, 1050, 5500);
    let tomorrow = statement("d3", 1100, 1060, 6000);
    for st in [&today, &later, &tomorrow] {
        s.insert_statement(st).await.unwrap();
    }
    assert!(s.insert_statement(&today).await.unwrap_err().is_duplicate());
    assert_eq!(
        s.newest_statement("op").await.unwrap().as_ref(),
        Some(&tomorrow)
    );
    assert_eq!(
        s.statement_at("op", 1099).await.unwrap().as_ref(),
        Some(&later)
    );
    assert_eq!(
        s.statement_at("op", 1100).await.unwrap().as_ref(),
        Some(&tomorrow)
    );
    assert_eq!(s.statement_at("op", 1200).await.unwrap(), None);
    assert_eq!(s.statement_at("op", 999).await.unwrap(), None);
    assert_eq!(s.statement_at("op2", 1050).await.unwrap(), None);
    assert_eq!(s.statement("d1").await.unwrap().as_ref(), Some(&today));
    assert_eq!(s.statement("nope").await.unwrap(), None);
    // A statement for an operator that does not exist is refused by the schema.
    let mut stray = statement("d4", 1000, 1000, 5000);
    stray.operator_id = "ghost".into();
    assert!(s.insert_statement(&stray).await.is_err());

    assert!(!s.operator("op").await.unwrap().unwrap().suspended);
    assert!(s.set_operator_suspended("op", true).await.unwrap());
    assert!(s.operator("op").await.unwrap().unwrap().suspended);
    assert!(s.set_operator_suspended("op", false).await.unwrap());
    assert!(!s.operator("op").await.unwrap().unwrap().suspended);
    assert!(!s.set_operator_suspended("ghost", true).await.unwrap());

    s.publish(&voucher(1, 0, 1_000_000)).await.unwrap();
    s.publish(&voucher(2, 0, 1_000_000)).await.unwrap();
    let admin = redemption(1, "op", 1, 10);
    assert_eq!(s.redeem(&admin).await.unwrap(), RedeemOutcome::Redeemed);
    let by_statement = NewRedemption {
        share: ShareSource::Statement("d2".into()),
        ..redemption(2, "op", 2, 11)
    };
    assert_eq!(
        s.redeem(&by_statement).await.unwrap(),
        RedeemOutcome::Redeemed
    );
    let entries = s.entries(0, 100).await.unwrap();
    let sources: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.kind,
                e.share_source.as_deref(),
                e.share_statement.as_deref(),
            )
        })
        .collect();
    use smpx_core::ledger::EntryKind::*;
    assert_eq!(
        sources,
        [
            (Publish, None, None),
            (Publish, None, None),
            (Redeem, Some("admin"), None),
            (Redeem, Some("admin"), None),
            (Redeem, Some("statement"), Some("d2")),
            (Redeem, Some("statement"), Some("d2")),
        ]
    );
    // Each redemption entry also records the redemption it splits; no other entry does.
    let note = smpx_core::ledger::RedemptionNote {
        operator_id: "op".into(),
        value: D10,
        share_bps: 6000,
    };
    let notes: Vec<_> = entries.iter().map(|e| e.redemption.as_ref()).collect();
    assert_eq!(
        notes,
        [
            None,
            None,
            Some(&note),
            Some(&note),
            Some(&note),
            Some(&note)
        ]
    );
    replayed(&s).await;
}
