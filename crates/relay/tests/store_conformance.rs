//! The `QueueStore` contract, run against every backend: memory, the logged memory store,
//! SQLite and PostgreSQL (which must be reachable: `scripts/ensure-postgres`, or set
//! `SMPX_TEST_POSTGRES`; see `smpx_store::scratch`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay::protocol::{EntityId, MsgId};
use smpx_relay::store::log::{LogOptions, LogStore};
use smpx_relay::store::memory::MemoryStore;
use smpx_relay::store::sql::SqlStore;
use smpx_relay::store::*;
use smpx_store::scratch;
use smpx_store::Db;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Log,
    Sqlite,
    Postgres,
}

/// Where a backend keeps its data, so a test can reopen it.
struct Fixture {
    kind: Kind,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn new(kind: Kind) -> Fixture {
        match kind {
            Kind::Memory => Fixture {
                kind,
                url: String::new(),
                _dir: None,
            },
            Kind::Log => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("relay.log").display().to_string();
                Fixture {
                    kind,
                    url,
                    _dir: Some(dir),
                }
            }
            Kind::Sqlite => {
                let (url, dir) = scratch::sqlite().unwrap();
                Fixture {
                    kind,
                    url,
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => Fixture {
                kind,
                url: scratch::postgres().await.unwrap(),
                _dir: None,
            },
        }
    }

    async fn open(&self) -> Box<dyn QueueStore> {
        match self.kind {
            Kind::Memory => Box::new(MemoryStore::new()),
            Kind::Log => Box::new(LogStore::open(&self.url, LogOptions::default()).unwrap().0),
            Kind::Sqlite | Kind::Postgres => Box::new(
                SqlStore::open(Db::connect(&self.url).await.unwrap())
                    .await
                    .unwrap(),
            ),
        }
    }

    fn durable(&self) -> bool {
        self.kind != Kind::Memory
    }
}

macro_rules! all_backends {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Memory).await } )* }
        mod log { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Log).await } )* }
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Postgres).await } )* }
    };
}

all_backends!(
    duplicate_ids_are_refused,
    queue_fields_round_trip,
    secure_same_and_other_key,
    suspend_refuses_senders_but_recipient_drains,
    delete_removes_queue_and_messages,
    quota_then_exactly_one_marker,
    ack_only_the_head,
    fifo_order,
    expire_counts_and_frees_quota,
    stats_count_queues_and_messages,
    state_survives_reopen,
    concurrent_pushes_keep_quota_and_order,
);

static NEXT: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> [u8; 24] {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..16].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    id[16] = 0xA5;
    id
}

fn new_queue(quota: u32) -> NewQueue {
    NewQueue {
        recipient_id: EntityId(fresh_id()),
        sender_id: EntityId(fresh_id()),
        recipient_key: [1; 32],
        recipient_dh: [2; 32],
        server_dh: ServerDhSecret([3; 32]),
        quota,
        created_at: 1_750_000_000,
    }
}

fn mid(n: u64) -> MsgId {
    let mut id = [0u8; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8] = 0x4D;
    MsgId(id)
}

fn body(n: u64) -> Vec<u8> {
    format!("message {n}").into_bytes()
}

/// Peeks and acks until the queue is empty; returns what it saw.
async fn drain(s: &dyn QueueStore, rid: &EntityId) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = s.peek(rid).await.unwrap() {
        assert_eq!(s.ack(rid, &m.id).await.unwrap(), AckOutcome::Acked);
        out.push(m);
    }
    out
}

