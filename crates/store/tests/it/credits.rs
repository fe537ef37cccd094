//! The operator's credit store (spent registry and spend saga), run against SQLite and
//! PostgreSQL alike. Every test is instantiated twice by `both!`; PostgreSQL must be
//! reachable (see `smpx_testdb`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{Rng, SeedableRng};
use smpx_core::credits::{hash_to_curve, KeysetId, Point};
use smpx_core::Amount;
use smpx_store::credits::*;
use smpx_store::Db;
use smpx_testdb::{self as scratch, both, Backend};
use sqlx::Row;

both!(
    double_spend_within_one_request_writes_nothing,
    double_spend_across_requests_is_refused,
    racing_spends_of_one_token_exactly_one_wins,
    racing_overlapping_spends_never_deadlock,
    blinded_output_is_never_signed_twice,
    cancel_refunds_and_frees_outputs,
    complete_and_cancel_are_idempotent_and_exclusive,
    prune_removes_only_expired,
    batch_keeps_each_saga_atomic,
    racing_batches_exactly_one_wins,
    crash_and_recovery_never_spend_and_refund_a_token,
    issuance_first_record_stands,
    migrations_are_idempotent,
);

const NOW: u64 = 1_750_000_000;
const DAY: u64 = 86_400;
const LIFE: u64 = 90 * DAY;

async fn open(which: Backend) -> (CreditStore, String, Option<tempfile::TempDir>) {
    let (url, guard) = scratch::database(which).await.unwrap();
    let store = CreditStore::open(Db::connect(&url).await.unwrap())
        .await
        .unwrap();
    (store, url, guard)
}

/// A distinct valid point per `n` (the same `n` gives the same point).
fn point(n: u64) -> Point {
    hash_to_curve(format!("smpx-store-credits-test-{n}").as_bytes()).unwrap()
}

fn keyset() -> KeysetId {
    KeysetId::from_hex("01aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899")
        .unwrap()
}

fn input(n: u64, expiry: u64) -> SpendInput {
    SpendInput {
        y: point(n),
        amount: Amount(1 << (n % 8)),
        keyset: keyset(),
        final_expiry: expiry,
    }
}

static SAGAS: AtomicU64 = AtomicU64::new(0);

