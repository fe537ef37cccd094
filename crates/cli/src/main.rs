//! `smpx`: one command, a subcommand per role.

mod chat;
mod credits;
mod publish;
use smpx_cli::relay;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use smpx_cli::devnet::{Databases, Devnet, DevnetOptions};
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_core::api::*;
use smpx_core::NetworkParams;
use smpx_http::{ApiClient, SystemClock};
use smpx_issuer::{Issuer, IssuerConfig, IssuerHome};
use smpx_operator::{Operator, OperatorConfig, OperatorHome};
use smpx_store::Db;
use smpx_wallet::{LocalState, MmrChoice, Protocol, RedeemOptions, RedeemProgress, Wallet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "smpx",
    version,
    about = "Private prepaid vouchers for community relay servers"
)]
struct Cli {
    /// Log level filter (also RUST_LOG), e.g. info, debug.
    #[arg(long, global = true, default_value = "warn", env = "SMPX_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a fresh devnet in a temporary directory, run the whole voucher lifecycle against
    /// it, print each step and the final ledger. Exits 0 only if every step succeeded.
    Demo {
        /// Keep the devnet data in this directory instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// MMR levels of the demo's devnet (see `smpx devnet --help`).
        #[arg(long, default_value_t = smpx_cli::devnet::DEVNET_MMR_LEVELS)]
        mmr_levels: u32,
    },
    /// Run coordinator, issuer, operator and three relays on loopback with embedded storage
    /// until Ctrl-C.
    Devnet {
        /// Data directory (created if missing; reused on restart).
        #[arg(long, default_value = "smpx-devnet")]
        data_dir: PathBuf,
        /// Coordinator port; the issuer and operator take the next two, the relays +10..+12
        /// (their ops endpoints +20..+22), the relay directory +3. 0 picks free ports.
        #[arg(long, default_value_t = 7400)]
        port: u16,
        /// MMR levels of a new devnet (capacity 4^L − 1 vouchers per MMR; the ceremony and
        /// proving grow with L).
        #[arg(long, default_value_t = smpx_cli::devnet::DEVNET_MMR_LEVELS)]
        mmr_levels: u32,
    },
    /// The coordination layer (CL).
    #[command(subcommand)]
    Coordinator(CoordinatorCmd),
    /// An issuer (IO) selling vouchers.
    #[command(subcommand)]
    Issuer(IssuerCmd),
    /// A relay operator's redemption service (AO).
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Coordinator administration (needs the coordinator's admin token).
    Admin(AdminArgs),
    /// Public ledger: totals, and a full replay of the log to check conservation.
    Ledger(CoordinatorArgs),
    /// Audit the coordinator from its public endpoints: the ledger (as `smpx ledger`) and
    /// each redemption's operator share, re-derived from the share statement that set it.
    /// Exits non-zero on any finding.
    Audit(CoordinatorArgs),
    /// The community owner's wallet.
    Wallet(WalletArgs),
    /// The multi-party trusted setup of the v0.2 redemption circuit's Groth16 keys.
    #[command(subcommand)]
    Ceremony(CeremonyCmd),
    /// A relay node: init (keys, config, storage) and run.
    #[command(subcommand)]
    Relay(relay::RelayCmd),
    /// A relay directory: init, run (API, web page, probes, share statements), key, attest.
    #[command(subcommand)]
    Directory(smpx_cli::directory::DirectoryCmd),
    /// The relays a directory lists, with their measured status, uptime and latency;
    /// `smpx relays choose` chooses a conversation's relays from what several agree on.
    #[command(args_conflicts_with_subcommands = true)]
    Relays {
        #[command(subcommand)]
        cmd: Option<smpx_cli::directory::RelaysCmd>,
        /// The directory's URL.
        #[arg(long, env = "SMPX_DIRECTORY", default_value = "http://127.0.0.1:8490")]
        directory: String,
        /// Only relays the directory finds running now.
        #[arg(long)]
        running: bool,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        operator: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Chat through relays: invite, accept, send, receive, upgrade (end-to-end encrypted;
    /// sent through your own relay to the contact's unless --direct).
    Chat(chat::ChatArgs),
}

#[derive(Subcommand)]
enum CoordinatorCmd {
    /// Create a data directory: parameters, keys, admin token.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// Network parameters as JSON (default: the built-in defaults).
        #[arg(long)]
        params: Option<PathBuf>,
        /// A finalised ceremony transcript (`smpx ceremony`) to enable v0.2 redemption; it
        /// is verified, then copied into the data directory.
        #[arg(long)]
        transcript: Option<PathBuf>,
    },
    /// Serve the coordinator.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
        /// sqlite://… or postgres://… (default: SQLite in the data directory).
        #[arg(long, env = "SMPX_DATABASE_URL")]
        database_url: Option<String>,
        /// Seconds between runs of the expiry job.
        #[arg(long, default_value_t = 60)]
        expiry_interval: u64,
    },
}

#[derive(Subcommand)]
enum IssuerCmd {
    /// Write the issuer's configuration.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The id the coordinator whitelisted.
        #[arg(long)]
        id: String,
        #[arg(long)]
        coordinator: String,
        /// The credential from `smpx admin add-issuer` (or a file holding it, with @path).
        #[arg(long)]
        credential: String,
        /// Accept the devnet payment method (no money). Never outside a devnet.
        #[arg(long)]
        devnet_payments: bool,
    },
    /// Serve the issuer.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7401")]
        listen: SocketAddr,
        #[arg(long, env = "SMPX_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Mint a batch of single-use top-up codes (prints one per line).
    MintCodes {
        #[arg(long, default_value = "http://127.0.0.1:7401")]
        issuer: String,
        /// File with the issuer's admin token (<data-dir>/admin-token).
        #[arg(long)]
        admin_token_file: PathBuf,
        #[arg(long)]
        denomination: u64,
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Write the operator's configuration.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        coordinator: String,
        /// The credential from `smpx admin add-operator` (or @path).
        #[arg(long)]
        credential: String,
    },
    /// Serve the operator.
    Run {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7402")]
        listen: SocketAddr,
        #[arg(long, env = "SMPX_DATABASE_URL")]
        database_url: Option<String>,
    },
}

