//! The real coordinator, issuer and operator in one process on loopback, each with its own
//! data directory, database and listener, talking to each other over HTTP as on separate
//! machines. The same wiring as `smpx devnet`, without the CLI (so that the crates below the
//! CLI can test against it) and with what tests need besides: a database backend switch, an
//! injected clock, and stopping or restarting one service on its own data.

use anyhow::{bail, Context, Result};
use smpx_coordinator::{Coordinator, CoordinatorHome, ZkKeys};
use smpx_core::api::{AddIssuerRequest, AddOperatorRequest, CredentialResponse};
use smpx_core::crypto::sign::SigningKey;
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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{ceremony, db, Backend};

/// Ids the network gives its issuer and operator (as `smpx devnet` does).
pub const ISSUER_ID: &str = "issuer-1";
pub const OPERATOR_ID: &str = "operator-1";
/// Issuing limit of the issuer, credits.
pub const ISSUER_LIMIT_CREDITS: u64 = 1_000_000;
/// The operator's revenue share (60%).
pub const OPERATOR_SHARE_BPS: u32 = 6000;

/// How to build a network.
pub struct Options {
    pub backend: Backend,
    /// The coordinator's parameters (default: the network defaults with a
    /// [`ceremony::LEVELS`]-level MMR).
    pub params: NetworkParams,
    /// The clock every service reads.
    pub clock: Arc<dyn Clock>,
    /// RSA modulus size of the issuer's keys.
    pub key_bits: usize,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            params: NetworkParams {
                mmr_levels: ceremony::LEVELS,
                ..NetworkParams::default()
            },
            clock: Arc::new(SystemClock),
            key_bits: 2048,
        }
    }
}

/// One of the three services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Coordinator,
    Issuer,
    Operator,
}

impl Service {
    const ALL: [Service; 3] = [Service::Coordinator, Service::Issuer, Service::Operator];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Service::Coordinator => "coordinator",
            Service::Issuer => "issuer",
            Service::Operator => "operator",
        }
    }
}

