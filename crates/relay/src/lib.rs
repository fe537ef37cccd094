//! # smpx-relay — the relay node operators run and get paid for (DESIGN.md §3)
//!
//! This crate owns running a relay from a directory: `smpx relay init` and `smpx relay
//! run`, the commented configuration file ([`config`], TOML), the TLS identity on disk,
//! choosing and opening the store backend, and the ops endpoint ([`ops`]: health and
//! Prometheus metrics over axum). The relay's parts are crates of their own, by job:
//! `smpx-relay-protocol` (the bytes), `smpx-relay-transport` (TLS), `smpx-relay-client`,
//! `smpx-relay-server` (with the `QueueStore` contract) and `smpx-relay-store` (backends).
//!
//! A relay directory holds:
//!
//! | file | what |
//! |---|---|
//! | `ca.key`, `ca.crt`, `server.key`, `server.crt`, `fingerprint` | the identity (`smpx_relay_transport::identity`); **move `ca.key` offline** after init |
//! | `relay.toml` | the commented configuration ([`config`]), 0600 |
//! | `operator.key`, `heartbeat.seq` | with `[directory]`: the operator's key (signs registrations, heartbeats, withdrawals) and the last heartbeat sequence ([`directory`]) |
//! | `queues.log` / `queues.db` | the store, unless the configuration names another place (or PostgreSQL) |
//!
//! [`RelayNode::init`] creates the identity, writes the configuration and creates the store,
//! and returns the relay's `smpx://<fingerprint>@host:port` address. [`RelayNode::start`]
//! loads all of it (warning when the online certificate expires within 30 days), opens the
//! store the configuration names, and starts the relay behind TLS (`smpx_relay_transport::acceptor`), its
//! expiry task, the ops endpoint ([`ops`]) and, with `[directory]`, the heartbeats
//! ([`directory`]); [`RunningNode::shutdown`] stops accepting,
//! lets open connections finish within `limits.shutdown_drain_secs` (the health endpoint
//! answers 503 meanwhile), then stops the ops endpoint. [`RelayNode::run`] is both around a
//! shutdown future (the CLI passes SIGINT/SIGTERM).
//!
//! Logs go through `tracing`; they name files, addresses and counts, never keys or the
//! PostgreSQL URL.

pub mod config;
pub mod directory;
pub mod ops;

pub use config::{
    BackendKind, ConfigError, DirectorySection, NodeConfig, StorageConfig, StorageTarget,
};
pub use directory::DirectoryError;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use smpx_relay_server::Relay;
use smpx_relay_store::log::{LogOptions, LogStore};
use smpx_relay_store::sql::SqlStore;
use smpx_relay_store::{QueueStore, StoreError};
use smpx_relay_transport::{identity, IdentityError, RelayAddress, RelayIdentity, TransportError};

/// Warn at start when the online certificate is not valid this far ahead.
pub const CERT_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a node could not be initialised, started or stopped cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{}: already initialised (a relay configuration exists)", .0.display())]
    AlreadyInitialized(PathBuf),
    #[error("{}: not a relay directory (no {}; run `smpx relay init` first)", .0.display(), config::CONFIG_FILE)]
    NotInitialized(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("TLS: {0}")]
    Transport(#[from] TransportError),
    #[error("storage: {0}")]
    Store(String),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a relay task failed: {0}")]
    Task(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        NodeError::Store(e.to_string())
    }
}

/// What `init` writes into the configuration (`None`: the default).
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Where the relay listens (default `127.0.0.1:5223`).
    pub listen: Option<SocketAddr>,
    /// The host in the relay's address (default `127.0.0.1`).
    pub public_host: Option<String>,
    /// The port in the relay's address (default: `listen`'s port).
    pub public_port: Option<u16>,
    /// Where the ops endpoint listens (default `127.0.0.1:5224`).
    pub ops_listen: Option<SocketAddr>,
    /// The store (default: the log backend in `queues.log`).
    pub storage: StorageConfig,
    /// The operator's credit service that takes payments for capacity (default: none, the
    /// relay offers the free tier only).
    pub operator_url: Option<String>,
    /// `[forwarding] allow_private_destinations`: as a proxy, dial loopback and private
    /// addresses too (a devnet, tests on one machine). Default off.
    pub allow_private_destinations: bool,
    /// `[directory]`: the directories to register with (init creates the operator key;
    /// [`directory::register`] registers, while `ca.key` is still here).
    pub directory: Option<DirectorySection>,
}