#[derive(Args)]
struct AdminArgs {
    #[arg(
        long,
        env = "SMPX_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// File with the coordinator's admin token (<data-dir>/admin-token).
    #[arg(long, env = "SMPX_ADMIN_TOKEN_FILE")]
    token_file: PathBuf,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Whitelist an issuer; prints its credential.
    AddIssuer {
        #[arg(long)]
        id: String,
        /// Issuing limit in credits.
        #[arg(long)]
        limit: u64,
    },
    /// Change an issuer's limit (credits).
    SetLimit {
        #[arg(long)]
        id: String,
        #[arg(long)]
        limit: u64,
    },
    /// Remove an issuer from the whitelist (or restore it with --restore).
    RemoveIssuer {
        #[arg(long)]
        id: String,
        #[arg(long)]
        restore: bool,
    },
    /// Register an operator; prints its credential.
    AddOperator {
        #[arg(long)]
        id: String,
        /// Revenue share in basis points (at most 7000 = 70%).
        #[arg(long)]
        share_bps: u32,
    },
    /// Change an operator's revenue share (with trusted directories: the cap of the share
    /// their statements set).
    SetShare {
        #[arg(long)]
        id: String,
        #[arg(long)]
        share_bps: u32,
    },
    /// Suspend an operator (its redemptions are refused; it earns nothing), or lift the
    /// suspension with --resume.
    Suspend {
        #[arg(long)]
        id: String,
        #[arg(long)]
        resume: bool,
    },
    /// Release expired vouchers to the network fund now.
    Expire,
}

#[derive(Args)]
struct WalletArgs {
    /// Wallet file.
    #[arg(long, env = "SMPX_WALLET", default_value_os_t = default_wallet())]
    wallet: PathBuf,
    /// File holding the passphrase (else SMPX_WALLET_PASSPHRASE, else a prompt).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    service: CoordinatorArgs,
    #[command(subcommand)]
    command: WalletCmd,
}

