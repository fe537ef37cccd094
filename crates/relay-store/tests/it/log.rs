//! The logged memory store: torn tails, corruption, compaction, fsync policies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_store::log::{FsyncPolicy, LogError, LogOptions, LogStore, MAGIC};
use smpx_relay_store::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn queue(q: u8) -> NewQueue {
    NewQueue {
        recipient_id: EntityId([q; 24]),
        sender_id: EntityId([0x80 | q; 24]),
        recipient_key: [1; 32],
        recipient_dh: [2; 32],
        server_dh: ServerDhSecret([3; 32]),
        quota: 100_000,
        created_at: 7,
    }
}
fn rid(q: u8) -> EntityId {
    EntityId([q; 24])
}
fn sid(q: u8) -> EntityId {
    EntityId([0x80 | q; 24])
}
fn mid(n: u64) -> MsgId {
    let mut id = [0xEE; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    MsgId(id)
}

fn opts() -> LogOptions {
    LogOptions::default()
}

fn open(path: &Path) -> LogStore {
    LogStore::open(path, opts()).unwrap().0
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.log");
    (dir, path)
}

async fn ids(s: &LogStore, q: u8) -> Vec<MsgId> {
    let mut out = Vec::new();
    while let Some(m) = s.peek(&rid(q)).await.unwrap() {
        s.ack(&rid(q), &m.id).await.unwrap();
        out.push(m.id);
    }
    out
}

/// Three messages; returns the file length before and after the third push.
async fn three_messages(path: &Path) -> (u64, u64) {
    let s = open(path);
    s.create(queue(1)).await.unwrap();
    s.push(&sid(1), mid(1), 1, vec![1; 100]).await.unwrap();
    s.push(&sid(1), mid(2), 2, vec![2; 100]).await.unwrap();
    let before = std::fs::metadata(path).unwrap().len();
    s.push(&sid(1), mid(3), 3, vec![3; 100]).await.unwrap();
    (before, std::fs::metadata(path).unwrap().len())
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[tokio::test]
async fn new_log_starts_with_magic_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, path) = temp();
    let (_s, rec) = LogStore::open(&path, opts()).unwrap();
    assert_eq!(rec.records, 0);
    assert_eq!(std::fs::read(&path).unwrap(), MAGIC);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn torn_tail_is_truncated() {
    // Every cut inside the last record: it is gone, the rest is there, and the log is
    // writable again.
    let (_d, path) = temp();
    let (before, after) = three_messages(&path).await;
    let whole = std::fs::read(&path).unwrap();
    for cut in [before + 1, before + 7, before + 8, before + 50, after - 1] {
        std::fs::write(&path, &whole[..cut as usize]).unwrap();
        let (s, rec) = LogStore::open(&path, opts()).unwrap();
        assert_eq!(rec.truncated, cut - before, "cut at {cut}");
        assert_eq!(rec.records, 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        s.push(&sid(1), mid(4), 4, vec![4; 10]).await.unwrap();
        drop(s);
        let s = open(&path);
        assert_eq!(ids(&s, 1).await, vec![mid(1), mid(2), mid(4)]);
    }
}

#[tokio::test]
async fn torn_tail_with_bad_checksum_or_zeros_is_truncated() {
    let (_d, path) = temp();
    let (before, after) = three_messages(&path).await;
    // The last record complete in length but with garbage in it (a reordered write).
    let mut whole = std::fs::read(&path).unwrap();
    whole[after as usize - 3] ^= 0xFF;
    std::fs::write(&path, &whole).unwrap();
    let (s, rec) = LogStore::open(&path, opts()).unwrap();
    assert_eq!(rec.truncated, after - before);
    assert_eq!(ids(&s, 1).await, vec![mid(1), mid(2)]);
    drop(s);
    // Zeros after the end (space allocated but never written).
    let len = std::fs::metadata(&path).unwrap().len();
    append(&path, &[0u8; 4096]);
    let (_s, rec) = LogStore::open(&path, opts()).unwrap();
    assert_eq!(rec.truncated, 4096);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
}

#[tokio::test]
async fn corrupt_record_in_the_middle_is_an_error() {
    let (_d, path) = temp();
    let (before, _after) = three_messages(&path).await;
    let whole = std::fs::read(&path).unwrap();
    // A flipped bit in the second message's body: records follow it.
    let mut bad = whole.clone();
    let at = before as usize - 20;
    bad[at] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    match LogStore::open(&path, opts()) {
        Err(LogError::Corrupt { offset, reason, .. }) => {
            assert!(offset < before && offset > 8, "offset {offset}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a corrupt log opened"),
    }
    // The file was not touched.
    assert_eq!(std::fs::read(&path).unwrap(), bad);
    // A length field pointing into the middle of the file is corruption too.
    let mut bad = whole.clone();
    bad[8] = 3;
    bad[9] = 0;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        LogStore::open(&path, opts()),
        Err(LogError::Corrupt { offset: 8, .. })
    ));
    // Not a log at all.
    std::fs::write(&path, b"hello world, not a log").unwrap();
    assert!(matches!(
        LogStore::open(&path, opts()),
        Err(LogError::Corrupt { offset: 0, .. })
    ));
}

#[tokio::test]
async fn record_that_does_not_apply_is_corruption() {
    // A well-formed ack of a message that is not the head: the log cannot be replayed.
    let (_d, path) = temp();
    let (_before, _after) = three_messages(&path).await;
    let whole = std::fs::read(&path).unwrap();
    // Append an ack record for mid(3) (not the head), checksummed correctly, then another
    // record after it, so it is not a tail.
    let mut payload = vec![7u8];
    payload.extend_from_slice(&rid(1).0);
    payload.extend_from_slice(&mid(3).0);
    let mut rec = Vec::new();
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut d = crc.digest();
    d.update(&len);
    d.update(&payload);
    rec.extend_from_slice(&len);
    rec.extend_from_slice(&d.finalize().to_le_bytes());
    rec.extend_from_slice(&payload);
    let mut bad = whole.clone();
    bad.extend_from_slice(&rec);
    std::fs::write(&path, &bad).unwrap();
    match LogStore::open(&path, opts()) {
        Err(LogError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, whole.len() as u64);
            assert!(reason.contains("ack"), "{reason}");
        }
        _ => panic!("expected corruption"),
    }
}

