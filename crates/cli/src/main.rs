//! `smpx`: one command, a subcommand per role.

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
use smpx_wallet::Wallet;
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
    },
    /// Run coordinator, issuer and operator on loopback with embedded storage until Ctrl-C.
    Devnet {
        /// Data directory (created if missing; reused on restart).
        #[arg(long, default_value = "smpx-devnet")]
        data_dir: PathBuf,
        /// Coordinator port; the issuer and operator take the next two. 0 picks free ports.
        #[arg(long, default_value_t = 7400)]
        port: u16,
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
    Ledger {
        #[arg(
            long,
            env = "SMPX_COORDINATOR",
            default_value = "http://127.0.0.1:7400"
        )]
        coordinator: String,
        #[arg(long)]
        json: bool,
    },
    /// The community owner's wallet.
    Wallet(WalletArgs),
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
    /// Change an operator's revenue share.
    SetShare {
        #[arg(long)]
        id: String,
        #[arg(long)]
        share_bps: u32,
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
    #[arg(
        long,
        env = "SMPX_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    coordinator: String,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
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
    },
    /// Publish a bought voucher to the coordinator, after an optional random delay.
    Publish {
        id: i64,
        /// Wait a random time up to this many seconds first, to mask when it was bought.
        #[arg(long, default_value_t = 0)]
        max_delay: u64,
    },
    /// List vouchers and their states.
    List,
    /// Redeem a published voucher at an operator.
    Redeem {
        id: i64,
        #[arg(long, env = "SMPX_OPERATOR", default_value = "http://127.0.0.1:7402")]
        operator: String,
    },
    /// Vouchers by state and credits by operator.
    Balance,
    /// Update voucher states from the coordinator (e.g. expired).
    Refresh,
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
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
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
        Command::Demo { keep } => {
            let tmp;
            let dir = match keep {
                Some(d) => d,
                None => {
                    tmp = tempfile::tempdir()?;
                    tmp.path().to_owned()
                }
            };
            println!("smpx demo — vouchers v0.1 end to end, in {}", dir.display());
            let mut out = smpx_cli::demo::Stdout(0);
            smpx_cli::demo::run(&dir, &mut out).await?;
            println!("demo finished: every step succeeded");
            Ok(())
        }
        Command::Devnet { data_dir, port } => {
            let mut opts = DevnetOptions::new(&data_dir);
            if port != 0 {
                opts.ports = [port, port.saturating_add(1), port.saturating_add(2)];
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
                "  operator     {}   (operator-1, 60% share)",
                net.operator_url
            );
            println!(
                "  admin token  {}",
                data_dir.join("coordinator/admin-token").display()
            );
            println!(
                "Try: smpx wallet --coordinator {} init",
                net.coordinator_url
            );
            println!("Press Ctrl-C to stop.");
            shutdown().await;
            net.stop().await
        }
        Command::Coordinator(c) => coordinator(c).await,
        Command::Issuer(c) => issuer(c).await,
        Command::Operator(c) => operator(c).await,
        Command::Admin(a) => admin(a).await,
        Command::Ledger { coordinator, json } => ledger(&coordinator, json).await,
        Command::Wallet(w) => wallet(w).await,
    }
}

async fn coordinator(cmd: CoordinatorCmd) -> Result<()> {
    match cmd {
        CoordinatorCmd::Init { data_dir, params } => {
            let params: Option<NetworkParams> = match params {
                Some(p) => Some(smpx_http::files::load(&p)?),
                None => None,
            };
            let home = CoordinatorHome::open(&data_dir, params)?;
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
            let state = Coordinator::new(store, home, Arc::new(SystemClock));
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
    let agrees = replayed == totals.totals;
    if json {
        print_json(&serde_json::json!({
            "totals": totals, "replayed": replayed, "replay_agrees": agrees
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
            if t.is_conserved() && totals.conserved && agrees {
                "holds"
            } else {
                "BROKEN"
            }
        );
    }
    if !(agrees && totals.conserved && replayed.is_conserved()) {
        bail!("the ledger does not check out");
    }
    Ok(())
}

fn passphrase(args: &WalletArgs, confirm: bool) -> Result<String> {
    if let Some(p) = &args.passphrase_file {
        return read_token(p);
    }
    if let Ok(p) = std::env::var("SMPX_WALLET_PASSPHRASE") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("wallet passphrase: ").context("reading the passphrase")?;
    if confirm {
        let again = rpassword::prompt_password("again: ").context("reading the passphrase")?;
        if again != p {
            bail!("the passphrases differ");
        }
    }
    Ok(p)
}

async fn wallet(args: WalletArgs) -> Result<()> {
    let json = args.json;
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
                .recover(&args.coordinator, 20, &|i| {
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
        } => {
            let payment = match (code, devnet_payment) {
                (Some(code), _) => Payment::TopupCode { code },
                (None, true) => Payment::Devnet,
                (None, false) => bail!("say how to pay: --code CODE or --devnet-payment"),
            };
            let v = w
                .buy(&args.coordinator, &issuer, denomination, payment)
                .await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "bought voucher #{} ({} credits); publish it with `smpx wallet publish {}`",
                    v.id, v.denomination, v.id
                );
            }
        }
        WalletCmd::Publish { id, max_delay } => {
            let delay = if max_delay == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(rand::random::<u64>() % (max_delay * 1000))
            };
            if !delay.is_zero() && !json {
                eprintln!("waiting {:.1} s before publishing…", delay.as_secs_f64());
            }
            let v = w.publish(&args.coordinator, id, delay).await?;
            if json {
                print_json(&v)?;
            } else {
                println!(
                    "published voucher #{}; it expires at {}",
                    v.id,
                    v.expires_at.unwrap_or_default()
                );
            }
        }
        WalletCmd::List => {
            let vs = w.vouchers().await?;
            if json {
                print_json(&vs)?;
            } else if vs.is_empty() {
                println!("no vouchers");
            } else {
                println!(
                    "{:>4}  {:>6}  {:<10}  {:<12}  commitment",
                    "id", "credits", "state", "issuer"
                );
                for v in vs {
                    println!(
                        "{:>4}  {:>6}  {:<10}  {:<12}  {}…",
                        v.id,
                        v.denomination,
                        serde_json::to_value(v.state)?.as_str().unwrap_or("?"),
                        v.issuer_id,
                        &v.commitment[..16.min(v.commitment.len())]
                    );
                }
            }
        }
        WalletCmd::Redeem { id, operator } => {
            let c = w.redeem(&args.coordinator, &operator, id).await?;
            if json {
                print_json(&c)?;
            } else {
                println!(
                    "redeemed voucher #{id} at {}: {} credits",
                    c.operator_id, c.credited
                );
            }
        }
        WalletCmd::Balance => {
            let b = w.balance().await?;
            print_json(&b)?;
        }
        WalletCmd::Refresh => {
            let vs = w.refresh(&args.coordinator).await?;
            if json {
                print_json(&vs)?;
            } else {
                println!("{} vouchers changed state", vs.len());
            }
        }
    }
    Ok(())
}