#[derive(Subcommand)]
enum WalletCmd {
    /// Create a wallet; prints the recovery phrase once.
    Init,
    /// Re-create a wallet from its recovery phrase (read from stdin), then find its vouchers.
    Restore,
    /// Buy a voucher from an issuer.
    Buy {
        #[arg(long, env = "SMPX_ISSUER", default_value = "http://127.0.0.1:7401")]
        issuer: String,
        /// Credits: one of the network's denominations.
        #[arg(long)]
        denomination: u64,
        /// Pay with this top-up code…
        #[arg(long, conflicts_with = "devnet_payment")]
        code: Option<String>,
        /// …or with the devnet backend (no money; devnet issuers only).
        #[arg(long)]
        devnet_payment: bool,
        /// When to publish it (by default a random time 1 to 12 hours from now).
        #[command(flatten)]
        when: publish::When,
    },
    /// Publish a bought voucher whose scheduled time has come (`--no-delay`: now), or
    /// reschedule it (`--delay-min`/`--delay-max`).
    Publish {
        id: i64,
        #[command(flatten)]
        when: publish::When,
    },
    /// Publish every bought voucher whose scheduled time has come, in random order.
    Sync {
        /// Keep running until every bought voucher is published, waiting for each one's time.
        #[arg(long)]
        wait: bool,
    },
    /// List vouchers and their states.
    List,
    /// Redeem a published voucher at an operator.
    Redeem {
        id: i64,
        #[arg(long, env = "SMPX_OPERATOR", default_value = "http://127.0.0.1:7402")]
        operator: String,
        /// 2: zero-knowledge proof (the coordinator does not learn which voucher);
        /// 1: the v0.1 sealed envelope (it does).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=2))]
        protocol: u32,
        /// Protocol 2: prove against the older MMR (larger anonymity set, the default) or
        /// the newer one (accepted for longer).
        #[arg(long, value_enum, default_value_t = MmrArg::Older)]
        mmr: MmrArg,
        /// Protocol 2: prove against the root in the publish receipt instead of the latest
        /// one. Nothing is downloaded, but the anonymity set shrinks to the vouchers
        /// published before this one, and the coordinator learns roughly when it was
        /// published.
        #[arg(long)]
        no_update: bool,
        /// Protocol 2: redeem even if the chosen MMR holds fewer than 100 vouchers of this
        /// denomination (the default guard), as long as it holds at least N.
        #[arg(long, value_name = "N")]
        accept_anonymity: Option<u64>,
    },
    /// Vouchers by state and credits by operator.
    Balance,
    /// Update voucher states from the coordinator (e.g. expired).
    Refresh,
    /// Write a consistent copy of the wallet to FILE (a new file; copying wallet.db alone can
    /// miss recent changes still in wallet.db-wal). The copy opens with the same passphrase.
    Backup { file: PathBuf },
    /// Operator credits: balance, list, spend, collect, restore.
    #[command(subcommand)]
    Credits(credits::CreditsCmd),
}

#[derive(Subcommand)]
enum CeremonyCmd {
    /// Start a ceremony sized for the redemption circuit of --levels.
    Start {
        /// MMR levels of the circuit the ceremony is for.
        #[arg(long, default_value_t = NetworkParams::default().mmr_levels)]
        levels: u32,
        /// Transcript file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add your contribution (fresh secrets from the OS) to the open phase; prints its hash.
    Contribute {
        /// Transcript file to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Transcript file to write (may be the input).
        #[arg(long)]
        out: PathBuf,
        /// Name or handle to record with the contribution (public).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Verify phase 1 and prepare phase 2 for the circuit of --levels (the slow step).
    BeginPhase2 {
        /// MMR levels of the circuit the ceremony is for.
        #[arg(long, default_value_t = NetworkParams::default().mmr_levels)]
        levels: u32,
        /// Transcript file to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Transcript file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Close the open phase with a public random beacon (closing phase 2 finalises).
    Finalize {
        /// The beacon value in hex (e.g. a block hash announced in advance).
        #[arg(long)]
        beacon: String,
        /// The beacon hash is iterated 2^N times (N at most 48).
        #[arg(long, value_name = "N")]
        iterations: u8,
        /// Transcript file to read.
        #[arg(long = "in")]
        input: PathBuf,
        /// Transcript file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Recheck every contribution of a finalised ceremony; print them and the key's SHA-256.
    Verify {
        /// MMR levels of the circuit the ceremony is for.
        #[arg(long, default_value_t = NetworkParams::default().mmr_levels)]
        levels: u32,
        /// Transcript file.
        file: PathBuf,
        /// Write the verifying key (smpx-zk encoding) to this file.
        #[arg(long)]
        verifying_key_out: Option<PathBuf>,
    },
    /// Show a transcript's state, size and contributions (without verifying them).
    Info {
        /// Transcript file.
        file: PathBuf,
    },
}

/// The coordinator a command talks to, and whether it answers in JSON (`smpx ledger`,
/// `smpx audit`, and every `smpx wallet` command).
#[derive(clap::Args)]
struct CoordinatorArgs {
    #[arg(
        long,
        env = "SMPX_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `smpx wallet redeem --mmr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum MmrArg {
    Older,
    Newer,
}

fn default_wallet() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".smpx")
        .join("wallet.db")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let json = cli.command.wants_json();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let f = smpx_cli::failure::Failure::of(&e);
            if json {
                println!("{}", f.json());
            } else {
                eprintln!("error: {}", f.message);
            }
            std::process::ExitCode::from(f.exit)
        }
    }
}

impl Command {
    /// Whether the command was asked for machine-readable output (then errors are JSON too).
    fn wants_json(&self) -> bool {
        match self {
            Command::Ledger(a) | Command::Audit(a) => a.json,
            Command::Wallet(args) => args.service.json,
            _ => false,
        }
    }
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Ctrl-C or SIGTERM: both stop a service gracefully.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c().await,
            };
        tokio::select! { _ = ctrl_c() => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c().await
}

/// Binds a service's listener and says where it listens (tests and scripts read this line).
async fn listen_on(name: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("{name} listening on http://{}", l.local_addr()?);
    Ok(l)
}

