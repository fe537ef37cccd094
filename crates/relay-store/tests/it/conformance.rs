//! The `QueueStore` contract, run against every backend: memory, the logged memory store,
//! SQLite and PostgreSQL (which must be reachable: `scripts/ensure-postgres`, or set
//! `SMPX_TEST_POSTGRES`; see `smpx_store::scratch`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_store::log::{LogOptions, LogStore};
use smpx_relay_store::memory::MemoryStore;
use smpx_relay_store::sql::SqlStore;
use smpx_relay_store::*;
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
        let (url, _dir) = match kind {
            Kind::Memory => (String::new(), None),
            Kind::Log => {
                let dir = tempfile::tempdir().unwrap();
                let url = dir.path().join("relay.log").display().to_string();
                (url, Some(dir))
            }
            Kind::Sqlite => {
                let (url, dir) = scratch::sqlite().unwrap();
                (url, Some(dir))
            }
            Kind::Postgres => (scratch::postgres().await.unwrap(), None),
        };
        Fixture { kind, url, _dir }
    }

    /// A fresh backend of `kind`, the store opened on it and a queue of each quota in it.
    async fn with_queues<const N: usize>(
        kind: Kind,
        quotas: [u32; N],
    ) -> (Fixture, Box<dyn QueueStore>, [NewQueue; N]) {
        let (f, s) = Fixture::opened(kind).await;
        let qs = quotas.map(new_queue);
        for q in &qs {
            s.create(q.clone()).await.unwrap();
        }
        (f, s, qs)
    }

    /// A fresh backend of `kind`, and the store opened on it.
    async fn opened(kind: Kind) -> (Fixture, Box<dyn QueueStore>) {
        let f = Fixture::new(kind).await;
        let s = f.open().await;
        (f, s)
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
    capacity_provision_then_cancel,
    expire_capacity_restores_free_quota,
    channel_ids_are_unique_with_queue_ids,
    join_makes_member_queues,
    post_delivers_under_each_quota,
    expire_removes_channel_copies,
    usage_counts_active_members_and_bytes,
    charge_channel_arithmetic,
    channels_and_capacity_survive_reopen,
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

/// What `stats` counts: (queues, messages).
async fn stats(s: &dyn QueueStore) -> (u64, u64) {
    let StoreStats { queues, messages } = s.stats().await.unwrap();
    (queues, messages)
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
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
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
    let (_f, s) = Fixture::opened(kind).await;
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
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
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
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
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
    let (_f, s, [q, keep]) = Fixture::with_queues(kind, [FREE_QUOTA, FREE_QUOTA]).await;
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
    assert_eq!(stats(&*s).await, (1, 1));
    // The ids are free again.
    s.create(q.clone()).await.unwrap();
    assert_eq!(s.peek(&q.recipient_id).await.unwrap(), None);
}

async fn quota_then_exactly_one_marker(kind: Kind) {
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
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
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
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
    let (_f, s, [a, b]) = Fixture::with_queues(kind, [FREE_QUOTA, FREE_QUOTA]).await;
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
    let (_f, s, [a, b]) = Fixture::with_queues(kind, [4, FREE_QUOTA]).await;
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
    let (_f, s) = Fixture::opened(kind).await;
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
    assert_eq!(stats(&*s).await, (5, 10));
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
    assert_eq!(stats(&*s).await, (2, 3));
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

// --- paid capacity and channels ------------------------------------------------------------

fn new_channel() -> NewChannel {
    NewChannel {
        owner_id: EntityId(fresh_id()),
        join_id: EntityId(fresh_id()),
        owner_key: [6; 32],
        created_at: 1_750_000_000,
    }
}

/// A channel with `quotas.len()` members of these quotas, joined at `joined`.
async fn channel_with(
    s: &dyn QueueStore,
    quotas: &[u32],
    joined: u64,
) -> (NewChannel, Vec<NewQueue>) {
    let c = new_channel();
    s.create_channel(c.clone()).await.unwrap();
    let mut members = Vec::new();
    for &quota in quotas {
        let m = NewQueue {
            created_at: joined,
            ..new_queue(quota)
        };
        assert!(s.join_channel(&c.join_id, m.clone()).await.unwrap());
        members.push(m);
    }
    (c, members)
}

async fn capacity_provision_then_cancel(kind: Kind) {
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
    let rid = q.recipient_id;
    let free = Capacity {
        quota: FREE_QUOTA,
        paid_until: 0,
    };
    assert_eq!(s.capacity(&rid).await.unwrap(), Some(free));
    let paid = Capacity {
        quota: 10_000,
        paid_until: 1_800_000_000,
    };
    assert_eq!(s.set_capacity(&rid, paid).await.unwrap(), Some(free));
    assert_eq!(s.capacity(&rid).await.unwrap(), Some(paid));
    assert_eq!(s.by_recipient(&rid).await.unwrap().unwrap().quota, 10_000);
    // The payment failed: put the old capacity back.
    assert_eq!(s.set_capacity(&rid, free).await.unwrap(), Some(paid));
    assert_eq!(s.capacity(&rid).await.unwrap(), Some(free));
    assert_eq!(
        s.by_sender(&q.sender_id).await.unwrap().unwrap().quota,
        FREE_QUOTA
    );
    // Unknown queues, and sender ids are not queues here.
    let other = EntityId(fresh_id());
    assert_eq!(s.capacity(&other).await.unwrap(), None);
    assert_eq!(s.set_capacity(&other, paid).await.unwrap(), None);
    assert_eq!(s.capacity(&q.sender_id).await.unwrap(), None);
    // The quota is what `push` checks.
    let small = new_queue(1);
    s.create(small.clone()).await.unwrap();
    s.push(&small.sender_id, mid(1), 10, body(1)).await.unwrap();
    assert_eq!(
        s.push(&small.sender_id, mid(2), 10, body(2)).await.unwrap(),
        PushOutcome::QuotaExceeded
    );
    s.set_capacity(
        &small.recipient_id,
        Capacity {
            quota: 3,
            paid_until: 99,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.push(&small.sender_id, mid(3), 10, body(3)).await.unwrap(),
        PushOutcome::Accepted
    );
}

async fn expire_capacity_restores_free_quota(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    let (a, b, c) = (new_queue(1), new_queue(1), new_queue(7));
    for q in [&a, &b, &c] {
        s.create(q.clone()).await.unwrap();
    }
    let paid = |until| Capacity {
        quota: 1000,
        paid_until: until,
    };
    s.set_capacity(&a.recipient_id, paid(100)).await.unwrap();
    s.set_capacity(&b.recipient_id, paid(200)).await.unwrap();
    // Messages over the free quota stay.
    for n in 0..3 {
        s.push(&a.sender_id, mid(n), 10, body(n)).await.unwrap();
    }
    assert_eq!(
        s.expire_capacity(100, 5).await.unwrap(),
        0,
        "ends *before* now"
    );
    assert_eq!(s.expire_capacity(150, 5).await.unwrap(), 1);
    assert_eq!(
        s.capacity(&a.recipient_id).await.unwrap(),
        Some(Capacity {
            quota: 5,
            paid_until: 0
        })
    );
    assert_eq!(s.capacity(&b.recipient_id).await.unwrap(), Some(paid(200)));
    // Free queues are not touched, whatever their quota.
    assert_eq!(
        s.capacity(&c.recipient_id).await.unwrap(),
        Some(Capacity {
            quota: 7,
            paid_until: 0
        })
    );
    assert_eq!(s.expire_capacity(150, 5).await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().messages, 3);
    for n in 3..5 {
        assert_eq!(
            s.push(&a.sender_id, mid(n), 10, body(n)).await.unwrap(),
            PushOutcome::Accepted
        );
    }
    assert_eq!(
        s.push(&a.sender_id, mid(5), 10, body(5)).await.unwrap(),
        PushOutcome::QuotaExceeded
    );
    assert_eq!(s.expire_capacity(u64::MAX, 5).await.unwrap(), 1);
    assert_eq!(s.capacity(&b.recipient_id).await.unwrap().unwrap().quota, 5);
}

async fn channel_ids_are_unique_with_queue_ids(kind: Kind) {
    let (_f, s, [q]) = Fixture::with_queues(kind, [FREE_QUOTA]).await;
    let dup = |owner: EntityId, join: EntityId| NewChannel {
        owner_id: owner,
        join_id: join,
        ..new_channel()
    };
    let other = || EntityId(fresh_id());
    let same = other();
    for (owner, join) in [
        (q.recipient_id, other()),
        (q.sender_id, other()),
        (other(), q.recipient_id),
        (other(), q.sender_id),
        (same, same),
    ] {
        assert!(matches!(
            s.create_channel(dup(owner, join)).await,
            Err(StoreError::DuplicateId)
        ));
    }
    let c = new_channel();
    s.create_channel(c.clone()).await.unwrap();
    for (owner, join) in [
        (c.owner_id, other()),
        (c.join_id, other()),
        (other(), c.owner_id),
        (other(), c.join_id),
    ] {
        assert!(matches!(
            s.create_channel(dup(owner, join)).await,
            Err(StoreError::DuplicateId)
        ));
    }
    // Queues (and member queues) cannot take a channel's ids either.
    for (rid, sid) in [
        (c.owner_id, other()),
        (c.join_id, other()),
        (other(), c.owner_id),
        (other(), c.join_id),
    ] {
        let nq = NewQueue {
            recipient_id: rid,
            sender_id: sid,
            ..new_queue(FREE_QUOTA)
        };
        assert!(matches!(
            s.create(nq.clone()).await,
            Err(StoreError::DuplicateId)
        ));
        assert!(matches!(
            s.join_channel(&c.join_id, nq).await,
            Err(StoreError::DuplicateId)
        ));
    }
    let member = NewQueue {
        recipient_id: q.sender_id,
        ..new_queue(FREE_QUOTA)
    };
    assert!(matches!(
        s.join_channel(&c.join_id, member).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(s.stats().await.unwrap().queues, 1);
    assert_eq!(
        s.channel_usage(&c.owner_id, 0)
            .await
            .unwrap()
            .unwrap()
            .members,
        0
    );
    // Round trip, by either id; the ids are separate namespaces for lookups.
    let want = Channel {
        owner_id: c.owner_id,
        join_id: c.join_id,
        owner_key: [6; 32],
        created_at: 1_750_000_000,
        balance_units: 0,
        billed_until: 0,
    };
    assert_eq!(
        s.channel_by_owner(&c.owner_id).await.unwrap(),
        Some(want.clone())
    );
    assert_eq!(s.channel_by_join(&c.join_id).await.unwrap(), Some(want));
    assert_eq!(s.channel_by_owner(&c.join_id).await.unwrap(), None);
    assert_eq!(s.channel_by_join(&c.owner_id).await.unwrap(), None);
    assert_eq!(s.channel_by_owner(&q.recipient_id).await.unwrap(), None);
}

async fn join_makes_member_queues(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    let (c, members) = channel_with(&*s, &[FREE_QUOTA, FREE_QUOTA], 500).await;
    // Unknown channel, or the owner id instead of the join id: nothing is created.
    let stray = new_queue(FREE_QUOTA);
    assert!(!s
        .join_channel(&EntityId(fresh_id()), stray.clone())
        .await
        .unwrap());
    assert!(!s.join_channel(&c.owner_id, stray.clone()).await.unwrap());
    assert!(s.by_recipient(&stray.recipient_id).await.unwrap().is_none());
    assert_eq!(s.stats().await.unwrap().queues, 2);
    let m = &members[0];
    let got = s.by_recipient(&m.recipient_id).await.unwrap().unwrap();
    assert_eq!(got.member_of, Some(c.owner_id));
    assert_eq!(got.sender_id, m.sender_id);
    assert_eq!(got.quota, FREE_QUOTA);
    assert_eq!(got.created_at, 500);
    assert_eq!(got.status, QueueStatus::Active);
    // Ordinary queues belong to no channel.
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    assert_eq!(
        s.by_recipient(&q.recipient_id)
            .await
            .unwrap()
            .unwrap()
            .member_of,
        None
    );
    // A member queue works as a queue: post, peek, ack; deleting it is leaving.
    s.post(&c.owner_id, mid(1), 600, body(1))
        .await
        .unwrap()
        .unwrap();
    let got = drain(&*s, &m.recipient_id).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, MessageKind::Body(body(1)));
    assert_eq!(got[0].at, 600);
    assert!(s.delete(&members[1].recipient_id).await.unwrap());
    let u = s.channel_usage(&c.owner_id, 0).await.unwrap().unwrap();
    assert_eq!((u.members, u.stored_bytes), (1, 0));
    let p = s
        .post(&c.owner_id, mid(2), 700, body(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.delivered, vec![m.recipient_id]);
    assert_eq!(stats(&*s).await, (2, 1));
}

async fn post_delivers_under_each_quota(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    let (c, members) = channel_with(&*s, &[FREE_QUOTA, 1, FREE_QUOTA], 500).await;
    let (a, full, b) = (&members[0], &members[1], &members[2]);
    let mut open = vec![a.recipient_id, b.recipient_id];
    open.sort();
    let all = {
        let mut v = vec![a.recipient_id, full.recipient_id, b.recipient_id];
        v.sort();
        v
    };
    let p = s
        .post(&c.owner_id, mid(1), 600, body(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.delivered, all);
    assert!(p.over_quota.is_empty());
    // `full` holds its one message: the next posts reach the other two, `full` gets the
    // marker once.
    for n in 2..=3 {
        let p = s
            .post(&c.owner_id, mid(n), 600 + n, body(n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.delivered, open, "post {n}");
        assert_eq!(p.over_quota, vec![full.recipient_id], "post {n}");
    }
    // a and b: 3 bodies each; `full`: 1 body and the marker.
    assert_eq!(s.stats().await.unwrap().messages, 3 + 3 + 2);
    let got = drain(&*s, &full.recipient_id).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, MessageKind::Body(body(1)));
    assert_eq!(got[1].kind, MessageKind::QuotaExceeded);
    assert_eq!(
        got[1].id,
        mid(2),
        "the marker takes the first refused post's id"
    );
    for m in [a, b] {
        let got = drain(&*s, &m.recipient_id).await;
        assert_eq!(
            got.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![mid(1), mid(2), mid(3)]
        );
        assert_eq!(got[2].kind, MessageKind::Body(body(3)));
        assert_eq!(got[2].at, 603);
    }
    // Drained: `full` takes posts again. A suspended member is skipped.
    assert!(s.suspend(&b.recipient_id).await.unwrap());
    let p = s
        .post(&c.owner_id, mid(4), 700, Vec::new())
        .await
        .unwrap()
        .unwrap();
    let mut want = vec![a.recipient_id, full.recipient_id];
    want.sort();
    assert_eq!(p.delivered, want);
    assert!(p.over_quota.is_empty());
    assert_eq!(s.peek(&b.recipient_id).await.unwrap(), None);
    assert_eq!(
        s.peek(&full.recipient_id).await.unwrap().unwrap().kind,
        MessageKind::Body(Vec::new())
    );
    // Unknown channel, or a join id: `None`.
    assert_eq!(
        s.post(&EntityId(fresh_id()), mid(5), 700, body(5))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.post(&c.join_id, mid(5), 700, body(5)).await.unwrap(),
        None
    );
    // A channel without members.
    let empty = new_channel();
    s.create_channel(empty.clone()).await.unwrap();
    assert_eq!(
        s.post(&empty.owner_id, mid(6), 700, body(6)).await.unwrap(),
        Some(PostOutcome::default())
    );
}

async fn expire_removes_channel_copies(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    let (c, members) = channel_with(&*s, &[FREE_QUOTA, FREE_QUOTA, 1], 500).await;
    s.post(&c.owner_id, mid(1), 100, body(1)).await.unwrap();
    s.post(&c.owner_id, mid(2), 150, body(2)).await.unwrap();
    s.post(&c.owner_id, mid(3), 200, body(3)).await.unwrap();
    // 3 + 3 + 2 (the quota-1 member: body 1, marker at 150).
    assert_eq!(s.stats().await.unwrap().messages, 8);
    assert_eq!(s.expire(151).await.unwrap(), 6);
    for m in &members {
        let got = drain(&*s, &m.recipient_id).await;
        let want = if m.quota == 1 { vec![] } else { vec![mid(3)] };
        assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), want);
    }
}

async fn usage_counts_active_members_and_bytes(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    const DAY: u64 = 86_400;
    let t0 = 20_000 * DAY + 3600;
    let (c, members) = channel_with(&*s, &[FREE_QUOTA, FREE_QUOTA, FREE_QUOTA], t0).await;
    let [a, b, m3] = &members[..] else { panic!() };
    // New members count as active from their join time.
    let u = s.channel_usage(&c.owner_id, t0).await.unwrap().unwrap();
    assert_eq!(
        u,
        ChannelUsage {
            members: 3,
            active: 3,
            stored_bytes: 0
        }
    );
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + 1)
            .await
            .unwrap()
            .unwrap()
            .active,
        0
    );
    // a active 20 days later; b the same day it joined (no change: at most once a day).
    s.touch(&a.recipient_id, t0 + 20 * DAY).await.unwrap();
    s.touch(&b.recipient_id, t0 + 60).await.unwrap();
    // Touches of ordinary or unknown queues are no-ops.
    let q = new_queue(FREE_QUOTA);
    s.create(q.clone()).await.unwrap();
    s.touch(&q.recipient_id, t0 + 30 * DAY).await.unwrap();
    s.touch(&EntityId(fresh_id()), t0 + 30 * DAY).await.unwrap();
    let u = s
        .channel_usage(&c.owner_id, t0 + 10 * DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.members, u.active), (3, 1));
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + 1)
            .await
            .unwrap()
            .unwrap()
            .active,
        1
    );
    assert_eq!(
        s.channel_usage(&c.owner_id, t0)
            .await
            .unwrap()
            .unwrap()
            .active,
        3
    );
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + 20 * DAY)
            .await
            .unwrap()
            .unwrap()
            .active,
        1
    );
    // A later touch the same day keeps the first time of that day.
    s.touch(&a.recipient_id, t0 + 20 * DAY + 100).await.unwrap();
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + 20 * DAY + 1)
            .await
            .unwrap()
            .unwrap()
            .active,
        0
    );
    // Time does not go back.
    s.touch(&a.recipient_id, t0 + 2 * DAY).await.unwrap();
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + 20 * DAY)
            .await
            .unwrap()
            .unwrap()
            .active,
        1
    );
    // Bytes: undelivered bodies in member queues only (not markers, not other queues).
    s.post(&c.owner_id, mid(1), t0, vec![7; 10]).await.unwrap();
    s.post(&c.owner_id, mid(2), t0, vec![7; 5]).await.unwrap();
    s.push(&q.sender_id, mid(3), t0, vec![7; 1000])
        .await
        .unwrap();
    assert_eq!(
        s.channel_usage(&c.owner_id, 0)
            .await
            .unwrap()
            .unwrap()
            .stored_bytes,
        45
    );
    assert_eq!(
        s.ack(&b.recipient_id, &mid(1)).await.unwrap(),
        AckOutcome::Acked
    );
    assert_eq!(
        s.channel_usage(&c.owner_id, 0)
            .await
            .unwrap()
            .unwrap()
            .stored_bytes,
        35
    );
    assert!(s.delete(&m3.recipient_id).await.unwrap());
    assert_eq!(
        s.channel_usage(&c.owner_id, 0).await.unwrap().unwrap(),
        ChannelUsage {
            members: 2,
            active: 2,
            stored_bytes: 20
        }
    );
    assert_eq!(
        s.channel_usage(&EntityId(fresh_id()), 0).await.unwrap(),
        None
    );
    assert_eq!(s.channel_usage(&c.join_id, 0).await.unwrap(), None);
}

