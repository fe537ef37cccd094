//! A whole smpx network in one process, on loopback: each service is a separate instance with
//! its own data directory, database and port, talking to the others over real HTTP — the
//! same as separate machines, minus the machines.

use anyhow::{bail, Context, Result};
use smpx_coordinator::{Coordinator, CoordinatorHome};
use smpx_core::api::{AddIssuerRequest, AddOperatorRequest, CredentialResponse};
use smpx_core::NetworkParams;
use smpx_http::{ApiClient, Clock, SystemClock};
use smpx_issuer::{Issuer, IssuerConfig, IssuerHome};
use smpx_operator::{Operator, OperatorConfig, OperatorHome};
use smpx_store::coordinator::CoordinatorStore;
use smpx_store::issuer::IssuerStore;
use smpx_store::operator::OperatorStore;
use smpx_store::Db;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Ids the devnet gives its issuer and operator.
pub const ISSUER_ID: &str = "issuer-1";
pub const OPERATOR_ID: &str = "operator-1";
/// Devnet issuing limit, credits.
pub const ISSUER_LIMIT_CREDITS: u64 = 1_000_000;
/// Devnet operator revenue share (60%).
pub const OPERATOR_SHARE_BPS: u32 = 6000;
/// MMR levels of a devnet: capacity 1,023 vouchers per MMR, a circuit that proves in well
/// under a second and a ceremony of about a minute (the network default, 16, takes several).
pub const DEVNET_MMR_LEVELS: u32 = 5;
/// Contributors per phase of the devnet's local ceremony.
pub const DEVNET_CONTRIBUTORS: usize = 3;

/// Where each service keeps its data.
#[derive(Clone, Debug, Default)]
pub struct Databases {
    /// Database URLs; `None` means SQLite in the service's data directory.
    pub coordinator: Option<String>,
    pub issuer: Option<String>,
    pub operator: Option<String>,
}

pub struct DevnetOptions {
    pub dir: PathBuf,
    /// Ports for coordinator, issuer, operator; 0 picks a free port.
    pub ports: [u16; 3],
    pub databases: Databases,
    /// Parameters for a new coordinator (ignored if the directory already has them).
    pub params: Option<NetworkParams>,
    pub clock: Arc<dyn Clock>,
    /// RSA modulus size for the issuer's keys.
    pub key_bits: usize,
    /// Where the finalised local ceremony transcript is cached between devnets (see
    /// `smpx_zk::devnet`); it is verified whenever it is used.
    pub ceremony_cache: PathBuf,
    /// Report ceremony progress on stderr.
    pub progress: bool,
    /// The relay directory's port; 0 picks a free port.
    pub directory_port: u16,
}

/// The devnet directory's proof-of-work difficulty: registering a relay takes a few
/// milliseconds (a public directory asks for more).
pub const DEVNET_POW_DIFFICULTY: u32 = 8;
/// Seconds between the devnet directory's probe rounds.
pub const DEVNET_PROBE_INTERVAL_SECS: u64 = 60;
/// The devnet attester's secret key (hex, 0600), in the devnet's directory: the relay
/// directory trusts its attestations of operators' identities.
pub const ATTESTER_KEY_FILE: &str = "attester.key";

impl DevnetOptions {
    pub fn new(dir: &Path) -> Self {
        DevnetOptions {
            dir: dir.to_owned(),
            ports: [0, 0, 0],
            databases: Databases::default(),
            params: None,
            clock: Arc::new(SystemClock),
            key_bits: 2048,
            ceremony_cache: smpx_zk::devnet::default_cache_dir(),
            progress: true,
            directory_port: 0,
        }
    }

    /// The parameters a new devnet gets: the network defaults with a small MMR.
    pub fn default_params() -> NetworkParams {
        NetworkParams {
            mmr_levels: DEVNET_MMR_LEVELS,
            ..NetworkParams::default()
        }
    }
}

/// The devnet coordinator's v0.2 keys: its transcript if it has one, else the local
/// ceremony's (from the cache or run now, `contributors` per phase), installed in its
/// directory. Verified either way.
fn devnet_zk_keys(
    home: &CoordinatorHome,
    opts: &DevnetOptions,
) -> Result<smpx_coordinator::ZkKeys> {
    let quiet = smpx_ceremony::Silent;
    let loud = crate::ceremony::StderrProgress::new();
    let progress: &dyn smpx_ceremony::Progress = if opts.progress { &loud } else { &quiet };
    let levels = home.params.mmr_levels;
    let path = home.dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE);
    if path.exists() {
        return smpx_coordinator::ZkKeys::load(&home.dir, levels, progress)?
            .context("the ceremony transcript disappeared");
    }
    if opts.progress {
        eprintln!(
            "devnet: local ceremony for the redemption circuit ({levels} MMR levels, \
             {DEVNET_CONTRIBUTORS} contributors per phase; cached in {})",
            opts.ceremony_cache.display()
        );
    }
    let keys = smpx_zk::devnet::cached_local_ceremony(
        levels,
        DEVNET_CONTRIBUTORS,
        &opts.ceremony_cache,
        progress,
    )?;
    smpx_http::files::write_private(&path, &keys.transcript)?;
    Ok(smpx_coordinator::ZkKeys::from_verified(
        keys.transcript,
        &keys.verifying_key,
    )?)
}