fn read_secret_arg(v: &str) -> Result<String> {
    match v.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_owned()),
        None => Ok(v.to_owned()),
    }
}

fn read_token(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?
        .trim()
        .to_owned())
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Demo { keep, mmr_levels } => {
            let tmp;
            let dir = match keep {
                Some(d) => d,
                None => {
                    tmp = tempfile::tempdir()?;
                    tmp.path().to_owned()
                }
            };
            println!(
                "smpx demo — vouchers end to end (v0.2 zero-knowledge redemption), in {}",
                dir.display()
            );
            let mut out = smpx_cli::demo::Stdout(0);
            smpx_cli::demo::run(&dir, mmr_levels, &mut out).await?;
            println!("demo finished: every step succeeded");
            Ok(())
        }
        Command::Devnet {
            data_dir,
            port,
            mmr_levels,
        } => {
            let mut opts = DevnetOptions::new(&data_dir);
            opts.params = Some(NetworkParams {
                mmr_levels,
                ..DevnetOptions::default_params()
            });
            if port != 0 {
                opts.ports = [port, port.saturating_add(1), port.saturating_add(2)];
                opts.directory_port = port.saturating_add(3);
            }
            opts.databases = Databases::default();
            let net = Devnet::start(opts).await?;
            println!("smpx devnet running (data in {})", data_dir.display());
            println!("  coordinator  {}", net.coordinator_url);
            println!(
                "  issuer       {}   (issuer-1, devnet payments enabled)",
                net.issuer_url
            );
            println!(
                "  operator     {}   (operator-1, 60% share cap; the directory's statements set it)",
                net.operator_url
            );
            println!(
                "  directory    {}   (web page at /, its statements trusted by the coordinator)",
                net.directory_url
            );
            println!(
                "  admin token  {}",
                data_dir.join("coordinator/admin-token").display()
            );
            println!(
                "Try: smpx wallet --coordinator {} init",
                net.coordinator_url
            );
            let relays = relay::start_devnet_relays(&data_dir.join("relays"), port, &net).await?;
            for r in &relays {
                println!(
                    "  relay        {}   (ops http://{})",
                    r.address(),
                    r.ops_addr()
                );
            }
            println!("Press Ctrl-C to stop.");
            shutdown().await;
            relay::stop_relays(relays).await?;
            net.stop().await
        }
        Command::Coordinator(c) => coordinator(c).await,
        Command::Issuer(c) => issuer(c).await,
        Command::Operator(c) => operator(c).await,
        Command::Admin(a) => admin(a).await,
        Command::Ledger(a) => ledger(&a.coordinator, a.json).await,
        Command::Audit(a) => audit(&a.coordinator, a.json).await,
        Command::Wallet(w) => wallet(w).await,
        Command::Ceremony(c) => ceremony(c),
        Command::Relay(c) => relay::run(c, shutdown()).await,
        Command::Directory(c) => smpx_cli::directory::run(c, shutdown()).await,
        Command::Relays { cmd: Some(cmd), .. } => smpx_cli::directory::run_relays(cmd).await,
        Command::Relays {
            cmd: None,
            directory,
            running,
            region,
            operator,
            json,
        } => smpx_cli::directory::list(&directory, running, region, operator, json).await,
        Command::Chat(c) => chat::run(c).await,
    }
}

fn ceremony(cmd: CeremonyCmd) -> Result<()> {
    use smpx_cli::ceremony as c;
    match cmd {
        CeremonyCmd::Start { levels, out } => c::start(levels, &out),
        CeremonyCmd::Contribute { input, out, name } => c::contribute(&input, &out, &name),
        CeremonyCmd::BeginPhase2 { levels, input, out } => c::begin_phase2(levels, &input, &out),
        CeremonyCmd::Finalize {
            beacon,
            iterations,
            input,
            out,
        } => c::finalize(&beacon, iterations, &input, &out),
        CeremonyCmd::Verify {
            levels,
            file,
            verifying_key_out,
        } => c::verify(levels, &file, verifying_key_out.as_deref()),
        CeremonyCmd::Info { file } => c::info(&file),
    }
}

