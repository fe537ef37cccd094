//! `smpx relay init` / `smpx relay run`, and the devnet's three relays
//! ([`smpx_relay`] does the work).

use anyhow::{Context, Result};
use clap::Subcommand;
use smpx_relay::directory::{self as dir_client, PowProgress};
use smpx_relay::{
    BackendKind, DirectorySection, InitOptions, NodeConfig, RelayNode, RunningNode, StorageConfig,
};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Relays the devnet starts.
pub const DEVNET_RELAYS: u16 = 3;
/// The devnet relays' region in the directory.
pub const DEVNET_REGION: &str = "devnet";
/// The devnet operator's key (signs its relays' registrations and heartbeats), beside the
/// relays' directories.
pub const DEVNET_OPERATOR_KEY_FILE: &str = "operator.key";

#[derive(Subcommand)]
pub enum RelayCmd {
    /// Create a relay: keys and certificates (an offline CA and an online certificate), a
    /// commented relay.toml, and the storage. Prints the relay's smpx:// address.
    Init {
        /// The relay's directory (created 0700).
        #[arg(long, env = "SMPX_RELAY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
        /// The host clients connect to, in the address: a DNS name or an IP address.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The port clients connect to, in the address; also the listening port unless
        /// --listen says otherwise.
        #[arg(long, default_value_t = smpx_relay_transport::DEFAULT_PORT)]
        port: u16,
        /// Where to listen (default 127.0.0.1:<port>: this machine only; 0.0.0.0:<port>
        /// accepts other machines).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the ops endpoint (health, metrics) listens (default 127.0.0.1:5224).
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
        /// Storage: `log` (memory + append-only log, the default), `sqlite`, or a
        /// postgres://… URL.
        #[arg(long, default_value = "log")]
        storage: String,
        /// The operator's credit service (e.g. http://127.0.0.1:7402) that takes payments
        /// for capacity; without it the relay offers the free tier only.
        #[arg(long)]
        operator: Option<String>,
        /// Let this relay, as a proxy, dial loopback and private addresses (relay.toml's
        /// [forwarding] allow_private_destinations): for relays that reach each other on
        /// one machine or a private network. Off, PRXY refuses such destinations.
        #[arg(long)]
        allow_private_destinations: bool,
        #[command(flatten)]
        listing: Box<ListingArgs>,
    },
    /// (Re-)register the relay in --dir with the directories its relay.toml [directory]
    /// names. The registration is signed by the CA key: ca.key must be in --dir.
    Register {
        #[arg(long, env = "SMPX_RELAY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
    },
    /// Take the relay off its directories (signed by the operator key).
    Withdraw {
        #[arg(long, env = "SMPX_RELAY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
        /// Only this directory (repeatable; default: every one in relay.toml).
        #[arg(long = "directory")]
        directories: Vec<String>,
    },
    /// Run the relay in --dir until SIGINT or SIGTERM (then shut down gracefully).
    Run {
        #[arg(long, env = "SMPX_RELAY_DIR", default_value_os_t = default_dir())]
        dir: PathBuf,
    },
}

/// `smpx relay init`'s directory listing: with `--directory`, init writes relay.toml's
/// [directory] section, creates the operator key and registers (while ca.key is here).
#[derive(clap::Args, Default)]
pub struct ListingArgs {
    /// A directory to register with (repeatable).
    #[arg(long = "directory")]
    directories: Vec<String>,
    /// The operator's id (needed with --directory).
    #[arg(long)]
    operator_id: Option<String>,
    /// The relay's region code, e.g. eu-west (needed with --directory).
    #[arg(long)]
    region: Option<String>,
    /// Published operator name (only what is given is published).
    #[arg(long)]
    operator_name: Option<String>,
    /// Published country (ISO 3166-1 alpha-2).
    #[arg(long)]
    country: Option<String>,
    /// Published source code URL.
    #[arg(long)]
    source_code: Option<String>,
    /// Published hosting provider.
    #[arg(long)]
    hosting: Option<String>,
    /// Published admin contact.
    #[arg(long)]
    admin_contact: Option<String>,
    /// Published complaints contact.
    #[arg(long)]
    complaints_contact: Option<String>,
}