fn saga_id() -> String {
    format!(
        "saga-{}-{:08x}",
        SAGAS.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// A spend of tokens `ys` (expiring in `LIFE`) with change outputs `bs` (point numbers).
fn spend(ys: &[u64], bs: &[u64]) -> NewSpend {
    NewSpend {
        saga_id: saga_id(),
        inputs: ys.iter().map(|&n| input(n, NOW + LIFE)).collect(),
        outputs: bs.iter().map(|&n| point(n)).collect(),
        outputs_json: format!("{bs:?}"),
        outputs_expiry: NOW + LIFE,
        now: NOW,
    }
}

fn ys(ns: &[u64]) -> Vec<Point> {
    ns.iter().map(|&n| point(n)).collect()
}

async fn count(s: &CreditStore, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(s.db().pool())
        .await
        .unwrap()
}

/// The saga holding token `y`, if any.
async fn holder(s: &CreditStore, y: &Point) -> Option<String> {
    sqlx::query("SELECT saga_id FROM credit_inputs WHERE y = $1")
        .bind(&y.as_bytes()[..])
        .fetch_optional(s.db().pool())
        .await
        .unwrap()
        .map(|r| r.try_get("saga_id").unwrap())
}

/// Structural invariants that must hold after anything: every registered token and reserved
/// output belongs to a pending or done saga (a cancelled saga holds nothing), and every such
/// saga holds all the tokens and outputs it lists.
async fn assert_consistent(s: &CreditStore) {
    for (sql, what) in [
        (
            "SELECT COUNT(*) FROM credit_inputs i LEFT JOIN credit_sagas g ON g.id = i.saga_id
             WHERE g.id IS NULL OR g.state = 'cancelled'",
            "a token held by a cancelled or missing saga",
        ),
        (
            "SELECT COUNT(*) FROM credit_outputs o LEFT JOIN credit_sagas g ON g.id = o.saga_id
             WHERE o.saga_id IS NOT NULL AND (g.id IS NULL OR g.state = 'cancelled')",
            "an output held by a cancelled or missing saga",
        ),
    ] {
        assert_eq!(count(s, sql).await, 0, "{what}");
    }
    for (column, table, what) in [
        (
            "inputs",
            "credit_inputs",
            "every live saga holds all its tokens",
        ),
        (
            "output_keys",
            "credit_outputs",
            "every live saga holds all its outputs",
        ),
    ] {
        let listed = format!(
            "SELECT CAST(COALESCE(SUM(length({column}) / 33), 0) AS BIGINT) FROM credit_sagas
             WHERE state <> 'cancelled'"
        );
        let held =
            format!("SELECT COUNT(*) FROM {table} t JOIN credit_sagas g ON g.id = t.saga_id");
        assert_eq!(count(s, &listed).await, count(s, &held).await, "{what}");
    }
}

async fn double_spend_within_one_request_writes_nothing(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let req = spend(&[1, 2, 1], &[100]);
    assert_eq!(
        s.begin_spend(&req).await.unwrap(),
        BeginOutcome::DoubleSpend { y: point(1) }
    );
    assert_eq!(s.state(&ys(&[1, 2])).await.unwrap(), vec![None, None]);
    assert_eq!(s.saga(&req.saga_id).await.unwrap(), None);
    // The output was not reserved either: a clean request may use it.
    assert_eq!(
        s.begin_spend(&spend(&[1, 2], &[100])).await.unwrap(),
        BeginOutcome::Started
    );
}

async fn double_spend_across_requests_is_refused(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let first = spend(&[1, 2], &[100]);
    assert_eq!(s.begin_spend(&first).await.unwrap(), BeginOutcome::Started);
    assert_eq!(
        s.state(&ys(&[1, 2, 3])).await.unwrap(),
        vec![Some(InputState::Pending), Some(InputState::Pending), None]
    );
    // While pending, and once spent, the token is refused; the other token of the refused
    // request stays unspent and its output free.
    let second = spend(&[3, 2], &[101]);
    assert_eq!(
        s.begin_spend(&second).await.unwrap(),
        BeginOutcome::DoubleSpend { y: point(2) }
    );
    assert!(s
        .complete_spend(&first.saga_id, "[\"sig\"]", NOW + 1)
        .await
        .unwrap());
    assert_eq!(
        s.begin_spend(&spend(&[1], &[])).await.unwrap(),
        BeginOutcome::DoubleSpend { y: point(1) }
    );
    assert_eq!(
        s.state(&ys(&[1, 2, 3])).await.unwrap(),
        vec![Some(InputState::Spent), Some(InputState::Spent), None]
    );
    assert_eq!(s.saga(&second.saga_id).await.unwrap(), None);
    assert_eq!(
        s.begin_spend(&spend(&[3], &[101])).await.unwrap(),
        BeginOutcome::Started
    );
    // A reused saga id is the caller's bug, and writes nothing.
    let mut again = spend(&[4], &[102]);
    again.saga_id = first.saga_id.clone();
    assert!(s.begin_spend(&again).await.unwrap_err().is_duplicate());
    assert_eq!(s.state(&ys(&[4])).await.unwrap(), vec![None]);
    assert_consistent(&s).await;
}

async fn racing_spends_of_one_token_exactly_one_wins(which: Backend) {
    let (s, _url, _g) = open(which).await;
    for round in 0..3u64 {
        let base = 1000 * (round + 1);
        let mut tasks = Vec::new();
        for t in 0..24u64 {
            let s = s.clone();
            // Each request spends the shared token and one of its own, with its own change.
            let req = spend(&[base, base + 1 + t], &[base + 500 + t]);
            tasks.push(tokio::spawn(async move {
                let out = s.begin_spend(&req).await.unwrap();
                (req, out)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (req, out) = t.await.unwrap();
            match out {
                BeginOutcome::Started => winners.push(req),
                BeginOutcome::DoubleSpend { y } => {
                    assert_eq!(y, point(base));
                    // Nothing of the loser remains.
                    assert_eq!(s.saga(&req.saga_id).await.unwrap(), None);
                    assert_eq!(s.state(&[req.inputs[1].y]).await.unwrap(), vec![None]);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one request spends the token");
        assert_eq!(
            holder(&s, &point(base)).await,
            Some(winners[0].saga_id.clone())
        );
        assert_eq!(
            count(&s, "SELECT COUNT(*) FROM credit_outputs").await,
            round as i64 + 1
        );
    }
    assert_consistent(&s).await;
}

async fn racing_overlapping_spends_never_deadlock(which: Backend) {
    let (s, _url, _g) = open(which).await;
    // Rounds of 16 requests, each spending 30 of the round's 100 tokens in random order: they
    // overlap pairwise, so inserting in request order would deadlock (PostgreSQL would abort
    // one transaction with an error); no two winners may share a token.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut tasks = Vec::new();
    for round in 0..4u64 {
        for t in 0..16u64 {
            let mut pool: Vec<u64> = (0..100).map(|k| 1000 * round + k).collect();
            let mut ys = Vec::new();
            for _ in 0..30 {
                ys.push(pool.swap_remove(rng.gen_range(0..pool.len())));
            }
            let req = spend(&ys, &[100_000 + 100 * round + t]);
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let out = s.begin_spend(&req).await.unwrap();
                (req, out)
            }));
        }
    }
    let mut owner: HashMap<Vec<u8>, String> = HashMap::new();
    let mut started = 0;
    for t in tasks {
        let (req, out) = t.await.unwrap();
        if out == BeginOutcome::Started {
            started += 1;
            for i in &req.inputs {
                assert!(
                    owner
                        .insert(i.y.as_bytes().to_vec(), req.saga_id.clone())
                        .is_none(),
                    "a token spent by two requests"
                );
                assert_eq!(holder(&s, &i.y).await, Some(req.saga_id.clone()));
            }
        } else {
            assert!(matches!(out, BeginOutcome::DoubleSpend { .. }));
            assert_eq!(s.saga(&req.saga_id).await.unwrap(), None);
        }
    }
    assert!(started >= 4, "at least one winner a round: {started}");
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM credit_inputs").await,
        owner.len() as i64
    );
    assert_consistent(&s).await;
}

async fn blinded_output_is_never_signed_twice(which: Backend) {
    let (s, _url, _g) = open(which).await;
    // Twice in one request.
    assert_eq!(
        s.begin_spend(&spend(&[1], &[100, 101, 100])).await.unwrap(),
        BeginOutcome::OutputReused { b: point(100) }
    );
    assert_eq!(s.state(&ys(&[1])).await.unwrap(), vec![None]);
    // Across requests: the second request's tokens are not taken.
    let first = spend(&[1], &[100, 101]);
    assert_eq!(s.begin_spend(&first).await.unwrap(), BeginOutcome::Started);
    let second = spend(&[2, 3], &[102, 101]);
    assert_eq!(
        s.begin_spend(&second).await.unwrap(),
        BeginOutcome::OutputReused { b: point(101) }
    );
    assert_eq!(s.state(&ys(&[2, 3])).await.unwrap(), vec![None, None]);
    assert_eq!(s.saga(&second.saga_id).await.unwrap(), None);
    // Still refused once the first is done (the output stays signed).
    assert!(s.complete_spend(&first.saga_id, "[]", NOW).await.unwrap());
    assert_eq!(
        s.begin_spend(&spend(&[2], &[100])).await.unwrap(),
        BeginOutcome::OutputReused { b: point(100) }
    );
    // Issuance and spending share the reservation, both ways.
    let issued = NewIssuance {
        digest: [7; 32],
        outputs: ys(&[102, 101]),
        signatures: "[\"i\"]".into(),
        final_expiry: NOW + LIFE,
        now: NOW,
    };
    assert_eq!(
        s.record_issuance(&issued).await.unwrap(),
        IssuanceOutcome::OutputReused { b: point(101) }
    );
    assert_eq!(s.issuance(&[7; 32]).await.unwrap(), None);
    let issued = NewIssuance {
        outputs: ys(&[102, 103]),
        ..issued
    };
    assert_eq!(
        s.record_issuance(&issued).await.unwrap(),
        IssuanceOutcome::Issued("[\"i\"]".into())
    );
    assert_eq!(
        s.begin_spend(&spend(&[2], &[103])).await.unwrap(),
        BeginOutcome::OutputReused { b: point(103) }
    );
    // Racing requests for one output: exactly one wins.
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let s = s.clone();
        let req = spend(&[200 + t], &[300]);
        tasks.push(tokio::spawn(
            async move { s.begin_spend(&req).await.unwrap() },
        ));
    }
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            BeginOutcome::Started => started += 1,
            out => assert_eq!(out, BeginOutcome::OutputReused { b: point(300) }),
        }
    }
    assert_eq!(started, 1);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM credit_inputs").await, 2);
    assert_consistent(&s).await;
}

async fn cancel_refunds_and_frees_outputs(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let first = spend(&[1, 2], &[100]);
    assert_eq!(s.begin_spend(&first).await.unwrap(), BeginOutcome::Started);
    assert!(s.cancel_spend(&first.saga_id, NOW + 5).await.unwrap());
    assert_eq!(s.state(&ys(&[1, 2])).await.unwrap(), vec![None, None]);
    let saga = s.saga(&first.saga_id).await.unwrap().unwrap();
    assert_eq!(
        (saga.state, saga.finished_at, saga.signatures),
        (SagaState::Cancelled, Some(NOW + 5), None)
    );
    // The refunded tokens, and the freed output, can be spent again (a wallet retrying
    // with the same deterministic outputs).
    let retry = spend(&[1, 2], &[100]);
    assert_eq!(s.begin_spend(&retry).await.unwrap(), BeginOutcome::Started);
    assert!(s
        .complete_spend(&retry.saga_id, "[\"c\"]", NOW)
        .await
        .unwrap());
    assert_eq!(
        s.state(&ys(&[1, 2])).await.unwrap(),
        vec![Some(InputState::Spent); 2]
    );
    // A done saga cannot be cancelled: no refund of spent tokens.
    assert!(!s.cancel_spend(&retry.saga_id, NOW).await.unwrap());
    assert_eq!(
        s.state(&ys(&[1, 2])).await.unwrap(),
        vec![Some(InputState::Spent); 2]
    );
    assert_consistent(&s).await;
}

async fn complete_and_cancel_are_idempotent_and_exclusive(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let a = spend(&[1], &[100]);
    let b = spend(&[2], &[101]);
    for req in [&a, &b] {
        assert_eq!(s.begin_spend(req).await.unwrap(), BeginOutcome::Started);
    }
    assert!(s.complete_spend(&a.saga_id, "first", NOW).await.unwrap());
    assert!(s.complete_spend(&a.saga_id, "second", NOW).await.unwrap());
    assert_eq!(
        s.saga(&a.saga_id).await.unwrap().unwrap().signatures,
        Some("first".into()),
        "the first signatures stand"
    );
    assert!(!s.cancel_spend(&a.saga_id, NOW).await.unwrap());
    assert!(s.cancel_spend(&b.saga_id, NOW).await.unwrap());
    assert!(s.cancel_spend(&b.saga_id, NOW).await.unwrap());
    assert!(!s.complete_spend(&b.saga_id, "late", NOW).await.unwrap());
    assert_eq!(s.saga(&b.saga_id).await.unwrap().unwrap().signatures, None);
    assert!(!s.complete_spend("no-such-saga", "x", NOW).await.unwrap());
    assert!(!s.cancel_spend("no-such-saga", NOW).await.unwrap());
    // Batched completion answers each saga, repeated ones included.
    let c = spend(&[3], &[]);
    assert_eq!(s.begin_spend(&c).await.unwrap(), BeginOutcome::Started);
    assert_eq!(
        s.complete_spends(
            &[
                (c.saga_id.as_str(), "c"),
                (a.saga_id.as_str(), "a2"),
                (b.saga_id.as_str(), "b2"),
                ("no-such-saga", "x"),
                (c.saga_id.as_str(), "c2"),
            ],
            NOW
        )
        .await
        .unwrap(),
        vec![true, true, false, false, true]
    );
    // Complete and cancel racing on many sagas: each ends in exactly one state, and its
    // tokens agree with it.
    let mut reqs = Vec::new();
    for t in 0..20u64 {
        let req = spend(&[1000 + t, 2000 + t], &[3000 + t]);
        assert_eq!(s.begin_spend(&req).await.unwrap(), BeginOutcome::Started);
        reqs.push(req);
    }
    let mut tasks = Vec::new();
    for req in &reqs {
        for k in 0..4 {
            let s = s.clone();
            let id = req.saga_id.clone();
            tasks.push(tokio::spawn(async move {
                let won = if k % 2 == 0 {
                    s.complete_spend(&id, "sigs", NOW).await.unwrap()
                } else {
                    s.cancel_spend(&id, NOW).await.unwrap()
                };
                (id, k % 2 == 0, won)
            }));
        }
    }
    let mut verdicts: HashMap<String, HashSet<bool>> = HashMap::new();
    for t in tasks {
        let (id, completing, won) = t.await.unwrap();
        if won {
            verdicts.entry(id).or_default().insert(completing);
        }
    }
    for req in &reqs {
        let v = &verdicts[&req.saga_id];
        assert_eq!(v.len(), 1, "complete and cancel both succeeded");
        let saga = s.saga(&req.saga_id).await.unwrap().unwrap();
        let want = if v.contains(&true) {
            (SagaState::Done, Some(InputState::Spent))
        } else {
            (SagaState::Cancelled, None)
        };
        assert_eq!(saga.state, want.0);
        assert_eq!(
            s.state(&req.inputs.iter().map(|i| i.y).collect::<Vec<_>>())
                .await
                .unwrap(),
            vec![want.1; 2]
        );
    }
    assert_consistent(&s).await;
}

async fn prune_removes_only_expired(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let t0 = NOW + 10 * DAY;
    let t1 = NOW + 20 * DAY;
    let mk = |ns: &[u64], bs: &[u64], expiry: u64| NewSpend {
        saga_id: saga_id(),
        inputs: ns.iter().map(|&n| input(n, expiry)).collect(),
        outputs: bs.iter().map(|&n| point(n)).collect(),
        outputs_json: "[]".into(),
        outputs_expiry: expiry,
        now: NOW,
    };
    let old_spent = mk(&[1, 2], &[100], t0);
    let old_pending = mk(&[3], &[101], t0);
    let new_spent = mk(&[4], &[102], t1);
    let old_cancelled = mk(&[5], &[103], t0);
    for r in [&old_spent, &old_pending, &new_spent, &old_cancelled] {
        assert_eq!(s.begin_spend(r).await.unwrap(), BeginOutcome::Started);
    }
    assert!(s
        .complete_spend(&old_spent.saga_id, "a", NOW)
        .await
        .unwrap());
    assert!(s
        .complete_spend(&new_spent.saga_id, "b", NOW)
        .await
        .unwrap());
    assert!(s.cancel_spend(&old_cancelled.saga_id, NOW).await.unwrap());
    let all = ys(&[1, 2, 3, 4]);
    let before = s.state(&all).await.unwrap();

    // At expiry, and within the clock-skew margin after it, nothing goes.
    for now in [t0 - 1, t0, t0 + PRUNE_MARGIN_SECS - 1] {
        assert_eq!(s.prune(now).await.unwrap(), PruneReport::default(), "{now}");
        assert_eq!(s.state(&all).await.unwrap(), before);
    }
    let report = s.prune(t0 + PRUNE_MARGIN_SECS).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            inputs: 2,
            outputs: 2,
            sagas: 2
        },
        "old spent tokens and outputs (old_spent's, old_pending's); old_spent's and the cancelled saga"
    );
    assert_eq!(
        s.state(&all).await.unwrap(),
        vec![
            None,
            None,
            Some(InputState::Pending),
            Some(InputState::Spent)
        ]
    );
    assert_eq!(s.saga(&old_spent.saga_id).await.unwrap(), None);
    assert_eq!(s.saga(&old_cancelled.saga_id).await.unwrap(), None);
    // The pending saga survives, and can still be recovered.
    assert!(s.saga(&old_pending.saga_id).await.unwrap().is_some());
    assert!(s.saga(&new_spent.saga_id).await.unwrap().is_some());
    assert!(s
        .complete_spend(&old_pending.saga_id, "c", t0 + DAY)
        .await
        .unwrap());
    let report = s.prune(t1 + PRUNE_MARGIN_SECS).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            inputs: 2,
            outputs: 1,
            sagas: 2
        }
    );
    assert_eq!(count(&s, "SELECT COUNT(*) FROM credit_sagas").await, 0);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM credit_inputs").await, 0);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM credit_outputs").await, 0);
}

