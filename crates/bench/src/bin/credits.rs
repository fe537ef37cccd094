//! `smpx-bench-credits`: operator credits spent end to end over HTTP (issue 4's figure).
//!
//! ```text
//! cargo run --release -p smpx-bench --bin smpx-bench-credits                 # SQLite
//! scripts/ensure-postgres && \
//! cargo run --release -p smpx-bench --bin smpx-bench-credits -- --postgres   # PostgreSQL
//! ```
//!
//! Starts a real operator (and the coordinator it asks for its parameters at start) on
//! loopback — in this process by default, in a child process with `--separate` — and mints
//! tokens up front without redemptions: the bench derives the operator's current day keyset
//! from the operator's own `credit-master-secret` and signs blinded outputs locally (setup,
//! not timed). Then it sends `POST /v1/swap` requests of each shape (`IxO`: I tokens in, O
//! blinded change outputs) with `--concurrency` in flight from a reqwest client on its own
//! runtime (bodies serialised before the clock starts), and reports tokens spent per second,
//! change outputs signed per second, p50/p99 latency, and the CPU the server (and the
//! PostgreSQL backends serving its database) used per token.
//!
//! Because these machines are shared and loaded, it also times the two primitives a spend
//! cannot avoid — verifying a token (`C == k·Y`) and signing an output with its DLEQ proof —
//! before the runs and, on a probe thread every 25 ms, during each run, and states the
//! server's CPU per request as a ratio to the latter. With PostgreSQL it also reports the
//! spends per batch (from the database's commit counter, two commits per batch; needs `psql`).
//! The server's CPU is this process minus the client's threads (`client`, and the main
//! thread), or the child process with `--separate`.

use anyhow::{Context, Result};
use clap::Parser;
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_core::credits::{
    dhke, BlindSignature, KeyRing, Keyset, PreparedOutput, Proof, Secret, SwapRequest, SwapResponse,
};
use smpx_core::credits::{random_outputs, BlindingFactor};
use smpx_core::Amount;
use smpx_http::{Clock, SystemClock};
use smpx_operator::{Operator, OperatorConfig, OperatorHome};
use smpx_store::Db;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Clone)]
struct Args {
    /// Tokens to spend per request shape (each shape gets tokens / I requests).
    #[arg(long, default_value_t = 30_000)]
    tokens: usize,
    /// Request shapes, `IxO`: I tokens in, O change outputs out.
    #[arg(long, value_delimiter = ',', default_value = "2x2,1x1,8x2")]
    shapes: Vec<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Use a scratch PostgreSQL database on SMPX_TEST_POSTGRES (default 127.0.0.1:5432)
    /// instead of SQLite.
    #[arg(long)]
    postgres: bool,
    /// Worker threads of the operator's tokio runtime (its blocking pool, where change is
    /// signed, and sqlx's SQLite threads come on top).
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Run the operator in a child process (the client's CPU is then not the server's).
    #[arg(long)]
    separate: bool,
    /// Override `batch_workers` in the operator's credits.json.
    #[arg(long)]
    batch_workers: Option<usize>,
    /// Override `max_batch` in the operator's credits.json.
    #[arg(long)]
    max_batch: Option<usize>,
    /// Internal (`--separate`): serve from this directory, print the URL, exit when stdin
    /// closes.
    #[arg(long, hide = true)]
    serve: Option<PathBuf>,
    /// Internal: the operator's database URL.
    #[arg(long, hide = true)]
    db_url: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.serve {
        return serve_child(&args, dir);
    }
    let started = Instant::now();
    println!(
        "smpx-bench-credits — {} tokens per shape, concurrency {}, store {}, operator runtime {} thread(s){}",
        args.tokens,
        args.concurrency,
        if args.postgres { "PostgreSQL" } else { "SQLite" },
        args.server_threads,
        if args.separate { ", separate process" } else { ", in process" },
    );
    println!("load before: {}", loadavg());

