//! Store throughput and memory per idle queue, per backend.
//!
//! ```text
//! cargo run --release -p smpx-relay --example store_bench -- \
//!     [--backend memory|log|log-batch|log-every|sqlite|postgres] [--queues 1000] \
//!     [--messages 200000] [--concurrency 64] [--body 256] [--idle 100000] [--dir DIR]
//! ```
//!
//! Throughput: `--concurrency` tasks share `--queues` queues (each task its own subset);
//! every message is one `push`, one `peek` and one `ack` (send → deliver → acknowledge),
//! each answered only once durable per the backend. Memory: RSS growth (from
//! `/proc/self/statm`) while `--idle` more queues are created, divided by their number
//! (for SQL backends the data is in the database: the database size per queue is shown).
//! PostgreSQL: a scratch database at `SMPX_TEST_POSTGRES` (see `smpx_store::scratch`).

use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_store::log::{FsyncPolicy, LogOptions, LogStore};
use smpx_relay_store::memory::MemoryStore;
use smpx_relay_store::sql::SqlStore;
use smpx_relay_store::*;
use std::sync::Arc;
use std::time::Instant;

struct Args {
    backend: String,
    queues: u64,
    messages: u64,
    concurrency: u64,
    body: usize,
    idle: u64,
    dir: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        backend: "log".into(),
        queues: 1000,
        messages: 200_000,
        concurrency: 64,
        body: 256,
        idle: 100_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{k}: {e}"));
        match k.as_str() {
            "--backend" => a.backend = v,
            "--queues" => a.queues = num(&v)?,
            "--messages" => a.messages = num(&v)?,
            "--concurrency" => a.concurrency = num(&v)?,
            "--body" => a.body = num(&v)? as usize,
            "--idle" => a.idle = num(&v)?,
            "--dir" => a.dir = Some(v),
            _ => return Err(format!("unknown argument {k}")),
        }
    }
    Ok(a)
}

fn id(tag: u8, n: u64) -> [u8; 24] {
    let mut id = [tag; 24];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id
}

fn new_queue(n: u64) -> NewQueue {
    NewQueue {
        recipient_id: EntityId(id(1, n)),
        sender_id: EntityId(id(2, n)),
        recipient_key: [3; 32],
        recipient_dh: [4; 32],
        server_dh: ServerDhSecret([5; 32]),
        quota: FREE_QUOTA,
        created_at: 1_750_000_000,
    }
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let tmp = tempfile::tempdir()?;
    let dir = a
        .dir
        .as_ref()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let log = |fsync| -> Result<Arc<dyn QueueStore>, Box<dyn std::error::Error>> {
        let path = dir.join(format!("bench-{}.log", std::process::id()));
        let opts = LogOptions {
            fsync,
            ..LogOptions::default()
        };
        Ok(Arc::new(LogStore::open(path, opts)?.0))
    };
    let store: Arc<dyn QueueStore> = match a.backend.as_str() {
        "memory" => Arc::new(MemoryStore::new()),
        "log" => log(FsyncPolicy::Never)?,
        "log-batch" => log(FsyncPolicy::Batch)?,
        "log-every" => log(FsyncPolicy::Every)?,
        "sqlite" => {
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            Arc::new(SqlStore::open(smpx_store::Db::connect(&url).await?).await?)
        }
        "postgres" => {
            let url = smpx_store::scratch::postgres().await?;
            Arc::new(SqlStore::open(smpx_store::Db::connect(&url).await?).await?)
        }
        b => return Err(format!("unknown backend {b}").into()),
    };

    // Throughput.
    for q in 0..a.queues {
        store.create(new_queue(q)).await?;
    }
    let per_task = a.messages / a.concurrency;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..a.concurrency {
        let store = store.clone();
        let (queues, conc, body) = (a.queues, a.concurrency, a.body);
        tasks.push(tokio::spawn(async move {
            let mine: Vec<u64> = (t..queues).step_by(conc as usize).collect();
            let mut lat = Vec::with_capacity(per_task as usize);
            for n in 0..per_task {
                let q = mine[(n as usize) % mine.len().max(1)];
                let t0 = Instant::now();
                let m = MsgId(id(9, t << 40 | n));
                let o = store
                    .push(&EntityId(id(2, q)), m, 1_750_000_000, vec![7; body])
                    .await?;
                if o != PushOutcome::Accepted {
                    return Err(StoreError::Backend(format!("push: {o:?}")));
                }
                let rid = EntityId(id(1, q));
                let head = store.peek(&rid).await?;
                let head = head.ok_or_else(|| StoreError::Backend("empty".into()))?;
                if store.ack(&rid, &head.id).await? != AckOutcome::Acked {
                    return Err(StoreError::Backend("ack refused".into()));
                }
                lat.push(t0.elapsed().as_micros() as u64);
            }
            Ok::<_, StoreError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let total = per_task * a.concurrency;
    println!(
        "{}: {} messages (push+peek+ack, {} B bodies) over {} queues, {} tasks: {:.2} s, {:.0} messages/s, p50 {} µs, p99 {} µs",
        a.backend,
        total,
        a.body,
        a.queues,
        a.concurrency,
        secs,
        total as f64 / secs,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0),
    );

    // Memory per idle queue.
    if a.idle > 0 {
        let rss0 = rss_bytes();
        let disk0 = dir_bytes(&dir);
        let start = Instant::now();
        let creators: Vec<_> = (0..a.concurrency.min(64))
            .map(|t| {
                let store = store.clone();
                let (idle, conc) = (a.idle, a.concurrency.min(64));
                tokio::spawn(async move {
                    for n in (t..idle).step_by(conc as usize) {
                        store.create(new_queue(1_000_000_000 + n)).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for c in creators {
            c.await??;
        }
        let secs = start.elapsed().as_secs_f64();
        let rss = rss_bytes().saturating_sub(rss0);
        let disk = dir_bytes(&dir).saturating_sub(disk0);
        println!(
            "{}: {} idle queues created in {:.2} s ({:.0}/s): RSS +{:.1} MB = {} B per queue; files +{:.1} MB = {} B per queue",
            a.backend,
            a.idle,
            secs,
            a.idle as f64 / secs,
            rss as f64 / 1e6,
            rss / a.idle,
            disk as f64 / 1e6,
            disk / a.idle,
        );
    }
    Ok(())
}
