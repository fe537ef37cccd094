//! Throughput of the operator's spent registry: tokens registered per second, on SQLite and
//! on PostgreSQL, one request per transaction and batched.
//!
//! ```text
//! scripts/ensure-postgres
//! cargo run --release -p smpx-store --example credits_bench [-- REQUESTS [BATCH,…]]
//! ```
//!
//! Each request spends 2 tokens and reserves 2 change outputs (a typical capacity purchase).
//! `begin` is `begin_spends` (inputs pending, outputs reserved: the double-spend check);
//! `spend` adds `complete_spends` (inputs spent, change signatures stored) — the registry's
//! whole share of a spend. Several tasks submit at once (`TASKS`, default 16 unbatched and 4
//! batched), as several request handlers (or servers) would. Points are computed before the
//! clock starts: this measures storage only. Besides wall-clock rates it prints the CPU time
//! per token spent in this process (`app`: sqlx, and all of SQLite) and in the PostgreSQL
//! backends serving it (`db`; the WAL writer and checkpointer are not counted), which stay
//! meaningful when other work shares the machine. `BACKENDS=sqlite` or `postgres` runs one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use smpx_core::credits::{hash_to_curve, KeysetId, Point};
use smpx_core::Amount;
use smpx_store::credits::{BeginOutcome, CreditStore, NewSpend, SpendInput};
use smpx_store::Db;
use smpx_testdb as scratch;

const INPUTS: usize = 2;
const OUTPUTS: usize = 2;
const NOW: u64 = 1_750_000_000;

/// CPU seconds (user + system) used so far by process `pid` (Linux; 0 if unreadable).
fn cpu_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may contain spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of this process and of the PostgreSQL backends serving its database.
struct Cpu {
    app: f64,
    db: Vec<(String, f64)>,
}

async fn cpu(store: &CreditStore) -> Cpu {
    let db = if store.db().backend() == smpx_store::Backend::Postgres {
        let pids: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(pid AS BIGINT) FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(store.db().pool())
        .await
        .unwrap();
        pids.iter()
            .map(|p| (p.to_string(), cpu_of(&p.to_string())))
            .collect()
    } else {
        Vec::new()
    };
    Cpu {
        app: cpu_of("self"),
        db,
    }
}

/// (app, database) CPU seconds between two readings; backends that appeared in between count
/// whole.
fn cpu_between(a: &Cpu, b: &Cpu) -> (f64, f64) {
    let before: std::collections::HashMap<&str, f64> =
        a.db.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    let db =
        b.db.iter()
            .map(|(p, c)| c - before.get(p.as_str()).copied().unwrap_or(0.0))
            .fold(0.0, |a, b| a + b);
    (b.app - a.app, db)
}

