//! `smpx-bench`: the v0.1 numbers that matter, measured through the real HTTP services.
//!
//! * blind-sign latency (the issuer's cost per sale), plus the wallet's finalize and the
//!   coordinator's verify;
//! * publishes/s and redemptions/s with the coordinator (and, for redemptions, the operator
//!   that forwards them) confined to ONE core: each service runs on a single-threaded tokio
//!   runtime, the load generator on its own thread;
//!
//! * v0.2 redemptions/s: proofs made up front (proving is the wallet's cost), then sent to the
//!   coordinator with many in flight, so its verifier batches them;
//!
//! and each figure as a ratio to the primitives it cannot avoid (shared/BASELINES.md), which
//! is what stays comparable across these noisy machines. Run with `--release`.

use anyhow::{Context, Result};
use clap::Parser;
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_core::api::*;
use smpx_core::crypto::b64;
use smpx_core::crypto::blind::IssuerSecretKey;
use smpx_core::issuance::{issue_locally, voucher_message};
use smpx_core::redemption::seal_v1;
use smpx_http::{ApiClient, SystemClock};
use smpx_operator::{Operator, OperatorConfig, OperatorHome};
use smpx_store::Db;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Vouchers to publish and redeem.
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Blind signatures to time.
    #[arg(long, default_value_t = 300)]
    signs: usize,
    /// Use this PostgreSQL server instead of SQLite (a scratch database is created on it).
    #[arg(long)]
    postgres: bool,
    /// v0.2 redemptions to prove and send (0 skips the v0.2 part).
    #[arg(long, default_value_t = 512)]
    zk_count: usize,
    /// MMR levels (capacity 4^L − 1 must hold every voucher of the run). Verification costs
    /// the same at any size (four public inputs); a small circuit keeps the up-front proving
    /// short.
    #[arg(long, default_value_t = 7)]
    zk_levels: u32,
}