async fn duplicate_ids_are_refused(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    let dup = |rid: EntityId, sid: EntityId| NewQueue {
        recipient_id: rid,
        sender_id: sid,
        ..new_queue(FREE_QUOTA)
    };
    let other = || EntityId(fresh_id());
    for (rid, sid) in [
        (q.recipient_id, other()),
        (other(), q.sender_id),
        (q.sender_id, other()),
        (other(), q.recipient_id),
    ] {
        assert!(matches!(
            s.create(dup(rid, sid)).await,
            Err(StoreError::DuplicateId)
        ));
    }
    let same = other();
    assert!(matches!(
        s.create(dup(same, same)).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(s.stats().await.unwrap().queues, 1);
    // The refusals changed nothing.
    assert!(s.by_sender(&same).await.unwrap().is_none());
    s.create(new_queue(FREE_QUOTA)).await.unwrap();
    assert_eq!(s.stats().await.unwrap().queues, 2);
}

async fn queue_fields_round_trip(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let mut q = new_queue(77);
    q.recipient_key = [9; 32];
    q.recipient_dh = [8; 32];
    q.server_dh = ServerDhSecret([7; 32]);
    q.created_at = 1_234_567;
    s.create(q.clone()).await.unwrap();
    for got in [
        s.by_recipient(&q.recipient_id).await.unwrap().unwrap(),
        s.by_sender(&q.sender_id).await.unwrap().unwrap(),
    ] {
        assert_eq!(got.recipient_id, q.recipient_id);
        assert_eq!(got.sender_id, q.sender_id);
        assert_eq!(got.recipient_key, [9; 32]);
        assert_eq!(got.recipient_dh, [8; 32]);
        assert_eq!(got.server_dh.0, [7; 32]);
        assert_eq!(got.sender_key, None);
        assert_eq!(got.status, QueueStatus::Active);
        assert_eq!(got.quota, 77);
        assert_eq!(got.created_at, 1_234_567);
    }
    // Recipient and sender ids are separate namespaces for lookups.
    assert!(s.by_recipient(&q.sender_id).await.unwrap().is_none());
    assert!(s.by_sender(&q.recipient_id).await.unwrap().is_none());
}

async fn secure_same_and_other_key(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    let rid = q.recipient_id;
    assert_eq!(
        s.secure(&rid, [5; 32]).await.unwrap(),
        SecureOutcome::Secured
    );
    assert_eq!(
        s.secure(&rid, [5; 32]).await.unwrap(),
        SecureOutcome::AlreadySecuredSame
    );
    assert_eq!(
        s.secure(&rid, [6; 32]).await.unwrap(),
        SecureOutcome::AlreadySecuredOther
    );
    assert_eq!(
        s.secure(&EntityId(fresh_id()), [5; 32]).await.unwrap(),
        SecureOutcome::NoQueue
    );
    // Securing by the sender id is not securing.
    assert_eq!(
        s.secure(&q.sender_id, [5; 32]).await.unwrap(),
        SecureOutcome::NoQueue
    );
    assert_eq!(
        s.by_sender(&q.sender_id).await.unwrap().unwrap().sender_key,
        Some([5; 32])
    );
}

async fn suspend_refuses_senders_but_recipient_drains(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    let (rid, sid) = (q.recipient_id, q.sender_id);
    assert_eq!(
        s.push(&sid, mid(1), 10, body(1)).await.unwrap(),
        PushOutcome::Accepted
    );
    assert!(s.suspend(&rid).await.unwrap());
    assert!(s.suspend(&rid).await.unwrap(), "suspending twice is fine");
    assert_eq!(
        s.by_recipient(&rid).await.unwrap().unwrap().status,
        QueueStatus::Suspended
    );
    assert_eq!(
        s.push(&sid, mid(2), 11, body(2)).await.unwrap(),
        PushOutcome::Suspended
    );
    assert!(!s.suspend(&EntityId(fresh_id())).await.unwrap());
    let got = drain(&*s, &rid).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, MessageKind::Body(body(1)));
}

async fn delete_removes_queue_and_messages(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    let keep = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    s.create(keep.clone()).await.unwrap();
    for n in 0..3 {
        s.push(&q.sender_id, mid(n), 10, body(n)).await.unwrap();
    }
    s.push(&keep.sender_id, mid(9), 10, body(9)).await.unwrap();
    assert!(s.delete(&q.recipient_id).await.unwrap());
    assert!(s.by_recipient(&q.recipient_id).await.unwrap().is_none());
    assert!(s.by_sender(&q.sender_id).await.unwrap().is_none());
    assert_eq!(s.peek(&q.recipient_id).await.unwrap(), None);
    assert_eq!(
        s.push(&q.sender_id, mid(5), 10, body(5)).await.unwrap(),
        PushOutcome::NoQueue
    );
    assert_eq!(
        s.ack(&q.recipient_id, &mid(0)).await.unwrap(),
        AckOutcome::NoQueue
    );
    assert!(!s.delete(&q.recipient_id).await.unwrap());
    assert_eq!(
        s.stats().await.unwrap(),
        StoreStats {
            queues: 1,
            messages: 1
        }
    );
    // The ids are free again.
    s.create(q.clone()).await.unwrap();
    assert_eq!(s.peek(&q.recipient_id).await.unwrap(), None);
}

async fn quota_then_exactly_one_marker(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    let (rid, sid) = (q.recipient_id, q.sender_id);
    for n in 0..u64::from(FREE_QUOTA) {
        assert_eq!(
            s.push(&sid, mid(n), 100 + n, body(n)).await.unwrap(),
            PushOutcome::Accepted,
            "message {n}"
        );
    }
    for n in 0..5 {
        assert_eq!(
            s.push(&sid, mid(1000 + n), 500, body(1000 + n))
                .await
                .unwrap(),
            PushOutcome::QuotaExceeded
        );
    }
    assert_eq!(s.stats().await.unwrap().messages, u64::from(FREE_QUOTA) + 1);
    // Room for one more after one ack, and the marker stays in place.
    let head = s.peek(&rid).await.unwrap().unwrap();
    assert_eq!(s.ack(&rid, &head.id).await.unwrap(), AckOutcome::Acked);
    assert_eq!(
        s.push(&sid, mid(2000), 600, body(2000)).await.unwrap(),
        PushOutcome::Accepted
    );
    assert_eq!(
        s.push(&sid, mid(2001), 600, body(2001)).await.unwrap(),
        PushOutcome::QuotaExceeded
    );
    let got = drain(&*s, &rid).await;
    let markers: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind == MessageKind::QuotaExceeded)
        .map(|(i, _)| i)
        .collect();
    // The first full queue left one marker (after message 127); the second, after 2000.
    assert_eq!(markers, vec![127, 129]);
    assert_eq!(
        got[127].id,
        mid(1000),
        "the marker takes the first refused id"
    );
    assert_eq!(got[127].at, 500);
    assert_eq!(got[128].kind, MessageKind::Body(body(2000)));
    assert_eq!(got.len(), 130);
    assert_eq!(s.stats().await.unwrap().messages, 0);
    // Drained: accepted again.
    assert_eq!(
        s.push(&sid, mid(3000), 700, body(3000)).await.unwrap(),
        PushOutcome::Accepted
    );
}

