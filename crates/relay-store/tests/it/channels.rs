//! Channels and paid capacity in the backends beyond the shared contract
//! (`store_conformance.rs`): the log's new records (replay and compaction rebuild the same
//! state, a torn channel record is a torn tail, touches and no-op posts write nothing) and the
//! SQL schema migration of a database created before channels existed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_store::log::{LogOptions, LogStore};
use smpx_relay_store::sql::SqlStore;
use smpx_relay_store::*;
use smpx_store::{scratch, Db};
use std::path::{Path, PathBuf};

const DAY: u64 = 86_400;
const T0: u64 = 20_000 * DAY;

fn id(tag: u8, n: u8) -> EntityId {
    let mut id = [tag; 24];
    id[0] = n;
    EntityId(id)
}
fn mid(n: u64) -> MsgId {
    let mut id = [0xEE; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    MsgId(id)
}
fn queue(n: u8, quota: u32) -> NewQueue {
    NewQueue {
        recipient_id: id(0x11, n),
        sender_id: id(0x22, n),
        recipient_key: [1; 32],
        recipient_dh: [2; 32],
        server_dh: ServerDhSecret([3; 32]),
        quota,
        created_at: T0,
    }
}
fn channel(n: u8) -> NewChannel {
    NewChannel {
        owner_id: id(0x33, n),
        join_id: id(0x44, n),
        owner_key: [n; 32],
        created_at: T0,
    }
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.log");
    (dir, path)
}

fn open(path: &Path) -> LogStore {
    LogStore::open(path, LogOptions::default()).unwrap().0
}

/// Queues 1..=3 are members of channel 1 (3 with quota 1), queue 4 is an ordinary paid
/// queue, channel 2 has no members; posts, touches, charges, a marker and a departure.
async fn populate(s: &dyn QueueStore) {
    s.create_channel(channel(1)).await.unwrap();
    s.create_channel(channel(2)).await.unwrap();
    for (n, quota) in [(1, 10), (2, 10), (3, 1), (5, 10)] {
        assert!(s
            .join_channel(&channel(1).join_id, queue(n, quota))
            .await
            .unwrap());
    }
    s.create(queue(4, 10)).await.unwrap();
    s.set_capacity(
        &queue(4, 0).recipient_id,
        Capacity {
            quota: 500,
            paid_until: T0 + 30 * DAY,
        },
    )
    .await
    .unwrap();
    for n in 1..=3 {
        s.post(
            &channel(1).owner_id,
            mid(n),
            T0 + n,
            vec![n as u8; 10 * n as usize],
        )
        .await
        .unwrap()
        .unwrap();
    }
    s.push(&queue(4, 0).sender_id, mid(9), T0, vec![9; 9])
        .await
        .unwrap();
    s.touch(&queue(1, 0).recipient_id, T0 + 3 * DAY)
        .await
        .unwrap();
    s.touch(&queue(2, 0).recipient_id, T0 + 9 * DAY)
        .await
        .unwrap();
    s.ack(&queue(2, 0).recipient_id, &mid(1)).await.unwrap();
    s.suspend(&queue(2, 0).recipient_id).await.unwrap();
    assert!(s.delete(&queue(5, 0).recipient_id).await.unwrap());
    s.charge_channel(&channel(1).owner_id, 100, 0, T0)
        .await
        .unwrap();
    s.charge_channel(&channel(1).owner_id, 0, 250, T0 + DAY)
        .await
        .unwrap();
    s.charge_channel(&channel(2).owner_id, 42, 0, 0)
        .await
        .unwrap();
}

/// Everything the store answers about the populated ids, as text.
async fn describe(s: &dyn QueueStore) -> String {
    let mut out = String::new();
    for n in 1..=2 {
        let c = channel(n);
        out += &format!("{:?}\n", s.channel_by_owner(&c.owner_id).await.unwrap());
        out += &format!("{:?}\n", s.channel_by_join(&c.join_id).await.unwrap());
        for since in [0, T0, T0 + 1, T0 + 3 * DAY, T0 + 4 * DAY, T0 + 10 * DAY] {
            out += &format!("{:?}\n", s.channel_usage(&c.owner_id, since).await.unwrap());
        }
    }
    for n in 1..=5 {
        let q = queue(n, 0);
        let got = s.by_recipient(&q.recipient_id).await.unwrap();
        out += &format!(
            "{:?}\n",
            got.map(|q| (q.member_of, q.quota, q.status, q.sender_id))
        );
        out += &format!("{:?}\n", s.capacity(&q.recipient_id).await.unwrap());
        out += &format!("{:?}\n", s.peek(&q.recipient_id).await.unwrap());
    }
    out += &format!("{:?}\n", s.stats().await.unwrap());
    out
}

#[tokio::test]
async fn log_replay_rebuilds_channels_exactly() {
    let (_d, path) = temp();
    let before = {
        let s = open(&path);
        populate(&s).await;
        describe(&s).await
    };
    let (s, rec) = LogStore::open(&path, LogOptions::default()).unwrap();
    assert_eq!(rec.truncated, 0);
    assert_eq!(describe(&s).await, before);
    // And what follows still applies: the marker is in place for queue 3.
    let p = s
        .post(&channel(1).owner_id, mid(20), T0, vec![1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.delivered, vec![queue(1, 0).recipient_id]);
    assert_eq!(p.over_quota, vec![queue(3, 0).recipient_id]);
}

#[tokio::test]
async fn log_compaction_keeps_channels_balances_and_capacity() {
    let (_d, path) = temp();
    let s = open(&path);
    populate(&s).await;
    let before = describe(&s).await;
    s.compact().await.unwrap();
    assert_eq!(describe(&s).await, before);
    drop(s);
    let s = open(&path);
    assert_eq!(describe(&s).await, before);
    // Compacted twice (a snapshot of a snapshot) and reopened: still the same.
    s.compact().await.unwrap();
    drop(s);
    let s = open(&path);
    assert_eq!(describe(&s).await, before);
    let ch = s
        .channel_by_owner(&channel(1).owner_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ch.balance_units, ch.billed_until), (-150, T0 + DAY));
}

#[tokio::test]
async fn log_touch_writes_once_a_day_and_idle_posts_write_nothing() {
    let (_d, path) = temp();
    let s = open(&path);
    s.create_channel(channel(1)).await.unwrap();
    s.join_channel(&channel(1).join_id, queue(1, 1))
        .await
        .unwrap();
    let rid = queue(1, 0).recipient_id;
    let len = || std::fs::metadata(&path).unwrap().len();
    let l0 = len();
    // Same day as the join: nothing written.
    s.touch(&rid, T0 + 100).await.unwrap();
    assert_eq!(len(), l0);
    s.touch(&rid, T0 + DAY).await.unwrap();
    assert_eq!(len(), l0 + 8 + 33, "one touch record");
    s.touch(&rid, T0 + DAY + 5).await.unwrap();
    s.touch(&rid, T0).await.unwrap();
    assert_eq!(len(), l0 + 8 + 33);
    // Post 1 is stored, post 2 leaves the marker, post 3 changes nothing: no record.
    s.post(&channel(1).owner_id, mid(1), T0, vec![1; 4])
        .await
        .unwrap();
    s.post(&channel(1).owner_id, mid(2), T0, vec![2; 4])
        .await
        .unwrap();
    let l1 = len();
    let p = s
        .post(&channel(1).owner_id, mid(3), T0, vec![3; 4])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.over_quota, vec![rid]);
    assert_eq!(len(), l1);
    // A post to an unknown channel writes nothing either.
    assert_eq!(
        s.post(&channel(9).owner_id, mid(4), T0, vec![4])
            .await
            .unwrap(),
        None
    );
    assert_eq!(len(), l1);
}