async fn coordinator(cmd: CoordinatorCmd) -> Result<()> {
    match cmd {
        CoordinatorCmd::Init {
            data_dir,
            params,
            transcript,
        } => {
            let params: Option<NetworkParams> = match params {
                Some(p) => Some(smpx_http::files::load(&p)?),
                None => None,
            };
            let home = CoordinatorHome::open(&data_dir, params)?;
            if let Some(t) = transcript {
                let bytes =
                    std::fs::read(&t).with_context(|| format!("reading {}", t.display()))?;
                eprintln!("verifying the ceremony transcript {} ...", t.display());
                smpx_coordinator::ZkKeys::from_transcript(
                    bytes.clone(),
                    home.params.mmr_levels,
                    &smpx_cli::ceremony::StderrProgress::new(),
                )
                .with_context(|| format!("{} is not acceptable", t.display()))?;
                smpx_http::files::write_private(
                    &home.dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE),
                    &bytes,
                )?;
                println!("ceremony transcript verified and installed: v0.2 redemption enabled");
            }
            println!("coordinator data directory ready: {}", home.dir.display());
            println!("admin token: {}", home.dir.join("admin-token").display());
            Ok(())
        }
        CoordinatorCmd::Run {
            data_dir,
            listen,
            database_url,
            expiry_interval,
        } => {
            let home = CoordinatorHome::open(&data_dir, None)?;
            let url = database_url.unwrap_or_else(|| home.default_database_url());
            let store =
                smpx_store::coordinator::CoordinatorStore::open(Db::connect(&url).await?).await?;
            let zk = load_zk_keys(&home)?;
            let state = Coordinator::with_zk(store, home, Arc::new(SystemClock), zk);
            let l = listen_on("coordinator", listen).await?;
            smpx_coordinator::run(
                state,
                l,
                Duration::from_secs(expiry_interval.max(1)),
                shutdown(),
            )
            .await?;
            Ok(())
        }
    }
}

/// The coordinator's v0.2 keys from `<dir>/ceremony.transcript`, verified in full; a
/// transcript that does not verify is an error (the coordinator does not start).
fn load_zk_keys(home: &CoordinatorHome) -> Result<Option<smpx_coordinator::ZkKeys>> {
    let wants_v2 = home
        .params
        .protocol_versions
        .contains(&smpx_core::redemption::PROTOCOL_V2);
    let path = home.dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE);
    use smpx_core::rules::zk_startup::{self, ZkStartup};
    if let ZkStartup::V1Only { warn } = zk_startup::decide(wants_v2, path.exists()) {
        if warn {
            eprintln!(
                "warning: no ceremony transcript at {}: serving v0.1 redemption only \
                 (create one with `smpx ceremony`, see `smpx ceremony --help`)",
                path.display()
            );
        }
        return Ok(None);
    }
    eprintln!("verifying the ceremony transcript {} ...", path.display());
    let keys = smpx_coordinator::ZkKeys::load(
        &home.dir,
        home.params.mmr_levels,
        &smpx_cli::ceremony::StderrProgress::new(),
    )?;
    eprintln!("ceremony transcript verified: v0.2 redemption enabled");
    Ok(keys)
}

async fn issuer(cmd: IssuerCmd) -> Result<()> {
    match cmd {
        IssuerCmd::Init {
            data_dir,
            id,
            coordinator,
            credential,
            devnet_payments,
        } => {
            IssuerHome::init(
                &data_dir,
                IssuerConfig {
                    issuer_id: id,
                    coordinator_url: coordinator,
                    credential: read_secret_arg(&credential)?,
                    devnet_payments,
                    key_bits: 2048,
                },
            )?;
            println!("issuer configured in {}", data_dir.display());
            Ok(())
        }
        IssuerCmd::Run {
            data_dir,
            listen,
            database_url,
        } => {
            let home = IssuerHome::open(&data_dir)?;
            let url = database_url.unwrap_or_else(|| home.default_database_url());
            let store = smpx_store::issuer::IssuerStore::open(Db::connect(&url).await?).await?;
            let state = Issuer::start(store, home, Arc::new(SystemClock)).await?;
            let l = listen_on("issuer", listen).await?;
            smpx_issuer::run(state, l, Duration::from_secs(3600), shutdown()).await?;
            Ok(())
        }
        IssuerCmd::MintCodes {
            issuer,
            admin_token_file,
            denomination,
            count,
        } => {
            let c = ApiClient::new(issuer).with_token(read_token(&admin_token_file)?);
            let r: MintCodesResponse = c
                .post(
                    "/v1/admin/topup-codes",
                    &MintCodesRequest {
                        denomination,
                        count,
                    },
                )
                .await?;
            for code in r.codes {
                println!("{code}");
            }
            Ok(())
        }
    }
}

async fn operator(cmd: OperatorCmd) -> Result<()> {
    match cmd {
        OperatorCmd::Init {
            data_dir,
            id,
            coordinator,
            credential,
        } => {
            OperatorHome::init(
                &data_dir,
                OperatorConfig {
                    operator_id: id,
                    coordinator_url: coordinator,
                    credential: read_secret_arg(&credential)?,
                },
            )?;
            println!("operator configured in {}", data_dir.display());
            Ok(())
        }
        OperatorCmd::Run {
            data_dir,
            listen,
            database_url,
        } => {
            let home = OperatorHome::open(&data_dir)?;
            let url = database_url.unwrap_or_else(|| home.default_database_url());
            let store = smpx_store::operator::OperatorStore::open(Db::connect(&url).await?).await?;
            let state = Operator::start(store, home, Arc::new(SystemClock)).await?;
            let l = listen_on("operator", listen).await?;
            smpx_operator::run(state, l, shutdown()).await?;
            Ok(())
        }
    }
}