    let dir = tempfile::tempdir()?;
    let db_url = if args.postgres {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Some(rt.block_on(smpx_store::scratch::postgres())?)
    } else {
        None
    };

    // ---- the server ------------------------------------------------------------------
    let mut child = None;
    let op_url = if args.separate {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("--serve")
            .arg(dir.path())
            .arg("--server-threads")
            .arg(args.server_threads.to_string());
        if let Some(url) = &db_url {
            cmd.arg("--db-url").arg(url);
        }
        if let Some(n) = args.batch_workers {
            cmd.arg("--batch-workers").arg(n.to_string());
        }
        if let Some(n) = args.max_batch {
            cmd.arg("--max-batch").arg(n.to_string());
        }
        let mut c = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the server process")?;
        let out = c.stdout.take().context("child stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("READY ")
            .with_context(|| format!("the server process said {line:?}"))?
            .to_owned();
        child = Some(c);
        url
    } else {
        start_servers(&args, dir.path(), db_url.clone())?
    };
    let server = match &child {
        Some(c) => CpuOf::Process(c.id()),
        None => CpuOf::ThisProcessExceptClient,
    };

    // ---- keys, primitives, tokens (setup, not timed as the result) ---------------------
    let home = OperatorHome::open(&dir.path().join("operator"))?;
    let now = SystemClock.now();
    let ring = KeyRing::new(
        home.credit_master.clone(),
        home.credits.keyset_params(),
        now,
    )?;
    let keyset = ring.current(now)?;
    let (verify_us, sign_us) = primitives(keyset)?;
    let probe = Probe {
        keyset,
        tokens: mint(keyset, Amount(2), 64)?,
        outputs: fresh_outputs(keyset, 64)?,
    };
    println!();
    println!("| primitive, measured now (one thread) | median µs | per core per second | vs library table |");
    println!("|---|---|---|---|");
    println!(
        "| verify one token (C == k·Y) | {verify_us:.1} | {:.0} | {:.2}× (42.6 µs) |",
        1e6 / verify_us,
        verify_us / 42.6
    );
    println!(
        "| sign one output + DLEQ | {sign_us:.1} | {:.0} | {:.2}× (85.8 µs) |",
        1e6 / sign_us,
        sign_us / 85.8
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .thread_name("client")
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()?;
    let swap_url = format!("{op_url}/v1/swap");

    let mut rows = Vec::new();
    for shape in &args.shapes {
        let (ins, outs) = parse_shape(shape)?;
        let requests = (args.tokens / ins).max(1);
        eprintln!(
            "minting {} tokens for {requests} {shape} requests…",
            requests * ins
        );
        let t = Instant::now();
        let work = prepare(keyset, requests, ins, outs)?;
        eprintln!("  minted in {:.1} s", t.elapsed().as_secs_f64());

        let pg_before = db_url.as_deref().map(pg_cpu);
        let srv_before = server.cpu();
        let load_before = loadavg();
        let commits_before = db_url.as_deref().map(pg_commits);
        let bodies: Arc<Vec<Vec<u8>>> = Arc::new(work.iter().map(|w| w.body.clone()).collect());
        let (run, (verify_now, sign_now)) = during(&probe, || {
            client_rt.block_on(fire(
                http.clone(),
                swap_url.clone(),
                bodies,
                args.concurrency,
            ))
        })?;
        let run = run?;
        let srv_after = server.cpu();
        let (srv, cli) = (srv_after.0 - srv_before.0, srv_after.1 - srv_before.1);
        let pg = match (db_url.as_deref(), pg_before) {
            (Some(url), Some(before)) => Some(pg_cpu(url).since(&before)),
            _ => None,
        };
        // PostgreSQL publishes its counters within a second or so.
        let batch = match (db_url.as_deref(), commits_before) {
            (Some(url), Some(Some(before))) => {
                std::thread::sleep(Duration::from_millis(1500));
                pg_commits(url).map(|after| 2.0 * requests as f64 / (after - before).max(1) as f64)
            }
            _ => None,
        };
        anyhow::ensure!(
            run.failures == 0,
            "{} of {requests} swaps failed, first: {}",
            run.failures,
            run.first_failure
        );
        // Check a sample of the change against the keyset (DLEQ and unblinding) and that a
        // token cannot be spent twice.
        let keys = keyset.keys();
        for (w, answer) in work.iter().zip(&run.sample) {
            let sigs: SwapResponse = serde_json::from_slice(answer)?;
            anyhow::ensure!(sigs.signatures.len() == outs, "wrong number of signatures");
            for (p, s) in w.change.iter().zip(&sigs.signatures) {
                p.finalize(s, &keys)?;
            }
        }
        if let Some(w) = work.first() {
            let mut again: SwapRequest = serde_json::from_slice(&w.body)?;
            again.outputs = fresh_outputs(keyset, outs)?
                .into_iter()
                .map(|p| p.message)
                .collect();
            let r = client_rt.block_on(async { http.post(&swap_url).json(&again).send().await })?;
            anyhow::ensure!(
                r.status() == reqwest::StatusCode::CONFLICT,
                "a double spend was answered {}",
                r.status()
            );
        }

        let secs = run.elapsed.as_secs_f64();
        let row = Row {
            shape: shape.clone(),
            ins,
            outs,
            requests,
            rps: requests as f64 / secs,
            p50: percentile(&run.latencies, 0.50),
            p99: percentile(&run.latencies, 0.99),
            server_us_per_req: srv * 1e6 / requests as f64,
            client_us_per_req: cli * 1e6 / requests as f64,
            pg_us_per_req: pg.map(|p| p.backends * 1e6 / requests as f64),
            pg_other_s: pg.map(|p| p.other),
            load: format!("{load_before} → {}", loadavg()),
            verify_now,
            sign_now,
            batch,
        };
        rows.push(row);
    }

    println!();
    println!(
        "| shape (in×out) | requests | tokens spent/s | outputs signed/s | p50 ms | p99 ms | server CPU µs/req | PG backends µs/req | client CPU µs/req | floor µs/req (primitives during the run) | ratio server (+PG) / floor | tokens/s if 2 cores ran only server+PG |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let floor = r.ins as f64 * r.verify_now + r.outs as f64 * r.sign_now;
        let total = r.server_us_per_req + r.pg_us_per_req.unwrap_or(0.0);
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {:.2}×{} | {:.0} |",
            r.shape,
            r.requests,
            r.rps * r.ins as f64,
            r.rps * r.outs as f64,
            us(r.p50) / 1e3,
            us(r.p99) / 1e3,
            r.server_us_per_req,
            r.pg_us_per_req
                .map_or_else(|| "—".to_owned(), |v| format!("{v:.0}")),
            r.client_us_per_req,
            floor,
            r.server_us_per_req / floor,
            r.pg_us_per_req
                .map_or_else(String::new, |_| format!(" ({:.2}×)", total / floor)),
            2e6 * r.ins as f64 / total,
        );
    }
    println!();
    for r in &rows {
        println!(
            "{}: load average {}; primitives during the run: verify {:.1} µs ({:.2}× the library table), sign + DLEQ {:.1} µs ({:.2}×){}{}",
            r.shape,
            r.load,
            r.verify_now,
            r.verify_now / 42.6,
            r.sign_now,
            r.sign_now / 85.8,
            r.batch.map_or_else(String::new, |b| format!("; {b:.1} spends per batch (PostgreSQL commits)")),
            r.pg_other_s.map_or_else(String::new, |s| format!(
                "; other PostgreSQL processes (WAL writer, checkpointer, … shared with other users) {s:.2} CPU s"
            ))
        );
    }
    println!("total wall time {:.0} s", started.elapsed().as_secs_f64());
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = c.wait();
    }
    Ok(())
}