#[tokio::test]
async fn log_torn_post_is_a_torn_tail() {
    let (_d, path) = temp();
    let before = {
        let s = open(&path);
        populate(&s).await;
        describe(&s).await
    };
    let good = std::fs::metadata(&path).unwrap().len();
    {
        let s = open(&path);
        s.post(&channel(1).owner_id, mid(30), T0, vec![7; 1000])
            .await
            .unwrap();
    }
    // Cut the post record short, as a crash during its write would.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(good + 500).unwrap();
    let (s, rec) = LogStore::open(&path, LogOptions::default()).unwrap();
    assert_eq!(rec.truncated, 500);
    assert_eq!(describe(&s).await, before);
}

/// Migration 1 exactly as the first release created it, with one queue in it.
const V1: &[&str] = &[
    "CREATE TABLE schema_migrations (schema_name TEXT NOT NULL, version BIGINT NOT NULL, \
     PRIMARY KEY (schema_name, version))",
    "CREATE TABLE relay_queues (
        recipient_id {blob} PRIMARY KEY,
        sender_id {blob} NOT NULL UNIQUE,
        recipient_key {blob} NOT NULL,
        recipient_dh {blob} NOT NULL,
        server_dh {blob} NOT NULL,
        sender_key {blob},
        status BIGINT NOT NULL CHECK (status IN (0, 1)),
        quota BIGINT NOT NULL CHECK (quota >= 0),
        held BIGINT NOT NULL CHECK (held >= 0),
        created_at BIGINT NOT NULL,
        CHECK (length(recipient_id) = 24 AND length(sender_id) = 24),
        CHECK (recipient_id <> sender_id))",
    "CREATE TABLE relay_messages (
        seq {serial},
        recipient_id {blob} NOT NULL REFERENCES relay_queues (recipient_id),
        msg_id {blob} NOT NULL,
        at BIGINT NOT NULL,
        kind BIGINT NOT NULL CHECK (kind IN (0, 1)),
        body {blob},
        CHECK ((kind = 0) = (body IS NOT NULL)))",
    "CREATE INDEX relay_messages_queue ON relay_messages (recipient_id, seq)",
    "INSERT INTO schema_migrations (schema_name, version) VALUES ('relay', 1)",
];

