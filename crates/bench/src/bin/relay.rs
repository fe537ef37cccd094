//! `smpx-bench-relay`: the relay's throughput, latency and memory, with the load generated
//! from another process on loopback.
//!
//! The bench initialises a relay directory (`smpx_relay::RelayNode::init`, TLS, an
//! ephemeral port) and re-executes itself with `--serve <dir>`: the child runs the relay
//! (`RelayNode::start`, a multi-threaded tokio runtime, as `smpx relay run` does) until its
//! stdin closes. The parent is the load:
//!
//! - **Throughput and latency.** `--queues` queues (default 1,000), created and secured with
//!   a sender key each over `--connections` recipient TLS connections, subscribed there; the
//!   same number of sender connections. One sender task per queue sends signed SENDs with at
//!   most `--window` messages per queue not yet delivered (far below the free-tier quota of
//!   128); recipients ACK every delivery (the ACK's response carries the next message, or the
//!   relay pushes it). The body carries its send time: send→deliver latency is measured in
//!   the parent, which holds both ends. After `--warmup` deliveries, `--messages` more are
//!   timed.
//! - **Memory per idle queue**: the relay's VmRSS (`/proc/<pid>/status`) before and after
//!   creating `--idle-queues` queues, divided by the count.
//! - **Memory per idle connection**: VmRSS before and after opening `--idle-connections`
//!   TLS connections (handshake done, nothing else), divided by the count.
//!
//! A probe thread times the relay's own per-message primitives (`smpx_relay_protocol::crypto`:
//! Ed25519 verify of a SEND, the delivery key derivation the ACK path does — two X25519
//! operations and a SHA-256 — and the XChaCha20-Poly1305 re-encryption of a padded delivery)
//! every 25 ms during the timed run, so the CPU the relay spends per message can be stated as
//! a ratio to the primitive cost at the machine's speed of the moment.
//!
//! `--probe-round <n>` instead runs the directory's prober (`smpx_relay_client::probe`):
//! rounds of `n` full probes (TCP, pinned TLS, a queue's round trip) spread over
//! `--probe-relays` relay child processes (each address repeated: a fingerprint belongs to one
//! relay, so 10,000 distinct relays would be 10,000 processes), `--probe-dead` of them silent
//! listeners in this process; wall time per round, probes/s and CPU per probe on both sides.
//!
//! `--perf <secs>` records the relay with `perf record -g` during the timed run and prints the
//! report's top entries.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ed25519_dalek::SigningKey;
use smpx_relay::{BackendKind, InitOptions, RelayNode, StorageConfig};
use smpx_relay_client::{connect_tls, Client, ClientConfig, Event, Events, RecipientQueue};
use smpx_relay_protocol::crypto::{self, Content, Delivered, DeliveryKey};
use smpx_relay_protocol::{EntityId, MsgId};
use smpx_relay_transport::RelayAddress;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser, Clone)]
#[command(about = "Relay throughput, latency and memory, load from another process on loopback")]
struct Args {
    /// Internal: run the relay in this directory until stdin closes.
    #[arg(long, hide = true)]
    serve: Option<PathBuf>,
    /// Storages to measure, comma-separated: log, sqlite, postgres (a scratch database on
    /// SMPX_TEST_POSTGRES, default 127.0.0.1:5432: run scripts/ensure-postgres first).
    #[arg(long, default_value = "log,sqlite")]
    storage: String,
    /// Queues in the throughput run.
    #[arg(long, default_value_t = 1000)]
    queues: usize,
    /// Sender connections, and as many recipient connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Messages per queue sent but not yet delivered, at most.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Deliveries before the timed part.
    #[arg(long, default_value_t = 10_000)]
    warmup: u64,
    /// Timed deliveries.
    #[arg(long, default_value_t = 60_000)]
    messages: u64,
    /// Message body size in bytes (at least 8: the send time).
    #[arg(long, default_value_t = 100)]
    body: usize,
    /// Queues created for the idle-queue memory figure (0: skip).
    #[arg(long, default_value_t = 100_000)]
    idle_queues: usize,
    /// TLS connections opened for the idle-connection memory figure (0: skip).
    #[arg(long, default_value_t = 2_000)]
    idle_connections: usize,
    /// Skip the throughput run.
    #[arg(long)]
    no_throughput: bool,
    /// Record the relay with `perf record -g` for this many seconds of the timed run.
    #[arg(long)]
    perf: Option<u64>,
    /// Instead of the runs above: rounds of the directory's prober
    /// (`smpx_relay_client::probe::probe_many`) over this many targets, on the first storage.
    #[arg(long)]
    probe_round: Option<usize>,
    /// Real relay processes the live targets are spread over (each address repeated).
    #[arg(long, default_value_t = 4)]
    probe_relays: usize,
    /// Probes in flight at once.
    #[arg(long, default_value_t = 64)]
    probe_concurrency: usize,
    /// Of the targets, how many are dead: listeners in this process that accept TCP and
    /// never speak TLS (down at the TLS limit, `--probe-tls-timeout`).
    #[arg(long, default_value_t = 0)]
    probe_dead: usize,
    /// The prober's TLS limit, seconds (what a dead target costs its slot).
    #[arg(long, default_value_t = 2)]
    probe_tls_timeout: u64,
    /// The probe interval a round must fit in, seconds (reported against).
    #[arg(long, default_value_t = 300)]
    probe_interval: u64,
    /// Rounds in a row.
    #[arg(long, default_value_t = 2)]
    probe_rounds: usize,
}