struct Row {
    shape: String,
    ins: usize,
    outs: usize,
    requests: usize,
    rps: f64,
    p50: Duration,
    p99: Duration,
    server_us_per_req: f64,
    client_us_per_req: f64,
    pg_us_per_req: Option<f64>,
    pg_other_s: Option<f64>,
    load: String,
    /// Primitive medians sampled during the run, µs.
    verify_now: f64,
    sign_now: f64,
    /// Spends per batch (PostgreSQL: two commits per batch).
    batch: Option<f64>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (i, o) = s
        .split_once('x')
        .with_context(|| format!("shape {s:?}: expected IxO, e.g. 2x2"))?;
    let (i, o): (usize, usize) = (i.parse()?, o.parse()?);
    anyhow::ensure!(
        i >= 1 && (1..=32).contains(&o),
        "shape {s:?}: I ≥ 1, 1 ≤ O ≤ 32"
    );
    Ok((i, o))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Median µs of verifying a token and of signing an output with DLEQ, on this thread.
fn primitives(keyset: &Keyset) -> Result<(f64, f64)> {
    let n = 400;
    let tokens = mint(keyset, Amount(2), n)?;
    let outputs = fresh_outputs(keyset, n)?;
    let mut v = Vec::with_capacity(n);
    let mut s = Vec::with_capacity(n);
    for (t, o) in tokens.iter().zip(&outputs) {
        let start = Instant::now();
        keyset.verify(t)?;
        v.push(start.elapsed());
        let start = Instant::now();
        keyset.sign(&o.message)?;
        s.push(start.elapsed());
    }
    v.sort();
    s.sort();
    Ok((us(v[n / 2]), us(s[n / 2])))
}

/// What the probe times while a run goes on.
struct Probe<'a> {
    keyset: &'a Keyset,
    tokens: Vec<Proof>,
    outputs: Vec<PreparedOutput>,
}

