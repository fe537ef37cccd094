//! Nothing acknowledged is lost when the process is killed: a child process (this test
//! binary, re-run with `SMPX_RELAY_STORE_CHILD` set) pushes and acks on several queues at
//! once and prints each change as soon as the store answered it; the parent SIGKILLs it
//! mid-stream, reopens the store, and checks that every reported push is there (unless it
//! was acked) and no reported ack came back. The same for channel posts: every reported post
//! is in every member queue, and no post reached only some of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_store::log::{FsyncPolicy, LogOptions, LogStore};
use smpx_relay_store::sql::SqlStore;
use smpx_relay_store::*;
use smpx_store::Db;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SMPX_RELAY_STORE_CHILD";
const QUEUES: u8 = 8;
/// Changes the parent waits to see before it kills the child.
const KILL_AFTER: usize = 3000;

fn rid(q: u8) -> EntityId {
    EntityId([q; 24])
}
fn sid(q: u8) -> EntityId {
    EntityId([0x80 | q; 24])
}
fn mid(q: u8, n: u64) -> MsgId {
    let mut id = [q; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    MsgId(id)
}
fn num(id: &MsgId) -> u64 {
    u64::from_le_bytes(id.0[..8].try_into().unwrap())
}
fn member(q: u8) -> NewQueue {
    NewQueue {
        recipient_id: rid(q),
        sender_id: sid(q),
        recipient_key: [1; 32],
        recipient_dh: [2; 32],
        server_dh: ServerDhSecret([3; 32]),
        quota: 1_000_000,
        created_at: 0,
    }
}

/// Takes every message off queue `q`, in order: their numbers.
async fn drain(store: &dyn QueueStore, q: u8) -> Vec<u64> {
    let mut present = Vec::new();
    while let Some(m) = store.peek(&rid(q)).await.unwrap() {
        present.push(num(&m.id));
        assert_eq!(store.ack(&rid(q), &m.id).await.unwrap(), AckOutcome::Acked);
    }
    present
}

/// Runs the test `durability::{test}` as a child with `env` set to `spec`, hands `change`
/// every complete line it prints (true: the line reported a change), SIGKILLs it after
/// `kill_after` changes and returns once it is dead and its output drained.
fn run_and_kill(
    test: &str,
    env: &str,
    spec: &str,
    kill_after: usize,
    mut change: impl FnMut(&str) -> bool,
) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("durability::{test}"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let (mut seen, mut killed) = (0usize, false);
    let mut line = String::new();
    loop {
        line.clear();
        // EOF once the child is dead and the pipe drained; a partial last line is ignored
        // (the change it reports was answered, but ignoring it only weakens the check).
        if lines.read_line(&mut line).unwrap() == 0 || !line.ends_with('\n') {
            break;
        }
        if change(&line) {
            seen += 1;
            if seen == kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "child ended before it was killed: {status:?}");
    seen
}

/// A log file's spec (`log:<policy>:<path>`) in a fresh directory.
fn log_spec(policy: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("log:{policy}:{}", dir.path().join("relay.log").display());
    (dir, spec)
}

/// `log:<policy>:<path>` or `sql:<url>`.
async fn open(spec: &str) -> Arc<dyn QueueStore> {
    if let Some(rest) = spec.strip_prefix("log:") {
        let (policy, path) = rest.split_once(':').unwrap();
        let opts = LogOptions {
            fsync: policy.parse().unwrap(),
            // Small, so the child compacts while it is being killed, too.
            compact_min_bytes: 256 << 10,
            ..LogOptions::default()
        };
        Arc::new(LogStore::open(path, opts).unwrap().0)
    } else {
        let url = spec.strip_prefix("sql:").unwrap();
        Arc::new(
            SqlStore::open(Db::connect(url).await.unwrap())
                .await
                .unwrap(),
        )
    }
}

/// The child: runs until killed (or 60 s), printing `P q n` after each accepted push and
/// `A q n` after each ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let store = open(&spec).await;
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for q in 0..QUEUES {
        let store = store.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(60) {
                n += 1;
                let body = vec![q; 40 + (n % 200) as usize];
                let o = store.push(&sid(q), mid(q, n), n, body).await.unwrap();
                assert_eq!(o, PushOutcome::Accepted);
                writeln!(out.lock().unwrap(), "P {q} {n}").unwrap();
                if n.is_multiple_of(3) {
                    let head = store.peek(&rid(q)).await.unwrap().unwrap();
                    assert_eq!(
                        store.ack(&rid(q), &head.id).await.unwrap(),
                        AckOutcome::Acked
                    );
                    writeln!(out.lock().unwrap(), "A {q} {}", num(&head.id)).unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn killed_mid_stream(spec: &str) {
    {
        let store = open(spec).await;
        for q in 0..QUEUES {
            store.create(member(q)).await.unwrap();
        }
    }
    let mut pushed: HashMap<u8, BTreeSet<u64>> = HashMap::new();
    let mut acked: HashMap<u8, BTreeSet<u64>> = HashMap::new();
    let seen = run_and_kill("child", CHILD_ENV, spec, KILL_AFTER, |line| {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind @ ("P" | "A"), q, n] = parts[..] else {
            return false;
        };
        let (q, n): (u8, u64) = (q.parse().unwrap(), n.parse().unwrap());
        if kind == "P" { &mut pushed } else { &mut acked }
            .entry(q)
            .or_default()
            .insert(n);
        true
    });

    let store = open(spec).await;
    let mut present_total = 0;
    for q in 0..QUEUES {
        let present = drain(&*store, q).await;
        present_total += present.len();
        assert!(
            present.windows(2).all(|w| w[0] < w[1]),
            "queue {q} out of order"
        );
        let pushed = pushed.remove(&q).unwrap_or_default();
        let acked = acked.remove(&q).unwrap_or_default();
        // Acks take the head, so what was acked is every message before the first one
        // present. No reported ack may be undone, no reported push after it may be lost, and
        // of the reported pushes before it at most one was acked without the ack being
        // reported (each queue has one change in flight when the child dies).
        let first = present.first().copied().unwrap_or(u64::MAX);
        let present: BTreeSet<u64> = present.into_iter().collect();
        for n in &acked {
            assert!(*n < first, "{spec}: queue {q}: acknowledged ack {n} undone");
        }
        for n in pushed.range(first..) {
            assert!(
                present.contains(n),
                "{spec}: queue {q}: acknowledged push {n} lost"
            );
        }
        let max_acked = acked.last().copied().unwrap_or(0);
        let unreported = pushed.range(..first).filter(|n| **n > max_acked).count();
        assert!(
            unreported <= 1,
            "{spec}: queue {q}: {unreported} pushes vanished"
        );
    }
    assert!(present_total > 0);
    eprintln!("{spec}: {seen} changes seen before the kill, {present_total} messages held after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_never_fsync_survives_sigkill() {
    let (_dir, spec) = log_spec("never");
    killed_mid_stream(&spec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_batch_fsync_survives_sigkill() {
    let (_dir, spec) = log_spec("batch");
    killed_mid_stream(&spec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    let (url, _dir) = smpx_store::scratch::sqlite().unwrap();
    killed_mid_stream(&format!("sql:{url}")).await;
}

const POST_CHILD_ENV: &str = "SMPX_RELAY_STORE_POST_CHILD";
const MEMBERS: u8 = 4;
const POSTS_BEFORE_KILL: usize = 1500;

fn owner() -> EntityId {
    EntityId([0x40; 24])
}
fn join_id() -> EntityId {
    EntityId([0x41; 24])
}

/// The post child: posts to the channel until killed (or 60 s), printing `T n` after each
/// post the store answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_child() {
    let Ok(spec) = std::env::var(POST_CHILD_ENV) else {
        return; // not a child: nothing to do
    };
    let store = open(&spec).await;
    let mut out = std::io::stdout();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(60) {
        n += 1;
        let body = vec![n as u8; 40 + (n % 200) as usize];
        let p = store
            .post(&owner(), mid(0, n), n, body)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.delivered.len(), usize::from(MEMBERS));
        writeln!(out, "T {n}").unwrap();
    }
}

/// A POST is atomic and durable once answered: after a SIGKILL every member queue holds the
/// same posts, every reported one among them, and at most one more (the one in flight).
async fn post_killed_mid_stream(spec: &str) {
    {
        let store = open(spec).await;
        store
            .create_channel(NewChannel {
                owner_id: owner(),
                join_id: join_id(),
                owner_key: [5; 32],
                created_at: 0,
            })
            .await
            .unwrap();
        for q in 0..MEMBERS {
            assert!(store.join_channel(&join_id(), member(q)).await.unwrap());
        }
    }
    let mut reported = 0u64;
    run_and_kill(
        "post_child",
        POST_CHILD_ENV,
        spec,
        POSTS_BEFORE_KILL,
        |line| {
            let ["T", n] = line.split_whitespace().collect::<Vec<_>>()[..] else {
                return false;
            };
            let n: u64 = n.parse().unwrap();
            // (The first line may share libtest's "test post_child ..." line: skipped.)
            assert!(n > reported, "posts are reported in order");
            reported = n;
            true
        },
    );

    let store = open(spec).await;
    let mut first: Option<Vec<u64>> = None;
    for q in 0..MEMBERS {
        let present = drain(&*store, q).await;
        let k = present.len() as u64;
        assert_eq!(present, (1..=k).collect::<Vec<_>>(), "{spec}: member {q}");
        assert!(
            k == reported || k == reported + 1,
            "{spec}: member {q} holds {k} posts, {reported} were acknowledged"
        );
        match &first {
            None => first = Some(present),
            Some(f) => assert_eq!(f, &present, "{spec}: a post reached only some members"),
        }
    }
    eprintln!("{spec}: {reported} posts acknowledged before the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_post_survives_sigkill() {
    let (_dir, spec) = log_spec("never");
    post_killed_mid_stream(&spec).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_post_survives_sigkill() {
    let (url, _dir) = smpx_store::scratch::sqlite().unwrap();
    post_killed_mid_stream(&format!("sql:{url}")).await;
}

#[test]
fn fsync_policy_parses() {
    assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
    assert_eq!("batch".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Batch);
    assert_eq!("every".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Every);
    assert!("sometimes".parse::<FsyncPolicy>().is_err());
}