async fn batch_keeps_each_saga_atomic(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let earlier = spend(&[10], &[110]);
    assert_eq!(
        s.begin_spend(&earlier).await.unwrap(),
        BeginOutcome::Started
    );
    let batch = vec![
        spend(&[1, 2], &[101]),        // fine
        spend(&[3, 10, 4], &[102]),    // token 10 is pending in the database
        spend(&[5, 6], &[103, 110]),   // output 110 is reserved in the database
        spend(&[7, 2], &[104]),        // token 2 is taken by the first saga of the batch
        spend(&[8], &[105, 101]),      // output 101 is taken by the first saga
        spend(&[9, 9], &[]),           // token 9 twice
        spend(&[11], &[106]),          // fine
        spend(&[12, 13], &[107, 108]), // fine
    ];
    let out = s.begin_spends(&batch).await.unwrap();
    assert_eq!(
        out,
        vec![
            BeginOutcome::Started,
            BeginOutcome::DoubleSpend { y: point(10) },
            BeginOutcome::OutputReused { b: point(110) },
            BeginOutcome::DoubleSpend { y: point(2) },
            BeginOutcome::OutputReused { b: point(101) },
            BeginOutcome::DoubleSpend { y: point(9) },
            BeginOutcome::Started,
            BeginOutcome::Started,
        ]
    );
    for (req, o) in batch.iter().zip(&out) {
        let saga = s.saga(&req.saga_id).await.unwrap();
        if *o == BeginOutcome::Started {
            assert_eq!(saga.unwrap().state, SagaState::Pending);
            for i in &req.inputs {
                assert_eq!(holder(&s, &i.y).await, Some(req.saga_id.clone()));
            }
        } else {
            assert_eq!(saga, None, "a refused saga leaves no row");
        }
    }
    // The refused sagas' other tokens and outputs are free.
    assert_eq!(
        s.state(&ys(&[3, 4, 5, 6, 7, 8, 9])).await.unwrap(),
        vec![None; 7]
    );
    assert_eq!(
        s.begin_spends(&[
            spend(&[3, 4], &[102]),
            spend(&[5, 6], &[103]),
            spend(&[7, 8, 9], &[104, 105]),
        ])
        .await
        .unwrap(),
        vec![BeginOutcome::Started; 3]
    );
    assert_eq!(s.begin_spends(&[]).await.unwrap(), vec![]);
    // A batch whose saga id exists fails as a whole, writing nothing.
    let mut dup = spend(&[20], &[120]);
    dup.saga_id = earlier.saga_id.clone();
    assert!(s
        .begin_spends(&[spend(&[21], &[121]), dup])
        .await
        .unwrap_err()
        .is_duplicate());
    assert_eq!(s.state(&ys(&[20, 21])).await.unwrap(), vec![None; 2]);
    assert_consistent(&s).await;
}