async fn admin(a: AdminArgs) -> Result<()> {
    let c = ApiClient::new(&a.coordinator).with_token(read_token(&a.token_file)?);
    match a.command {
        AdminCmd::AddIssuer { id, limit } => {
            let r: CredentialResponse = c
                .post(
                    "/v1/admin/issuers",
                    &AddIssuerRequest {
                        id,
                        limit_credits: limit,
                    },
                )
                .await?;
            println!("{}", r.token);
        }
        AdminCmd::SetLimit { id, limit } => {
            let r: IssuerInfo = c
                .post(
                    &format!("/v1/admin/issuers/{id}/limit"),
                    &SetLimitRequest {
                        limit_credits: limit,
                    },
                )
                .await?;
            print_json(&r)?;
        }
        AdminCmd::RemoveIssuer { id, restore } => {
            let r: IssuerInfo = c
                .post(
                    &format!("/v1/admin/issuers/{id}/active"),
                    &serde_json::json!({ "active": restore }),
                )
                .await?;
            print_json(&r)?;
        }
        AdminCmd::AddOperator { id, share_bps } => {
            let r: CredentialResponse = c
                .post("/v1/admin/operators", &AddOperatorRequest { id, share_bps })
                .await?;
            println!("{}", r.token);
        }
        AdminCmd::SetShare { id, share_bps } => {
            let r: OperatorInfo = c
                .post(
                    &format!("/v1/admin/operators/{id}/share"),
                    &SetShareRequest { share_bps },
                )
                .await?;
            print_json(&r)?;
        }
        AdminCmd::Suspend { id, resume } => {
            let action = if resume { "resume" } else { "suspend" };
            let r: serde_json::Value = c
                .post(
                    &format!("/v1/admin/operators/{id}/{action}"),
                    &serde_json::json!({}),
                )
                .await?;
            print_json(&r)?;
        }
        AdminCmd::Expire => {
            let r: ExpireResponse = c.post("/v1/admin/expire", &serde_json::json!({})).await?;
            print_json(&r)?;
        }
    }
    Ok(())
}

async fn ledger(coordinator: &str, json: bool) -> Result<()> {
    let (totals, replayed, entries) =
        smpx_cli::audit::replay_ledger(&ApiClient::new(coordinator)).await?;
    let release = smpx_cli::audit::check_release(&ApiClient::new(coordinator)).await?;
    let verdict = smpx_core::rules::audit::audit(&totals, &replayed, release);
    if json {
        print_json(&serde_json::json!({
            "totals": totals, "replayed": replayed, "replay_agrees": verdict.replay_agrees,
            "release_by_mmr_books": release, "release_conservative": verdict.release_conservative,
        }))?;
    } else {
        let t = &replayed;
        println!("entries             {entries}");
        println!("published           {}", t.published);
        println!("redeemed            {}", t.redeemed);
        println!("live                {}", t.live);
        println!("released            {}", t.released);
        println!("paid to operators   {}", t.paid_to_operators);
        println!("network fund        {}", t.network_fund);
        println!(
            "conservation        {}",
            if verdict.conservation_holds {
                "holds"
            } else {
                "BROKEN"
            }
        );
        println!(
            "release (MMR books) {} released, at most {} provably dead: {}",
            smpx_core::Amount(release.released),
            smpx_core::Amount(release.allowed),
            if verdict.release_conservative {
                "conservative"
            } else {
                "RELEASED TOO MUCH"
            }
        );
    }
    if !verdict.ok() {
        bail!("the ledger does not check out");
    }
    Ok(())
}

async fn audit(coordinator: &str, json: bool) -> Result<()> {
    let c = ApiClient::new(coordinator);
    let (totals, replayed, _) = smpx_cli::audit::replay_ledger(&c).await?;
    let release = smpx_cli::audit::check_release(&c).await?;
    let ledger = smpx_core::rules::audit::audit(&totals, &replayed, release);
    let shares = smpx_cli::audit::audit_shares(&c).await?;
    if json {
        print_json(&serde_json::json!({ "ledger": ledger, "shares": shares }))?;
    } else {
        let verdict = if ledger.ok() {
            "checks out"
        } else {
            "DOES NOT CHECK OUT (see smpx ledger)"
        };
        println!("ledger                                    {verdict}");
        println!(
            "redemptions checked against statements    {} ({} lowered by the administrator's cap)",
            shares.checked_against_statements, shares.lowered_by_administrator
        );
        println!(
            "cleared by an administrator's number      {}",
            shares.cleared_by_administrator
        );
        if shares.unrecorded_entries > 0 {
            println!(
                "redemption entries from before notes      {} (not judged)",
                shares.unrecorded_entries
            );
        }
        for f in &shares.findings {
            println!("finding: {f}");
        }
    }
    if !ledger.ok() || !shares.ok() {
        bail!(
            "the audit does not check out ({} finding(s) about shares)",
            shares.findings.len()
        );
    }
    Ok(())
}