impl ListingArgs {
    fn section(self) -> Result<Option<DirectorySection>> {
        if self.directories.is_empty() {
            return Ok(None);
        }
        let (Some(operator_id), Some(region)) = (self.operator_id, self.region) else {
            anyhow::bail!("--directory needs --operator-id and --region");
        };
        let mut d = DirectorySection::new(self.directories, operator_id, region);
        d.operator_name = self.operator_name;
        d.country = self.country;
        d.source_code = self.source_code;
        d.hosting = self.hosting;
        d.admin_contact = self.admin_contact;
        d.complaints_contact = self.complaints_contact;
        Ok(Some(d))
    }
}

/// Registers the relay in `dir`, a progress line on stderr while the proof of work runs,
/// and prints what was registered.
async fn register(dir: &Path, cfg: &NodeConfig) -> Result<()> {
    let started = Mutex::new(Instant::now());
    let progress: dir_client::ProgressFn = Arc::new(move |p: &PowProgress| {
        let secs = started
            .lock()
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
            .max(0.001);
        eprint!(
            "\rproof of work for {}: {} attempts ({:.0}% of the expected {}), {:.0}/s   ",
            p.url,
            p.tried,
            100.0 * p.tried as f64 / p.expected.max(1) as f64,
            p.expected,
            p.tried as f64 / secs
        );
        true
    });
    let done = dir_client::register(
        dir,
        cfg,
        &smpx_os::SystemClock,
        &smpx_os::OsEntropy,
        progress,
    )
    .await;
    eprintln!();
    let done = done.context("registering with the directory")?;
    let Some(d) = &cfg.directory else {
        return Ok(());
    };
    for (url, r) in done {
        println!(
            "registered {} with {url} ({})",
            r.address,
            if r.created { "new" } else { "updated" }
        );
    }
    println!(
        "operator {} region {}; published: {}",
        d.operator_id,
        d.region,
        serde_json::to_string(&d.metadata()).unwrap_or_default()
    );
    println!(
        "heartbeats every {} s while the relay runs (signed by {})",
        d.heartbeat_interval_secs,
        d.operator_key_path(dir).display()
    );
    Ok(())
}

fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".smpx")
        .join("relay")
}

fn storage_arg(s: &str) -> Result<StorageConfig> {
    let backend = match s {
        "log" => BackendKind::Log,
        "sqlite" => BackendKind::Sqlite,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            return Ok(StorageConfig {
                backend: BackendKind::Postgres,
                url: Some(url.to_owned()),
                ..Default::default()
            })
        }
        _ => anyhow::bail!("--storage: expected log, sqlite or a postgres:// URL"),
    };
    Ok(StorageConfig {
        backend,
        ..Default::default()
    })
}

/// Runs a `smpx relay …` command; `shutdown` ends `run`.
pub async fn run(cmd: RelayCmd, shutdown: impl Future<Output = ()>) -> Result<()> {
    match cmd {
        RelayCmd::Init {
            dir,
            host,
            port,
            listen,
            ops_listen,
            storage,
            operator,
            allow_private_destinations,
            listing,
        } => {
            let directory = (*listing).section()?;
            let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
            let address = RelayNode::init(
                &dir,
                InitOptions {
                    listen: Some(listen),
                    public_host: Some(host),
                    public_port: Some(port),
                    ops_listen,
                    storage: storage_arg(&storage)?,
                    operator_url: operator,
                    allow_private_destinations,
                    directory,
                },
            )
            .await?;
            println!("relay initialised in {}", dir.display());
            println!("address  {address}");
            println!(
                "config   {} (listening on {listen}{})",
                dir.join(smpx_relay::config::CONFIG_FILE).display(),
                if listen.ip().is_loopback() {
                    ": this machine only; edit [server] listen to accept others"
                } else {
                    ""
                }
            );
            let cfg = RelayNode::config(&dir)?;
            if cfg.directory.is_some() {
                // Now, while ca.key is still here: it signs the registration.
                register(&dir, &cfg).await.with_context(|| {
                    format!(
                        "the relay is initialised in {} but not listed; fix the cause and run \
                         `smpx relay register --dir {}` while ca.key is still there",
                        dir.display(),
                        dir.display()
                    )
                })?;
            }
            println!(
                "Move {} offline now (e.g. to a USB key): the relay does not need it to run, \
                 and whoever holds it can impersonate this relay. Bring it back only to \
                 rotate the online certificate.",
                RelayNode::ca_key_path(&dir).display()
            );
            println!("Start it with: smpx relay run --dir {}", dir.display());
            Ok(())
        }
        RelayCmd::Register { dir } => {
            let cfg = RelayNode::config(&dir)?;
            register(&dir, &cfg).await
        }
        RelayCmd::Withdraw { dir, directories } => {
            let cfg = RelayNode::config(&dir)?;
            let only = (!directories.is_empty()).then_some(directories);
            let gone = dir_client::withdraw(&dir, &cfg, only, &smpx_os::SystemClock)
                .await
                .context("withdrawing from the directory")?;
            for url in gone {
                println!("withdrawn from {url}");
            }
            Ok(())
        }
        RelayCmd::Run { dir } => {
            let node = RelayNode::start(&dir)
                .await
                .with_context(|| format!("starting the relay in {}", dir.display()))?;
            // Tests and scripts read this line.
            eprintln!(
                "relay listening on {} ({}), ops on http://{}",
                node.address(),
                node.listen_addr(),
                node.ops_addr()
            );
            shutdown.await;
            eprintln!("relay shutting down");
            node.shutdown().await?;
            Ok(())
        }
    }
}