async fn racing_batches_exactly_one_wins(which: Backend) {
    let (s, _url, _g) = open(which).await;
    // Eight batches of 25 sagas over 60 tokens, each saga taking 3 random tokens and one
    // output from a pool of 40: heavy overlap within and across batches, in varying order.
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let batch: Vec<NewSpend> = (0..25)
            .map(|_| {
                let ys: Vec<u64> = (0..3).map(|_| rng.gen_range(0..60)).collect();
                spend(&ys, &[1000 + rng.gen_range(0..40)])
            })
            .collect();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let out = s.begin_spends(&batch).await.unwrap();
            (batch, out)
        }));
    }
    let mut token_owner: HashMap<Vec<u8>, String> = HashMap::new();
    let mut output_owner: HashSet<Vec<u8>> = HashSet::new();
    for t in tasks {
        let (batch, out) = t.await.unwrap();
        for (req, o) in batch.iter().zip(out) {
            if o == BeginOutcome::Started {
                for i in &req.inputs {
                    assert!(token_owner
                        .insert(i.y.as_bytes().to_vec(), req.saga_id.clone())
                        .is_none());
                }
                for b in &req.outputs {
                    assert!(output_owner.insert(b.as_bytes().to_vec()));
                }
            } else {
                assert_eq!(s.saga(&req.saga_id).await.unwrap(), None);
            }
        }
    }
    for (y, saga) in &token_owner {
        let p = Point::from_bytes(&y.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(holder(&s, &p).await.as_ref(), Some(saga));
    }
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM credit_inputs").await,
        token_owner.len() as i64
    );
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM credit_outputs").await,
        output_owner.len() as i64
    );
    assert_consistent(&s).await;
}