fn passphrase(args: &WalletArgs, confirm: bool) -> Result<String> {
    read_passphrase(args.passphrase_file.as_deref(), confirm)
}

/// The wallet passphrase: from `file`, else `SMPX_WALLET_PASSPHRASE`, else a prompt (twice
/// when `confirm`).
fn read_passphrase(file: Option<&Path>, confirm: bool) -> Result<String> {
    if let Some(p) = file {
        return read_token(p);
    }
    if let Ok(p) = std::env::var("SMPX_WALLET_PASSPHRASE") {
        return Ok(p);
    }
    let p = prompt("wallet passphrase: ")?;
    if confirm {
        let again = prompt("again: ")?;
        if again != p {
            bail!("the passphrases differ");
        }
    }
    Ok(p)
}

/// Asks on the terminal; without one, says which other ways there are.
fn prompt(question: &str) -> Result<String> {
    rpassword::prompt_password(question).map_err(|e| {
        // No /dev/tty: ENXIO without a controlling terminal, ENOENT without the device.
        let no_terminal = e.raw_os_error() == Some(6) || e.kind() == std::io::ErrorKind::NotFound;
        if no_terminal {
            anyhow::anyhow!(
                "the wallet passphrase is needed and there is no terminal to ask on: \
                 give --passphrase-file FILE or set SMPX_WALLET_PASSPHRASE"
            )
        } else {
            anyhow::anyhow!("reading the passphrase from the terminal: {e}")
        }
    })
}

