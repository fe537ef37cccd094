//! `smpx-bench`: the v0.1 numbers that matter, measured through the real HTTP services.
//!
//! * blind-sign latency (the issuer's cost per sale), plus the wallet's finalize and the
//!   coordinator's verify;
//! * publishes/s and redemptions/s with the coordinator (and, for redemptions, the operator
//!   that forwards them) confined to ONE core: each service runs on a single-threaded tokio
//!   runtime, the load generator on its own thread;
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
        "smpx-bench v0.1 — count {}, concurrency {}, store {}",
        args.count,
        args.concurrency,
        if args.postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    // ---- blind signatures -------------------------------------------------------------
    let sk = IssuerSecretKey::generate(2048)?;
    let pk = sk.public_key()?;
    let mut sign = Vec::new();
    let mut fin = Vec::new();
    let mut ver = Vec::new();
    for i in 0..args.signs {
        let msg = voucher_message(&smpx_core::crypto::voucher::commitment(
            &smpx_core::crypto::voucher::VoucherSecret::random(&mut rand::rngs::OsRng),
            (i % 3) as u64 + 1,
        ));
        let (b, st) = pk.blind(&msg)?;
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
    let dir = tempfile::tempdir()?;
    let cdir = dir.path().join("coordinator");
    let home = CoordinatorHome::open(&cdir, None)?;
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
            let state = Coordinator::new(store, home, Arc::new(SystemClock));
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
        .map(|_| issue_locally(&sk, &key_id, 10))
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
        .map(|(s, _)| seal_v1(&params.envelope_key, s, 10, "op"))
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
                    envelope: e.clone(),
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
                    envelope: e.clone(),
                };
                async move {
                    c.post::<_, serde_json::Value>("/v1/redeem", &body)
                        .await
                        .map(|_| ())
                }
            })
            .collect(),
    ))?;

    let totals: LedgerTotalsResponse =
        client_rt.block_on(ApiClient::new(&cl_url).get("/v1/ledger/totals"))?;
    anyhow::ensure!(totals.conserved, "ledger not conserved after the run");
    anyhow::ensure!(
        totals.totals.redeemed.0 == (args.count as u64 * 2) * 10_000_000,
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
    Ok(())
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