/// What a server waits on to shut down gracefully.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One server on loopback: its URL, and the means to stop it (dropping it stops the server
/// too, gracefully).
pub struct Server {
    pub url: String,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` (port 0: one the system picks) and runs `serve` on the listener until
    /// the server is stopped or dropped.
    pub async fn start<F, Fut>(addr: SocketAddr, serve: F) -> Result<Server>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = l.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(serve(l, shutdown));
        Ok(Server {
            url: format!("http://{addr}"),
            addr,
            stop,
            task,
        })
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => bail!("a service failed: {e}"),
            Ok(Err(e)) => bail!("a service task panicked: {e}"),
            Err(_) => bail!("a service did not stop within 10 s"),
        }
    }
}

/// The loopback address with a port the system picks.
pub fn any_port() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// Serves `state` as the coordinator on `addr`.
pub async fn serve_coordinator(state: Arc<Coordinator>, addr: SocketAddr) -> Result<Server> {
    Server::start(addr, |l, stop| {
        smpx_coordinator::run(state, l, Duration::from_secs(60), stop)
    })
    .await
}

/// Serves `state` as an operator on `addr`.
pub async fn serve_operator(state: Arc<Operator>, addr: SocketAddr) -> Result<Server> {
    Server::start(addr, |l, stop| smpx_operator::run(state, l, stop)).await
}

/// Serves `state` as an issuer on `addr`.
pub async fn serve_issuer(state: Arc<Issuer>, addr: SocketAddr) -> Result<Server> {
    Server::start(addr, |l, stop| {
        smpx_issuer::run(state, l, Duration::from_secs(3600), stop)
    })
    .await
}

/// Serves a hand-written `router` (a stand-in, or a proxy that loses answers) on a port the
/// system picks.
pub async fn serve_router(router: axum::Router) -> Result<Server> {
    Server::start(any_port(), |l, stop| async move {
        axum::serve(l, router).with_graceful_shutdown(stop).await
    })
    .await
}

/// A running test network. Dropping it stops every service.
pub struct Network {
    pub coordinator_url: String,
    pub issuer_url: String,
    pub operator_url: String,
    /// Admin token of the coordinator.
    pub admin_token: String,
    /// Admin token of the issuer (to mint top-up codes).
    pub issuer_admin_token: String,
    /// The running coordinator (replaced on its restart).
    pub coordinator: Arc<Coordinator>,
    params: NetworkParams,
    clock: Arc<dyn Clock>,
    key_bits: usize,
    addrs: [SocketAddr; 3],
    databases: [String; 3],
    credentials: [String; 2],
    running: [Option<Server>; 3],
    dir: tempfile::TempDir,
}

impl Network {
    /// Starts a network with the default [`Options`] on `backend`.
    pub async fn start(backend: Backend) -> Result<Network> {
        Self::start_with(Options::new(backend)).await
    }

    /// Starts a network: a fresh directory and fresh databases, the issuer whitelisted and
    /// the operator registered at the coordinator.
    pub async fn start_with(opts: Options) -> Result<Network> {
        let dir = tempfile::tempdir()?;
        let mut databases = Vec::new();
        for s in Service::ALL {
            let url = match opts.backend {
                Backend::Sqlite => format!(
                    "sqlite://{}",
                    dir.path().join(format!("{}.db", s.name())).display()
                ),
                Backend::Postgres => db::postgres().await?,
            };
            databases.push(url);
        }
        let databases: [String; 3] = databases
            .try_into()
            .map_err(|_| anyhow::anyhow!("three databases"))?;
        let unbound = any_port();
        let (coordinator, admin_token) =
            Self::coordinator_state(dir.path(), &opts, &databases[0]).await?;
        let mut net = Network {
            coordinator_url: String::new(),
            issuer_url: String::new(),
            operator_url: String::new(),
            admin_token,
            issuer_admin_token: String::new(),
            coordinator,
            params: opts.params,
            clock: opts.clock,
            key_bits: opts.key_bits,
            addrs: [unbound; 3],
            databases,
            credentials: [String::new(), String::new()],
            running: [None, None, None],
            dir,
        };
        let server = serve_coordinator(net.coordinator.clone(), unbound).await?;
        net.coordinator_url = server.url.clone();
        net.addrs[0] = server.addr;
        net.running[0] = Some(server);
        let admin = ApiClient::new(&net.coordinator_url).with_token(net.admin_token.clone());
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
        net.credentials = [issuer.token, operator.token];
        net.serve(Service::Issuer, unbound).await?;
        net.serve(Service::Operator, unbound).await?;
        Ok(net)
    }

    /// The data directory of `service`.
    pub fn home(&self, service: Service) -> PathBuf {
        self.dir.path().join(service.name())
    }

    /// The directory the network lives in (its services' homes are below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database URL of `service`.
    pub fn database_url(&self, service: Service) -> &str {
        &self.databases[service.index()]
    }

    /// The coordinator's parameters.
    pub fn params(&self) -> &NetworkParams {
        &self.params
    }

    /// The key the coordinator or the operator signs its receipts with, read from its data
    /// directory: what a test signs a lie with, as a service that lies would.
    pub fn receipt_key(&self, service: Service) -> Result<SigningKey> {
        let home = self.home(service);
        Ok(match service {
            Service::Coordinator => CoordinatorHome::open(&home, None)?.receipt_key,
            Service::Operator => OperatorHome::open(&home)?.receipt_key,
            Service::Issuer => bail!("the issuer signs no receipts (it blind-signs vouchers)"),
        })
    }

    async fn coordinator_state(
        dir: &Path,
        opts: &Options,
        database: &str,
    ) -> Result<(Arc<Coordinator>, String)> {
        let home = CoordinatorHome::open(&dir.join("coordinator"), Some(opts.params.clone()))?;
        let levels = home.params.mmr_levels;
        let zk = if home
            .params
            .protocol_versions
            .contains(&smpx_core::redemption::PROTOCOL_V2)
        {
            let path = home.dir.join(smpx_coordinator::zk::TRANSCRIPT_FILE);
            if path.exists() {
                Some(
                    ZkKeys::load(&home.dir, levels, &smpx_ceremony::Silent)?
                        .context("the ceremony transcript disappeared")?,
                )
            } else {
                let keys = ceremony::keys(levels)?;
                smpx_http::files::write_private(&path, &keys.transcript)?;
                Some(ZkKeys::from_verified(keys.transcript, &keys.verifying_key)?)
            }
        } else {
            None
        };
        let store = CoordinatorStore::open(Db::connect(database).await?).await?;
        let admin_token = home.admin_token.clone();
        Ok((
            Coordinator::with_zk(store, home, opts.clock.clone(), zk),
            admin_token,
        ))
    }

    /// Starts `service` on `addr` from its data directory and database.
    async fn serve(&mut self, service: Service, addr: SocketAddr) -> Result<()> {
        let home = self.home(service);
        let database = self.databases[service.index()].clone();
        let server = match service {
            Service::Coordinator => {
                let opts = Options {
                    backend: Backend::Sqlite,
                    params: self.params.clone(),
                    clock: self.clock.clone(),
                    key_bits: self.key_bits,
                };
                (self.coordinator, self.admin_token) =
                    Self::coordinator_state(self.dir.path(), &opts, &database).await?;
                let server = serve_coordinator(self.coordinator.clone(), addr).await?;
                self.coordinator_url = server.url.clone();
                server
            }
            Service::Issuer => {
                let home = IssuerHome::init(
                    &home,
                    IssuerConfig {
                        issuer_id: ISSUER_ID.into(),
                        coordinator_url: self.coordinator_url.clone(),
                        credential: self.credentials[0].clone(),
                        devnet_payments: true,
                        key_bits: self.key_bits,
                    },
                )?;
                self.issuer_admin_token = home.admin_token.clone();
                let store = IssuerStore::open(Db::connect(&database).await?).await?;
                let issuer = Issuer::start(store, home, self.clock.clone()).await?;
                let server = serve_issuer(issuer, addr).await?;
                self.issuer_url = server.url.clone();
                server
            }
            Service::Operator => {
                let home = OperatorHome::init(
                    &home,
                    OperatorConfig {
                        operator_id: OPERATOR_ID.into(),
                        coordinator_url: self.coordinator_url.clone(),
                        credential: self.credentials[1].clone(),
                    },
                )?;
                let store = OperatorStore::open(Db::connect(&database).await?).await?;
                let operator = Operator::start(store, home, self.clock.clone()).await?;
                let server = serve_operator(operator, addr).await?;
                self.operator_url = server.url.clone();
                server
            }
        };
        self.addrs[service.index()] = server.addr;
        self.running[service.index()] = Some(server);
        Ok(())
    }

    /// Stops `service` gracefully (its data stays); a no-op if it is not running.
    pub async fn stop_service(&mut self, service: Service) -> Result<()> {
        match self.running[service.index()].take() {
            Some(r) => r.stop().await,
            None => Ok(()),
        }
    }

    /// Starts a stopped `service` again on its data directory, database and port (so the
    /// other services and clients keep their URLs).
    pub async fn start_service(&mut self, service: Service) -> Result<()> {
        if self.running[service.index()].is_some() {
            bail!("the {} is already running", service.name());
        }
        self.serve(service, self.addrs[service.index()]).await
    }

    /// Stops and starts `service` (a crash between requests loses only what was in memory).
    pub async fn restart(&mut self, service: Service) -> Result<()> {
        self.stop_service(service).await?;
        self.start_service(service).await
    }

    /// Stops every service gracefully and waits for them.
    pub async fn stop(mut self) -> Result<()> {
        for s in Service::ALL {
            self.stop_service(s).await?;
        }
        Ok(())
    }
}