async fn ack_only_the_head(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    let (rid, sid) = (q.recipient_id, q.sender_id);
    assert_eq!(s.ack(&rid, &mid(1)).await.unwrap(), AckOutcome::NoMessage);
    assert_eq!(
        s.ack(&EntityId(fresh_id()), &mid(1)).await.unwrap(),
        AckOutcome::NoQueue
    );
    s.push(&sid, mid(1), 10, body(1)).await.unwrap();
    s.push(&sid, mid(2), 10, body(2)).await.unwrap();
    assert_eq!(s.ack(&rid, &mid(2)).await.unwrap(), AckOutcome::NoMessage);
    assert_eq!(s.ack(&rid, &mid(99)).await.unwrap(), AckOutcome::NoMessage);
    // Acking by the sender id is not acking.
    assert_eq!(s.ack(&sid, &mid(1)).await.unwrap(), AckOutcome::NoQueue);
    assert_eq!(s.peek(&rid).await.unwrap().unwrap().id, mid(1));
    assert_eq!(s.ack(&rid, &mid(1)).await.unwrap(), AckOutcome::Acked);
    assert_eq!(s.ack(&rid, &mid(1)).await.unwrap(), AckOutcome::NoMessage);
    assert_eq!(s.peek(&rid).await.unwrap().unwrap().id, mid(2));
    assert_eq!(
        s.peek(&rid).await.unwrap().unwrap().id,
        mid(2),
        "peek does not remove"
    );
    assert_eq!(s.ack(&rid, &mid(2)).await.unwrap(), AckOutcome::Acked);
    assert_eq!(s.peek(&rid).await.unwrap(), None);
}