/// The relay node's entry points.
#[derive(Debug)]
pub struct RelayNode;

/// A started node.
pub struct RunningNode {
    address: RelayAddress,
    listen: SocketAddr,
    ops: SocketAddr,
    relay: Relay,
    drain: Duration,
    serve: JoinHandle<std::io::Result<()>>,
    expiry: JoinHandle<()>,
    ops_stop: watch::Sender<bool>,
    ops_task: JoinHandle<std::io::Result<()>>,
    db: Option<smpx_store::Db>,
    heartbeats: Option<JoinHandle<()>>,
    heartbeats_sent: watch::Receiver<u64>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("address", &self.address.to_string())
            .field("listen", &self.listen)
            .field("ops", &self.ops)
            .finish_non_exhaustive()
    }
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join(config::CONFIG_FILE)
}

/// Writes `bytes` to `path` (mode 0600) atomically and durably.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    smpx_os::fs::write_atomic(path, bytes, smpx_os::fs::Access::Private).map_err(|e| {
        NodeError::Io {
            path: e.path,
            source: e.source,
        }
    })
}

/// An open store; the database handle too for the SQL backends (closed at shutdown).
async fn open_store(
    target: &StorageTarget,
) -> Result<(Arc<dyn QueueStore>, Option<smpx_store::Db>), NodeError> {
    match target {
        StorageTarget::Log { path, fsync } => {
            let path = path.clone();
            let opts = LogOptions {
                fsync: *fsync,
                ..LogOptions::default()
            };
            let opened = tokio::task::spawn_blocking(move || LogStore::open(&path, opts))
                .await
                .map_err(|e| NodeError::Task(e.to_string()))?;
            let (store, recovery) = opened.map_err(|e| NodeError::Store(e.to_string()))?;
            tracing::info!(
                records = recovery.records,
                truncated_bytes = recovery.truncated,
                "queue log replayed"
            );
            Ok((Arc::new(store), None))
        }
        StorageTarget::Sqlite { path } => {
            let db = smpx_store::Db::connect(&format!("sqlite://{}", path.display()))
                .await
                .map_err(|e| NodeError::Store(e.to_string()))?;
            Ok((Arc::new(SqlStore::open(db.clone()).await?), Some(db)))
        }
        StorageTarget::Postgres { url } => {
            // The error of a failed connection may quote the URL (and its password).
            let db = smpx_store::Db::connect(url).await.map_err(|_| {
                NodeError::Store("cannot connect to the PostgreSQL database in storage.url".into())
            })?;
            Ok((Arc::new(SqlStore::open(db.clone()).await?), Some(db)))
        }
    }
}

fn now_secs() -> u64 {
    smpx_os::Clock::now(&smpx_os::SystemClock)
}