/// A running devnet.
pub struct Devnet {
    pub coordinator_url: String,
    pub issuer_url: String,
    pub operator_url: String,
    /// The relay directory: it probes the relays registered with it and posts the operators'
    /// share statements to the coordinator, which trusts its key.
    pub directory_url: String,
    /// The directory (to run a probe round or sign statements now, in tests).
    pub directory: Arc<smpx_directory::Directory>,
    /// The attester the directory trusts (`attester.key`; `None` for a devnet created
    /// before it had one).
    pub attester: Option<smpx_core::crypto::sign::SigningKey>,
    /// Admin token of the coordinator.
    pub admin_token: String,
    /// Admin token of the issuer (to mint top-up codes).
    pub issuer_admin_token: String,
    pub coordinator: Arc<Coordinator>,
    pub dir: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Credentials the devnet handed out, kept so a restarted devnet reuses them.
#[derive(serde::Serialize, serde::Deserialize)]
struct Credentials {
    issuer: String,
    operator: String,
}

async fn bind(port: u16) -> Result<(TcpListener, String)> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (is another devnet running?)"))?;
    let url = format!("http://{}", l.local_addr()?);
    Ok((l, url))
}

fn shutdown_signal(
    rx: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

impl Devnet {
    /// Starts (or restarts, keeping its data) a devnet in `opts.dir`.
    pub async fn start(opts: DevnetOptions) -> Result<Devnet> {
        let dir = opts.dir.clone();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        // The directory first: the coordinator is told to trust its statement key.
        let directory_home = match smpx_directory::DirectoryHome::load(&dir.join("directory")) {
            Ok(home) => home,
            Err(_)
                if !dir
                    .join("directory")
                    .join(smpx_directory::home::CONFIG_FILE)
                    .exists() =>
            {
                // The devnet's attester: a key the directory trusts to vouch for an
                // operator's legal identity (`smpx directory attest --key` with this file).
                let attester = crate::directory::attester_key(&dir.join(ATTESTER_KEY_FILE))?;
                smpx_directory::DirectoryHome::create(
                    &dir.join("directory"),
                    &smpx_directory::DirectoryConfig {
                        name: "devnet-directory".into(),
                        pow_difficulty: DEVNET_POW_DIFFICULTY,
                        probe_interval_secs: DEVNET_PROBE_INTERVAL_SECS,
                        // The devnet's relays all listen on loopback, one /24.
                        subnet_limit: usize::from(crate::relay::DEVNET_RELAYS),
                        registrations_per_subnet: 100,
                        trusted_attesters: vec![attester.verifying_key()],
                        ..Default::default()
                    },
                )?
            }
            Err(e) => return Err(e.into()),
        };
        let coordinator_config = dir.join("coordinator").join(smpx_coordinator::CONFIG_FILE);
        if !coordinator_config.exists() {
            std::fs::create_dir_all(dir.join("coordinator"))?;
            smpx_http::files::write_private(
                &coordinator_config,
                &serde_json::to_vec_pretty(&serde_json::json!({
                    "trusted_directories": [directory_home.signing_key.verifying_key().to_hex()]
                }))?,
            )?;
        }

        // Coordinator.
        let home = CoordinatorHome::open(
            &dir.join("coordinator"),
            Some(
                opts.params
                    .clone()
                    .unwrap_or_else(DevnetOptions::default_params),
            ),
        )?;
        let zk = if home
            .params
            .protocol_versions
            .contains(&smpx_core::redemption::PROTOCOL_V2)
        {
            Some(devnet_zk_keys(&home, &opts)?)
        } else {
            None
        };
        let admin_token = home.admin_token.clone();
        let url = opts
            .databases
            .coordinator
            .clone()
            .unwrap_or_else(|| home.default_database_url());
        let store = CoordinatorStore::open(Db::connect(&url).await?).await?;
        let coordinator = Coordinator::with_zk(store, home, opts.clock.clone(), zk);
        let (l, coordinator_url) = bind(opts.ports[0]).await?;
        tasks.push(tokio::spawn(smpx_coordinator::run(
            coordinator.clone(),
            l,
            Duration::from_secs(60),
            shutdown_signal(&stop_rx),
        )));

        // Whitelist the issuer and register the operator, once.
        let cred_path = dir.join("credentials.json");
        let creds: Credentials = if cred_path.exists() {
            smpx_http::files::load(&cred_path)?
        } else {
            let admin = ApiClient::new(&coordinator_url).with_token(admin_token.clone());
            let issuer: CredentialResponse = admin
                .post(
                    "/v1/admin/issuers",
                    &AddIssuerRequest {
                        id: ISSUER_ID.into(),
                        limit_credits: ISSUER_LIMIT_CREDITS,
                    },
                )
                .await?;
            let operator: CredentialResponse = admin
                .post(
                    "/v1/admin/operators",
                    &AddOperatorRequest {
                        id: OPERATOR_ID.into(),
                        share_bps: OPERATOR_SHARE_BPS,
                    },
                )
                .await?;
            let c = Credentials {
                issuer: issuer.token,
                operator: operator.token,
            };
            smpx_http::files::write_private(&cred_path, &serde_json::to_vec_pretty(&c)?)?;
            c
        };

        // Issuer.
        let issuer_home = IssuerHome::init(
            &dir.join("issuer"),
            IssuerConfig {
                issuer_id: ISSUER_ID.into(),
                coordinator_url: coordinator_url.clone(),
                credential: creds.issuer,
                devnet_payments: true,
                key_bits: opts.key_bits,
            },
        )?;
        let issuer_admin_token = issuer_home.admin_token.clone();
        let url = opts
            .databases
            .issuer
            .clone()
            .unwrap_or_else(|| issuer_home.default_database_url());
        let store = IssuerStore::open(Db::connect(&url).await?).await?;
        let issuer = Issuer::start(store, issuer_home, opts.clock.clone()).await?;
        let (l, issuer_url) = bind(opts.ports[1]).await?;
        tasks.push(tokio::spawn(smpx_issuer::run(
            issuer,
            l,
            Duration::from_secs(3600),
            shutdown_signal(&stop_rx),
        )));

        // Operator.
        let operator_home = OperatorHome::init(
            &dir.join("operator"),
            OperatorConfig {
                operator_id: OPERATOR_ID.into(),
                coordinator_url: coordinator_url.clone(),
                credential: creds.operator,
            },
        )?;
        let url = opts
            .databases
            .operator
            .clone()
            .unwrap_or_else(|| operator_home.default_database_url());
        let store = OperatorStore::open(Db::connect(&url).await?).await?;
        let operator = Operator::start(store, operator_home, opts.clock.clone()).await?;
        let (l, operator_url) = bind(opts.ports[2]).await?;
        tasks.push(tokio::spawn(smpx_operator::run(
            operator,
            l,
            shutdown_signal(&stop_rx),
        )));

        // The directory, posting its statements to the coordinator.
        let mut directory_home = directory_home;
        directory_home.config.coordinators = vec![coordinator_url.clone()];
        let url = directory_home.database_url();
        let store = smpx_store::directory::DirectoryStore::open(Db::connect(&url).await?).await?;
        let directory = smpx_directory::Directory::new(
            store,
            directory_home,
            opts.clock.clone(),
            Arc::new(smpx_directory::NetworkProber::new(opts.clock.clone())),
        );
        let (l, directory_url) = bind(opts.directory_port).await?;
        tasks.push(tokio::spawn(smpx_directory::run(
            directory.clone(),
            l,
            shutdown_signal(&stop_rx),
        )));

        let attester_file = dir.join(ATTESTER_KEY_FILE);
        let attester = if attester_file.exists() {
            Some(crate::directory::attester_key(&attester_file)?)
        } else {
            None
        };
        let devnet = Devnet {
            directory_url,
            directory,
            attester,
            coordinator_url,
            issuer_url,
            operator_url,
            admin_token,
            issuer_admin_token,
            coordinator,
            dir,
            stop,
            tasks,
        };
        smpx_http::files::write_private(
            &devnet.dir.join("devnet.json"),
            &serde_json::to_vec_pretty(&serde_json::json!({
                "coordinator": devnet.coordinator_url,
                "issuer": devnet.issuer_url,
                "operator": devnet.operator_url,
                "directory": devnet.directory_url,
            }))?,
        )?;
        Ok(devnet)
    }

    /// Stops every service gracefully and waits for them.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            match tokio::time::timeout(Duration::from_secs(10), t).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => bail!("a service failed: {e}"),
                Ok(Err(e)) => bail!("a service task panicked: {e}"),
                Err(_) => bail!("a service did not stop within 10 s"),
            }
        }
        Ok(())
    }
}