async fn charge_channel_arithmetic(kind: Kind) {
    let (_f, s) = Fixture::opened(kind).await;
    let c = new_channel();
    s.create_channel(c.clone()).await.unwrap();
    let o = &c.owner_id;
    assert_eq!(s.charge_channel(o, 1000, 0, 0).await.unwrap(), Some(1000));
    assert_eq!(s.charge_channel(o, 0, 300, 50).await.unwrap(), Some(700));
    assert_eq!(s.charge_channel(o, 0, 1000, 60).await.unwrap(), Some(-300));
    let ch = s.channel_by_owner(o).await.unwrap().unwrap();
    assert_eq!((ch.balance_units, ch.billed_until), (-300, 60));
    // A payment that also charges up to now.
    assert_eq!(s.charge_channel(o, 500, 100, 70).await.unwrap(), Some(100));
    assert_eq!(s.charge_channel(o, 0, 0, 80).await.unwrap(), Some(100));
    let ch = s.channel_by_join(&c.join_id).await.unwrap().unwrap();
    assert_eq!((ch.balance_units, ch.billed_until), (100, 80));
    assert_eq!(
        s.charge_channel(&EntityId(fresh_id()), 5, 0, 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.charge_channel(&c.join_id, 5, 0, 1).await.unwrap(), None);
    // Out of range: refused, nothing changes.
    assert!(s.charge_channel(o, u64::MAX, 0, 90).await.is_err());
    let ch = s.channel_by_owner(o).await.unwrap().unwrap();
    assert_eq!((ch.balance_units, ch.billed_until), (100, 80));
    // Concurrent charges all count.
    let s: std::sync::Arc<dyn QueueStore> = s.into();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        let o = *o;
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                s.charge_channel(&o, 0, 3, 90).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.channel_by_owner(o).await.unwrap().unwrap().balance_units,
        100 - 240
    );
}