/// Runs `f` while a probe thread times a few token verifications and output signatures every
/// 25 ms (under 1% of a core): the speed of the primitives as the loaded machine runs them
/// during the measurement, which is what the server's CPU is compared with. Returns `f`'s
/// result and the medians (verify, sign) in µs.
fn during<T>(probe: &Probe<'_>, f: impl FnOnce() -> T) -> Result<(T, (f64, f64))> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Named like the client's threads so that its CPU is not counted as the server's.
        let h = std::thread::Builder::new()
            .name("client".into())
            .spawn_scoped(scope, || -> Result<(f64, f64)> {
                let (mut v, mut s) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..3 {
                        let t = &probe.tokens[i % probe.tokens.len()];
                        let o = &probe.outputs[i % probe.outputs.len()];
                        i += 1;
                        let start = Instant::now();
                        probe.keyset.verify(t)?;
                        v.push(start.elapsed());
                        let start = Instant::now();
                        probe.keyset.sign(&o.message)?;
                        s.push(start.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                v.sort();
                s.sort();
                Ok((us(percentile(&v, 0.5)), us(percentile(&s, 0.5))))
            })?;
        let out = f();
        stop.store(true, Ordering::Relaxed);
        let medians = h
            .join()
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
        Ok((out, medians))
    })
}

