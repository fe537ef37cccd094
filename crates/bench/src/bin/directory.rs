//! `smpx-bench-directory`: the directory's queries among `--relays` registered relays.
//!
//! The relays are written through `DirectoryStore` (registration over HTTP would mostly
//! time the proof of work, which is not the point): `--relays` relays (default 10,000) of
//! `--operators` operators (default 2,000) in `--regions` regions (default 10), each with its
//! own /24, then `--rounds` probe rounds (default 8, three hours apart under a manual clock,
//! the last one now) through the directory's own `probe_round` with a prober that answers at
//! once: 95% of the relays up, latencies 5–200 ms spread by fingerprint. That is the history
//! a snapshot judges: every relay's stability and a day of latencies.
//!
//! Then, in this process:
//! - **one snapshot recomputation** (`view::compute`: all relays and a day of latencies from
//!   SQLite, judged), timed `--recomputes` times;
//! - **memory per relay held**: VmRSS (`/proc/self/status`) before and after the directory's
//!   first read loads its snapshot, and before and after one more owned copy of it, each
//!   divided by the relay count;
//! - **the pick alone** (`Snapshot::pick`, 3 relays of distinct operators in a region),
//!   `--queries` times over the regions in turn: p50/p99;
//! - **the pick over HTTP**: `GET /v1/relays/pick?region=…&count=3` from a reqwest client in
//!   this process to the directory served on loopback as `smpx directory run` serves it,
//!   one request at a time, `--queries` times after a warm-up: p50/p99/max.
//!
//! An Ed25519 verify is timed before and after, the machine's speed of the moment, so the
//! figures can be stated as ratios to BASELINES.md.

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use smpx_core::rules::listing::subnet_of;
use smpx_core::rules::measure::Stability;
use smpx_directory::probe::ProbeFuture;
use smpx_directory::{view, Directory, DirectoryConfig, DirectoryHome, Observation, Prober};
use smpx_http::{Clock, ManualClock};
use smpx_relay_protocol::fingerprint::CaFingerprint;
use smpx_relay_protocol::{RelayAddress, RelayHost};
use smpx_store::directory::{DirectoryStore, NewRegistration};
use smpx_store::Db;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Directory queries among many registered relays")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    relays: usize,
    #[arg(long, default_value_t = 2_000)]
    operators: usize,
    #[arg(long, default_value_t = 10)]
    regions: usize,
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    #[arg(long, default_value_t = 10_000)]
    queries: usize,
    #[arg(long, default_value_t = 5)]
    recomputes: usize,
}

/// Answers at once from the fingerprint: one relay in twenty down, latencies 5–200 ms.
struct Instant95;

impl Prober for Instant95 {
    fn probe<'a>(&'a self, target: &'a RelayAddress) -> ProbeFuture<'a> {
        Box::pin(async move {
            let b = target.fingerprint.as_bytes();
            let up = !b[0].is_multiple_of(20);
            Observation {
                up,
                latency_ms: up.then_some(5 + u32::from(b[1]) * 195 / 255),
                stage: if up { "round_trip" } else { "tcp" }.into(),
                detail: String::new(),
            }
        })
    }
}

fn vm_rss_kib() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/self/status"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The median time of one Ed25519 verify, µs.
fn ed25519_verify_us() -> f64 {
    let key = SigningKey::from_bytes(&[7; 32]);
    let msg = [1u8; 64];
    let sig = key.sign(&msg);
    let vk = key.verifying_key();
    let mut times: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..200 {
                let _ = std::hint::black_box(vk.verify(&msg, &sig));
            }
            t.elapsed().as_secs_f64() * 1e6 / 200.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[4]
}