/// Baseline primitive costs on this kind of machine, µs (shared/BASELINES.md).
mod base {
    pub const RSA_SIGN: f64 = 1170.0;
    pub const RSA_FINALIZE: f64 = 54.0;
    pub const RSA_VERIFY: f64 = 47.0;
    pub const X25519: f64 = 38.8;
    pub const POSEIDON: f64 = 14.8;
    pub const ED25519_SIGN: f64 = 13.6;
    pub const ED25519_VERIFY: f64 = 28.5;
    pub const SQLITE_TX: f64 = 11.0;
    pub const GROTH16_VERIFY: f64 = 920.0;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `f` on a fresh single-threaded runtime in its own OS thread: one core's worth.
fn one_core<F, T>(name: &str, f: F) -> std::thread::JoinHandle<Result<T>>
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>
        + Send
        + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(f())
        })
        .unwrap_or_else(|e| panic!("spawning a thread: {e}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "smpx-bench — count {}, concurrency {}, store {}",
        args.count,
        args.concurrency,
        if args.postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    // ---- blind signatures -------------------------------------------------------------
    let sk = IssuerSecretKey::generate(2048, &mut rand::rngs::OsRng)?;
    let pk = sk.public_key()?;
    let mut sign = Vec::new();
    let mut fin = Vec::new();
    let mut ver = Vec::new();
    for i in 0..args.signs {
        let msg = voucher_message(&smpx_core::crypto::voucher::commitment(
            &smpx_core::crypto::voucher::VoucherSecret::random(&mut rand::rngs::OsRng),
            (i % 3) as u64 + 1,
        ));
        let (b, st) = pk.blind(&msg, &mut rand::rngs::OsRng)?;
        let t = Instant::now();
        let s = sk.blind_sign(&b)?;
        sign.push(t.elapsed());
        let t = Instant::now();
        let sig = pk.finalize(&s, &st, &msg)?;
        fin.push(t.elapsed());
        let t = Instant::now();
        pk.verify(&sig, &msg)?;
        ver.push(t.elapsed());
    }
    let (sign, fin, ver) = (median(sign), median(fin), median(ver));
    println!();
    println!("| operation | median | per core per second | ratio to baseline |");
    println!("|---|---|---|---|");
    for (name, d, b) in [
        (
            "issuer blind sign (RSA-2048, RFC 9474)",
            sign,
            base::RSA_SIGN,
        ),
        (
            "wallet finalize (unblind + verify)",
            fin,
            base::RSA_FINALIZE,
        ),
        ("coordinator signature verify", ver, base::RSA_VERIFY),
    ] {
        println!(
            "| {name} | {:.1} µs | {:.0} | {:.2}× |",
            us(d),
            1e6 / us(d),
            us(d) / b
        );
    }

    // ---- services over HTTP, one core each ----------------------------------------------
    let needed = (args.count * 2 + args.zk_count) as u64;
    anyhow::ensure!(
        smpx_core::mmr::capacity(args.zk_levels).is_ok_and(|c| c >= needed),
        "an MMR of {} levels cannot hold the run's {needed} vouchers; raise --zk-levels",
        args.zk_levels
    );
    let dir = tempfile::tempdir()?;
    let cdir = dir.path().join("coordinator");
    let home = CoordinatorHome::open(
        &cdir,
        Some(smpx_core::NetworkParams {
            mmr_levels: args.zk_levels,
            protocol_versions: vec![1, 2],
            ..smpx_core::NetworkParams::default()
        }),
    )?;
    eprintln!("ceremony keys for {} MMR levels (cached)…", args.zk_levels);
    let ceremony = smpx_zk::devnet::cached_local_ceremony(
        args.zk_levels,
        3,
        &smpx_zk::devnet::default_cache_dir(),
        &smpx_ceremony::Silent,
    )?;
    let zk_keys = smpx_coordinator::ZkKeys::from_verified(
        ceremony.transcript.clone(),
        &ceremony.verifying_key,
    )?
    .with_workers(1);
    let admin_token = home.admin_token.clone();
    let db_url = if args.postgres {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(smpx_store::scratch::postgres())?
    } else {
        home.default_database_url()
    };
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let db_for_server = db_url.clone();
    let _server = one_core("coordinator", move || {
        Box::pin(async move {
            let store =
                smpx_store::coordinator::CoordinatorStore::open(Db::connect(&db_for_server).await?)
                    .await?;
            let state = Coordinator::with_zk(store, home, Arc::new(SystemClock), Some(zk_keys));
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            url_tx.send(format!("http://{}", l.local_addr()?))?;
            smpx_coordinator::run(state, l, Duration::from_secs(3600), std::future::pending())
                .await?;
            Ok(())
        })
    });
    let cl_url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .context("coordinator did not start")?;

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (key_id, op_token) = client_rt.block_on(async {
        let admin = ApiClient::new(&cl_url).with_token(admin_token);
        let iss: CredentialResponse = admin
            .post(
                "/v1/admin/issuers",
                &AddIssuerRequest {
                    id: "bench".into(),
                    limit_credits: 1_000_000_000,
                },
            )
            .await?;
        let op: CredentialResponse = admin
            .post(
                "/v1/admin/operators",
                &AddOperatorRequest {
                    id: "op".into(),
                    share_bps: 6000,
                },
            )
            .await?;
        let p: ParamsResponse = ApiClient::new(&cl_url).get("/v1/params").await?;
        let info: IssuerKeyInfo = ApiClient::new(&cl_url)
            .with_token(iss.token)
            .post(
                "/v1/issuer-keys",
                &RegisterKeyRequest {
                    denomination: 10,
                    period: smpx_core::keys::period_at(&p.params, p.now),
                    public_key: b64::encode(&pk.to_spki()?),
                },
            )
            .await?;
        anyhow::Ok((info.key_id, op.token))
    })?;

    // The operator, on its own core.
    let odir = dir.path().join("operator");
    let ohome = OperatorHome::init(
        &odir,
        OperatorConfig {
            operator_id: "op".into(),
            coordinator_url: cl_url.clone(),
            credential: op_token.clone(),
        },
    )?;
    let odb = if args.postgres {
        db_url.clone()
    } else {
        ohome.default_database_url()
    };
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let _op = one_core("operator", move || {
        Box::pin(async move {
            let store = smpx_store::operator::OperatorStore::open(Db::connect(&odb).await?).await?;
            let state = Operator::start(store, ohome, Arc::new(SystemClock)).await?;
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            url_tx.send(format!("http://{}", l.local_addr()?))?;
            smpx_operator::run(state, l, std::future::pending()).await?;
            Ok(())
        })
    });
    let op_url = url_rx
        .recv_timeout(Duration::from_secs(30))
        .context("operator did not start")?;

    // Vouchers are issued before the clock starts: signing is the issuer's cost, not the
    // coordinator's.
    eprintln!("preparing {} vouchers…", args.count * 2);
    let vouchers: Vec<_> = (0..args.count * 2)
        .map(|_| issue_locally(&sk, &key_id, 10, &mut rand::rngs::OsRng))
        .collect::<Result<_, _>>()?;
    let params: ParamsResponse = client_rt.block_on(ApiClient::new(&cl_url).get("/v1/params"))?;

    let publish = client_rt.block_on(load(
        args.concurrency,
        vouchers
            .iter()
            .map(|(_, r)| {
                let c = ApiClient::new(&cl_url);
                let r = r.clone();
                async move {
                    c.post::<_, serde_json::Value>("/v1/vouchers", &r)
                        .await
                        .map(|_| ())
                }
            })
            .collect(),
    ))?;

    let envelopes: Vec<_> = vouchers
        .iter()
        .map(|(s, _)| seal_v1(&params.envelope_key, s, 10, "op", &mut rand::rngs::OsRng))
        .collect::<Result<_, _>>()?;
    let (direct, via_operator) = envelopes.split_at(args.count);
    let redeem_cl = client_rt.block_on(load(
        args.concurrency,
        direct
            .iter()
            .map(|e| {
                let c = ApiClient::new(&cl_url).with_token(op_token.clone());
                let body = ForwardRedemptionRequest {
                    version: 1,
                    envelope: Some(e.clone()),
                    zk: None,
                };
                async move {
                    c.post::<_, serde_json::Value>("/v1/redemptions", &body)
                        .await
                        .map(|_| ())
                }
            })
            .collect(),
    ))?;
    let redeem_op = client_rt.block_on(load(
        args.concurrency,
        via_operator
            .iter()
            .map(|e| {
                let c = ApiClient::new(&op_url);
                let body = RedeemRequest {
                    version: 1,
                    envelope: Some(e.clone()),
                    zk: None,
                    outputs: None,
                };
                async move {
                    c.post::<_, serde_json::Value>("/v1/redeem", &body)
                        .await
                        .map(|_| ())
                }
            })
            .collect(),
    ))?;

    let redeem_zk = if args.zk_count > 0 {
        Some(client_rt.block_on(zk_redemptions(
            &args,
            &cl_url,
            &op_token,
            &sk,
            &key_id,
            &ceremony.proving_key,
        ))?)
    } else {
        None
    };

    let totals: LedgerTotalsResponse =
        client_rt.block_on(ApiClient::new(&cl_url).get("/v1/ledger/totals"))?;
    anyhow::ensure!(totals.conserved, "ledger not conserved after the run");
    anyhow::ensure!(
        totals.totals.redeemed.0 == (args.count as u64 * 2 + args.zk_count as u64) * 10_000_000,
        "not every redemption landed"
    );

    // Primitive floor: publish = RSA verify + one SQLite transaction; redemption = HPKE open
    // (one X25519) + Poseidon (open C) + Ed25519 receipt signature + one transaction; through
    // the operator add its receipt check and signature and its own transaction.
    let pub_floor = base::RSA_VERIFY + base::SQLITE_TX;
    let red_floor = base::X25519 + base::POSEIDON + base::ED25519_SIGN + base::SQLITE_TX;
    let op_floor = red_floor + base::ED25519_VERIFY + base::ED25519_SIGN + base::SQLITE_TX;
    println!();
    println!("| through HTTP, service on one core | per second | µs per op | primitive floor µs | ratio |");
    println!("|---|---|---|---|---|");
    for (name, rate, floor) in [
        ("publish (coordinator)", publish, pub_floor),
        (
            "redeem (operator → coordinator endpoint)",
            redeem_cl,
            red_floor,
        ),
        (
            "redeem via the operator service (two services, one core each)",
            redeem_op,
            op_floor,
        ),
    ] {
        let per = 1e6 / rate;
        println!(
            "| {name} | {rate:.0} | {per:.0} | {floor:.0} | {:.1}× |",
            per / floor
        );
    }
    if let Some(rate) = redeem_zk {
        // Floor: one Groth16 verification (batching makes it cheaper than this baseline),
        // the receipt signature and one transaction.
        let floor = base::GROTH16_VERIFY + base::ED25519_SIGN + base::SQLITE_TX;
        let per = 1e6 / rate;
        println!(
            "| v0.2 redeem (operator → coordinator, proofs batch-verified on one core) | {rate:.0} | {per:.0} | {floor:.0} (single verify) | {:.2}× |",
            per / floor
        );
    }
    Ok(())
}

/// Publishes `zk_count` vouchers, proves a redemption of each against the MMR's latest root
/// (on every core, before the clock starts), then sends them all; returns redemptions/s.
async fn zk_redemptions(
    args: &Args,
    cl_url: &str,
    op_token: &str,
    sk: &IssuerSecretKey,
    key_id: &str,
    pk: &smpx_zk::ProvingKey,
) -> Result<f64> {
    use smpx_core::crypto::{nullifier, FieldBytes};
    use smpx_core::mmr::{Mmr, MmrParams};
    let public = ApiClient::new(cl_url);
    let mut vouchers = Vec::with_capacity(args.zk_count);
    let mut mmr_id = 0;
    for _ in 0..args.zk_count {
        let (s, req) = issue_locally(sk, key_id, 10, &mut rand::rngs::OsRng)?;
        let r: smpx_core::receipt::Signed<PublishReceipt> =
            public.post("/v1/vouchers", &req).await?;
        let path = r.body.paths.first().context("no MMR path")?;
        mmr_id = path.mmr.id;
        vouchers.push((s, r.body.paths.clone()));
    }
    let mut leaves = Vec::new();
    loop {
        let page: LeavesPage = public
            .get(&format!("/v1/mmrs/{mmr_id}/leaves?from={}", leaves.len()))
            .await?;
        if page.leaves.is_empty() {
            break;
        }
        leaves.extend(
            page.leaves
                .iter()
                .map(FieldBytes::to_fr)
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    let mmr = Mmr::from_leaves(MmrParams::new(mmr_id, args.zk_levels)?, leaves)?;
    let root = FieldBytes::from_fr(&mmr.root());
    eprintln!(
        "proving {} redemptions (the wallets' work, not timed)…",
        vouchers.len()
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = vouchers.len().div_ceil(threads).max(1);
    let bodies: Vec<ForwardRedemptionRequest> = std::thread::scope(|scope| {
        let handles: Vec<_> = vouchers
            .chunks(chunk)
            .map(|part| {
                let mmr = &mmr;
                scope.spawn(move || -> Result<Vec<ForwardRedemptionRequest>> {
                    part.iter()
                        .map(|(s, paths)| {
                            let index = paths
                                .iter()
                                .find(|p| p.mmr.id == mmr_id)
                                .context("not in the MMR")?
                                .leaf_index;
                            let n = nullifier(s).0;
                            let public = smpx_zk::RedeemPublic {
                                root: mmr.root(),
                                nullifier: n.to_fr()?,
                                denomination: 10,
                                binding: smpx_zk::binding_hash("op", 0),
                            };
                            let witness = smpx_zk::RedeemWitness {
                                secret: s.clone(),
                                path: mmr.proof(index)?.circuit_path()?,
                            };
                            let proof =
                                smpx_zk::prove(pk, &public, &witness, &mut rand::rngs::OsRng)?;
                            Ok(ForwardRedemptionRequest {
                                version: 2,
                                envelope: None,
                                zk: Some(ZkRedemption {
                                    mmr_id,
                                    root,
                                    nullifier: n,
                                    denomination: 10,
                                    fee: smpx_core::Amount::ZERO,
                                    proof: proof.to_bytes().to_vec(),
                                }),
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a proving thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect())
    })?;
    load(
        args.concurrency,
        bodies
            .into_iter()
            .map(|body| {
                let c = ApiClient::new(cl_url).with_token(op_token.to_owned());
                async move {
                    c.post::<_, serde_json::Value>("/v1/redemptions", &body)
                        .await
                        .map(|_| ())
                }
            })
            .collect(),
    )
    .await
}

/// Runs the futures with at most `concurrency` in flight; returns completed ops per second.
async fn load<F>(concurrency: usize, work: Vec<F>) -> Result<f64>
where
    F: std::future::Future<Output = Result<(), smpx_http::ClientError>> + Send + 'static,
{
    let n = work.len();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for w in work {
        let permit = sem.clone().acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            let r = w.await;
            drop(permit);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