/// Transactions committed so far in the database of `url` (`psql`; `None` if unavailable).
fn pg_commits(url: &str) -> Option<i64> {
    let out = std::process::Command::new("psql")
        .arg(url)
        .args([
            "-Atc",
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `n` tokens of `amount` under `keyset`: blinded, signed by the keyset (as the operator
/// would), unblinded. The DLEQ is not checked here (the sample check after each run does).
fn mint(keyset: &Keyset, amount: Amount, n: usize) -> Result<Vec<Proof>> {
    let key = *keyset.public_key(amount)?;
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| {
            let secret = Secret::random(&mut rng);
            let r = BlindingFactor::random(&mut rng);
            let p = PreparedOutput::new(amount, *keyset.id(), secret.clone(), r.clone())?;
            let sig: BlindSignature = keyset.sign(&p.message)?;
            let c = dhke::unblind(&sig.blind_signature, &r, &key)?;
            Ok(Proof {
                amount,
                id: *keyset.id(),
                secret,
                signature: c,
                dleq: None,
            })
        })
        .collect()
}

fn fresh_outputs(keyset: &Keyset, n: usize) -> Result<Vec<PreparedOutput>> {
    Ok(random_outputs(
        &mut rand::rngs::OsRng,
        keyset.id(),
        &vec![Amount(1); n],
    )?)
}

/// One prepared request: its body and the change outputs' secrets (for the sample check).
struct Work {
    body: Vec<u8>,
    change: Vec<PreparedOutput>,
}

/// `requests` swap requests of `ins` tokens worth 2 each and `outs` change outputs worth the
/// largest power of two that fits (the rest is left to the operator), made on every core.
fn prepare(keyset: &Keyset, requests: usize, ins: usize, outs: usize) -> Result<Vec<Work>> {
    let total = 2 * ins as u64;
    let each = 1u64 << (63 - (total / outs as u64).max(1).leading_zeros());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = requests.div_ceil(threads).max(1);
    let counts: Vec<usize> = (0..requests)
        .step_by(chunk)
        .map(|start| chunk.min(requests - start))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = counts
            .iter()
            .map(|&n| {
                scope.spawn(move || -> Result<Vec<Work>> {
                    let tokens = mint(keyset, Amount(2), n * ins)?;
                    let change = random_outputs(
                        &mut rand::rngs::OsRng,
                        keyset.id(),
                        &vec![Amount(each); n * outs],
                    )?;
                    tokens
                        .chunks(ins)
                        .zip(change.chunks(outs))
                        .map(|(inputs, change)| {
                            let req = SwapRequest {
                                inputs: inputs.to_vec(),
                                outputs: change.iter().map(|p| p.message.clone()).collect(),
                            };
                            Ok(Work {
                                body: serde_json::to_vec(&req)?,
                                change: change.to_vec(),
                            })
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(requests);
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("a minting thread panicked"))??,
            );
        }
        Ok(all)
    })
}

/// What one run of requests did.
struct Run {
    elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
    failures: usize,
    first_failure: String,
    /// Answers to the first requests, in order (for the sample check).
    sample: Vec<Vec<u8>>,
}

const SAMPLE: usize = 32;

/// Sends every body to `url` with `concurrency` in flight.
async fn fire(
    http: reqwest::Client,
    url: String,
    bodies: Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            let mut sample: Vec<(usize, Vec<u8>)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let answer = async {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    let status = r.status();
                    let bytes = r.bytes().await?;
                    anyhow::ensure!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    Ok::<_, anyhow::Error>(bytes)
                }
                .await;
                lat.push(t.elapsed());
                match answer {
                    Ok(bytes) if i < SAMPLE => sample.push((i, bytes.to_vec())),
                    Ok(_) => {}
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (lat, failures, sample)
        }));
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut failures = Vec::new();
    let mut sample = Vec::new();
    for t in tasks {
        let (l, f, s) = t.await?;
        latencies.extend(l);
        failures.extend(f);
        sample.extend(s);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    sample.sort_by_key(|(i, _)| *i);
    Ok(Run {
        elapsed,
        latencies,
        failures: failures.len(),
        first_failure: failures.into_iter().next().unwrap_or_default(),
        sample: sample.into_iter().map(|(_, b)| b).collect(),
    })
}

// ---- CPU accounting (Linux /proc) ----------------------------------------------------------

/// utime + stime in seconds from a `/proc/…/stat` file (0 if unreadable).
fn stat_cpu(path: &Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

enum CpuOf {
    /// A child process: all of it is the server.
    Process(u32),
    /// This process minus the client's threads and the main thread (which drives the client).
    ThisProcessExceptClient,
}

impl CpuOf {
    /// CPU seconds used so far by (the server, the client).
    fn cpu(&self) -> (f64, f64) {
        let this = stat_cpu(Path::new("/proc/self/stat"));
        match self {
            CpuOf::Process(pid) => (stat_cpu(Path::new(&format!("/proc/{pid}/stat"))), this),
            CpuOf::ThisProcessExceptClient => {
                let pid = std::process::id().to_string();
                let mut client = 0.0;
                if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
                    for t in tasks.flatten() {
                        let comm =
                            std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                        if t.file_name().to_string_lossy() == pid || comm.trim() == "client" {
                            client += stat_cpu(&t.path().join("stat"));
                        }
                    }
                }
                (this - client, client)
            }
        }
    }
}

/// CPU of the PostgreSQL processes: the backends serving one database, and the others.
#[derive(Clone, Copy)]
struct PgCpu {
    backends: f64,
    other: f64,
}

struct PgSnapshot {
    by_pid: HashMap<u32, (bool, f64)>,
}

impl PgSnapshot {
    fn since(&self, before: &PgSnapshot) -> PgCpu {
        let mut out = PgCpu {
            backends: 0.0,
            other: 0.0,
        };
        for (pid, (ours, cpu)) in &self.by_pid {
            let d = cpu - before.by_pid.get(pid).map_or(0.0, |(_, c)| *c);
            if *ours {
                out.backends += d;
            } else {
                out.other += d;
            }
        }
        out
    }
}

/// Every `postgres` process's CPU, marked whether it serves the database of `url`.
fn pg_cpu(url: &str) -> PgSnapshot {
    let db = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut by_pid = HashMap::new();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if !cmd.starts_with("postgres") {
                continue;
            }
            let ours = cmd.contains(&format!(" {db} "));
            by_pid.insert(pid, (ours, stat_cpu(&p.path().join("stat"))));
        }
    }
    PgSnapshot { by_pid }
}

// ---- the servers ---------------------------------------------------------------------------

/// Starts the coordinator (one thread; the operator only asks it for its parameters at start)
/// and the operator (`server_threads` workers) in this process; returns the operator's URL.
fn start_servers(args: &Args, dir: &Path, db_url: Option<String>) -> Result<String> {
    let cdir = dir.join("coordinator");
    let home = CoordinatorHome::open(&cdir, None)?;
    let cl_db = home.default_database_url();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("coordinator".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let store =
                    smpx_store::coordinator::CoordinatorStore::open(Db::connect(&cl_db).await?)
                        .await?;
                let state = Coordinator::new(store, home, Arc::new(SystemClock));
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                tx.send(format!("http://{}", l.local_addr()?))?;
                smpx_coordinator::run(state, l, Duration::from_secs(3600), std::future::pending())
                    .await?;
                Ok(())
            })
        })?;
    let cl_url = rx
        .recv_timeout(Duration::from_secs(60))
        .context("coordinator did not start")?;

    let odir = dir.join("operator");
    let mut ohome = OperatorHome::init(
        &odir,
        OperatorConfig {
            operator_id: "op".into(),
            coordinator_url: cl_url,
            credential: "op:unused".into(),
        },
    )?;
    let mut credits = ohome.credits.clone();
    if let Some(n) = args.batch_workers {
        credits.batch_workers = n;
    }
    if let Some(n) = args.max_batch {
        credits.max_batch = n;
    }
    ohome.set_credits(credits)?;
    let odb = db_url.unwrap_or_else(|| ohome.default_database_url());
    let threads = args.server_threads.max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("operator".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("operator")
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let store =
                    smpx_store::operator::OperatorStore::open(Db::connect(&odb).await?).await?;
                let state = Operator::start(store, ohome, Arc::new(SystemClock)).await?;
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                tx.send(format!("http://{}", l.local_addr()?))?;
                smpx_operator::run(state, l, std::future::pending()).await?;
                Ok(())
            })
        })?;
    rx.recv_timeout(Duration::from_secs(60))
        .context("operator did not start")
}

/// `--serve DIR` (the child of `--separate`): serve, print `READY <url>`, exit when stdin
/// closes.
fn serve_child(args: &Args, dir: &Path) -> Result<()> {
    let url = start_servers(args, dir, args.db_url.clone())?;
    let mut out = std::io::stdout();
    writeln!(out, "READY {url}")?;
    out.flush()?;
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    Ok(())
}