fn points(tag: &str, n: usize) -> Vec<Point> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| hash_to_curve(format!("{tag}-{i}").as_bytes()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn requests(tag: &str, n: usize) -> Vec<NewSpend> {
    let keyset = KeysetId::from_hex(&format!("01{}", "ab".repeat(32))).unwrap();
    let pts = points(tag, n * (INPUTS + OUTPUTS));
    pts.chunks(INPUTS + OUTPUTS)
        .enumerate()
        .map(|(i, p)| NewSpend {
            saga_id: format!("{tag}-{i:08}"),
            inputs: p[..INPUTS]
                .iter()
                .map(|y| SpendInput {
                    y: *y,
                    amount: Amount(8),
                    keyset,
                    final_expiry: NOW + 90 * 86_400,
                })
                .collect(),
            outputs: p[INPUTS..].to_vec(),
            outputs_json: format!(
                "[{}]",
                p[INPUTS..]
                    .iter()
                    .map(|b| format!("{{\"amount\":4,\"id\":\"{keyset}\",\"B_\":\"{b}\"}}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            outputs_expiry: NOW + 90 * 86_400,
            now: NOW,
        })
        .collect()
}

/// Runs `reqs` through `tasks` concurrent submitters in batches of `batch`; returns the
/// wall seconds and (app, database) CPU seconds of beginning and of completing.
async fn run(
    store: &CreditStore,
    reqs: Vec<NewSpend>,
    batch: usize,
    tasks: usize,
) -> [(f64, (f64, f64)); 2] {
    let batches: Vec<Vec<NewSpend>> = reqs.chunks(batch).map(|c| c.to_vec()).collect();
    let batches = Arc::new(batches);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sigs = "[".to_owned() + &"{\"amount\":4,\"C_\":\"…\"},".repeat(OUTPUTS) + "]";

    let c0 = cpu(store).await;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, batches, next) = (store.clone(), batches.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                let out = store.begin_spends(b).await.unwrap();
                assert!(out.iter().all(|o| *o == BeginOutcome::Started));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let begin = start.elapsed().as_secs_f64();
    let c1 = cpu(store).await;

    next.store(0, std::sync::atomic::Ordering::Relaxed);
    let c2 = cpu(store).await;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, batches, next, sigs) =
            (store.clone(), batches.clone(), next.clone(), sigs.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = batches.get(i) else { break };
                let done: Vec<(&str, &str)> = b
                    .iter()
                    .map(|r| (r.saga_id.as_str(), sigs.as_str()))
                    .collect();
                let out = store.complete_spends(&done, NOW + 1).await.unwrap();
                assert!(out.iter().all(|&o| o));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let complete = start.elapsed().as_secs_f64();
    let c3 = cpu(store).await;
    [
        (begin, cpu_between(&c0, &c1)),
        (complete, cpu_between(&c2, &c3)),
    ]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests_per_run: usize = args.get(1).map_or(20_000, |a| a.parse().unwrap());
    let batches: Vec<usize> = args.get(2).map_or(vec![1, 16, 64, 256], |a| {
        a.split(',').map(|b| b.parse().unwrap()).collect()
    });
    println!(
        "{INPUTS} tokens in + {OUTPUTS} outputs per request; per token: wall throughput, and \
         CPU µs in this process (app) and in its PostgreSQL backends (db)"
    );
    println!(
        "{:<9} {:>5} {:>5} {:>8} | {:>9} {:>6} {:>6} | {:>9} {:>6} {:>6} | {:>9}",
        "backend",
        "batch",
        "tasks",
        "requests",
        "begin/s",
        "app µs",
        "db µs",
        "complete/s",
        "app µs",
        "db µs",
        "spend/s"
    );
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',') {
        let (url, _guard) = match backend {
            "sqlite" => {
                let (u, g) = scratch::sqlite().unwrap();
                (u, Some(g))
            }
            _ => (scratch::postgres().await.unwrap(), None),
        };
        let store = CreditStore::open(Db::connect(&url).await.unwrap())
            .await
            .unwrap();
        for &batch in &batches {
            // Unbatched runs are slower: fewer requests keep them short.
            let n = if batch == 1 {
                requests_per_run / 4
            } else {
                requests_per_run
            };
            let tasks = match std::env::var("TASKS") {
                Ok(t) => t.parse().unwrap(),
                Err(_) if batch == 1 => 16,
                Err(_) => 4,
            };
            let reqs = requests(&format!("{backend}-{batch}"), n);
            let [(begin, (ba, bd)), (complete, (ca, cd))] = run(&store, reqs, batch, tasks).await;
            let tokens = (n * INPUTS) as f64;
            let us = |cpu: f64| cpu * 1e6 / tokens;
            println!(
                "{:<9} {:>5} {:>5} {:>8} | {:>9.0} {:>6.1} {:>6.1} | {:>9.0} {:>6.1} {:>6.1} | {:>9.0}",
                backend,
                batch,
                tasks,
                n,
                tokens / begin,
                us(ba),
                us(bd),
                tokens / complete,
                us(ca),
                us(cd),
                tokens / (begin + complete)
            );
        }
        store.db().close().await;
        if backend == "postgres" {
            // Drop the scratch database (it holds every run's rows).
            let admin = Db::connect(&scratch::postgres_base_url()).await.unwrap();
            let name = url.rsplit('/').next().unwrap();
            sqlx::Executor::execute(admin.pool(), format!("DROP DATABASE {name}").as_str())
                .await
                .unwrap();
            admin.close().await;
        }
    }
}