fn main() {
    let args = Args::parse();
    let result = match &args.serve {
        Some(dir) => serve(dir),
        None => bench(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// The child: runs the relay in `dir`, prints its address and ops address, stops when stdin
/// closes.
fn serve(dir: &Path) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = RelayNode::start(dir).await?;
        println!("{}", node.address());
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        node.relay().shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(2), node.shutdown()).await;
        Ok(())
    })
}

/// A relay child process.
struct Served {
    child: Child,
    address: RelayAddress,
    _dir: tempfile::TempDir,
}

impl Served {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Closing stdin asks for a graceful stop; kill what is left after a moment.
        drop(self.child.stdin.take());
        for _ in 0..30 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_relay(storage: &StorageConfig) -> Result<Served> {
    let dir = tempfile::tempdir()?;
    let options = InitOptions {
        listen: Some("127.0.0.1:0".parse()?),
        ops_listen: Some("127.0.0.1:0".parse()?),
        storage: storage.clone(),
        ..Default::default()
    };
    RelayNode::init(dir.path(), options).await?;
    // All the load comes from one address over few connections: lift the limits against
    // abusive clients ([limits] in relay.toml), which would refuse most of its queues.
    let mut cfg = RelayNode::config(dir.path())?;
    cfg.limits.queues_per_connection = u32::MAX;
    cfg.limits.queues_per_address_per_hour = u32::MAX;
    cfg.limits.stored_mb_per_address = 10_000_000;
    std::fs::write(
        dir.path().join(smpx_relay::config::CONFIG_FILE),
        cfg.render(),
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve")
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the relay child")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout of the child"))?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let address: RelayAddress = line
        .trim()
        .parse()
        .map_err(|e| anyhow!("the relay printed {line:?}: {e}"))?;
    Ok(Served {
        child,
        address,
        _dir: dir,
    })
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// CPU seconds (user + system) of a process (`/proc/<pid>/stat`).
fn cpu_secs(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .ok_or_else(|| anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(ticks as f64 / 100.0)
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default()
}

fn storage_config(name: &str, pg: &mut Option<String>) -> Result<StorageConfig> {
    Ok(match name {
        "log" => StorageConfig {
            backend: BackendKind::Log,
            ..Default::default()
        },
        "sqlite" => StorageConfig {
            backend: BackendKind::Sqlite,
            ..Default::default()
        },
        "postgres" => {
            let url = match pg {
                Some(u) => u.clone(),
                None => {
                    // A fresh database on SMPX_TEST_POSTGRES (default 127.0.0.1:5432;
                    // `scripts/ensure-postgres` starts it).
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let u = rt.block_on(smpx_store::scratch::postgres())?;
                    *pg = Some(u.clone());
                    u
                }
            };
            StorageConfig {
                backend: BackendKind::Postgres,
                url: Some(url),
                ..Default::default()
            }
        }
        other => bail!("unknown storage {other:?} (log, sqlite, postgres)"),
    })
}

fn bench(args: &Args) -> Result<()> {
    if args.body < 8 {
        bail!("--body must be at least 8");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("load average at start: {}", uptime().trim());
    let mut pg = None;
    if let Some(n) = args.probe_round {
        let name = args.storage.split(',').next().unwrap_or("log").trim();
        let storage = storage_config(name, &mut pg)?;
        println!("\n== probe rounds, storage {name} ==");
        return rt.block_on(probe_rounds(args, n, &storage));
    }
    for name in args.storage.split(',').map(str::trim) {
        let storage = storage_config(name, &mut pg)?;
        println!("\n== storage {name} ==");
        if !args.no_throughput {
            rt.block_on(throughput(args, &storage))?;
        }
        if args.idle_queues > 0 || args.idle_connections > 0 {
            rt.block_on(memory(args, &storage))?;
        }
        println!("load average: {}", uptime().trim());
    }
    Ok(())
}

struct Queue {
    rq: RecipientQueue,
    sender_key: SigningKey,
    recipient: Client,
    sender: Client,
    window: Semaphore,
}

struct Tally {
    start: Instant,
    delivered: AtomicU64,
    from: u64,
    to: u64,
    latencies_us: Mutex<Vec<u32>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(what);
        }
    }

    fn record(&self, q: &Queue, m: &Delivered) {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        q.window.add_permits(1);
        let Content::Body(body) = &m.content else {
            self.error("quota marker delivered".into());
            return;
        };
        if n > self.from && n <= self.to {
            let mut sent = [0u8; 8];
            sent.copy_from_slice(&body[..8]);
            let sent = Duration::from_nanos(u64::from_le_bytes(sent));
            let lat = self.start.elapsed().saturating_sub(sent);
            let us = u32::try_from(lat.as_micros()).unwrap_or(u32::MAX);
            self.latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(us);
        }
    }
}

async fn connect_n(address: &RelayAddress, n: usize) -> Result<Vec<(Client, Events)>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let a = address.clone();
        tasks.push(tokio::spawn(async move {
            connect_tls(&a, ClientConfig::default()).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

async fn handle_delivery(q: Arc<Queue>, mut m: Delivered, tally: Arc<Tally>) {
    loop {
        tally.record(&q, &m);
        match q.recipient.ack(&q.rq, &m.msg_id).await {
            Ok(Some(next)) => m = next,
            Ok(None) => return,
            Err(e) => {
                tally.error(format!("ack: {e}"));
                return;
            }
        }
    }
}

async fn dispatch(
    mut events: Events,
    queues: Arc<HashMap<EntityId, Arc<Queue>>>,
    tally: Arc<Tally>,
) {
    while let Some(ev) = events.next().await {
        match ev {
            Event::Message { queue, message } => match queues.get(&queue) {
                Some(q) => {
                    tokio::spawn(handle_delivery(q.clone(), message, tally.clone()));
                }
                None => tally.error("delivery for an unknown queue".into()),
            },
            Event::Closed => return,
            other => tally.error(format!("event {other:?}")),
        }
    }
}

async fn throughput(args: &Args, storage: &StorageConfig) -> Result<()> {
    let relay = spawn_relay(storage).await?;
    let pid = relay.pid();
    let n = args.connections.max(1);
    let recipients = connect_n(&relay.address, n).await?;
    let senders = connect_n(&relay.address, n).await?;
    let (rclients, revents): (Vec<Client>, Vec<Events>) = recipients.into_iter().unzip();
    let sclients: Vec<Client> = senders.into_iter().map(|(c, _)| c).collect();

    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.queues {
        let recipient = rclients[i % n].clone();
        let sender = sclients[i % n].clone();
        let window = args.window;
        tasks.push(tokio::spawn(async move {
            let rq = recipient.create_queue().await?;
            let sender_key = SigningKey::generate(&mut rand::rngs::OsRng);
            recipient.secure(&rq, &sender_key.verifying_key()).await?;
            if recipient.subscribe(&rq).await?.is_some() {
                bail!("a fresh queue had a message");
            }
            Ok(Arc::new(Queue {
                rq,
                sender_key,
                recipient,
                sender,
                window: Semaphore::new(window),
            }))
        }));
    }
    let mut queues = Vec::new();
    for task in tasks {
        queues.push(task.await??);
    }
    println!(
        "{} queues created, secured and subscribed in {:.2} s",
        queues.len(),
        t.elapsed().as_secs_f64()
    );
    let by_id: Arc<HashMap<EntityId, Arc<Queue>>> = Arc::new(
        queues
            .iter()
            .map(|q| (q.rq.recipient_id, q.clone()))
            .collect(),
    );
    let total = args.warmup + args.messages;
    let tally = Arc::new(Tally {
        start: Instant::now(),
        delivered: AtomicU64::new(0),
        from: args.warmup,
        to: total,
        latencies_us: Mutex::new(Vec::with_capacity(args.messages as usize)),
        errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    for ev in revents {
        tokio::spawn(dispatch(ev, by_id.clone(), tally.clone()));
    }
    let sent = Arc::new(AtomicU64::new(0));
    let padding = vec![0x5au8; args.body - 8];
    for q in &queues {
        let (q, tally, sent, padding) = (q.clone(), tally.clone(), sent.clone(), padding.clone());
        tokio::spawn(async move {
            let mut body = Vec::with_capacity(8 + padding.len());
            while sent.fetch_add(1, Ordering::Relaxed) < total {
                match q.window.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
                body.clear();
                let at = u64::try_from(tally.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                body.extend_from_slice(&at.to_le_bytes());
                body.extend_from_slice(&padding);
                if let Err(e) = q
                    .sender
                    .send(&q.rq.sender_id, Some(&q.sender_key), &body)
                    .await
                {
                    tally.error(format!("send: {e}"));
                    q.window.add_permits(1);
                }
            }
        });
    }

    // Warm-up, then the timed part with the probe running.
    let deadline = Instant::now() + Duration::from_secs(600);
    while tally.delivered.load(Ordering::Relaxed) < args.warmup {
        if Instant::now() > deadline {
            bail!("warm-up did not finish");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || probe_loop(&stop))?
    };
    let perf = match args.perf {
        Some(secs) => Some(
            Command::new("perf")
                .args(["record", "-g", "-F", "499", "-o"])
                .arg(std::env::temp_dir().join("smpx-relay-bench.perf.data"))
                .args(["-p", &pid.to_string(), "--", "sleep", &secs.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("perf record")?,
        ),
        None => None,
    };
    let relay_cpu0 = cpu_secs(&pid.to_string())?;
    let self_cpu0 = cpu_secs("self")?;
    let d0 = tally.delivered.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let load_during = uptime();
    while tally.delivered.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            bail!(
                "timed run did not finish: {} of {total} delivered, {} errors, first {:?}",
                tally.delivered.load(Ordering::Relaxed),
                tally.errors.load(Ordering::Relaxed),
                tally.first_error.lock().map(|e| e.clone()).ok().flatten()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let d1 = tally.delivered.load(Ordering::Relaxed);
    let relay_cpu = cpu_secs(&pid.to_string())? - relay_cpu0;
    let self_cpu = cpu_secs("self")? - self_cpu0;
    stop.store(true, Ordering::Relaxed);
    let prims = probe
        .join()
        .map_err(|_| anyhow!("the probe thread panicked"))?;
    let timed = (d1 - d0) as f64;
    let rate = timed / elapsed;
    let mut lat = tally
        .latencies_us
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .clone();
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lat[i]) / 1000.0
    };
    let relay_us = relay_cpu * 1e6 / timed;
    let load_us = self_cpu * 1e6 / timed;
    let floor = 2.0 * prims.verify + prims.derive + prims.seal;
    println!("load average during the timed run: {}", load_during.trim());
    println!(
        "timed: {} deliveries in {elapsed:.2} s = {rate:.0} msgs/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        d1 - d0,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "relay CPU {relay_us:.1} µs/msg ({:.2} cores), load generator CPU {load_us:.1} µs/msg ({:.2} cores); relay alone on 2 cores: {:.0} msgs/s",
        relay_cpu / elapsed,
        self_cpu / elapsed,
        2e6 / relay_us
    );
    println!(
        "probe (during run, µs): Ed25519 verify {:.1}, delivery key (X25519 base mult + DH + SHA-256) {:.1}, X25519 base mult {:.1}, seal {} B XChaCha20-Poly1305 {:.1}",
        prims.verify,
        prims.derive,
        prims.base,
        crypto::SEALED_PLAIN_LEN,
        prims.seal
    );
    println!(
        "primitive floor per message (SEND verify + ACK verify + ACK key derivation + seal) {floor:.1} µs; relay CPU / floor = {:.2}x; floor without the ACK's key derivation {:.1} µs ({:.2}x)",
        relay_us / floor,
        floor - prims.derive,
        relay_us / (floor - prims.derive)
    );
    let errors = tally.errors.load(Ordering::Relaxed);
    if errors > 0 {
        println!(
            "ERRORS: {errors}, first: {:?}",
            tally.first_error.lock().map(|e| e.clone()).ok().flatten()
        );
    }
    if let Some(mut p) = perf {
        let _ = tokio::task::spawn_blocking(move || p.wait()).await;
        perf_report();
    }
    drop(queues);
    drop(by_id);
    drop(rclients);
    drop(sclients);
    drop(relay);
    Ok(())
}

fn perf_report() {
    let data = std::env::temp_dir().join("smpx-relay-bench.perf.data");
    let out = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--sort",
            "dso,symbol",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(&data)
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            println!("perf report (self time, top entries):");
            for l in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(40)
            {
                let l = l.trim_end().trim_end_matches('-').trim_end();
                println!("  {}", l.chars().take(150).collect::<String>());
            }
        }
        Err(e) => println!("perf report failed: {e}"),
    }
}

async fn memory(args: &Args, storage: &StorageConfig) -> Result<()> {
    let relay = spawn_relay(storage).await?;
    let pid = relay.pid();
    let conns: Vec<Client> = connect_n(&relay.address, 8)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    // Warm the allocator and the connections' buffers with a few queues first.
    for c in &conns {
        c.create_queue().await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if args.idle_queues > 0 {
        let before = rss_kib(pid)?;
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        // 32 creations in flight per connection; the keys are dropped (idle queues).
        for i in 0..conns.len() * 32 {
            let c = conns[i % conns.len()].clone();
            let next = next.clone();
            let target = args.idle_queues as u64;
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < target {
                    c.create_queue().await?;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let secs = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid)?;
        println!(
            "idle queues: {} created in {secs:.1} s ({:.0}/s); relay RSS {} → {} MiB: {:.0} bytes per queue",
            args.idle_queues,
            args.idle_queues as f64 / secs,
            before / 1024,
            after / 1024,
            (after.saturating_sub(before) * 1024) as f64 / args.idle_queues as f64
        );
    }
    if args.idle_connections > 0 {
        let before = rss_kib(pid)?;
        let mut idle = Vec::with_capacity(args.idle_connections);
        for chunk in 0..args.idle_connections.div_ceil(100) {
            let k = (args.idle_connections - chunk * 100).min(100);
            idle.extend(connect_n(&relay.address, k).await?);
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = rss_kib(pid)?;
        println!(
            "idle connections: {} open; relay RSS {} → {} MiB: {:.0} bytes per connection",
            idle.len(),
            before / 1024,
            after / 1024,
            (after.saturating_sub(before) * 1024) as f64 / idle.len() as f64
        );
        drop(idle);
    }
    drop(conns);
    drop(relay);
    Ok(())
}

/// Medians, µs, of the relay's per-message primitives as the probe timed them.
struct Primitives {
    verify: f64,
    derive: f64,
    /// X25519 base-point multiplication (public key from secret).
    base: f64,
    seal: f64,
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort_unstable();
    v.get(v.len() / 2)
        .map(|d| d.as_secs_f64() * 1e6)
        .unwrap_or(0.0)
}

/// Every 25 ms until `stop`: one SEND-sized signature check, one delivery-key derivation (as
/// the ACK path does), one X25519 base-point multiplication, one seal of a padded delivery.
fn probe_loop(stop: &AtomicBool) -> Primitives {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let vk = key.verifying_key().to_bytes();
    let session = [7u8; 32];
    let signed = vec![0x42u8; 160];
    let sig = crypto::sign(&key, &session, &signed);
    let server = crypto::x25519_secret(&mut rand::rngs::OsRng);
    let recipient = crypto::x25519_public(&crypto::x25519_secret(&mut rand::rngs::OsRng));
    let other = crypto::x25519_secret(&mut rand::rngs::OsRng);
    let dkey = DeliveryKey::for_relay(&server, &recipient);
    let body = Content::Body(vec![0x5a; 100]);
    let (mut v, mut d, mut x, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sink = 0usize;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..2 {
            let t = Instant::now();
            sink += usize::from(crypto::verify(&vk, &session, &signed, &sig));
            v.push(t.elapsed());
            let t = Instant::now();
            sink += usize::from(DeliveryKey::for_relay(&server, &recipient).is_some());
            d.push(t.elapsed());
            let t = Instant::now();
            sink += usize::from(crypto::x25519_public(&other)[0]);
            x.push(t.elapsed());
            if let Some(k) = &dkey {
                let t = Instant::now();
                sink += crypto::seal(k, &MsgId([1; 24]), 0, &body)
                    .map(|c| c.len())
                    .unwrap_or(0);
                s.push(t.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    std::hint::black_box(sink);
    Primitives {
        verify: median(&mut v),
        derive: median(&mut d),
        base: median(&mut x),
        seal: median(&mut s),
    }
}

/// Listeners that accept TCP and hold it without a byte: dead relays for the prober.
async fn silent_listener() -> Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    Ok(port)
}

/// `--probe-round`: `n` targets, `--probe-dead` of them silent listeners and the rest the
/// addresses of `--probe-relays` real relay processes, each repeated; every live probe is a
/// full one (TCP, pinned TLS, NEW / SUB / SEND / MSG / ACK / DEL).
async fn probe_rounds(args: &Args, n: usize, storage: &StorageConfig) -> Result<()> {
    use smpx_relay_client::probe::{self, ProbeConfig};
    let mut relays = Vec::new();
    for _ in 0..args.probe_relays.max(1) {
        relays.push(spawn_relay(storage).await?);
    }
    let dead_port = silent_listener().await?;
    let dead_address = RelayAddress {
        port: dead_port,
        ..relays[0].address.clone()
    };
    let dead = args.probe_dead.min(n);
    // The dead targets spread evenly through the list, as a real directory's would be.
    let every = n.checked_div(dead).unwrap_or(usize::MAX);
    let mut live = 0usize;
    let targets: Vec<RelayAddress> = (0..n)
        .map(|i| {
            if dead > 0 && i % every == every - 1 && i / every < dead {
                dead_address.clone()
            } else {
                live += 1;
                relays[live % relays.len()].address.clone()
            }
        })
        .collect();
    let config = ProbeConfig {
        tls_timeout: Duration::from_secs(args.probe_tls_timeout),
        ..ProbeConfig::default()
    };
    println!(
        "{n} targets: {live} on {} real relay processes, {} dead (silent listeners); {} in flight, TLS limit {} s",
        relays.len(),
        n - live,
        args.probe_concurrency,
        args.probe_tls_timeout
    );
    for round in 1..=args.probe_rounds.max(1) {
        let stop = Arc::new(AtomicBool::new(false));
        let prims = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("probe".into())
                .spawn(move || probe_loop(&stop))?
        };
        let pids: Vec<String> = relays.iter().map(|r| r.pid().to_string()).collect();
        let relays_cpu = |pids: &[String]| -> Result<f64> {
            pids.iter().map(|p| cpu_secs(p)).sum::<Result<f64>>()
        };
        let (self0, relays0) = (cpu_secs("self")?, relays_cpu(&pids)?);
        let t = Instant::now();
        let results = probe::probe_many(targets.clone(), &config, args.probe_concurrency).await;
        let wall = t.elapsed().as_secs_f64();
        let (prober, relay) = (cpu_secs("self")? - self0, relays_cpu(&pids)? - relays0);
        let load = uptime();
        stop.store(true, Ordering::Relaxed);
        let prims = prims
            .join()
            .map_err(|_| anyhow!("the primitives thread panicked"))?;
        let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
        let (mut rtt, mut total, mut tls) = (Vec::new(), Vec::new(), Vec::new());
        for (_, o) in &results {
            *kinds
                .entry(o.failure.as_ref().map_or("up", |f| f.kind.as_str()))
                .or_default() += 1;
            if o.up() {
                rtt.extend(o.latencies.round_trip);
                tls.extend(o.latencies.tls);
                total.push(o.latencies.total);
            }
        }
        let up = kinds.get("up").copied().unwrap_or(0);
        println!(
            "round {round}: {} probes in {wall:.2} s = {:.0} probes/s ({:.1}% of a {} s interval); {kinds:?}; load {}",
            results.len(),
            results.len() as f64 / wall,
            100.0 * wall / args.probe_interval as f64,
            args.probe_interval,
            load.trim()
        );
        println!(
            "  up probes, ms: round trip (SEND to delivery) p50 {:.2} p99 {:.2}; TLS p50 {:.2} p99 {:.2}; whole probe p50 {:.2} p99 {:.2}",
            quantile_ms(&mut rtt, 0.5),
            quantile_ms(&mut rtt, 0.99),
            quantile_ms(&mut tls, 0.5),
            quantile_ms(&mut tls, 0.99),
            quantile_ms(&mut total, 0.5),
            quantile_ms(&mut total, 0.99)
        );
        let per = |cpu: f64| cpu * 1e6 / up.max(1) as f64;
        println!(
            "  CPU per up probe: prober {:.0} µs ({:.2} cores), the relays {:.0} µs ({:.2} cores); Ed25519 verify {:.1} µs, X25519 base mult {:.1} µs, delivery key {:.1} µs at this moment",
            per(prober),
            prober / wall,
            per(relay),
            relay / wall,
            prims.verify,
            prims.base,
            prims.derive
        );
        println!(
            "  prober CPU per probe = {:.1} Ed25519 verifies; both sides = {:.1} (prober CPU over all {} probes {:.0} µs each)",
            per(prober) / prims.verify.max(0.001),
            (per(prober) + per(relay)) / prims.verify.max(0.001),
            results.len(),
            prober * 1e6 / results.len().max(1) as f64
        );
    }
    Ok(())
}

/// The `p` quantile of `v`, ms.
fn quantile_ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}