/// The `p`-th per-mille of sorted durations, µs.
fn pct(sorted: &[Duration], permille: usize) -> f64 {
    let i = (sorted.len() * permille / 1000).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn region(i: usize) -> String {
    format!("region-{i}")
}

async fn populate(store: &DirectoryStore, args: &Args, now: u64) -> Result<()> {
    let fresh = serde_json::to_string(&Stability::default())?;
    let info = r#"{"units_per_gb_month":250000}"#.to_owned();
    let metadata = r#"{"source_code":"https://example.org/smpx","country":"DE"}"#.to_owned();
    for i in 0..args.relays {
        let mut fp = [0u8; 32];
        fp[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        fp[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        let fingerprint = CaFingerprint::from_bytes(fp);
        let host = format!("10.{}.{}.1", (i >> 8) & 0xff, i & 0xff);
        let address = RelayAddress::new(fingerprint, host.parse::<RelayHost>()?, 5223);
        let challenge = format!("bench-{i}");
        store.add_challenge(&challenge, now, now + 600).await?;
        let op = i % args.operators;
        let r = NewRegistration {
            fingerprint: fingerprint.to_string(),
            address: address.to_string(),
            subnet: subnet_of(&host),
            operator_id: format!("op-{op}"),
            operator_key: format!("{op:064x}"),
            region: region(i % args.regions),
            info: info.clone(),
            metadata: metadata.clone(),
            challenge,
            fresh_stability: fresh.clone(),
            now,
            rate_limit: u64::MAX,
            rate_window_secs: 3600,
        };
        store.register(&r).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("load average at start: {}", loadavg());
    let verify_before = ed25519_verify_us();
    let home_dir = tempfile::tempdir()?;
    let config = DirectoryConfig {
        name: "bench".into(),
        probe_concurrency: 64,
        ..DirectoryConfig::default()
    };
    DirectoryHome::create(home_dir.path(), &config)?;
    let home = DirectoryHome::load(home_dir.path())?;
    let store = DirectoryStore::open(Db::connect(&home.database_url()).await?).await?;
    let t0: u64 = 1_800_000_000;
    let clock = Arc::new(ManualClock::new(t0));
    let t = Instant::now();
    populate(&store, &args, t0).await?;
    println!("{} relays registered in {:.1?}", args.relays, t.elapsed());
    let dir = Directory::new(
        store.clone(),
        DirectoryHome::load(home_dir.path())?,
        clock.clone(),
        Arc::new(Instant95),
    );
    let t = Instant::now();
    for _ in 0..args.rounds {
        clock.advance(3 * 3600);
        smpx_directory::probe::probe_round(&dir).await?;
    }
    println!(
        "{} probe rounds recorded in {:.1?}",
        args.rounds,
        t.elapsed()
    );
    let now = clock.now();

    // One recomputation, from the database.
    let mut recompute = Vec::new();
    for _ in 0..args.recomputes {
        let t = Instant::now();
        let s = view::compute(&dir, now).await?;
        recompute.push(t.elapsed());
        drop(s);
    }
    recompute.sort();

    // Memory held: a directory that has not read yet, then its first read.
    let fresh = Directory::new(
        store.clone(),
        DirectoryHome::load(home_dir.path())?,
        clock.clone(),
        Arc::new(Instant95),
    );
    let rss0 = vm_rss_kib()?;
    let snap = view::current(&fresh).await?;
    let rss1 = vm_rss_kib()?;
    let copy = view::snapshot(&fresh).await?;
    let rss2 = vm_rss_kib()?;
    let n = snap.relays.len();
    let running = snap.relays.iter().filter(|r| r.status == "running").count();
    println!("snapshot: {n} relays, {running} running, at {}", snap.now);
    drop(copy);

    // The pick alone.
    let mut alone = Vec::with_capacity(args.queries);
    let mut picked = 0usize;
    for q in 0..args.queries {
        let region = region(q % args.regions);
        let t = Instant::now();
        let p = snap.pick(&region, 3);
        alone.push(t.elapsed());
        picked += p.len();
    }
    alone.sort();
    if picked != 3 * args.queries {
        return Err(anyhow!("a pick returned fewer than 3 relays"));
    }

    // The pick over HTTP on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(smpx_directory::serve(fresh.clone(), listener, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let get = |q: usize| {
        let http = http.clone();
        let u = format!(
            "{url}/v1/relays/pick?region={}&count=3",
            region(q % args.regions)
        );
        async move {
            let r = http.get(&u).send().await?.error_for_status()?;
            let v: serde_json::Value = r.json().await?;
            let len = v.as_array().map_or(0, Vec::len);
            anyhow::Ok(len)
        }
    };
    for q in 0..500 {
        get(q).await.context("warm-up")?;
    }
    let mut over_http = Vec::with_capacity(args.queries);
    for q in 0..args.queries {
        let t = Instant::now();
        let len = get(q).await?;
        over_http.push(t.elapsed());
        if len != 3 {
            return Err(anyhow!("the pick over HTTP returned {len} relays"));
        }
    }
    over_http.sort();
    let _ = tx.send(());
    served.await??;
    let verify_after = ed25519_verify_us();

    println!("load average at end: {}", loadavg());
    println!(
        "Ed25519 verify: {verify_before:.1} µs before, {verify_after:.1} µs after (BASELINES: 28.5 µs)"
    );
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!(
        "snapshot recomputation at {n} relays: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(&recompute[recompute.len() / 2]),
        ms(&recompute[0]),
        ms(&recompute[recompute.len() - 1])
    );
    println!(
        "memory held: first read {} KiB ({:.0} B/relay), one more owned copy {} KiB ({:.0} B/relay)",
        rss1.saturating_sub(rss0),
        (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64,
        rss2.saturating_sub(rss1),
        (rss2.saturating_sub(rss1) * 1024) as f64 / n as f64
    );
    println!(
        "pick alone ({} queries): p50 {:.1} µs, p99 {:.1} µs",
        args.queries,
        pct(&alone, 500),
        pct(&alone, 990)
    );
    println!(
        "pick over HTTP ({} queries, one at a time): p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        args.queries,
        pct(&over_http, 500),
        pct(&over_http, 990),
        pct(&over_http, 999),
        pct(&over_http, 1000)
    );
    Ok(())
}