/// Deterministic: on one thread the background compaction a write starts runs only when this
/// test yields, which it does only in `compact()`: whenever the log has passed the threshold,
/// the test waits there for that compaction (and compacts once more), so how far the log grows
/// does not depend on how fast the disk is.
#[tokio::test]
async fn compaction_bounds_the_log_and_keeps_state() {
    let (_d, path) = temp();
    let o = LogOptions {
        compact_min_bytes: 64 << 10,
        compact_factor: 4,
        ..opts()
    };
    let s = LogStore::open(&path, o.clone()).unwrap().0;
    s.create(queue(1)).await.unwrap();
    s.create(queue(2)).await.unwrap();
    s.secure(&rid(2), [9; 32]).await.unwrap();
    s.suspend(&rid(2)).await.unwrap();
    // Queue 3 keeps 10 messages; queue 1 churns through 5,000 (about 1.4 MB of records).
    s.create(queue(3)).await.unwrap();
    for n in 0..10 {
        s.push(&sid(3), mid(n), n, vec![3; 50]).await.unwrap();
    }
    let mut max = 0;
    let mut compactions = 0;
    for n in 100..5100 {
        s.push(&sid(1), mid(n), n, vec![1; 150]).await.unwrap();
        let h = s.peek(&rid(1)).await.unwrap().unwrap();
        s.ack(&rid(1), &h.id).await.unwrap();
        max = max.max(s.log_bytes());
        if s.log_bytes() > o.compact_min_bytes {
            s.compact().await.unwrap();
            compactions += 1;
        }
    }
    for n in 6000..6005 {
        s.push(&sid(1), mid(n), n, vec![1; 150]).await.unwrap();
    }
    assert!(compactions >= 10, "{compactions} compactions");
    // The churn never left more than one round of records above the threshold.
    assert!(max < (64 << 10) + 1024, "log grew to {max} bytes");
    s.compact().await.unwrap();
    let compacted = s.log_bytes();
    assert!(compacted < 64 << 10, "compacted log is {compacted} bytes");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), compacted);
    drop(s);
    let (s, rec) = LogStore::open(&path, o).unwrap();
    assert_eq!(rec.truncated, 0);
    let q2 = s.by_recipient(&rid(2)).await.unwrap().unwrap();
    assert_eq!(q2.sender_key, Some([9; 32]));
    assert_eq!(q2.status, QueueStatus::Suspended);
    assert_eq!(ids(&s, 3).await, (0..10).map(mid).collect::<Vec<_>>());
    assert_eq!(ids(&s, 1).await, (6000..6005).map(mid).collect::<Vec<_>>());
    assert!(!path.with_extension("log.compact").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_compaction_are_kept() {
    let (_d, path) = temp();
    let s = open(&path);
    for q in 0..4 {
        s.create(queue(q)).await.unwrap();
    }
    for n in 0..2000 {
        s.push(&sid(0), mid(n), n, vec![0; 300]).await.unwrap();
    }
    let writers: Vec<_> = (1..4u8)
        .map(|q| {
            let s = s.clone();
            tokio::spawn(async move {
                for n in 0..500 {
                    s.push(&sid(q), mid(n), n, vec![q; 64]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for _ in 0..5 {
        s.compact().await.unwrap();
    }
    for w in writers {
        w.await.unwrap();
    }
    drop(s);
    let s = open(&path);
    assert_eq!(ids(&s, 0).await.len(), 2000);
    for q in 1..4 {
        assert_eq!(ids(&s, q).await, (0..500).map(mid).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn leftover_compaction_file_is_ignored() {
    let (_d, path) = temp();
    three_messages(&path).await;
    let tmp = PathBuf::from(format!("{}.compact", path.display()));
    std::fs::write(&tmp, b"SMPXLOG1 half a snapshot").unwrap();
    let s = open(&path);
    assert_eq!(ids(&s, 1).await, vec![mid(1), mid(2), mid(3)]);
    assert!(!tmp.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fsync_policy_works() {
    for policy in [FsyncPolicy::Never, FsyncPolicy::Batch, FsyncPolicy::Every] {
        let (_d, path) = temp();
        let o = LogOptions {
            fsync: policy,
            ..opts()
        };
        let s = Arc::new(LogStore::open(&path, o.clone()).unwrap().0);
        s.create(queue(1)).await.unwrap();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let s = s.clone();
                tokio::spawn(async move {
                    for n in 0..10 {
                        let o = s.push(&sid(1), mid(t * 100 + n), 1, vec![1; 10]).await;
                        assert_eq!(o.unwrap(), PushOutcome::Accepted);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        drop(s);
        let s = LogStore::open(&path, o).unwrap().0;
        assert_eq!(ids(&s, 1).await.len(), 80, "{policy:?}");
    }
}

#[tokio::test]
async fn oversized_body_is_refused_without_logging() {
    let (_d, path) = temp();
    let s = open(&path);
    s.create(queue(1)).await.unwrap();
    let len = s.log_bytes();
    let r = s
        .push(
            &sid(1),
            mid(1),
            1,
            vec![0; smpx_relay_store::log::MAX_BODY + 1],
        )
        .await;
    assert!(matches!(r, Err(StoreError::Backend(_))));
    assert_eq!(s.log_bytes(), len);
    assert_eq!(s.peek(&rid(1)).await.unwrap(), None);
}