async fn fifo_order(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let a = new_queue(FREE_QUOTA);
    let b = new_queue(FREE_QUOTA);
    s.create(a.clone()).await.unwrap();
    s.create(b.clone()).await.unwrap();
    // Interleaved, with times out of order: order is arrival, not `at`.
    for n in 0..60u64 {
        let q = if n % 3 == 0 { &b } else { &a };
        let at = 1000 - n;
        assert_eq!(
            s.push(&q.sender_id, mid(n), at, body(n)).await.unwrap(),
            PushOutcome::Accepted
        );
    }
    let got_a = drain(&*s, &a.recipient_id).await;
    let got_b = drain(&*s, &b.recipient_id).await;
    let ids = |v: &[Message]| v.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&got_a),
        (0..60).filter(|n| n % 3 != 0).map(mid).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&got_b),
        (0..60).filter(|n| n % 3 == 0).map(mid).collect::<Vec<_>>()
    );
    for m in got_a.iter().chain(&got_b) {
        let n = u64::from_le_bytes(m.id.0[..8].try_into().unwrap());
        assert_eq!(m.kind, MessageKind::Body(body(n)));
        assert_eq!(m.at, 1000 - n);
    }
    // Empty and binary bodies too.
    s.push(&a.sender_id, mid(100), 5, Vec::new()).await.unwrap();
    let bin: Vec<u8> = (0..=255).collect();
    s.push(&a.sender_id, mid(101), 5, bin.clone())
        .await
        .unwrap();
    let got = drain(&*s, &a.recipient_id).await;
    assert_eq!(got[0].kind, MessageKind::Body(Vec::new()));
    assert_eq!(got[1].kind, MessageKind::Body(bin));
}

async fn expire_counts_and_frees_quota(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    let a = new_queue(4);
    let b = new_queue(FREE_QUOTA);
    s.create(a.clone()).await.unwrap();
    s.create(b.clone()).await.unwrap();
    // a: 4 old bodies + marker (at 150) → full.
    for n in 0..4u64 {
        s.push(&a.sender_id, mid(n), 100 + n, body(n))
            .await
            .unwrap();
    }
    assert_eq!(
        s.push(&a.sender_id, mid(4), 150, body(4)).await.unwrap(),
        PushOutcome::QuotaExceeded
    );
    // b: times 100..110
    for n in 10..20u64 {
        s.push(&b.sender_id, mid(n), 90 + n, body(n)).await.unwrap();
    }
    assert_eq!(s.expire(100).await.unwrap(), 0);
    // Before 105: a's 4 bodies (100..103) and b's 100..104 (5).
    assert_eq!(s.expire(105).await.unwrap(), 9);
    assert_eq!(s.stats().await.unwrap().messages, 1 + 5);
    assert_eq!(s.expire(105).await.unwrap(), 0);
    // a's quota is free again; its marker is still the head.
    assert_eq!(
        s.push(&a.sender_id, mid(5), 200, body(5)).await.unwrap(),
        PushOutcome::Accepted
    );
    let got = drain(&*s, &a.recipient_id).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, MessageKind::QuotaExceeded);
    assert_eq!(got[1].id, mid(5));
    let got = drain(&*s, &b.recipient_id).await;
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        (15..20).map(mid).collect::<Vec<_>>()
    );
    // Markers expire and count too.
    for n in 30..34u64 {
        s.push(&a.sender_id, mid(n), 300, body(n)).await.unwrap();
    }
    s.push(&a.sender_id, mid(34), 300, body(34)).await.unwrap();
    assert_eq!(s.expire(301).await.unwrap(), 5);
    assert_eq!(s.stats().await.unwrap().messages, 0);
    for n in 40..44u64 {
        assert_eq!(
            s.push(&a.sender_id, mid(n), 400, body(n)).await.unwrap(),
            PushOutcome::Accepted
        );
    }
}