impl RelayNode {
    /// Creates a relay in `dir`: identity (CA and online certificate), `relay.toml`, and the
    /// store. Refuses a directory that already has a relay. Returns the relay's address
    /// (with port 0 when the relay is configured to pick its port at start).
    pub async fn init(dir: &Path, options: InitOptions) -> Result<RelayAddress, NodeError> {
        let cfg_path = config_path(dir);
        if cfg_path.exists() {
            return Err(NodeError::AlreadyInitialized(dir.to_owned()));
        }
        let mut cfg = NodeConfig::default();
        if let Some(listen) = options.listen {
            cfg.server.listen = listen;
        }
        cfg.server.public_port = options.public_port.unwrap_or(cfg.server.listen.port());
        if let Some(host) = options.public_host {
            cfg.server.public_host = host;
        }
        if let Some(ops) = options.ops_listen {
            cfg.ops.listen = ops;
        }
        cfg.storage = options.storage;
        cfg.capacity.operator_url = options.operator_url;
        cfg.forwarding.allow_private_destinations = options.allow_private_destinations;
        cfg.directory = options.directory;
        // What init writes must be what run accepts: check the rendered file.
        let text = cfg.render();
        NodeConfig::parse(&text, &cfg_path)?;
        let host = cfg
            .public_host()
            .map_err(|e| NodeError::Task(format!("public host: {e}")))?;

        // The store first: a database that cannot be reached leaves no identity behind, so
        // init can simply be run again.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| NodeError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let (store, db) = open_store(&cfg.storage.target(dir)).await?;
        drop(store);
        if let Some(db) = db {
            db.close().await;
        }
        let identity = RelayIdentity::create(dir)?;
        if let Some(d) = &cfg.directory {
            directory::operator_key(&d.operator_key_path(dir), true, &smpx_os::OsEntropy)
                .map_err(|e| NodeError::Task(e.to_string()))?;
        }
        // Last: its presence marks the directory as initialised.
        write_private(&cfg_path, text.as_bytes())?;
        let address = identity.address(host, cfg.server.public_port);
        tracing::info!(%address, dir = %dir.display(), "relay initialised");
        Ok(address)
    }

    /// Where the CA key of the relay in `dir` is (to tell the operator to move it offline).
    pub fn ca_key_path(dir: &Path) -> PathBuf {
        identity::ca_key_path(dir)
    }

    /// Reads `dir`'s configuration.
    pub fn config(dir: &Path) -> Result<NodeConfig, NodeError> {
        let path = config_path(dir);
        if !path.exists() {
            return Err(NodeError::NotInitialized(dir.to_owned()));
        }
        Ok(NodeConfig::load(&path)?)
    }

    /// Starts the relay in `dir`: identity, store, TLS listener, expiry, ops endpoint.
    pub async fn start(dir: &Path) -> Result<RunningNode, NodeError> {
        Self::start_with(dir, |_| {}).await
    }