async fn migrates_a_v1_database(url: &str, sqlite: bool) {
    let (serial, blob) = if sqlite {
        ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB")
    } else {
        ("BIGSERIAL PRIMARY KEY", "BYTEA")
    };
    let q = queue(7, 3);
    {
        let db = Db::connect(url).await.unwrap();
        for s in V1 {
            let s = s.replace("{serial}", serial).replace("{blob}", blob);
            sqlx::query(&s).execute(db.pool()).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO relay_queues (recipient_id, sender_id, recipient_key, recipient_dh, \
             server_dh, sender_key, status, quota, held, created_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, 0, 3, 0, 77)",
        )
        .bind(q.recipient_id.0.as_slice())
        .bind(q.sender_id.0.as_slice())
        .bind([1u8; 32].as_slice())
        .bind([2u8; 32].as_slice())
        .bind([3u8; 32].as_slice())
        .execute(db.pool())
        .await
        .unwrap();
    }
    let s = SqlStore::open(Db::connect(url).await.unwrap())
        .await
        .unwrap();
    let got = s.by_recipient(&q.recipient_id).await.unwrap().unwrap();
    assert_eq!((got.member_of, got.quota, got.created_at), (None, 3, 77));
    assert_eq!(
        s.capacity(&q.recipient_id).await.unwrap(),
        Some(Capacity {
            quota: 3,
            paid_until: 0
        })
    );
    // The old queue is an ordinary queue: touching it changes nothing, and its ids are taken.
    s.touch(&q.recipient_id, T0 + 5 * DAY).await.unwrap();
    assert!(matches!(
        s.create_channel(NewChannel {
            owner_id: q.sender_id,
            ..channel(1)
        })
        .await,
        Err(StoreError::DuplicateId)
    ));
    populate(&s).await;
    let before = describe(&s).await;
    drop(s);
    // Opening again runs no migration twice.
    let s = SqlStore::open(Db::connect(url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(describe(&s).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrates_a_v1_database() {
    let (url, _dir) = scratch::sqlite().unwrap();
    migrates_a_v1_database(&url, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrates_a_v1_database() {
    let url = scratch::postgres().await.unwrap();
    migrates_a_v1_database(&url, false).await;
}