/// Many spends, some racing for the same tokens; tasks killed mid-transaction; the store
/// dropped with sagas pending (the process dies between begin and complete); reopened;
/// recovered by two recoverers that disagree (one completes, one cancels). After all that no
/// token is both spent and refunded, every done saga's change can be collected, and every
/// refunded token can be spent again.
async fn crash_and_recovery_never_spend_and_refund_a_token(which: Backend) {
    let (s, url, _g) = open(which).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut all: Vec<NewSpend> = Vec::new();
    // Before the crash: 60 requests over 90 tokens, 1-3 tokens each, some overlapping; about
    // a third completed, a sixth cancelled, the rest left pending.
    let mut tasks = Vec::new();
    for t in 0..60u64 {
        let n = rng.gen_range(1..=3);
        let ys: Vec<u64> = (0..n).map(|_| rng.gen_range(0..90)).collect();
        let req = spend(&ys, &[5000 + t]);
        all.push(req.clone());
        let fate = rng.gen_range(0..6);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if s.begin_spend(&req).await.unwrap() == BeginOutcome::Started {
                match fate {
                    0 | 1 => assert!(s
                        .complete_spend(&req.saga_id, &format!("sigs-{}", req.saga_id), NOW)
                        .await
                        .unwrap()),
                    2 => assert!(s.cancel_spend(&req.saga_id, NOW).await.unwrap()),
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Requests killed mid-flight: each either happened entirely or not at all.
    let mut killed = Vec::new();
    for t in 0..20u64 {
        let req = spend(&[200 + 2 * t, 201 + 2 * t], &[6000 + t]);
        all.push(req.clone());
        let s2 = s.clone();
        let r2 = req.clone();
        let task = tokio::spawn(async move { s2.begin_spend(&r2).await });
        tokio::time::sleep(std::time::Duration::from_micros(rng.gen_range(0..3000))).await;
        task.abort();
        killed.push(req);
    }
    // The crash: the pool goes away with pending sagas in the database.
    s.db().close().await;
    drop(s);

    let s = CreditStore::open(Db::connect(&url).await.unwrap())
        .await
        .unwrap();
    for req in &killed {
        let ys: Vec<Point> = req.inputs.iter().map(|i| i.y).collect();
        let states = s.state(&ys).await.unwrap();
        match s.saga(&req.saga_id).await.unwrap() {
            Some(saga) => {
                assert_eq!(saga.state, SagaState::Pending);
                assert_eq!(states, vec![Some(InputState::Pending); 2]);
                assert_eq!(
                    count(
                        &s,
                        &format!(
                            "SELECT COUNT(*) FROM credit_outputs WHERE saga_id = '{}'",
                            req.saga_id
                        )
                    )
                    .await,
                    1
                );
            }
            None => assert_eq!(states, vec![None; 2], "half a spend was written"),
        }
    }
    assert_consistent(&s).await;

    // Recovery, by two recoverers at once that decide differently.
    let pending = s.pending_sagas(NOW, 1000).await.unwrap();
    assert!(!pending.is_empty());
    assert!(s.pending_sagas(NOW - 1, 1000).await.unwrap().is_empty());
    let mut tasks = Vec::new();
    for (k, saga) in pending.iter().enumerate() {
        // The outputs to sign after the crash were stored with the saga.
        let req = all.iter().find(|r| r.saga_id == saga.id).unwrap();
        assert_eq!(saga.outputs, req.outputs_json);
        for completing in [k % 3 != 0, k % 3 == 0] {
            let s = s.clone();
            let id = saga.id.clone();
            tasks.push(tokio::spawn(async move {
                let won = if completing {
                    let sigs = format!("sigs-{id}");
                    s.complete_spends(&[(id.as_str(), sigs.as_str())], NOW + 60)
                        .await
                        .unwrap()[0]
                } else {
                    s.cancel_spend(&id, NOW + 60).await.unwrap()
                };
                (id, won)
            }));
        }
    }
    let mut winners: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        let (id, won) = t.await.unwrap();
        *winners.entry(id).or_default() += u32::from(won);
    }
    assert!(
        winners.values().all(|&w| w == 1),
        "exactly one of complete and cancel wins each saga"
    );
    assert!(s
        .pending_sagas(u64::MAX >> 1, 1000)
        .await
        .unwrap()
        .is_empty());
    assert_consistent(&s).await;

    // The invariant, saga by saga.
    let numbers: HashMap<Point, u64> = (0..250).map(|n| (point(n), n)).collect();
    let mut refunded: HashSet<u64> = HashSet::new();
    for req in &all {
        let ys: Vec<Point> = req.inputs.iter().map(|i| i.y).collect();
        let Some(saga) = s.saga(&req.saga_id).await.unwrap() else {
            continue; // refused or killed before commit: nothing was taken
        };
        match saga.state {
            SagaState::Done => {
                // Spent, and the wallet can collect its change.
                assert_eq!(saga.signatures, Some(format!("sigs-{}", req.saga_id)));
                for y in &ys {
                    assert_eq!(holder(&s, y).await, Some(req.saga_id.clone()));
                }
                assert_eq!(
                    s.state(&ys).await.unwrap(),
                    vec![Some(InputState::Spent); ys.len()]
                );
            }
            SagaState::Cancelled => {
                for (y, n) in ys.iter().zip(&req.inputs) {
                    assert_ne!(holder(&s, y).await, Some(req.saga_id.clone()));
                    if holder(&s, y).await.is_none() {
                        refunded.insert(numbers[&n.y]);
                    }
                }
                assert_eq!(saga.signatures, None);
            }
            SagaState::Pending => panic!("a saga left pending"),
        }
    }
    // Refunded tokens are spendable again; spent ones are not.
    for n in refunded {
        assert_eq!(
            s.begin_spend(&spend(&[n], &[])).await.unwrap(),
            BeginOutcome::Started
        );
    }
    let spent: Vec<Vec<u8>> = sqlx::query(
        "SELECT i.y FROM credit_inputs i JOIN credit_sagas g ON g.id = i.saga_id
         WHERE g.state = 'done'",
    )
    .fetch_all(s.db().pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get("y").unwrap())
    .collect();
    assert!(!spent.is_empty());
    for y in spent {
        let p = Point::from_bytes(&y.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(
            s.begin_spend(&NewSpend {
                inputs: vec![SpendInput {
                    y: p,
                    amount: Amount(1),
                    keyset: keyset(),
                    final_expiry: NOW + LIFE
                }],
                ..spend(&[], &[])
            })
            .await
            .unwrap(),
            BeginOutcome::DoubleSpend { y: p }
        );
    }
}

async fn issuance_first_record_stands(which: Backend) {
    let (s, _url, _g) = open(which).await;
    let first = NewIssuance {
        digest: [1; 32],
        outputs: ys(&[100, 101]),
        signatures: "first".into(),
        final_expiry: NOW + LIFE,
        now: NOW,
    };
    assert_eq!(
        s.record_issuance(&first).await.unwrap(),
        IssuanceOutcome::Issued("first".into())
    );
    // A retry, even with other outputs, gets the first signatures and reserves nothing.
    let retry = NewIssuance {
        outputs: ys(&[102]),
        signatures: "second".into(),
        ..first.clone()
    };
    assert_eq!(
        s.record_issuance(&retry).await.unwrap(),
        IssuanceOutcome::Replay("first".into())
    );
    assert_eq!(s.issuance(&[1; 32]).await.unwrap(), Some("first".into()));
    assert_eq!(
        s.begin_spend(&spend(&[1], &[102])).await.unwrap(),
        BeginOutcome::Started
    );
    // Repeated outputs.
    let twice = NewIssuance {
        digest: [2; 32],
        outputs: ys(&[103, 103]),
        ..first.clone()
    };
    assert_eq!(
        s.record_issuance(&twice).await.unwrap(),
        IssuanceOutcome::OutputReused { b: point(103) }
    );
    // Racing retries of one redemption: one record, everyone gets its signatures.
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let s = s.clone();
        let i = NewIssuance {
            digest: [3; 32],
            outputs: ys(&[200 + t]),
            signatures: format!("sig-{t}"),
            final_expiry: NOW + LIFE,
            now: NOW,
        };
        tasks.push(tokio::spawn(
            async move { s.record_issuance(&i).await.unwrap() },
        ));
    }
    let mut issued = Vec::new();
    let mut replays = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            IssuanceOutcome::Issued(sig) => issued.push(sig),
            IssuanceOutcome::Replay(sig) => {
                replays.insert(sig);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(issued.len(), 1);
    assert!(replays.is_empty() || replays == HashSet::from([issued[0].clone()]));
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM credit_outputs WHERE issuance IS NOT NULL"
        )
        .await,
        3,
        "two of the first issuance, one of the raced one"
    );
    // Issuance records outlive pruning (forgetting one would let it be paid again).
    s.prune(NOW + 10 * LIFE).await.unwrap();
    assert_eq!(s.issuance(&[1; 32]).await.unwrap(), Some("first".into()));
    assert_eq!(
        s.record_issuance(&first).await.unwrap(),
        IssuanceOutcome::Replay("first".into())
    );
}

async fn migrations_are_idempotent(which: Backend) {
    let (s, url, _g) = open(which).await;
    assert_eq!(
        s.begin_spend(&spend(&[1], &[2])).await.unwrap(),
        BeginOutcome::Started
    );
    // Two processes starting against one database at once.
    let (a, b) = tokio::join!(
        async { CreditStore::open(Db::connect(&url).await.unwrap()).await },
        async { CreditStore::open(Db::connect(&url).await.unwrap()).await },
    );
    let a = a.unwrap();
    b.unwrap();
    assert_eq!(
        a.state(&ys(&[1])).await.unwrap(),
        vec![Some(InputState::Pending)]
    );
}