async fn wallet(args: WalletArgs) -> Result<()> {
    let json = args.service.json;
    match &args.command {
        WalletCmd::Init => {
            if let Some(dir) = args.wallet.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let pass = passphrase(&args, true)?;
            let (_, mnemonic) = Wallet::create(&args.wallet, &pass).await?;
            if json {
                print_json(&serde_json::json!({"wallet": args.wallet, "mnemonic": mnemonic}))?;
            } else {
                println!("wallet created: {}", args.wallet.display());
                println!(
                    "Write down this recovery phrase; it restores your vouchers:\n\n  {mnemonic}\n"
                );
            }
            return Ok(());
        }
        WalletCmd::Restore => {
            if let Some(dir) = args.wallet.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let pass = passphrase(&args, true)?;
            eprintln!("recovery phrase (one line):");
            let mut phrase = String::new();
            std::io::stdin().read_line(&mut phrase)?;
            let w = Wallet::restore(&args.wallet, &pass, phrase.trim()).await?;
            let found = w
                .recover(&args.service.coordinator, 20, &|i| {
                    if i % 10 == 0 {
                        eprint!("\rchecked {i} voucher indices");
                    }
                })
                .await?;
            eprintln!();
            if json {
                print_json(&found)?;
            } else {
                println!(
                    "restored {}; found {} published vouchers",
                    args.wallet.display(),
                    found.len()
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let pass = passphrase(&args, false)?;
    let w = Wallet::open(&args.wallet, &pass).await?;
    match args.command {
        // Handled above, before a wallet exists to open.
        WalletCmd::Init | WalletCmd::Restore => {}
        WalletCmd::Buy {
            issuer,
            denomination,
            code,
            devnet_payment,
            when,
        } => {
            let payment = match (code, devnet_payment) {
                (Some(code), _) => Payment::TopupCode { code },
                (None, true) => Payment::Devnet,
                (None, false) => bail!("say how to pay: --code CODE or --devnet-payment"),
            };
            // The crowd this purchase joins, said before buying.
            let mut published_count = 0;
            let v = w
                .buy_telling(
                    &args.service.coordinator,
                    &issuer,
                    denomination,
                    payment,
                    |crowd| {
                        published_count = crowd.published_count;
                        if !json {
                            eprintln!("{}", smpx_cli::anonymity::crowd(crowd));
                        }
                    },
                )
                .await?;
            let v = publish::after_buy(&w, &args.service.coordinator, v, &when).await?;
            if json {
                let mut out = serde_json::to_value(&v)?;
                out["key_published_count"] = published_count.into();
                print_json(&out)?;
            } else {
                println!(
                    "{}",
                    publish::bought_line(&v, smpx_http::Clock::now(&SystemClock))
                );
            }
        }
        WalletCmd::Publish { id, when } => {
            publish::publish(&w, &args.service.coordinator, id, &when, json).await?
        }
        WalletCmd::Sync { wait } => {
            publish::sync(&w, &args.service.coordinator, wait, json).await?
        }
        WalletCmd::List => {
            let vs = w.vouchers().await?;
            // Each published voucher's anonymity set now (default redemption), or `?` when
            // the coordinator does not answer (asked once for all of them).
            let sets: std::collections::HashMap<i64, Result<_, String>> = match w
                .anonymity_sets(&args.service.coordinator, &RedeemOptions::default())
                .await
            {
                Ok(sets) => sets
                    .into_iter()
                    .map(|(id, set)| (id, set.map_err(|e| e.to_string())))
                    .collect(),
                Err(e) => vs
                    .iter()
                    .filter(|v| v.state == LocalState::Published)
                    .map(|v| (v.id, Err(e.to_string())))
                    .collect(),
            };
            if json {
                let mut out = Vec::with_capacity(vs.len());
                for v in &vs {
                    let mut o = serde_json::to_value(v)?;
                    if let Some(set) = sets.get(&v.id) {
                        o["anonymity"] = match set {
                            Ok(s) => serde_json::to_value(s)?,
                            Err(_) => serde_json::Value::Null,
                        };
                    }
                    out.push(o);
                }
                print_json(&out)?;
            } else if vs.is_empty() {
                println!("no vouchers");
            } else {
                println!(
                    "{:>4}  {:>6}  {:<10}  {:<12}  {:>9}  commitment",
                    "id", "credits", "state", "issuer", "anonymity"
                );
                for v in vs {
                    println!(
                        "{:>4}  {:>6}  {:<10}  {:<12}  {:>9}  {}…",
                        v.id,
                        v.denomination,
                        serde_json::to_value(v.state)?.as_str().unwrap_or("?"),
                        v.issuer_id,
                        smpx_cli::anonymity::cell(sets.get(&v.id)),
                        &v.commitment[..16.min(v.commitment.len())]
                    );
                }
            }
        }
        WalletCmd::Redeem {
            id,
            operator,
            protocol,
            mmr,
            no_update,
            accept_anonymity,
        } => {
            let options = RedeemOptions {
                protocol: Protocol::from_version(protocol)
                    .with_context(|| format!("unknown protocol {protocol}"))?,
                mmr: match mmr {
                    MmrArg::Older => MmrChoice::Older,
                    MmrArg::Newer => MmrChoice::Newer,
                },
                update_path: !no_update,
                accept_anonymity,
                ..RedeemOptions::default()
            };
            if options.protocol == Protocol::V1 {
                eprintln!("{}", smpx_cli::anonymity::V1_WARNING);
            }
            // Progress on stderr; counters rewrite their line.
            let open_line = std::sync::atomic::AtomicBool::new(false);
            let progress = |p: RedeemProgress| {
                use std::sync::atomic::Ordering::Relaxed;
                let counter = matches!(
                    p,
                    RedeemProgress::DownloadingTranscript { .. }
                        | RedeemProgress::VerifyingTranscript { .. }
                        | RedeemProgress::DownloadingLeaves { .. }
                );
                if counter {
                    eprint!("\r{:<79}", p.to_string());
                    open_line.store(true, Relaxed);
                } else {
                    if open_line.swap(false, Relaxed) {
                        eprintln!();
                    }
                    eprintln!("{p}…");
                }
            };
            let result = w
                .redeem_with(
                    &args.service.coordinator,
                    &operator,
                    id,
                    &options,
                    &progress,
                )
                .await;
            if open_line.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!();
            }
            let c = result?;
            if json {
                print_json(&c)?;
            } else {
                println!(
                    "redeemed voucher #{id} at {} (protocol {}): {} credits",
                    c.operator_id, c.protocol, c.credited
                );
                if c.issued == c.credited {
                    println!(
                        "received {} credits as blind-signed tokens (see `smpx wallet credits balance`)",
                        c.issued
                    );
                } else if c.issued.0 == 0 {
                    println!(
                        "this operator gave a signed receipt only (it does not issue credits)"
                    );
                } else {
                    println!("received {} credits as blind-signed tokens", c.issued);
                }
            }
        }
        WalletCmd::Balance => {
            let b = w.balance().await?;
            print_json(&b)?;
        }
        WalletCmd::Refresh => {
            let vs = w.refresh(&args.service.coordinator).await?;
            if json {
                print_json(&vs)?;
            } else {
                println!("{} vouchers changed state", vs.len());
            }
        }
        WalletCmd::Backup { file } => {
            w.backup(&file)
                .await
                .with_context(|| format!("backing up the wallet to {}", file.display()))?;
            if json {
                print_json(&serde_json::json!({"backup": file}))?;
            } else {
                println!("wallet copied to {}", file.display());
            }
        }
        WalletCmd::Credits(cmd) => credits::run(&w, cmd, json).await?,
    }
    Ok(())
}