async fn channels_and_capacity_survive_reopen(kind: Kind) {
    let f = Fixture::new(kind).await;
    if !f.durable() {
        return;
    }
    const DAY: u64 = 86_400;
    let t0 = 20_000 * DAY;
    let c = new_channel();
    let (a, full, gone) = (new_queue(FREE_QUOTA), new_queue(1), new_queue(FREE_QUOTA));
    let q = new_queue(FREE_QUOTA);
    let paid = Capacity {
        quota: 5000,
        paid_until: t0 + 30 * DAY,
    };
    {
        let s = f.open().await;
        s.create_channel(c.clone()).await.unwrap();
        for m in [&a, &full, &gone] {
            let m = NewQueue {
                created_at: t0,
                ..m.clone()
            };
            assert!(s.join_channel(&c.join_id, m).await.unwrap());
        }
        s.create(q.clone()).await.unwrap();
        s.set_capacity(&q.recipient_id, paid).await.unwrap();
        s.post(&c.owner_id, mid(1), t0, body(1)).await.unwrap();
        s.post(&c.owner_id, mid(2), t0, body(2)).await.unwrap();
        s.touch(&a.recipient_id, t0 + 5 * DAY).await.unwrap();
        assert!(s.delete(&gone.recipient_id).await.unwrap());
        s.charge_channel(&c.owner_id, 1000, 0, t0).await.unwrap();
        s.charge_channel(&c.owner_id, 0, 1500, t0 + DAY)
            .await
            .unwrap();
        assert_eq!(
            s.ack(&a.recipient_id, &mid(1)).await.unwrap(),
            AckOutcome::Acked
        );
    }
    let s = f.open().await;
    let ch = s.channel_by_owner(&c.owner_id).await.unwrap().unwrap();
    assert_eq!(ch.join_id, c.join_id);
    assert_eq!(ch.owner_key, c.owner_key);
    assert_eq!((ch.balance_units, ch.billed_until), (-500, t0 + DAY));
    assert_eq!(s.capacity(&q.recipient_id).await.unwrap(), Some(paid));
    assert_eq!(
        s.by_recipient(&full.recipient_id)
            .await
            .unwrap()
            .unwrap()
            .member_of,
        Some(c.owner_id)
    );
    assert!(s.by_recipient(&gone.recipient_id).await.unwrap().is_none());
    assert_eq!(
        s.channel_usage(&c.owner_id, t0 + DAY)
            .await
            .unwrap()
            .unwrap(),
        ChannelUsage {
            members: 2,
            active: 1,
            stored_bytes: (body(1).len() + body(2).len()) as u64
        }
    );
    assert_eq!(stats(&*s).await, (3, 3));
    // The member queues still keep their quotas, markers and ids.
    let p = s
        .post(&c.owner_id, mid(3), t0, body(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.delivered, vec![a.recipient_id]);
    assert_eq!(p.over_quota, vec![full.recipient_id]);
    let got = drain(&*s, &full.recipient_id).await;
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![mid(1), mid(2)]
    );
    assert_eq!(got[1].kind, MessageKind::QuotaExceeded);
    assert!(matches!(
        s.create_channel(NewChannel {
            join_id: a.sender_id,
            ..new_channel()
        })
        .await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(s.expire_capacity(t0 + 31 * DAY, 9).await.unwrap(), 1);
    drop(s);
    let s = f.open().await;
    assert_eq!(
        s.capacity(&q.recipient_id).await.unwrap(),
        Some(Capacity {
            quota: 9,
            paid_until: 0
        })
    );
}