/// The devnet's relays: `dir/relay-1` … `relay-3`, created on first use, listening on
/// `base_port + 10 + i` with ops on `base_port + 20 + i` (0: ports picked at start), log
/// storage, paid with the credits of the devnet's operator, proxying to each other on
/// loopback (`allow_private_destinations`), and listed in the devnet's directory under the
/// devnet's operator (one operator key for the three, `dir/operator.key`): each registers
/// once started (its address has its port then), and heartbeats.
/// Already-created relays keep their configuration, except the operator's and the
/// directory's URLs (the devnet may have picked new ports).
pub async fn start_devnet_relays(
    dir: &Path,
    base_port: u16,
    net: &crate::devnet::Devnet,
) -> Result<Vec<RunningNode>> {
    let listing = DirectorySection {
        operator_key_file: dir.join(DEVNET_OPERATOR_KEY_FILE),
        heartbeat_interval_secs: crate::devnet::DEVNET_PROBE_INTERVAL_SECS,
        operator_name: Some("devnet operator".into()),
        ..DirectorySection::new(
            vec![net.directory_url.clone()],
            crate::devnet::OPERATOR_ID.into(),
            DEVNET_REGION.into(),
        )
    };
    // Made here, not by a relay's init: one key for the three, and devnets whose relays
    // were created before they were listed.
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    dir_client::operator_key(&listing.operator_key_file, true, &smpx_os::OsEntropy)?;
    let mut nodes = Vec::new();
    for i in 0..DEVNET_RELAYS {
        let d = dir.join(format!("relay-{}", i + 1));
        let port = |offset: u16| match base_port {
            0 => 0,
            p => p.saturating_add(offset + i),
        };
        if !d.join(smpx_relay::config::CONFIG_FILE).exists() {
            RelayNode::init(
                &d,
                InitOptions {
                    listen: Some(SocketAddr::from(([127, 0, 0, 1], port(10)))),
                    ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], port(20)))),
                    operator_url: Some(net.operator_url.clone()),
                    allow_private_destinations: true,
                    directory: Some(listing.clone()),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("creating the devnet relay in {}", d.display()))?;
        }
        let adjust = |c: &mut NodeConfig| {
            c.capacity.operator_url = Some(net.operator_url.clone());
            // Devnets created before the setting existed: their relays are all on loopback.
            c.forwarding.allow_private_destinations = true;
            c.directory = Some(listing.clone());
        };
        let node = RelayNode::start_with(&d, adjust)
            .await
            .with_context(|| format!("starting the devnet relay in {}", d.display()))?;
        // Registered as it runs: with the port it listens on now.
        let mut cfg = RelayNode::config(&d)?;
        adjust(&mut cfg);
        cfg.server.public_port = node.address().port;
        let registered = dir_client::register(
            &d,
            &cfg,
            &smpx_os::SystemClock,
            &smpx_os::OsEntropy,
            Arc::new(|_: &PowProgress| true),
        )
        .await;
        nodes.push(node);
        if let Err(e) = registered {
            stop_relays(nodes).await?;
            return Err(anyhow::Error::new(e).context(format!(
                "registering the devnet relay in {} with {}",
                d.display(),
                net.directory_url
            )));
        }
    }
    Ok(nodes)
}

/// Stops relays started by [`start_devnet_relays`].
pub async fn stop_relays(nodes: Vec<RunningNode>) -> Result<()> {
    for n in nodes {
        n.shutdown().await?;
    }
    Ok(())
}