async fn stats_count_queues_and_messages(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s = f.open().await;
    assert_eq!(s.stats().await.unwrap(), StoreStats::default());
    let qs: Vec<NewQueue> = (0..5).map(|_| new_queue(FREE_QUOTA)).collect();
    for q in &qs {
        s.create(q.clone()).await.unwrap();
    }
    for (i, q) in qs.iter().enumerate() {
        for n in 0..i as u64 {
            s.push(&q.sender_id, mid(n), 10, body(n)).await.unwrap();
        }
    }
    assert_eq!(
        s.stats().await.unwrap(),
        StoreStats {
            queues: 5,
            messages: 10
        }
    );
}

async fn state_survives_reopen(kind: Kind) {
    let f = Fixture::new(kind).await;
    if !f.durable() {
        return;
    }
    let a = new_queue(3);
    let b = new_queue(FREE_QUOTA);
    let c = new_queue(FREE_QUOTA);
    {
        let s = f.open().await;
        for q in [&a, &b, &c] {
            s.create(q.clone()).await.unwrap();
        }
        s.secure(&a.recipient_id, [4; 32]).await.unwrap();
        s.suspend(&b.recipient_id).await.unwrap();
        for n in 0..5u64 {
            s.push(&a.sender_id, mid(n), 10 + n, body(n)).await.unwrap();
        }
        // b is suspended: refused.
        s.push(&b.sender_id, mid(7), 10, body(7)).await.unwrap();
        s.push(&c.sender_id, mid(8), 10, body(8)).await.unwrap();
        assert_eq!(
            s.ack(&a.recipient_id, &mid(0)).await.unwrap(),
            AckOutcome::Acked
        );
        assert!(s.delete(&c.recipient_id).await.unwrap());
    }
    let s = f.open().await;
    assert_eq!(
        s.stats().await.unwrap(),
        StoreStats {
            queues: 2,
            messages: 3
        }
    );
    let qa = s.by_sender(&a.sender_id).await.unwrap().unwrap();
    assert_eq!(qa.sender_key, Some([4; 32]));
    assert_eq!(qa.quota, 3);
    assert_eq!(
        s.by_recipient(&b.recipient_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        QueueStatus::Suspended
    );
    assert!(s.by_recipient(&c.recipient_id).await.unwrap().is_none());
    // a is full (2 bodies + marker); the quota counter survived.
    assert_eq!(
        s.push(&a.sender_id, mid(20), 30, body(20)).await.unwrap(),
        PushOutcome::Accepted
    );
    assert_eq!(
        s.push(&a.sender_id, mid(21), 30, body(21)).await.unwrap(),
        PushOutcome::QuotaExceeded
    );
    let got = drain(&*s, &a.recipient_id).await;
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![mid(1), mid(2), mid(3), mid(20), mid(21)]
    );
    assert_eq!(got[2].kind, MessageKind::QuotaExceeded);
    assert_eq!(got[1].at, 12);
}

async fn concurrent_pushes_keep_quota_and_order(kind: Kind) {
    let f = Fixture::new(kind).await;
    let s: std::sync::Arc<dyn QueueStore> = f.open().await.into();
    let q = new_queue(50);
    s.create(q.clone()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let s = s.clone();
        let sid = q.sender_id;
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 0..20u64 {
                let n = t * 1000 + n;
                if s.push(&sid, mid(n), 10, body(n)).await.unwrap() == PushOutcome::Accepted {
                    accepted.push(n);
                }
            }
            accepted
        }));
    }
    let mut per_task = Vec::new();
    for t in tasks {
        per_task.push(t.await.unwrap());
    }
    assert_eq!(per_task.iter().map(Vec::len).sum::<usize>(), 50);
    let got = drain(&*s, &q.recipient_id).await;
    assert_eq!(got.len(), 51);
    assert_eq!(got[50].kind, MessageKind::QuotaExceeded);
    // Each sender's accepted messages arrive in its order.
    for accepted in per_task {
        let order: Vec<u64> = got[..50]
            .iter()
            .map(|m| u64::from_le_bytes(m.id.0[..8].try_into().unwrap()))
            .filter(|n| accepted.contains(n))
            .collect();
        assert_eq!(order, accepted);
    }
}