    /// [`RelayNode::start`] with the configuration changed by `adjust` first (not written
    /// back): the devnet points its relays at the operator it started.
    pub async fn start_with(
        dir: &Path,
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> Result<RunningNode, NodeError> {
        Self::start_inner(dir, adjust, None).await
    }

    /// [`RelayNode::start`] on a listener the caller has already bound (socket activation;
    /// tests that must not race for a free port): `server.listen` is not bound, the relay
    /// accepts on `listener` instead.
    pub async fn start_on(
        dir: &Path,
        listener: std::net::TcpListener,
    ) -> Result<RunningNode, NodeError> {
        Self::start_inner(dir, |_| {}, Some(listener)).await
    }

    async fn start_inner(
        dir: &Path,
        adjust: impl FnOnce(&mut NodeConfig),
        bound: Option<std::net::TcpListener>,
    ) -> Result<RunningNode, NodeError> {
        let mut cfg = Self::config(dir)?;
        adjust(&mut cfg);
        let identity = RelayIdentity::load(dir)?;
        if !identity.online_cert_valid_at(
            smpx_os::Clock::now_system_time(&smpx_os::SystemClock) + CERT_WARNING,
        ) {
            tracing::warn!(
                "the online TLS certificate expires within 30 days: bring ca.key back and \
                 rotate it (RelayIdentity::rotate_online), then restart"
            );
        }
        let mut server_config = cfg.server_config();
        // Private routing: proxy for this relay's clients, destination for other relays.
        server_config.forwarding = cfg.forwarding.server_config(&identity)?;
        // The relay's accept loop bounds the handshake by `handshake_timeout`.
        let acceptor = Arc::new(smpx_relay_transport::acceptor(&identity)?);
        let host = cfg
            .public_host()
            .map_err(|e| NodeError::Task(format!("public host: {e}")))?;

        let target = cfg.storage.target(dir);
        tracing::info!(storage = ?target, "opening the store");
        let (store, db) = open_store(&target).await?;

        let listen_error = |source| NodeError::Listen {
            what: "relay",
            addr: cfg.server.listen,
            source,
        };
        let listener = match bound {
            Some(l) => {
                l.set_nonblocking(true).map_err(listen_error)?;
                TcpListener::from_std(l).map_err(listen_error)?
            }
            None => TcpListener::bind(cfg.server.listen)
                .await
                .map_err(listen_error)?,
        };
        let listen = listener.local_addr().map_err(listen_error)?;
        let ops_listener =
            TcpListener::bind(cfg.ops.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    what: "ops",
                    addr: cfg.ops.listen,
                    source,
                })?;
        let ops = ops_listener
            .local_addr()
            .map_err(|source| NodeError::Listen {
                what: "ops",
                addr: cfg.ops.listen,
                source,
            })?;
        // public_port 0 (only possible with an ephemeral listen port): the bound port.
        let port = match cfg.server.public_port {
            0 => listen.port(),
            p => p,
        };
        let address = identity.address(host, port);
        drop(identity);

        let relay = Relay::new(store.clone(), server_config);
        let serve = tokio::spawn({
            let relay = relay.clone();
            async move { relay.serve(listener, acceptor).await }
        });
        let expiry = relay.spawn_expiry();

        let state = Arc::new(ops::OpsState {
            relay: relay.clone(),
            store,
            address: address.to_string(),
            started_at: now_secs(),
        });
        let (ops_stop, mut ops_rx) = watch::channel(false);
        let (sent_tx, heartbeats_sent) = watch::channel(0);
        let heartbeats = directory::spawn_heartbeats(
            dir.to_owned(),
            cfg.clone(),
            Arc::new(smpx_os::SystemClock),
            ops_stop.subscribe(),
            sent_tx,
        );
        let app = ops::router(state);
        let ops_task = tokio::spawn(async move {
            axum::serve(ops_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = ops_rx.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%address, %listen, ops = %ops, "relay serving");
        Ok(RunningNode {
            address,
            listen,
            ops,
            relay,
            drain: Duration::from_secs(cfg.limits.shutdown_drain_secs),
            serve,
            expiry,
            ops_stop,
            ops_task,
            db,
            heartbeats,
            heartbeats_sent,
        })
    }

    /// [`RelayNode::start`], then serve until `shutdown` completes, then
    /// [`RunningNode::shutdown`].
    pub async fn run(dir: &Path, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
        let node = Self::start(dir).await?;
        shutdown.await;
        node.shutdown().await
    }
}

impl RunningNode {
    /// The address clients use (`smpx://…`).
    pub fn address(&self) -> &RelayAddress {
        &self.address
    }

    /// The socket the relay is bound to.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The socket the ops endpoint is bound to.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
    }

    /// How many heartbeats every directory has recorded since start (a `watch`, so a caller
    /// can wait for the next one).
    pub fn heartbeats_sent(&self) -> watch::Receiver<u64> {
        self.heartbeats_sent.clone()
    }

    /// The relay (its statistics, configuration).
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Graceful shutdown: stop accepting, let connections finish (up to the drain time; the
    /// health endpoint answers 503 meanwhile), stop the expiry task and the ops endpoint,
    /// close the database.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        tracing::info!("relay shutting down");
        self.relay.shutdown();
        let served = self.serve.await;
        if self.relay.drained(self.drain).await {
            tracing::info!("every connection closed");
        } else {
            tracing::warn!(
                open = self.relay.stats().snapshot().connections_open,
                "connections still open after the drain time; closing anyway"
            );
        }
        let _ = self.expiry.await;
        let _ = self.ops_stop.send(true);
        if let Some(h) = self.heartbeats {
            let _ = h.await;
        }
        let ops = self.ops_task.await;
        if let Some(db) = self.db {
            db.close().await;
        }
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NodeError::Task(format!("relay listener: {e}"))),
            Err(e) => return Err(NodeError::Task(e.to_string())),
        }
        match ops {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NodeError::Task(format!("ops endpoint: {e}"))),
            Err(e) => return Err(NodeError::Task(e.to_string())),
        }
        tracing::info!("relay stopped");
        Ok(())
    }
}
